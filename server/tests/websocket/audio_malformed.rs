//! Malformed audio from a train (docs/wire-format.md §2.7): a hand-driven train announces a camera
//! and a microphone, then sends good Opus packets among bad ones: a chunked Opus packet, Opus on
//! the camera's id, H.264 on the microphone's id, Opus on an id it never announced. Each bad one
//! is dropped and counted by reason (`bad_chunk`, `codec_mismatch`, `unknown_camera`), the train
//! keeps its session, and the WebSocket client gets exactly the good packets. A hello whose audio
//! source has a camera's id is refused with `bad_hello`.

use std::time::Duration;

use bytes::Bytes;
use railcast_protocol::control::AudioInfo;
use railcast_protocol::packet::{packetize, Codec, FrameMeta};
use railcast_protocol::{CameraId, ControlMessage, FrameSeq};
use testkit::ws::Client;
use testkit::{api, raw_train, read_control, remote_control, scratch, Server};

fn mic(id: u16) -> AudioInfo {
    AudioInfo { id: CameraId(id), codec: "opus".into(), sample_rate: 48_000, channels: 1, frame_ms: 20 }
}

fn hello_with_audio(server: &Server, train: &str, audio: AudioInfo) -> ControlMessage {
    let ControlMessage::Hello(mut h) = testkit::hello(server, train) else { unreachable!("a hello") };
    h.audio.push(audio);
    ControlMessage::Hello(h)
}

fn packet(codec: Codec, track: u16, seq: u32) -> Bytes {
    let meta = FrameMeta {
        keyframe: true,
        codec,
        camera: CameraId(track),
        seq: FrameSeq(seq),
        capture_us: 1 + u64::from(seq),
    };
    packetize(meta, &[0xf8, seq as u8, 0xfe], 1150).expect("packetize").remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_audio_is_counted_and_good_audio_goes_through() {
    let dir = scratch("ws_audio_malformed");
    let server = Server::start(&dir, &[]).await;
    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&hello_with_audio(&server, "train-50", mic(256)).to_bytes()).await.expect("hello");
    assert!(matches!(read_control(&mut recv).await, Some(ControlMessage::Welcome(_))));
    let rc = remote_control(&server, Some("train-50")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    let mapped = client.wait_event("mapped_train_changed", |e| e["type"] == "mapped_train_changed").await;
    assert_eq!(mapped["audio"][0]["id"], 256, "{mapped}");
    // The subscription is in place once the mapping event is out: send now.
    let mut chunked = packet(Codec::Opus, 256, 1).to_vec();
    chunked[22..24].copy_from_slice(&2u16.to_be_bytes());
    let sends = vec![
        packet(Codec::Opus, 256, 0),
        chunked.into(),
        packet(Codec::Opus, 0, 1),         // Opus on the camera's id
        packet(Codec::H264AnnexB, 256, 1), // H.264 on the microphone's id
        packet(Codec::Opus, 300, 1),       // never announced
        packet(Codec::Opus, 256, 1),
        packet(Codec::Opus, 256, 2),
    ];
    for d in sends {
        conn.send_datagram_wait(d).await.expect("datagram");
        // Loopback keeps order when the sender does not burst.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let train = loop {
        let (_, t) = api("GET", &server.url("/api/trains/train-50"), None).await;
        let rejected: u64 =
            t["rejected_packets"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0);
        if rejected >= 4 && t["packets_in"] == 3 {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "counters: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("train-50 rejected: {}", train["rejected_packets"]);
    assert_eq!(
        train["rejected_packets"],
        serde_json::json!({"bad_chunk": 1, "codec_mismatch": 2, "unknown_camera": 1}),
        "{train}"
    );
    assert_eq!(train["online"], true, "malformed audio does not cost the train its session");
    client.wait_frames(3).await;
    let got: Vec<(u16, u32)> = client.frames().iter().map(|f| (f.camera, f.seq)).collect();
    assert_eq!(got, [(256, 0), (256, 1), (256, 2)], "exactly the good Opus packets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_source_with_a_cameras_id_is_a_bad_hello() {
    let dir = scratch("ws_audio_bad_hello");
    let server = Server::start(&dir, &[]).await;
    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&hello_with_audio(&server, "train-51", mic(0)).to_bytes()).await.expect("hello");
    match read_control(&mut recv).await {
        Some(ControlMessage::Error(e)) => {
            assert_eq!(e.code, "bad_hello");
            assert!(e.message.contains("also a camera id"), "{}", e.message);
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
}
