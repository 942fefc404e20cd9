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
}
