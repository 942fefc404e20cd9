//! What a client measures: the relay latency of each packet (receive time − the capture
//! timestamp in its header, both on this host's clock) and which frames arrived whole, counted
//! only for frames captured inside the measurement window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use railcast_protocol::packet::{HEADER_LEN, KIND_VIDEO};

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The measurement window in capture time, `[start, end)` µs since the epoch; empty until set.
/// Trains count the frames they capture inside it, clients the packets and whole frames.
#[derive(Debug)]
pub struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Default for Window {
    fn default() -> Self {
        Self { start: AtomicU64::new(u64::MAX), end: AtomicU64::new(u64::MAX) }
    }
}

impl Window {
    /// Open the window now, for `len_us`.
    pub fn open(&self, len_us: u64) -> (u64, u64) {
        let start = now_us();
        self.end.store(start + len_us, Ordering::Relaxed);
        self.start.store(start, Ordering::Release);
        (start, start + len_us)
    }
    pub fn contains(&self, capture_us: u64) -> bool {
        capture_us >= self.start.load(Ordering::Acquire) && capture_us < self.end.load(Ordering::Relaxed)
    }
}

/// Log-linear latency histogram in µs: 10 µs steps below 1 ms, 100 µs below 10 ms, 1 ms below
/// 100 ms, 10 ms below 1 s, then one overflow bucket. Percentiles report a bucket's upper edge.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u32>,
    pub n: u64,
    pub max_us: u64,
    sum_us: u64,
}

const BUCKETS: usize = 371;

impl Default for Hist {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], n: 0, max_us: 0, sum_us: 0 }
    }
}

fn bucket(us: u64) -> usize {
    match us {
        0..1_000 => (us / 10) as usize,
        1_000..10_000 => 100 + ((us - 1_000) / 100) as usize,
        10_000..100_000 => 190 + ((us - 10_000) / 1_000) as usize,
        100_000..1_000_000 => 280 + ((us - 100_000) / 10_000) as usize,
        _ => BUCKETS - 1,
    }
}

fn upper_edge(b: usize) -> u64 {
    let b = b as u64;
    match b {
        0..100 => (b + 1) * 10,
        100..190 => 1_000 + (b - 99) * 100,
        190..280 => 10_000 + (b - 189) * 1_000,
        280..370 => 100_000 + (b - 279) * 10_000,
        _ => u64::MAX,
    }
}

impl Hist {
    pub fn record(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.n += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }
    /// The `q` quantile (0..=1) in µs; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(upper_edge(b).min(self.max_us));
            }
        }
        Some(self.max_us)
    }
    pub fn mean_us(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum_us as f64 / self.n as f64)
    }
}

/// Exact quantile of a sorted slice (nearest rank).
pub fn quantile_sorted(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// (camera << 32 | seq) + 1; 0 is empty.
    key: u64,
    got: u16,
}

/// Per-client counters. Chunks are tallied per frame in a small ring keyed by camera and
/// sequence, so chunks may arrive in any order (WebRTC `video` is unordered).
#[derive(Debug, Clone)]
pub struct FrameCounter {
    ring: Vec<Slot>,
    /// Whole frames captured inside the window.
    pub frames: u64,
    /// Packets of frames captured inside the window.
    pub packets: u64,
    pub bytes: u64,
    /// Any video packet, inside the window or not.
    pub packets_any: u64,
    pub malformed: u64,
    pub latency: Hist,
    /// From the capture to the kernel's receive time, for clients whose socket gives it
    /// ([`crate::stamped_udp`]); empty for the others.
    pub socket_latency: Hist,
}

const RING: usize = 128;

impl Default for FrameCounter {
    fn default() -> Self {
        Self {
            ring: vec![Slot::default(); RING],
            frames: 0,
            packets: 0,
            bytes: 0,
            packets_any: 0,
            malformed: 0,
            latency: Hist::default(),
            socket_latency: Hist::default(),
        }
    }
}

impl FrameCounter {
    /// One video packet as received. Only the 26-byte header is read.
    pub fn packet(&mut self, p: &[u8], window: &Window) {
        self.packet_at(p, window, None)
    }

    /// [`FrameCounter::packet`], with the kernel's receive time of the packet (or of one
    /// received after it) when the socket gives it, µs since the epoch.
    pub fn packet_at(&mut self, p: &[u8], window: &Window, received_us: Option<u64>) {
        if p.len() < HEADER_LEN || &p[0..2] != b"RC" || p[3] != KIND_VIDEO {
            self.malformed += 1;
            return;
        }
        let now = now_us();
        let be16 = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
        let camera = be16(6);
        let seq = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&p[12..20]);
        let capture = u64::from_be_bytes(ts);
        let count = be16(22);
        self.packets_any += 1;
        let inside = window.contains(capture);
        if inside {
            self.packets += 1;
            self.bytes += p.len() as u64;
            self.latency.record(now.saturating_sub(capture));
            if let Some(r) = received_us {
                self.socket_latency.record(r.saturating_sub(capture));
            }
        }
        let key = ((u64::from(camera) << 32) | u64::from(seq)) + 1;
        let slot = &mut self.ring[(seq as usize).wrapping_mul(17).wrapping_add(usize::from(camera)) % RING];
        if slot.key != key {
            *slot = Slot { key, got: 0 };
        }
        slot.got = slot.got.saturating_add(1);
        if slot.got == count && inside {
            self.frames += 1;
        }
    }

    /// One message of a `video` data channel: its packets (docs/wire-format.md §2.6), each as
    /// [`FrameCounter::packet`]; what the split refuses counts once as malformed.
    pub fn message(&mut self, m: &[u8], window: &Window) {
        for p in railcast_protocol::message::split(m) {
            match p {
                Ok(p) => self.packet(p, window),
                Err(_) => self.malformed += 1,
            }
        }
    }

    /// [`FrameCounter::message`], marking the client warm at its first packet.
    pub fn message_warming(&mut self, m: &[u8], window: &Window, warm: &std::sync::atomic::AtomicUsize) {
        let before = self.packets_any + self.malformed;
        self.message(m, window);
        if before == 0 && self.packets_any + self.malformed > 0 {
            warm.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Count one binary message and mark the client warm at its first one.
    pub fn packet_warming(&mut self, p: &[u8], window: &Window, warm: &std::sync::atomic::AtomicUsize) {
        self.packet_warming_at(p, window, warm, None)
    }

    /// [`FrameCounter::packet_warming`] with the kernel's receive time ([`FrameCounter::packet_at`]).
    pub fn packet_warming_at(
        &mut self,
        p: &[u8],
        window: &Window,
        warm: &std::sync::atomic::AtomicUsize,
        received_us: Option<u64>,
    ) {
        self.packet_at(p, window, received_us);
        if self.packets_any + self.malformed == 1 {
            warm.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn merge(&mut self, o: &FrameCounter) {
        self.frames += o.frames;
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.packets_any += o.packets_any;
        self.malformed += o.malformed;
        self.latency.merge(&o.latency);
        self.socket_latency.merge(&o.socket_latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_edges_cover_values() {
        let mut last = 0;
        for us in [0, 5, 9, 10, 999, 1_000, 1_050, 9_999, 10_000, 99_999, 100_000, 999_999, 5_000_000] {
            let b = bucket(us);
            assert!(b >= last);
            last = b;
            assert!(upper_edge(b) > us, "{us} in bucket {b} with edge {}", upper_edge(b));
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for us in 1..=100 {
            h.record(us * 10);
        }
        assert_eq!(h.quantile(0.5), Some(510));
        assert_eq!(h.quantile(1.0), Some(1_000));
        assert_eq!(quantile_sorted(&[1, 2, 3, 4], 0.5), Some(2));
    }

    #[test]
    fn counts_whole_frames_in_any_order() {
        let w = Window::default();
        w.open(60_000_000);
        let meta = railcast_protocol::packet::FrameMeta {
            keyframe: true,
            codec: railcast_protocol::Codec::H264AnnexB,
            camera: railcast_protocol::CameraId(1),
            seq: railcast_protocol::FrameSeq(7),
            capture_us: now_us(),
        };
        let mut pkts = railcast_protocol::packet::packetize(meta, &[9u8; 5000], 1150).expect("packetize");
        pkts.reverse();
        let mut c = FrameCounter::default();
        for p in &pkts {
            c.packet(p, &w);
        }
        assert_eq!((c.frames, c.packets, c.malformed), (1, pkts.len() as u64, 0));
    }
}
