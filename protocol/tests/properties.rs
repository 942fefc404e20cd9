//! Property tests of the assembler's promises (`src/assembler.rs`, docs/wire-format.md §2.5) and of
//! the video header's round trip. The TypeScript port has the same properties in
//! `web-client/test/assembler.prop.test.ts`.
//!
//! Random frames are packetized, then delivered frame after frame with packets lost, duplicated
//! and reordered within their frame, for one to three cameras interleaved. A model of the
//! documented rules says what must come out, per camera:
//! - a frame is emitted when all its chunks arrived, byte for byte as it was sent, at most once;
//! - the receiver starts waiting for a keyframe; after a loss (a frame missing a chunk, or missing
//!   whole) delta frames are skipped until the next complete keyframe;
//! - every other complete frame is emitted, in order, across the 32-bit sequence wrap.
//!
//! With packets shuffled across frames as well, nothing is promised about which frames come out,
//! only that what does is sound: sent frames, once each, in increasing order, the first a
//! keyframe and each delta frame right after its predecessor.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use railcast_protocol::assembler::{Assembler, Frame};
use railcast_protocol::packet::{self, FrameMeta, FLAG_KEYFRAME, HEADER_LEN};
use railcast_protocol::{CameraId, Codec, FrameSeq, VideoHeader, VideoPacket, MAX_PAYLOAD_LIMIT};

/// A frame as the sender made it.
#[derive(Debug, Clone)]
struct Sent {
    frame: Frame,
    packets: Vec<VideoPacket>,
}

fn sent(camera: u16, seq: u32, keyframe: bool, data: Vec<u8>, max_payload: usize) -> Sent {
    let meta = FrameMeta {
        keyframe,
        codec: Codec::H264AnnexB,
        camera: CameraId(camera),
        seq: FrameSeq(seq),
        capture_us: 1_700_000_000_000_000 + u64::from(seq),
    };
    let packets = packet::packetize(meta, &data, max_payload)
        .expect("packetize")
        .into_iter()
        .map(|b| VideoPacket::parse(b, max_payload).expect("own packet parses"))
        .collect();
    let frame =
        Frame { camera: meta.camera, seq: meta.seq, keyframe, codec: meta.codec, capture_us: meta.capture_us, data };
    Sent { frame, packets }
}

/// First sequence numbers: anywhere, just before the wrap, and around the half-space point.
fn start_seq() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (0u32..16).prop_map(|k| u32::MAX - k), (0u32..16).prop_map(|k| (1u32 << 31) - 8 + k)]
}

/// `(keyframe, data)` per frame; data is short so that frames have 1 to ~20 chunks.
fn frames(max_len: usize) -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    prop::collection::vec((prop::bool::weighted(0.25), prop::collection::vec(any::<u8>(), 1..max_len)), 1..20)
}

/// How one frame's packets are delivered: copies of each chunk (0 = lost), and an ordering.
#[derive(Debug, Clone)]
struct Delivery {
    copies: Vec<u8>,
    order: Vec<usize>,
}

impl Delivery {
    fn apply<'a>(&self, packets: &'a [VideoPacket]) -> Vec<&'a VideoPacket> {
        let mut out: Vec<(usize, &VideoPacket)> = Vec::new();
        for (pkt, &n) in packets.iter().zip(&self.copies) {
            for _ in 0..n {
                out.push((self.order[out.len()], pkt));
            }
        }
        out.sort_by_key(|&(key, _)| key);
        out.into_iter().map(|(_, p)| p).collect()
    }
    fn complete(&self) -> bool {
        self.copies.iter().all(|&n| n > 0)
    }
}

/// Delivery plans for frames of these chunk counts; `loss` weights a lost copy, and a whole frame
/// is lost with the same weight.
fn deliveries(chunks: Vec<usize>, loss: u32) -> impl Strategy<Value = Vec<Delivery>> {
    chunks
        .into_iter()
        .map(|n| {
            // Out of 45 + loss: 40 one copy, 4 two, 1 three, `loss` none (shrinks toward one copy).
            let copy = (0..45 + loss).prop_map(move |r| match r {
                0..40 => 1u8,
                40..44 => 2,
                44 => 3,
                _ => 0,
            });
            let whole_loss = prop::bool::weighted(f64::from(loss) / 45.0);
            (prop::collection::vec(copy, n), Just((0..3 * n).collect::<Vec<_>>()).prop_shuffle(), whole_loss).prop_map(
                |(copies, order, lost)| Delivery { copies: if lost { vec![0; copies.len()] } else { copies }, order },
            )
        })
        .collect::<Vec<_>>()
}

/// One camera's stream: the frames sent and how each was delivered.
#[derive(Debug, Clone)]
struct CameraRun {
    sent: Vec<Sent>,
    delivery: Vec<Delivery>,
}

fn camera_run(camera: u16, loss: u32) -> impl Strategy<Value = CameraRun> {
    (start_seq(), frames(200), 8usize..=64)
        .prop_map(move |(start, frames, max_payload)| {
            frames
                .into_iter()
                .enumerate()
                .map(|(i, (key, data))| sent(camera, start.wrapping_add(i as u32), key, data, max_payload))
                .collect::<Vec<_>>()
        })
        .prop_flat_map(move |sent| {
            let chunks = sent.iter().map(|s| s.packets.len()).collect();
            (Just(sent), deliveries(chunks, loss))
        })
        .prop_map(|(sent, delivery)| CameraRun { sent, delivery })
}

/// What the documented rules say comes out of one camera's in-order delivery.
fn expected(run: &CameraRun) -> Vec<Frame> {
    let mut need_keyframe = true;
    let mut out = Vec::new();
    for (s, d) in run.sent.iter().zip(&run.delivery) {
        if !d.complete() {
            need_keyframe = true;
        } else if s.frame.keyframe || !need_keyframe {
            need_keyframe = false;
            out.push(s.frame.clone());
        }
    }
    out
}

/// Feed packets, collecting what comes out per camera.
fn run(packets: &[&VideoPacket]) -> (Assembler, HashMap<CameraId, Vec<Frame>>) {
    let mut a = Assembler::new();
    let mut out: HashMap<CameraId, Vec<Frame>> = HashMap::new();
    for p in packets {
        if let Some(f) = a.push(p) {
            out.entry(f.camera).or_default().push(f);
        }
    }
    (a, out)
}

/// Cameras' packet lists merged, each in its own order, the next camera chosen by `picks`.
fn interleave<'a>(mut lists: Vec<Vec<&'a VideoPacket>>, picks: &[usize]) -> Vec<&'a VideoPacket> {
    let total = lists.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    let mut at = vec![0; lists.len()];
    let mut turn = 0;
    while out.len() < total {
        let mut cam = picks[turn % picks.len()] % lists.len();
        turn += 1;
        while at[cam] == lists[cam].len() {
            cam = (cam + 1) % lists.len();
        }
        out.push(lists[cam][at[cam]]);
        at[cam] += 1;
    }
    lists.clear();
    out
}

fn in_order_delivery(run: &CameraRun) -> Vec<&VideoPacket> {
    run.sent.iter().zip(&run.delivery).flat_map(|(s, d)| d.apply(&s.packets)).collect()
}

proptest! {
    /// The main promise, with loss, duplicates and reordering within frames, cameras interleaved.
    #[test]
    fn emits_exactly_what_the_rules_allow(
        runs in (1usize..=3).prop_flat_map(|n| (0..n as u16).map(|c| camera_run(c, 3)).collect::<Vec<_>>()),
        picks in prop::collection::vec(0usize..3, 1..16),
    ) {
        let lists = runs.iter().map(in_order_delivery).collect::<Vec<_>>();
        let delivered: usize = lists.iter().map(Vec::len).sum();
        let (a, got) = run(&interleave(lists, &picks));
        let mut emitted = 0;
        for (c, r) in runs.iter().enumerate() {
            let want = expected(r);
            let got = got.get(&CameraId(c as u16)).cloned().unwrap_or_default();
            let seqs = |v: &[Frame]| v.iter().map(|f| f.seq.0).collect::<Vec<_>>();
            prop_assert_eq!(seqs(&got), seqs(&want), "camera {}", c);
            prop_assert_eq!(&got, &want, "camera {}: frame contents", c);
            emitted += want.len();
        }
        prop_assert_eq!(a.stats.packets, delivered as u64);
        prop_assert_eq!(a.stats.frames, emitted as u64);
    }

    /// Without loss (duplicates and reordering within frames only), the stream comes out whole from
    /// its first keyframe on: every frame, in order, byte for byte.
    #[test]
    fn lossless_delivery_emits_every_frame(run in camera_run(0, 0)) {
        let (_, got) = self::run(&in_order_delivery(&run));
        let want: Vec<Frame> = run.sent.iter().skip_while(|s| !s.frame.keyframe).map(|s| s.frame.clone()).collect();
        prop_assert_eq!(got.get(&CameraId(0)).cloned().unwrap_or_default(), want);
    }

    /// Sequence numbers wrap from 2³²−1 to 0 with nothing lost or skipped.
    #[test]
    fn sequence_numbers_wrap(
        start in (u32::MAX - 20)..=u32::MAX,
        n in 22usize..60, // enough frames to cross the wrap from any start
        keyframe_every in 1usize..12,
        max_payload in 8usize..=64,
        len in 1usize..100,
    ) {
        let frames: Vec<Sent> = (0..n)
            .map(|i| sent(7, start.wrapping_add(i as u32), i % keyframe_every == 0, vec![i as u8; len + i], max_payload))
            .collect();
        let packets: Vec<&VideoPacket> = frames.iter().flat_map(|s| &s.packets).collect();
        let (_, got) = run(&packets);
        let got = got.get(&CameraId(7)).cloned().unwrap_or_default();
        prop_assert_eq!(got.len(), n);
        prop_assert!(got.iter().any(|f| f.seq == FrameSeq(0)));
        for (g, s) in got.iter().zip(&frames) {
            prop_assert_eq!(g, &s.frame);
        }
    }

    /// Packets shuffled across frames too: whatever is emitted is sound.
    #[test]
    fn anything_emitted_is_sound(
        run in camera_run(0, 3),
        // Longer than any delivery: 19 frames of up to 25 chunks, 3 copies each.
        order in Just((0..19 * 25 * 3).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let sent: HashMap<u32, &Frame> = run.sent.iter().map(|s| (s.frame.seq.0, &s.frame)).collect();
        let mut packets: Vec<(usize, &VideoPacket)> = run
            .sent
            .iter()
            .zip(&run.delivery)
            .flat_map(|(s, d)| d.apply(&s.packets))
            .enumerate()
            .map(|(i, p)| (order[i], p))
            .collect();
        packets.sort_by_key(|&(k, _)| k);
        let packets: Vec<&VideoPacket> = packets.into_iter().map(|(_, p)| p).collect();
        let (_, got) = self::run(&packets);
        let got = got.get(&CameraId(0)).cloned().unwrap_or_default();
        let mut last: Option<FrameSeq> = None;
        for f in &got {
            prop_assert_eq!(Some(&f), sent.get(&f.seq.0), "emitted frame differs from the one sent");
            match last {
                None => prop_assert!(f.keyframe, "first frame {} is a delta frame", f.seq.0),
                Some(l) => {
                    prop_assert!(f.seq.is_after(l), "{} emitted after {}", f.seq.0, l.0);
                    if !f.keyframe {
                        prop_assert_eq!(f.seq.distance_from(l), Some(1), "delta frame {} after {}", f.seq.0, l.0);
                    }
                }
            }
            last = Some(f.seq);
        }
    }

    /// Any header that parses re-encodes to the same bytes (reserved flag bits cleared, as the
    /// spec says receivers ignore them), and the re-encoding parses to the same header.
    #[test]
    fn parsed_headers_reencode_to_the_same_bytes(
        preamble in prop_oneof![4 => Just(*b"RC\x01\x01"), 1 => any::<[u8; 4]>()],
        flags in any::<u8>(),
        codec in prop_oneof![4 => Just(1u8), 2 => Just(2u8), 1 => any::<u8>()],
        fields in any::<[u8; 14]>(),
        chunk in prop_oneof![3 => (1u16..4).prop_flat_map(|c| (0..c, Just(c))), 1 => (any::<u16>(), any::<u16>())],
        payload in prop::collection::vec(any::<u8>(), 0..80),
        len in prop_oneof![4 => Just(None), 1 => any::<u16>().prop_map(Some)],
        max_payload in prop_oneof![Just(1150usize), Just(MAX_PAYLOAD_LIMIT), 1usize..100],
    ) {
        let mut bytes = preamble.to_vec();
        bytes.extend_from_slice(&[flags, codec]);
        bytes.extend_from_slice(&fields);
        bytes.extend_from_slice(&chunk.0.to_be_bytes());
        bytes.extend_from_slice(&chunk.1.to_be_bytes());
        bytes.extend_from_slice(&len.unwrap_or(payload.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&payload);
        prop_assert_eq!(bytes.len(), HEADER_LEN + payload.len());
        if let Ok(h) = VideoHeader::parse(&bytes, max_payload) {
            let mut again = Vec::new();
            h.write(&mut again);
            again.extend_from_slice(&payload);
            let mut want = bytes.clone();
            want[4] &= FLAG_KEYFRAME;
            prop_assert_eq!(&again, &want);
            prop_assert_eq!(VideoHeader::parse(&again, max_payload), Ok(h));
            let pkt = VideoPacket::parse(Bytes::from(bytes), max_payload).expect("parses as a packet too");
            prop_assert_eq!(pkt.header, h);
            prop_assert_eq!(pkt.payload(), &payload[..]);
        }
    }

    /// The other direction: every valid header value writes bytes that parse back to it.
    #[test]
    fn written_headers_parse_back(
        keyframe in any::<bool>(),
        codec in prop_oneof![Just(Codec::H264AnnexB), Just(Codec::Opus)],
        camera in any::<u16>(),
        seq in any::<u32>(),
        capture_us in any::<u64>(),
        chunk in (1u16..=u16::MAX).prop_flat_map(|c| (0..c, Just(c))),
        payload in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        // Audio is never split (§2.7).
        let chunk = if codec.is_audio() { (0, 1) } else { chunk };
        let h = VideoHeader {
            keyframe,
            codec,
            camera: CameraId(camera),
            seq: FrameSeq(seq),
            capture_us,
            chunk_index: chunk.0,
            chunk_count: chunk.1,
            payload_len: payload.len() as u16,
        };
        let mut bytes = Vec::new();
        h.write(&mut bytes);
        bytes.extend_from_slice(&payload);
        prop_assert_eq!(VideoHeader::parse(&bytes, MAX_PAYLOAD_LIMIT), Ok(h));
    }
}
