//! Malformed packets from a train are dropped and counted by reason, without harming other
//! trains' streams. A bad hello is refused with a reason.

use std::time::Duration;

use bytes::Bytes;
use railcast_protocol::packet::{packetize, Codec, FrameMeta};
use railcast_protocol::{CameraId, ControlMessage, FrameSeq};
use testkit::ws::{verify, Client};
use testkit::{api, raw_train, read_control, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_counted_and_harm_no_one() {
    let dir = scratch("malformed_packets");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(5).await;

    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&testkit::hello(&server, "train-40").to_bytes()).await.expect("hello");
    assert!(matches!(read_control(&mut recv).await, Some(ControlMessage::Welcome(_))));

    let good = |camera: u16, len: usize| {
        let meta = FrameMeta {
            keyframe: true,
            codec: Codec::H264AnnexB,
            camera: CameraId(camera),
            seq: FrameSeq(1),
            capture_us: 1,
        };
        packetize(meta, &vec![7u8; len], 1150).expect("packetize").remove(0)
    };
    let valid = good(0, 100);
    let mut bad_magic = valid.to_vec();
    bad_magic[0] = b'X';
    let mut bad_version = valid.to_vec();
    bad_version[2] = 9;
    let truncated = valid.slice(..40);
    let mut oversize = Vec::new();
    railcast_protocol::packet::VideoHeader {
        keyframe: false,
        codec: Codec::H264AnnexB,
        camera: CameraId(0),
        seq: FrameSeq(2),
        capture_us: 1,
        chunk_index: 0,
        chunk_count: 1,
        payload_len: 1180,
    }
    .write(&mut oversize);
    oversize.extend_from_slice(&[0u8; 1180]);
    let sends: Vec<Bytes> = vec![
        Bytes::from_static(b"hello?"),
        bad_magic.into(),
        bad_version.into(),
        truncated,
        good(5, 100), // camera 5 was never announced
        oversize.into(),
        valid,
    ];
    for d in sends {
        conn.send_datagram_wait(d).await.expect("datagram");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let train = loop {
        let (_, t) = api("GET", &server.url("/api/trains/train-40"), None).await;
        let rejected: u64 =
            t["rejected_packets"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0);
        if rejected >= 6 && t["packets_in"] == 1 {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "counters: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("train-40 rejected: {}", train["rejected_packets"]);
    let r = &train["rejected_packets"];
    for reason in ["bad_magic", "unsupported_version", "truncated", "unknown_camera", "payload_too_large"] {
        assert!(r[reason].as_u64().unwrap_or(0) >= 1, "no {reason} in {r}");
    }
    assert_eq!(train["online"], true, "malformed datagrams do not cost the train its session");

    // The honest train kept streaming to its client throughout.
    let n = client.frames().len();
    client.wait_frames(n + 10).await;
    verify(&client.frames(), &sim.manifest());
    let (_, t1) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(t1["rejected_packets"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hello_is_refused_with_a_reason() {
    let dir = scratch("bad_hello");
    let server = Server::start(&dir, &[]).await;
    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    // A syntactically valid frame whose hello announces no camera.
    let body = br#"{"train_id":"t-1","cameras":[]}"#;
    let mut frame = b"RC\x01\x10".to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    send.write_all(&frame).await.expect("write");
    match read_control(&mut recv).await {
        Some(ControlMessage::Error(e)) => {
            assert_eq!(e.code, "bad_hello");
            assert!(e.message.contains("no camera"), "{}", e.message);
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    let reason = conn.closed().await;
    println!("closed: {reason}");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(1));
            assert!(String::from_utf8_lossy(&c.reason).contains("no camera"));
        }
        other => panic!("unexpected close {other}"),
    }
    let (s, _) = api("GET", &server.url("/api/trains/t-1"), None).await;
    assert_eq!(s, 404, "a refused train is not registered");
}
