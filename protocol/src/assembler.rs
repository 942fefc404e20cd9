//! Frame reassembly on the receiving side, the same rules on every transport.
//!
//! Packets of a camera are grouped by frame sequence number; a frame is emitted when all of its
//! chunks are present. Rules:
//! - frames are emitted in increasing sequence order; a packet of a frame at or before the last
//!   completed one is *late* and dropped. A complete delta frame skipped while waiting for a keyframe
//!   counts as completed (emitted): its copies and older frames are late;
//! - at most [`MAX_PARTIAL`] frames per camera are collected at once, the frame a packet starts
//!   included: starting one more first drops the oldest (*incomplete*), unless the packet's frame is
//!   older than all of them (then the packet is *late*); when a newer frame completes, older
//!   incomplete ones are dropped (*incomplete*);
//! - after any loss (an incomplete frame, or a gap in sequence numbers) delta frames are skipped
//!   until the next keyframe, since they cannot be decoded; a receiver starts in that state;
//! - duplicate chunks are ignored; a packet whose chunk count disagrees with its frame's is dropped.
//!
//! The TypeScript client implements the same rules against the same golden vectors
//! (docs/wire-format.md §2.5; the `assembler` vectors pin both edge cases above).

use bytes::Bytes;

use crate::ids::{CameraId, FrameSeq};
use crate::packet::{Codec, VideoPacket};

/// Frames collected at once per camera, the frame a packet starts included.
pub const MAX_PARTIAL: usize = 4;

/// A complete encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub camera: CameraId,
    pub seq: FrameSeq,
    pub keyframe: bool,
    pub codec: Codec,
    pub capture_us: u64,
    pub data: Vec<u8>,
}

/// A complete frame as the chunks it came in, before they are joined into one buffer:
/// [`FrameParts::join`] makes the [`Frame`]. A relay that already holds the frame's bytes in
/// another form (a shared packetization) needs only the metadata, and skips the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameParts {
    pub camera: CameraId,
    pub seq: FrameSeq,
    pub keyframe: bool,
    pub codec: Codec,
    pub capture_us: u64,
    /// Every chunk, in order (all present: the frame is complete).
    chunks: Vec<Option<Bytes>>,
}

impl FrameParts {
    /// The frame's encoded size in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().flatten().map(Bytes::len).sum()
    }

    /// Whether the frame has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame, its chunks copied into one buffer.
    pub fn join(self) -> Frame {
        let mut data = Vec::with_capacity(self.len());
        for c in self.chunks.iter().flatten() {
            data.extend_from_slice(c);
        }
        Frame {
            camera: self.camera,
            seq: self.seq,
            keyframe: self.keyframe,
            codec: self.codec,
            capture_us: self.capture_us,
            data,
        }
    }
}

/// What the assembler did, for stats overlays and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    pub packets: u64,
    pub frames: u64,
    pub late_packets: u64,
    pub duplicate_packets: u64,
    pub inconsistent_packets: u64,
    pub incomplete_frames: u64,
    /// Complete delta frames skipped while waiting for a keyframe.
    pub skipped_frames: u64,
}

#[derive(Debug)]
struct Partial {
    seq: FrameSeq,
    keyframe: bool,
    codec: Codec,
    capture_us: u64,
    chunks: Vec<Option<Bytes>>,
    received: usize,
}

#[derive(Debug)]
struct Camera {
    id: CameraId,
    partial: Vec<Partial>,
    last: Option<FrameSeq>,
    need_keyframe: bool,
}

#[derive(Debug, Default)]
pub struct Assembler {
    cameras: Vec<Camera>,
    pub stats: AssemblerStats,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget all state (e.g. the stream switched to another train): wait for a keyframe again.
    pub fn reset(&mut self) {
        self.cameras.clear();
    }

    /// Feed one packet; returns a frame when this packet completes one that may be shown.
    pub fn push(&mut self, packet: &VideoPacket) -> Option<Frame> {
        self.push_parts(packet).map(FrameParts::join)
    }

    /// As [`Assembler::push`], with the frame's chunks not yet joined.
    pub fn push_parts(&mut self, packet: &VideoPacket) -> Option<FrameParts> {
        let h = packet.header;
        self.stats.packets += 1;
        let idx = match self.cameras.iter().position(|c| c.id == h.camera) {
            Some(i) => i,
            None => {
                self.cameras.push(Camera { id: h.camera, partial: Vec::new(), last: None, need_keyframe: true });
                self.cameras.len() - 1
            }
        };
        let cam = &mut self.cameras[idx];
        let stats = &mut self.stats;
        if cam.last.is_some_and(|last| !h.seq.is_after(last)) {
            stats.late_packets += 1;
            return None;
        }
        let pos = match cam.partial.iter().position(|p| p.seq == h.seq) {
            Some(p) => p,
            None => {
                if cam.partial.len() == MAX_PARTIAL {
                    // Evict the oldest frame still collecting.
                    let oldest = (0..cam.partial.len())
                        .min_by_key(|&i| cam.partial[i].seq.distance_from(h.seq).unwrap_or(i32::MIN))
                        .unwrap_or(0);
                    if cam.partial[oldest].seq.is_after(h.seq) {
                        stats.late_packets += 1;
                        return None;
                    }
                    cam.partial.swap_remove(oldest);
                    stats.incomplete_frames += 1;
                    cam.need_keyframe = true;
                }
                cam.partial.push(Partial {
                    seq: h.seq,
                    keyframe: h.keyframe,
                    codec: h.codec,
                    capture_us: h.capture_us,
                    chunks: vec![None; usize::from(h.chunk_count)],
                    received: 0,
                });
                cam.partial.len() - 1
            }
        };
        let p = &mut cam.partial[pos];
        if p.chunks.len() != usize::from(h.chunk_count) {
            stats.inconsistent_packets += 1;
            return None;
        }
        let slot = &mut p.chunks[usize::from(h.chunk_index)];
        if slot.is_some() {
            stats.duplicate_packets += 1;
            return None;
        }
        *slot = Some(packet.bytes.slice(crate::packet::HEADER_LEN..));
        p.received += 1;
        if p.received < p.chunks.len() {
            return None;
        }
        let done = cam.partial.swap_remove(pos);
        // Older frames still collecting can no longer be emitted in order.
        let before = cam.partial.len();
        cam.partial.retain(|q| q.seq.is_after(done.seq));
        let dropped = (before - cam.partial.len()) as u64;
        stats.incomplete_frames += dropped;
        let gap = match cam.last {
            Some(last) => done.seq.distance_from(last) != Some(1),
            None => false,
        };
        if dropped > 0 || gap {
            cam.need_keyframe = true;
        }
        cam.last = Some(done.seq);
        if cam.need_keyframe && !done.keyframe {
            stats.skipped_frames += 1;
            return None;
        }
        cam.need_keyframe = false;
        stats.frames += 1;
        Some(FrameParts {
            camera: h.camera,
            seq: done.seq,
            keyframe: done.keyframe,
            codec: done.codec,
            capture_us: done.capture_us,
            chunks: done.chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{packetize, FrameMeta};

    fn frame(seq: u32, keyframe: bool, len: usize) -> Vec<VideoPacket> {
        let meta = FrameMeta {
            keyframe,
            codec: Codec::H264AnnexB,
            camera: CameraId(0),
            seq: FrameSeq(seq),
            capture_us: u64::from(seq),
        };
        let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ seq) as u8).collect();
        packetize(meta, &data, 100)
            .expect("packetize")
            .into_iter()
            .map(|b| VideoPacket::parse(b, 100).expect("parse"))
            .collect()
    }

    fn feed(a: &mut Assembler, pkts: &[VideoPacket]) -> Vec<u32> {
        pkts.iter().filter_map(|p| a.push(p)).map(|f| f.seq.0).collect()
    }

    #[test]
    fn in_order_stream() {
        let mut a = Assembler::new();
        let mut pkts = frame(0, true, 250);
        pkts.extend(frame(1, false, 120));
        pkts.extend(frame(2, false, 50));
        assert_eq!(feed(&mut a, &pkts), vec![0, 1, 2]);
        assert_eq!(a.stats.frames, 3);
    }

    #[test]
    fn waits_for_first_keyframe() {
        let mut a = Assembler::new();
        let mut pkts = frame(5, false, 150);
        pkts.extend(frame(6, true, 150));
        pkts.extend(frame(7, false, 150));
        assert_eq!(feed(&mut a, &pkts), vec![6, 7]);
        assert_eq!(a.stats.skipped_frames, 1);
    }

    #[test]
    fn loss_waits_for_keyframe() {
        let mut a = Assembler::new();
        let mut pkts = frame(0, true, 150);
        let mut f1 = frame(1, false, 250);
        f1.remove(1); // lose a chunk of frame 1
        pkts.extend(f1);
        pkts.extend(frame(2, false, 150));
        pkts.extend(frame(3, true, 150));
        pkts.extend(frame(4, false, 150));
        assert_eq!(feed(&mut a, &pkts), vec![0, 3, 4]);
        assert_eq!(a.stats.incomplete_frames, 1);
    }

    #[test]
    fn whole_frame_gap_waits_for_keyframe() {
        let mut a = Assembler::new();
        let mut pkts = frame(0, true, 150);
        pkts.extend(frame(2, false, 150));
        pkts.extend(frame(3, true, 150));
        assert_eq!(feed(&mut a, &pkts), vec![0, 3]);
    }

    #[test]
    fn reordered_chunks_and_duplicates() {
        let mut a = Assembler::new();
        let mut pkts = frame(0, true, 350);
        pkts.reverse();
        let dup = pkts[1].clone();
        pkts.insert(2, dup);
        assert_eq!(feed(&mut a, &pkts), vec![0]);
        assert_eq!(a.stats.duplicate_packets, 1);
    }

    #[test]
    fn interleaved_frames_complete_in_order() {
        let mut a = Assembler::new();
        let f0 = frame(0, true, 250);
        let f1 = frame(1, false, 250);
        let mut pkts = Vec::new();
        for i in 0..3 {
            pkts.push(f0[i].clone());
            pkts.push(f1[i].clone());
        }
        assert_eq!(feed(&mut a, &pkts), vec![0, 1]);
    }

    #[test]
    fn late_frame_after_newer_one_is_dropped() {
        let mut a = Assembler::new();
        let f0 = frame(0, true, 150);
        let f1 = frame(1, false, 150);
        let f2 = frame(2, true, 150);
        let pkts = vec![f0[0].clone(), f0[1].clone(), f1[0].clone(), f2[0].clone(), f2[1].clone(), f1[1].clone()];
        assert_eq!(feed(&mut a, &pkts), vec![0, 2]);
        assert_eq!(a.stats.incomplete_frames, 1);
        assert_eq!(a.stats.late_packets, 1);
    }

    #[test]
    fn sequence_wraps() {
        let mut a = Assembler::new();
        let mut pkts = frame(u32::MAX, true, 150);
        pkts.extend(frame(0, false, 150));
        assert_eq!(feed(&mut a, &pkts), vec![u32::MAX, 0]);
    }

    #[test]
    fn data_is_reassembled_exactly() {
        let mut a = Assembler::new();
        let meta = FrameMeta {
            keyframe: true,
            codec: Codec::H264AnnexB,
            camera: CameraId(3),
            seq: FrameSeq(9),
            capture_us: 77,
        };
        let data: Vec<u8> = (0..1234u32).map(|i| (i * 13) as u8).collect();
        let mut out = None;
        for b in packetize(meta, &data, 100).expect("packetize") {
            out = a.push(&VideoPacket::parse(b, 100).expect("parse")).or(out);
        }
        let f = out.expect("frame");
        assert_eq!(f.data, data);
        assert_eq!((f.camera, f.seq, f.capture_us, f.keyframe), (CameraId(3), FrameSeq(9), 77, true));
    }

    #[test]
    fn parts_are_the_frame_before_its_chunks_are_joined() {
        let mut whole = Assembler::new();
        let mut parts = Assembler::new();
        // A keyframe, a delta, a lost chunk (frame 2), then a delta skipped and a keyframe.
        let mut pkts = frame(0, true, 250);
        pkts.extend(frame(1, false, 120));
        let mut lost = frame(2, false, 300);
        lost.remove(1);
        pkts.extend(lost);
        pkts.extend(frame(3, false, 80));
        pkts.extend(frame(4, true, 410));
        let frames: Vec<Frame> = pkts.iter().filter_map(|p| whole.push(p)).collect();
        let joined: Vec<(usize, Frame)> =
            pkts.iter().filter_map(|p| parts.push_parts(p)).map(|f| (f.len(), f.join())).collect();
        assert_eq!(frames.iter().map(|f| f.seq.0).collect::<Vec<_>>(), vec![0, 1, 4]);
        assert_eq!(joined.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), frames);
        assert!(joined.iter().all(|(len, f)| *len == f.data.len() && *len > 0));
        assert_eq!(parts.stats, whole.stats);
    }
}
