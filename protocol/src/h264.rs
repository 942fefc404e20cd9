//! H.264 Annex B access units (the codec payload of docs/wire-format.md §2.4): splitting them at
//! their start codes. Shared by the simulator (checks its encoder's output), the server's WHEP
//! tracks (parameter sets before an IDR) and the test kit (normalising received access units).

/// One NAL unit of an Annex B access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalUnit<'a> {
    /// The NAL unit including its start code (3 or 4 bytes).
    pub with_start_code: &'a [u8],
    /// The NAL unit without the start code (header byte first; empty for two start codes in a row).
    pub payload: &'a [u8],
}

impl NalUnit<'_> {
    /// The NAL unit type (low 5 bits of the header byte); 0 for an empty unit.
    pub fn nal_type(&self) -> u8 {
        self.payload.first().map_or(0, |b| b & 0x1F)
    }
}

/// Sequence parameter set, picture parameter set, IDR slice, access unit delimiter, filler data.
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_IDR: u8 = 5;
pub const NAL_AUD: u8 = 9;
pub const NAL_FILLER: u8 = 12;

/// Splits an Annex B stream at its start codes (`00 00 01` or `00 00 00 01`). Bytes before the
/// first start code are ignored.
pub fn nal_units(data: &[u8]) -> Vec<NalUnit<'_>> {
    // (start of start code, start of payload)
    let mut starts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let sc_start = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            starts.push((sc_start, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &(sc_start, payload_start))| {
            let end = starts.get(k + 1).map_or(data.len(), |next| next.0);
            NalUnit { with_start_code: &data[sc_start..end], payload: &data[payload_start..end] }
        })
        .collect()
}

/// The picture size a sequence parameter set announces, in pixels after cropping, or `None` when
/// `sps` (the NAL unit without its start code, header byte first) is not an SPS or is cut short.
/// Reads just far enough (ITU-T H.264 §7.3.2.1.1): the profile's chroma format and scaling lists,
/// the frame-number and POC fields, then the size in macroblocks and the cropping rectangle.
pub fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    if sps.first().map(|b| b & 0x1F) != Some(NAL_SPS) {
        return None;
    }
    let rbsp = unescape(sps.get(1..)?);
    let mut r = BitReader { data: &rbsp, pos: 0 };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bits(1)? == 1;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        left = r.ue()?;
        right = r.ue()?;
        top = r.ue()?;
        bottom = r.ue()?;
    }
    let (crop_x, crop_y): (u32, u32) = match (chroma_format_idc, separate_colour_plane) {
        (0, _) | (3, true) => (1, 2 - frame_mbs_only),
        (1, _) => (2, 2 * (2 - frame_mbs_only)),
        (2, _) => (2, 2 - frame_mbs_only),
        _ => (1, 2 - frame_mbs_only),
    };
    let width = width_mbs.checked_mul(16)?.checked_sub(crop_x.checked_mul(left.checked_add(right)?)?)?;
    let height = (2 - frame_mbs_only)
        .checked_mul(height_map_units)?
        .checked_mul(16)?
        .checked_sub(crop_y.checked_mul(top.checked_add(bottom)?)?)?;
    (width > 0 && height > 0).then_some((width, height))
}

/// The RBSP of a NAL unit: every emulation prevention byte (`00 00 03` → `00 00`) removed.
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Big-endian bit reader with Exp-Golomb codes; `None` past the end.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }
    /// ue(v); values above 2³² − 2 are refused.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_three_and_four_byte_start_codes() {
        let data = [9, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let nals = nal_units(&data);
        assert_eq!(nals.len(), 3);
        assert_eq!(nals[0].with_start_code, &[0, 0, 0, 1, 0x67, 1, 2]);
        assert_eq!(nals[1].with_start_code, &[0, 0, 1, 0x68, 3]);
        assert_eq!(nals[2].payload, &[0x65, 4, 5]);
        assert_eq!(nals.iter().map(NalUnit::nal_type).collect::<Vec<_>>(), [NAL_SPS, NAL_PPS, NAL_IDR]);
        assert!(nal_units(&[1, 2, 3]).is_empty());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    /// SPSs written by libx264 (ffmpeg 5.1): High with cropping (1080 = 68 macroblocks − 8), High,
    /// Constrained Baseline.
    #[test]
    fn sps_dimensions_of_real_encoders() {
        let cases = [
            ("67640028acd940780227e5c044000003000400000300f03c60c658", (1920, 1080)),
            ("6764000dacd94141fb0110000003001000000303c0f1429960", (320, 240)),
            ("6742c00bd902c4ec0440000003004000000f03c50a92", (176, 144)),
        ];
        for (sps, size) in cases {
            assert_eq!(sps_dimensions(&hex(sps)), Some(size), "{sps}");
        }
    }

    #[test]
    fn sps_dimensions_refuses_without_panicking() {
        let sps = hex("67640028acd940780227e5c044000003000400000300f03c60c658");
        for cut in 0..8 {
            assert_eq!(sps_dimensions(&sps[..cut]), None, "cut at {cut}");
        }
        assert_eq!(sps_dimensions(&[0x68, 0xff, 0xff]), None, "a PPS");
        assert_eq!(sps_dimensions(&[0x67, 0, 0, 0, 0, 0, 0, 0]), None, "all zero bits");
        for seed in 0u32..2000 {
            let mut data = vec![0x67];
            let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
            for _ in 0..(seed % 40) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                data.push(x as u8);
            }
            let _ = sps_dimensions(&data);
        }
    }
}
