//! RTP H.264 (RFC 6184) into Annex B access units, sans IO: one [`Depacketizer`] per camera.
//!
//! A frame is the packets of one RTP timestamp up to the one with the marker bit, in sequence.
//! A frame with a missing packet (a sequence gap, a new timestamp before the marker, an
//! unfinished FU-A) or a payload this reader does not take (FU-B, MTAP, a cut STAP-A) is dropped
//! whole and counted in [`Counters::incomplete`]; after a drop, delta frames are held back until
//! the next IDR (they would not decode), and [`Depacketizer::needs_keyframe`] says so, which the
//! session turns into an RTCP PLI. A frame's capture time is the caller's clock when its first
//! packet arrived.
//!
//! Single NAL units, STAP-A and FU-A (packetization modes 0 and 1) are read; every NAL unit goes
//! out after a 4-byte start code. Every IDR frame leaves with SPS and PPS in front: those the
//! frame carries, or the last ones seen on this camera. The SPS gives the picture size.

use railcast_protocol::h264::{nal_units, sps_dimensions, NAL_IDR, NAL_PPS, NAL_SPS};

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// One RTP packet, as much of it as the depacketizer reads.
#[derive(Debug, Clone, Copy)]
pub struct Rtp<'a> {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// A whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Annex B, 4-byte start codes.
    pub data: Vec<u8>,
    /// It has an IDR slice (and SPS and PPS in front).
    pub keyframe: bool,
    /// The caller's clock when the frame's first packet arrived.
    pub first_at: u64,
    pub rtp_timestamp: u32,
}

/// What one camera's depacketizer has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub frames: u64,
    pub keyframes: u64,
    /// Frames dropped because a packet was missing or unreadable.
    pub incomplete: u64,
    /// Whole frames held back while waiting for a keyframe (the start, or after a drop).
    pub held_back: u64,
    /// Packets older than the last one (reordered or duplicated), ignored.
    pub late: u64,
}

#[derive(Debug)]
struct Building {
    timestamp: u32,
    first_at: u64,
    data: Vec<u8>,
    /// An FU-A in progress: its NAL unit so far, header byte first.
    fragment: Option<Vec<u8>>,
    damaged: bool,
}

/// One camera's RTP → access units.
#[derive(Debug)]
pub struct Depacketizer {
    current: Option<Building>,
    expected: Option<u16>,
    /// Deltas are held back until an IDR: at the start, and after a dropped frame.
    waiting: bool,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    dimensions: Option<(u32, u32)>,
    /// Largest access unit accepted; a larger one is dropped as incomplete.
    max_frame: usize,
    pub counters: Counters,
}

impl Depacketizer {
    pub fn new(max_frame: usize) -> Self {
        Self {
            current: None,
            expected: None,
            waiting: true,
            sps: None,
            pps: None,
            dimensions: None,
            max_frame,
            counters: Counters::default(),
        }
    }

    /// The picture size of the last SPS seen.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        self.dimensions
    }

    /// No keyframe since the start or since the last dropped frame: deltas are held back.
    pub fn needs_keyframe(&self) -> bool {
        self.waiting
    }

    /// Take one packet that arrived at `now` (the caller's clock, µs); a frame when it completes
    /// one that may be relayed.
    pub fn push(&mut self, p: Rtp<'_>, now: u64) -> Option<AccessUnit> {
        self.counters.packets += 1;
        let gap = match self.expected {
            Some(e) => {
                let ahead = p.sequence.wrapping_sub(e);
                if ahead >= 0x8000 {
                    self.counters.late += 1;
                    return None;
                }
                ahead != 0
            }
            None => false,
        };
        self.expected = Some(p.sequence.wrapping_add(1));
        if self.current.as_ref().is_some_and(|c| c.timestamp != p.timestamp) {
            // The last frame never saw its marker.
            self.current = None;
            self.drop_frame();
        }
        let building = self.current.get_or_insert_with(|| Building {
            timestamp: p.timestamp,
            first_at: now,
            data: Vec::new(),
            fragment: None,
            damaged: false,
        });
        building.damaged |= gap || !read_payload(building, p.payload) || building.data.len() > self.max_frame;
        if !p.marker {
            return None;
        }
        let done = self.current.take()?;
        if done.damaged || done.fragment.is_some() || done.data.is_empty() {
            self.drop_frame();
            return None;
        }
        self.finish(done)
    }

    fn drop_frame(&mut self) {
        self.counters.incomplete += 1;
        self.waiting = true;
    }

    fn finish(&mut self, done: Building) -> Option<AccessUnit> {
        let (mut has_sps, mut has_pps, mut keyframe) = (false, false, false);
        for nal in nal_units(&done.data) {
            match nal.nal_type() {
                NAL_SPS => {
                    has_sps = true;
                    self.sps = Some(nal.payload.to_vec());
                    if let Some(size) = sps_dimensions(nal.payload) {
                        self.dimensions = Some(size);
                    }
                }
                NAL_PPS => {
                    has_pps = true;
                    self.pps = Some(nal.payload.to_vec());
                }
                NAL_IDR => keyframe = true,
                _ => {}
            }
        }
        if !keyframe && self.waiting {
            self.counters.held_back += 1;
            return None;
        }
        let mut data = done.data;
        if keyframe && !(has_sps && has_pps) {
            let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
                // An IDR that cannot be decoded without parameter sets never seen.
                self.counters.held_back += 1;
                return None;
            };
            let mut front = Vec::with_capacity(sps.len() + pps.len() + 8 + data.len());
            for ps in [sps, pps] {
                front.extend_from_slice(&START_CODE);
                front.extend_from_slice(ps);
            }
            front.extend_from_slice(&data);
            data = front;
        }
        if keyframe {
            self.waiting = false;
            self.counters.keyframes += 1;
        }
        self.counters.frames += 1;
        Some(AccessUnit { data, keyframe, first_at: done.first_at, rtp_timestamp: done.timestamp })
    }
}

/// Append one RTP payload's NAL units to `b`; false when it cannot be read.
fn read_payload(b: &mut Building, payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else { return false };
    match header & 0x1F {
        1..=23 => {
            if b.fragment.is_some() {
                return false;
            }
            b.data.extend_from_slice(&START_CODE);
            b.data.extend_from_slice(payload);
            true
        }
        STAP_A => {
            if b.fragment.is_some() {
                return false;
            }
            let mut rest = &payload[1..];
            while !rest.is_empty() {
                let [hi, lo, tail @ ..] = rest else { return false };
                let size = usize::from(*hi) << 8 | usize::from(*lo);
                if size == 0 || tail.len() < size {
                    return false;
                }
                b.data.extend_from_slice(&START_CODE);
                b.data.extend_from_slice(&tail[..size]);
                rest = &tail[size..];
            }
            true
        }
        FU_A => {
            let Some(&fu) = payload.get(1) else { return false };
            let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
            let body = &payload[2..];
            match (&mut b.fragment, start) {
                (Some(_), true) => return false,
                (None, false) => return false,
                (None, true) => b.fragment = Some(vec![(header & 0xE0) | (fu & 0x1F)]),
                (Some(_), false) => {}
            }
            if let Some(nal) = &mut b.fragment {
                nal.extend_from_slice(body);
            }
            if end {
                if let Some(nal) = b.fragment.take() {
                    b.data.extend_from_slice(&START_CODE);
                    b.data.extend_from_slice(&nal);
                }
            }
            true
        }
        // 0, STAP-B, MTAP16/24, FU-B (interleaved mode), reserved.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x02, 0xc4, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f,
        0x03, 0xc5, 0x0a, 0x92,
    ];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn rtp(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Rtp<'_> {
        Rtp { sequence, timestamp, marker, payload }
    }

    fn stap(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![STAP_A | 0x60];
        for n in nals {
            out.extend_from_slice(&(n.len() as u16).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    fn fu(nal: &[u8], parts: usize) -> Vec<Vec<u8>> {
        let body = &nal[1..];
        let chunk = body.len().div_ceil(parts);
        body.chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let mut fu = (nal[0] & 0x1F) | if i == 0 { 0x80 } else { 0 };
                if (i + 1) * chunk >= body.len() {
                    fu |= 0x40;
                }
                let mut p = vec![(nal[0] & 0xE0) | FU_A, fu];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| START_CODE.iter().chain(n.iter()).copied()).collect()
    }

    #[test]
    fn keyframe_from_stap_a_and_fu_a_then_deltas() {
        let idr: Vec<u8> = [0x65].into_iter().chain((0..3000).map(|i| (i % 251) as u8 | 1)).collect();
        let mut d = Depacketizer::new(1 << 20);
        assert_eq!(d.push(rtp(10, 900, false, &stap(&[SPS, PPS])), 5), None);
        let parts = fu(&idr, 3);
        assert_eq!(d.push(rtp(11, 900, false, &parts[0]), 6), None);
        assert_eq!(d.push(rtp(12, 900, false, &parts[1]), 7), None);
        let au = d.push(rtp(13, 900, true, &parts[2]), 8).expect("keyframe");
        assert!(au.keyframe);
        assert_eq!(au.first_at, 5, "the first packet's arrival");
        assert_eq!(au.data, annex_b(&[SPS, PPS, &idr]));
        assert_eq!(d.dimensions(), Some((176, 144)));
        let delta = d.push(rtp(14, 3900, true, &[0x41, 9, 9]), 40).expect("delta");
        assert!(!delta.keyframe);
        assert_eq!(delta.data, annex_b(&[&[0x41, 9, 9]]));
        assert_eq!((d.counters.frames, d.counters.keyframes, d.counters.incomplete), (2, 1, 0));
    }

    #[test]
    fn a_lost_packet_drops_the_frame_and_holds_deltas_until_the_next_idr() {
        let mut d = Depacketizer::new(1 << 20);
        assert_eq!(d.push(rtp(1, 0, true, &[0x41, 1]), 0), None, "a delta before any keyframe");
        assert_eq!(d.counters.held_back, 1);
        assert!(d.push(rtp(2, 10, true, &stap(&[SPS, PPS, &[0x65, 1, 2]])), 1).is_some());
        assert!(!d.needs_keyframe());
        // Frame at 20: packets 3 (lost) and 4.
        assert_eq!(d.push(rtp(4, 20, true, &[0x41, 2]), 2), None);
        assert_eq!(d.counters.incomplete, 1);
        assert!(d.needs_keyframe());
        assert_eq!(d.push(rtp(5, 30, true, &[0x41, 3]), 3), None, "held back");
        // A frame whose marker packet was lost: noticed at the next timestamp.
        assert_eq!(d.push(rtp(6, 40, false, &[0x41, 4]), 4), None);
        // Packet 7 is lost too: the frame at 50 may have lost its first packet, so it goes.
        assert_eq!(d.push(rtp(8, 50, true, &[0x65, 7]), 5), None);
        assert_eq!(d.counters.incomplete, 3, "the frames at 20, 40 and 50");
        // An IDR without parameter sets gets the last ones.
        let au = d.push(rtp(9, 60, true, &[0x65, 8]), 6).expect("IDR");
        assert_eq!(au.data, annex_b(&[SPS, PPS, &[0x65, 8]]));
        assert_eq!(d.counters.held_back, 2);
        assert_eq!(d.push(rtp(7, 40, true, &[0x41, 4]), 7), None, "a late packet is ignored");
        assert_eq!(d.counters.late, 1);
    }

    #[test]
    fn unreadable_payloads_never_panic() {
        let mut d = Depacketizer::new(64);
        let bad: [&[u8]; 9] = [
            &[],
            &[STAP_A],
            &[STAP_A, 0],
            &[STAP_A, 0, 5, 1],
            &[STAP_A, 0, 0],
            &[FU_A],
            &[FU_A, 0x05],
            &[29, 0x85, 1],
            &[0],
        ];
        for (i, p) in bad.iter().enumerate() {
            assert_eq!(d.push(rtp(i as u16, i as u32, true, p), 0), None, "{p:?}");
        }
        assert_eq!(d.counters.incomplete, bad.len() as u64);
        let big = vec![0x65; 100];
        assert_eq!(d.push(rtp(20, 99, true, &big), 0), None, "over max_frame");
        for seed in 0u32..3000 {
            let mut x = seed.wrapping_mul(2_654_435_761) | 1;
            let payload: Vec<u8> = (0..(seed % 30))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = d.push(rtp(seed as u16 ^ (x as u16 & 3), x % 4, x & 8 != 0, &payload), 0);
        }
    }
}
