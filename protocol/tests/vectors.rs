//! Golden vectors: `tests/vectors/*.hex`, written from the spec by an independent encoder, must
//! decode exactly as `manifest.json` says, and encoding the decoded values must give the same bytes.

use std::path::Path;

use railcast_protocol::assembler::Assembler;
use railcast_protocol::packet::{self, FrameMeta};
use railcast_protocol::{ControlMessage, DecodeError, VideoPacket, DEFAULT_MAX_PAYLOAD};
use serde_json::Value;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors"))
}

/// Annotated hex: `#` starts a comment; the rest must be whitespace-separated hex byte pairs.
fn read_hex(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir().join(name)).expect("vector file");
    let mut out = Vec::new();
    for line in text.lines() {
        let data = line.split('#').next().unwrap_or("");
        for tok in data.split_whitespace() {
            out.push(u8::from_str_radix(tok, 16).unwrap_or_else(|e| panic!("{name}: bad hex {tok:?}: {e}")));
        }
    }
    out
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

fn control_json(msg: &ControlMessage) -> Value {
    let (key, v) = match msg {
        ControlMessage::Hello(m) => ("hello", serde_json::to_value(m)),
        ControlMessage::Welcome(m) => ("welcome", serde_json::to_value(m)),
        ControlMessage::Command(m) => ("command", serde_json::to_value(m)),
        ControlMessage::CommandAck(m) => ("command_ack", serde_json::to_value(m)),
        ControlMessage::Telemetry(m) => ("telemetry", serde_json::to_value(m)),
        ControlMessage::KeyframeRequest(m) => ("keyframe_request", serde_json::to_value(m)),
        ControlMessage::Error(m) => ("error", serde_json::to_value(m)),
        ControlMessage::Status(m) => ("status", serde_json::to_value(m)),
    };
    serde_json::json!({ key: v.expect("to json") })
}

/// Push every packet of `bytes` (back to back, as in a data-channel message) into one assembler:
/// the frames it emits, each with the index of the packet that completed it, and its counters.
fn assemble(bytes: &[u8], file: &str) -> (Value, Value) {
    let mut a = Assembler::new();
    let mut frames = Vec::new();
    for (i, p) in railcast_protocol::message::split(bytes).enumerate() {
        let p = p.unwrap_or_else(|e| panic!("{file}: packet {i}: {e}"));
        let pkt = VideoPacket::parse(p.to_vec().into(), DEFAULT_MAX_PAYLOAD)
            .unwrap_or_else(|e| panic!("{file}: packet {i}: {e}"));
        if let Some(f) = a.push(&pkt) {
            frames.push(serde_json::json!({
                "after": i,
                "camera": f.camera.0,
                "seq": f.seq.0,
                "keyframe": f.keyframe,
                "capture_us": f.capture_us,
                "data_hex": hex::encode(&f.data),
            }));
        }
    }
    let s = a.stats;
    let stats = serde_json::json!({
        "packets": s.packets,
        "frames": s.frames,
        "late_packets": s.late_packets,
        "duplicate_packets": s.duplicate_packets,
        "inconsistent_packets": s.inconsistent_packets,
        "incomplete_frames": s.incomplete_frames,
        "skipped_frames": s.skipped_frames,
    });
    (Value::Array(frames), stats)
}

#[test]
fn golden_vectors() {
    let entries = manifest();
    assert!(entries.len() >= 25, "manifest lists {} vectors", entries.len());
    assert!(entries.iter().filter(|e| e["kind"] == "assembler").count() >= 4, "assembler vectors missing");
    let audio =
        |e: &&Value| e["expect"]["ok"]["codec"] == "opus" || e["file"].as_str().is_some_and(|f| f.contains("audio"));
    assert!(entries.iter().filter(audio).count() >= 6, "audio vectors missing (§2.7)");
    for e in entries {
        let file = e["file"].as_str().expect("file");
        let bytes = read_hex(file);
        let expect = &e["expect"];
        match e["kind"].as_str() {
            Some("video") => {
                let got = VideoPacket::parse(bytes.clone().into(), DEFAULT_MAX_PAYLOAD);
                if let Some(label) = expect["error"].as_str() {
                    let err = got.expect_err(file);
                    assert_eq!(err.label(), label, "{file}: {err}");
                    continue;
                }
                let pkt = got.unwrap_or_else(|err| panic!("{file}: {err}"));
                let ok = &expect["ok"];
                let h = pkt.header;
                assert_eq!(h.keyframe, ok["keyframe"].as_bool().expect("keyframe"), "{file}");
                assert_eq!(h.codec.name(), ok["codec"], "{file}");
                assert_eq!(u64::from(h.camera.0), ok["camera"].as_u64().expect("camera"), "{file}");
                assert_eq!(u64::from(h.seq.0), ok["seq"].as_u64().expect("seq"), "{file}");
                assert_eq!(h.capture_us, ok["capture_us"].as_u64().expect("ts"), "{file}");
                assert_eq!(u64::from(h.chunk_index), ok["chunk_index"].as_u64().expect("idx"), "{file}");
                assert_eq!(u64::from(h.chunk_count), ok["chunk_count"].as_u64().expect("count"), "{file}");
                assert_eq!(hex::encode(pkt.payload()), ok["payload_hex"].as_str().expect("payload"), "{file}");
                // Re-encode: same bytes, except reserved flag bits, which a v1 sender writes as 0.
                let mut again = Vec::new();
                h.write(&mut again);
                again.extend_from_slice(pkt.payload());
                let mut want = bytes.clone();
                want[4] &= packet::FLAG_KEYFRAME;
                assert_eq!(again, want, "{file}: re-encoding differs");
                if h.chunk_count == 1 {
                    let meta = FrameMeta {
                        keyframe: h.keyframe,
                        codec: h.codec,
                        camera: h.camera,
                        seq: h.seq,
                        capture_us: h.capture_us,
                    };
                    let packets = packet::packetize(meta, pkt.payload(), DEFAULT_MAX_PAYLOAD).expect("packetize");
                    assert_eq!(packets.len(), 1);
                    assert_eq!(packets[0].as_ref(), &want[..], "{file}: packetize differs");
                }
            }
            Some("control") => {
                let got = ControlMessage::decode(&bytes, railcast_protocol::control::DEFAULT_MAX_BODY);
                if let Some(label) = expect["error"].as_str() {
                    let err = got.expect_err(file);
                    assert_eq!(err.label(), label, "{file}: {err}");
                    continue;
                }
                let (msg, used) = got.unwrap_or_else(|err| panic!("{file}: {err}"));
                assert_eq!(used, bytes.len(), "{file}");
                assert_eq!(control_json(&msg), expect["ok"], "{file}");
                assert_eq!(msg.to_bytes().as_ref(), &bytes[..], "{file}: re-encoding differs");
            }
            Some("video_message") => {
                // A data-channel message (§2.6): the packets the split gives, each validated on its
                // own, then the error that ends the split, if any.
                let mut packets = Vec::new();
                let mut error = None;
                for r in railcast_protocol::message::split(&bytes) {
                    match r {
                        Ok(p) => {
                            let parse = match VideoPacket::parse(p.to_vec().into(), DEFAULT_MAX_PAYLOAD) {
                                Ok(_) => "ok",
                                Err(e) => e.label(),
                            };
                            packets.push(serde_json::json!({"hex": hex::encode(p), "parse": parse}));
                        }
                        Err(e) => error = Some(e.label()),
                    }
                }
                assert_eq!(Value::Array(packets), expect["packets"], "{file}");
                assert_eq!(error, expect["error"].as_str(), "{file}");
                // Packing the good packets again gives the same message.
                if error.is_none() {
                    let parts: Vec<bytes::Bytes> = railcast_protocol::message::split(&bytes)
                        .map(|p| bytes::Bytes::copy_from_slice(p.expect("ok")))
                        .collect();
                    let packed: Vec<_> = railcast_protocol::message::pack(&parts, usize::MAX).collect();
                    assert_eq!(packed.len(), 1, "{file}");
                    assert_eq!(&packed[0].0[..], &bytes[..], "{file}: packing differs");
                }
            }
            Some("assembler") => {
                // Reassembly (§2.5): the packets, back to back, pushed one by one into one receiver.
                let (frames, stats) = assemble(&bytes, file);
                assert_eq!(frames, expect["frames"], "{file}: frames emitted");
                assert_eq!(stats, expect["stats"], "{file}: counters");
            }
            other => panic!("{file}: unknown kind {other:?}"),
        }
    }
}

#[test]
fn incomplete_is_not_invalid() {
    let bytes = read_hex("control_hello.hex");
    for cut in 0..bytes.len() {
        assert!(matches!(ControlMessage::decode(&bytes[..cut], 65_536), Err(DecodeError::Incomplete { .. })));
    }
}
