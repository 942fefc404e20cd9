//! A fatal control-stream error after a train's hello (garbage bytes, a bad telemetry body, a
//! second hello, a frame only the server sends, a frame over 64 KiB, a reset of the train's side
//! of the stream) is explained with an `error`
//! frame naming what was wrong, and then the connection is closed with code 1 (protocol error)
//! and the same reason (docs/wire-format.md §3.2). Each case is its own train; a well-behaved
//! train keeps streaming to its client meanwhile.

use std::time::{Duration, Instant};

use railcast_protocol::control::{KIND_TELEMETRY, KIND_WELCOME};
use railcast_protocol::{ControlDecoder, ControlMessage};
use testkit::ws::{verify, Client};
use testkit::{api, hello, raw_train, read_control, remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// A control frame with any kind byte and body, as a hostile train would write it.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![b'R', b'C', 1, kind];
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Every frame left on the stream, and whether it ended with the server finishing it (rather
/// than the connection going away under it).
async fn rest_of_stream(recv: &mut quinn::RecvStream) -> (Vec<ControlMessage>, bool) {
    let mut decoder = ControlDecoder::new(65_536);
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(m) = decoder.next_frame().expect("the server writes valid frames") {
            frames.push(m);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder.push(&buf[..n]),
            Ok(None) => return (frames, true),
            Err(_) => return (frames, false),
        }
    }
}

struct Case {
    name: &'static str,
    train: &'static str,
    /// What the train writes on its control stream after the server's welcome (none: it resets
    /// its side of the stream instead).
    sends: Option<Vec<u8>>,
    code: &'static str,
    /// A piece of the error message (and close reason) that names what was wrong.
    says: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_control_errors_after_the_hello_send_an_error_frame_then_close() {
    let dir = scratch("control_errors_after_hello");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(3).await;

    let second_hello = hello(&server, "train-43").to_bytes().to_vec();
    let cases = [
        Case {
            name: "garbage bytes",
            train: "train-41",
            sends: Some(b"\x00\x01 this is not a control frame".to_vec()),
            code: "bad_magic",
            says: "bad magic",
        },
        Case {
            name: "bad telemetry body",
            train: "train-42",
            sends: Some(frame(KIND_TELEMETRY, br#"{"timestamp_us": "soon", "speed_kmh": 1}"#)),
            code: "bad_body",
            says: "invalid telemetry body",
        },
        Case {
            name: "second hello",
            train: "train-43",
            sends: Some(second_hello),
            code: "unexpected_frame",
            says: "hello frame from the train",
        },
        Case {
            name: "server-kind frame",
            train: "train-44",
            sends: Some(frame(KIND_WELCOME, br#"{"server_time_us": 1, "max_payload": 1150}"#)),
            code: "unexpected_frame",
            says: "welcome frame from the train",
        },
        Case {
            name: "frame over 64 KiB",
            train: "train-45",
            sends: Some(frame(KIND_TELEMETRY, &[b' '; 65_537])),
            code: "body_too_large",
            says: "65537 bytes exceeds the limit of 65536",
        },
        Case {
            name: "stream reset",
            train: "train-46",
            sends: None,
            code: "stream_reset",
            says: "stream reset by peer: error 7",
        },
    ];

    let mut failed = Vec::new();
    for case in &cases {
        match run(&server, case).await {
            Ok(line) => println!("{line}"),
            Err(why) => failed.push(format!("{}: {why}", case.name)),
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), cases.len(), failed.join("\n"));

    // The well-behaved train streamed to its client throughout.
    let n = client.frames().len();
    client.wait_frames(n + 5).await;
    verify(&client.frames(), &sim.manifest());
    let (_, t1) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!((t1["online"].as_bool(), t1["connections"].as_u64()), (Some(true), Some(1)), "{t1}");
}

/// One case: hello, welcome, the bad bytes, then the error frame, the end of the stream and the
/// close. Returns the table line, or what went wrong.
async fn run(server: &Server, case: &Case) -> Result<String, String> {
    let (_ep, conn) = raw_train(server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&hello(server, case.train).to_bytes()).await.expect("hello");
    match read_control(&mut recv).await {
        Some(ControlMessage::Welcome(_)) => {}
        other => return Err(format!("expected a welcome, got {other:?}")),
    }
    let started = Instant::now();
    match &case.sends {
        // The server may stop reading (and the stream) before the last byte of a large frame.
        Some(bytes) => drop(send.write_all(bytes).await),
        None => send.reset(quinn::VarInt::from_u32(7)).expect("reset"),
    }

    // The error frame arrives as the stream's last frame, and the stream is finished.
    let (frames, finished) = rest_of_stream(&mut recv).await;
    let Some(ControlMessage::Error(error)) = frames.last() else {
        return Err(format!("expected an error frame before the close, got {frames:?}"));
    };
    if !finished {
        return Err("the stream was not finished after the error frame".into());
    }
    if error.code != case.code || !error.message.contains(case.says) {
        return Err(format!("expected code {} saying {:?}, got {error:?}", case.code, case.says));
    }

    let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed())
        .await
        .map_err(|_| "not closed within 3 s".to_owned())?;
    let elapsed = started.elapsed();
    match closed {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == quinn::VarInt::from_u32(1) && String::from_utf8_lossy(&c.reason) == error.message => {}
        other => return Err(format!("expected close code 1 with the error's message, got {other}")),
    }
    if elapsed > Duration::from_secs(2) {
        return Err(format!("{elapsed:?} to explain and close"));
    }

    let (_, t) = api("GET", &server.url(&format!("/api/trains/{}", case.train)), None).await;
    if t["online"] != false || !t["offline_reason"].as_str().unwrap_or("").contains(case.says) {
        return Err(format!("the train is not offline with the reason: {t}"));
    }
    Ok(format!("{:<20} {:<17} {:>4} ms  {}", case.name, error.code, elapsed.as_millis(), error.message))
}
