//! H.264 Annex B access units (the codec payload of docs/wire-format.md §2.4): splitting them at
//! their start codes, cutting a byte stream into access units ([`AccessUnitSplitter`]) and reading
//! a sequence parameter set's picture size ([`sps_dimensions`]). Shared by the simulator (checks
//! its encoder's output), the train agent (pipes and cameras), the server's WHEP tracks (parameter
//! sets before an IDR) and the test kit (normalising received access units).

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

/// Whether a NAL unit of type `nal_type`, whose payload after the header byte starts with
/// `first`, begins a new access unit once the current one holds a coded slice (H.264 §7.4.1.2.3):
/// an access unit delimiter, SEI, SPS, PPS, types 14–18, or a slice whose `first_mb_in_slice` is 0
/// (its ue(v) code is the single bit `1`).
fn starts_access_unit(nal_type: u8, first: u8) -> bool {
    match nal_type {
        6..=9 | 14..=18 => true,
        1 | 5 => first & 0x80 != 0,
        _ => false,
    }
}

/// Cuts an Annex B byte stream (a pipe from ffmpeg or GStreamer, a file) into access units, as
/// ffmpeg's H.264 parser does: a new unit begins at the first NAL unit listed in
/// [`starts_access_unit`] after a coded slice. Each unit is returned with its start codes, byte for
/// byte as it came; bytes before the first start code are dropped. A unit is complete only when
/// the next one begins, so a live stream's units come one frame late (or at [`Self::finish`]).
#[derive(Debug)]
pub struct AccessUnitSplitter {
    buf: Vec<u8>,
    /// Where the start-code search goes on.
    scanned: usize,
    /// The current unit holds a coded slice (types 1–5).
    has_slice: bool,
    /// A start code was seen: `buf` begins with one.
    started: bool,
    max_unit: usize,
    /// Bytes dropped: before the first start code, or a unit over `max_unit`.
    pub dropped_bytes: u64,
    /// Units dropped for being larger than `max_unit`.
    pub oversized: u64,
}

impl AccessUnitSplitter {
    /// Units larger than `max_unit` bytes are dropped (and counted): garbage without start codes
    /// must not grow the buffer without end.
    pub fn new(max_unit: usize) -> Self {
        Self { buf: Vec::new(), scanned: 0, has_slice: false, started: false, max_unit, dropped_bytes: 0, oversized: 0 }
    }

    /// Add bytes; returns the access units they completed, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        // A start code needs 3 bytes, its classification the 2 after it.
        while self.scanned + 5 <= self.buf.len() {
            let i = self.scanned;
            if !(self.buf[i] == 0 && self.buf[i + 1] == 0 && self.buf[i + 2] == 1) {
                self.scanned += 1;
                continue;
            }
            let nal_start = if i > 0 && self.buf[i - 1] == 0 { i - 1 } else { i };
            let nal_type = self.buf[i + 3] & 0x1F;
            if !self.started {
                // Bytes before the first start code.
                self.dropped_bytes += nal_start as u64;
                self.buf.drain(..nal_start);
                self.started = true;
                self.scanned = i - nal_start + 3;
            } else if self.has_slice && starts_access_unit(nal_type, self.buf[i + 4]) {
                out.push(self.buf.drain(..nal_start).collect());
                self.has_slice = false;
                self.scanned = i - nal_start + 3;
            } else {
                self.scanned = i + 3;
            }
            if (1..=5).contains(&nal_type) {
                self.has_slice = true;
            }
        }
        if self.buf.len() > self.max_unit {
            self.dropped_bytes += self.buf.len() as u64;
            self.oversized += 1;
            self.buf.clear();
            self.scanned = 0;
            self.has_slice = false;
            self.started = false;
        }
        out
    }

    /// The stream ended: the last unit, if it holds a slice.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let unit = std::mem::take(&mut self.buf);
        self.scanned = 0;
        self.started = false;
        let had = std::mem::replace(&mut self.has_slice, false);
        // A slice whose classification bytes had not come yet still counts.
        let tail_slice = nal_units(&unit).iter().any(|n| (1..=5).contains(&n.nal_type()));
        (had || tail_slice).then_some(unit)
    }
}

/// Whether an access unit holds an IDR slice.
pub fn is_keyframe(unit: &[u8]) -> bool {
    nal_units(unit).iter().any(|n| n.nal_type() == NAL_IDR)
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

    /// An AUD, SPS, PPS, IDR; then a P slice in two slices (first_mb 0, then not 0); then SEI +
    /// P slice: three units, cut the same whatever the chunking.
    #[test]
    fn splits_a_stream_into_access_units_whatever_the_chunks() {
        let unit1: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 0x88, 4];
        let unit2: &[u8] = &[0, 0, 0, 1, 0x41, 0x9A, 5, 0, 0, 1, 0x41, 0x20, 6];
        let unit3: &[u8] = &[0, 0, 0, 1, 0x06, 5, 1, 0, 0, 0, 1, 0x41, 0x9B, 7, 8];
        let stream: Vec<u8> = [&[7u8, 7][..], unit1, unit2, unit3].concat();
        for chunk in [1, 2, 3, 5, 7, 64] {
            let mut s = AccessUnitSplitter::new(1 << 20);
            let mut units = Vec::new();
            for c in stream.chunks(chunk) {
                units.extend(s.push(c));
            }
            units.extend(s.finish());
            assert_eq!(units, [unit1, unit2, unit3], "chunks of {chunk}");
            assert_eq!(s.dropped_bytes, 2, "the bytes before the first start code");
            assert!(is_keyframe(&units[0]) && !is_keyframe(&units[1]));
        }
    }

    #[test]
    fn garbage_without_start_codes_is_dropped_not_kept() {
        let mut s = AccessUnitSplitter::new(1000);
        for _ in 0..10 {
            assert!(s.push(&[0xAB; 300]).is_empty());
        }
        assert!(s.oversized >= 2 && s.dropped_bytes >= 2000, "{s:?}");
        assert_eq!(s.finish(), None);
    }

    /// SPSs written by x264 (ffmpeg 5.1, testsrc): baseline, main and high profile, with and
    /// without cropping (1080 = 68 MB rows − 8; 350×198 crops both ways).
    #[test]
    fn sps_dimensions_of_x264_profiles() {
        let cases: [(&[u8], (u32, u32)); 4] = [
            (
                &[
                    0x67, 0x64, 0x00, 0x28, 0xAC, 0xD9, 0x40, 0x78, 0x02, 0x27, 0xE5, 0xC0, 0x44, 0x00, 0x00, 0x03,
                    0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xC8, 0x3C, 0x60, 0xC6, 0x58,
                ],
                (1920, 1080),
            ),
            (
                &[
                    0x67, 0x42, 0xC0, 0x0D, 0xD9, 0x01, 0x41, 0xFB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
                    0x00, 0x03, 0x03, 0x20, 0xF1, 0x42, 0xA4, 0x80,
                ],
                (320, 240),
            ),
            (
                &[
                    0x67, 0x4D, 0x40, 0x1F, 0xEC, 0xA0, 0x28, 0x02, 0xDD, 0x80, 0x88, 0x00, 0x00, 0x03, 0x00, 0x08,
                    0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xC1, 0x8C, 0xB0,
                ],
                (1280, 720),
            ),
            (
                &[
                    0x67, 0x64, 0x00, 0x0D, 0xAC, 0xD9, 0x41, 0x61, 0xBE, 0xA6, 0xC0, 0x44, 0x00, 0x00, 0x03, 0x00,
                    0x04, 0x00, 0x00, 0x03, 0x00, 0xC8, 0x3C, 0x50, 0xA6, 0x58,
                ],
                (350, 198),
            ),
        ];
        for (sps, size) in cases {
            assert_eq!(sps_dimensions(sps), Some(size));
        }
        assert_eq!(sps_dimensions(&[0x68, 1, 2]), None, "not an SPS");
        assert_eq!(sps_dimensions(&[0x67, 0x64]), None, "truncated");
    }
}
