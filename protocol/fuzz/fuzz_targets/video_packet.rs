//! Video packets: `VideoHeader::parse` / `VideoPacket::parse` on arbitrary bytes, and the
//! `Assembler` fed with whatever parses.
//!
//! The input is read as a run of packets cut where each one's own length field says it ends
//! (`26 + payload length`; the last one takes what is left), so one golden vector is one packet and
//! several vectors end to end are a stream. Checks:
//! - parsing never panics, under the default payload limit and the 16-bit maximum alike;
//! - a packet that parses re-encodes (`VideoHeader::write` + payload) to the same bytes, reserved
//!   flag bits cleared as the spec says a receiver ignores them, and the re-encoding parses to the
//!   same header;
//! - the assembler never panics, and what it emits obeys its documented rules per camera: sequence
//!   numbers strictly increase, the first frame is a keyframe, a delta frame directly follows its
//!   predecessor (`seq − 1`), a frame is as long as its chunks, and the stats count what was emitted;
//! - the input read as a data-channel message (§2.6) splits into consecutive packets, an error only
//!   last, and the packets pack back into the same bytes.

#![no_main]

use std::collections::HashMap;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use railcast_protocol::assembler::Assembler;
use railcast_protocol::message;
use railcast_protocol::packet::{FLAG_KEYFRAME, HEADER_LEN};
use railcast_protocol::{CameraId, FrameSeq, VideoHeader, VideoPacket, DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT};

/// Split `data` into candidate packets using each header's payload length field.
fn packets(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = if rest.len() >= HEADER_LEN {
            (HEADER_LEN + usize::from(u16::from_be_bytes([rest[24], rest[25]]))).min(rest.len())
        } else {
            rest.len()
        };
        let (one, tail) = rest.split_at(len);
        rest = tail;
        Some(one)
    })
}

fn check_round_trip(bytes: &[u8], max_payload: usize) -> Option<VideoPacket> {
    let pkt = VideoPacket::parse(Bytes::copy_from_slice(bytes), max_payload).ok()?;
    assert_eq!(VideoHeader::parse(bytes, max_payload).as_ref(), Ok(&pkt.header));
    let mut again = Vec::with_capacity(bytes.len());
    pkt.header.write(&mut again);
    assert_eq!(again.len(), HEADER_LEN);
    again.extend_from_slice(pkt.payload());
    let mut want = bytes.to_vec();
    want[4] &= FLAG_KEYFRAME;
    assert_eq!(again, want, "re-encoding differs");
    assert_eq!(VideoHeader::parse(&again, max_payload), Ok(pkt.header), "re-encoding parses differently");
    assert!(usize::from(pkt.header.payload_len) <= max_payload);
    Some(pkt)
}

#[derive(Default)]
struct Emitted {
    last: Option<FrameSeq>,
}

/// The input as a data-channel message (§2.6): the packets are consecutive pieces from its start,
/// an error comes last and only when bytes are left, and packing the packets again gives those
/// bytes back.
fn check_message_split(data: &[u8]) {
    let mut parts = Vec::new();
    let mut at = 0;
    let mut failed = false;
    for r in message::split(data) {
        assert!(!failed, "a packet after the split's error");
        match r {
            Ok(p) => {
                assert_eq!(p, &data[at..at + p.len()]);
                assert!(p.len() >= HEADER_LEN);
                at += p.len();
                parts.push(Bytes::copy_from_slice(p));
            }
            Err(_) => failed = true,
        }
    }
    assert!(failed || (at == data.len() && !data.is_empty()), "the split stopped early without an error");
    let packed: Vec<u8> = message::pack(&parts, usize::MAX).flat_map(|(m, _)| m.to_vec()).collect();
    assert_eq!(packed, &data[..at]);
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one packet (mostly a length mismatch, but every check runs).
    let _ = check_round_trip(data, DEFAULT_MAX_PAYLOAD);
    let _ = check_round_trip(data, MAX_PAYLOAD_LIMIT);
    check_message_split(data);

    let mut assembler = Assembler::new();
    let mut emitted: HashMap<CameraId, Emitted> = HashMap::new();
    let mut frames = 0u64;
    let mut accepted = 0u64;
    for bytes in packets(data) {
        let _ = check_round_trip(bytes, DEFAULT_MAX_PAYLOAD);
        let Some(pkt) = check_round_trip(bytes, MAX_PAYLOAD_LIMIT) else { continue };
        accepted += 1;
        let Some(frame) = assembler.push(&pkt) else { continue };
        frames += 1;
        assert_eq!(frame.camera, pkt.header.camera);
        assert_eq!(frame.seq, pkt.header.seq);
        // Every chunk is 1..=65535 bytes (empty payloads do not parse).
        let chunks = usize::from(pkt.header.chunk_count);
        assert!((chunks..=chunks * MAX_PAYLOAD_LIMIT).contains(&frame.data.len()));
        let cam = emitted.entry(frame.camera).or_default();
        match cam.last {
            None => assert!(frame.keyframe, "first frame of camera {} is not a keyframe", frame.camera),
            Some(last) => {
                assert!(frame.seq.is_after(last), "frame {:?} emitted after {:?}", frame.seq, last);
                if !frame.keyframe {
                    assert_eq!(frame.seq.distance_from(last), Some(1), "undecodable delta frame {:?}", frame.seq);
                }
            }
        }
        cam.last = Some(frame.seq);
    }
    assert_eq!(assembler.stats.packets, accepted);
    assert_eq!(assembler.stats.frames, frames);
});
