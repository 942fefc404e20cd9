//! A train written with aioquic (`tests/foreign/aioquic_train.py`), a QUIC stack nobody on the
//! project wrote. It first interoperates: TLS pinned to the fingerprint and ALPN that
//! `/api/quic/certificate` gives, hello, welcome, telemetry and video that a WebSocket client
//! receives whole, a command it acks. Then, a connection each, it misbehaves: garbage after the
//! hello, a second hello, a frame over 64 KiB and a server-only kind each get the documented
//! `error` frame and close code 1 (wire format §3.2); malformed datagrams and QUIC packets are
//! dropped (and counted) while the connection stays up; streams beyond the server's limits end in
//! QUIC's `STREAM_LIMIT_ERROR`; an abandoned connection goes offline after the idle timeout. The
//! simulator's train streams to its own client throughout.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::ws::{verify, Client};
use testkit::{api, foreign_script, now_us, python, remote_control, scratch, set_train, Server, Sim, SMALL_VIDEO};

const FOREIGN: &str = "train-9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aioquic_train_interoperates_and_its_misbehaviour_is_answered_as_documented() {
    let python = python();
    let dir = scratch("foreign_quic_train");
    // A short idle timeout, so that the abandoned connection is noticed within the test.
    let mut server = Server::start(&dir, &["--quic-idle-timeout", "1s", "--quic-keep-alive", "300ms"]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let steady = Client::connect(&server.ws_url(&remote_control(&server, Some("train-1")).await)).await;
    steady.wait_frames(3).await;
    // Mapped before the train is known: it subscribes when the train says hello.
    let rc = remote_control(&server, None).await;
    set_train(&server, &rc, FOREIGN).await;
    let watcher = Client::connect(&server.ws_url(&rc)).await;
    watcher.wait_event("mapped_train_changed", |e| e["type"] == "mapped_train_changed").await;

    // What a train is told to use: the QUIC port, the ALPN and the certificate's fingerprint.
    let (_, cert) = api("GET", &server.url("/api/quic/certificate"), None).await;
    let port = cert["quic_port"].as_u64().expect("quic_port");
    assert!(server.quic.ends_with(&format!(":{port}")), "{cert} vs {}", server.quic);
    let started = Instant::now();
    let started_us = now_us();
    let child = tokio::process::Command::new(&python)
        .arg(foreign_script("aioquic_train.py"))
        .args(["--quic", &server.quic])
        .args(["--alpn", cert["alpn"].as_str().expect("alpn")])
        .args(["--sha256", cert["sha256"].as_str().expect("sha256")])
        .args(["--train", FOREIGN, "--token", &server.train_token(FOREIGN), "--commands", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the aioquic train");

    // While it behaves, an operator's command reaches it and its ack comes back.
    watcher.wait_event("train_online", |e| e["type"] == "train_online" && e["train_id"] == FOREIGN).await;
    let horn = json!({"type": "command", "request_id": "aq", "command": {"type": "horn", "duration_ms": 50}});
    watcher.send_text(horn.to_string()).await;
    let ack = watcher.wait_event("command answer", |e| e["request_id"] == "aq").await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    assert_eq!(ack["message"], "aioquic: horn done", "{ack}");

    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the aioquic train finished within 30 s")
        .expect("aioquic train output");
    let script = started.elapsed();
    let ended_us = now_us();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report on the last line:\n{stdout}\n{stderr}"));
    if !out.status.success() || report["ok"] != true {
        let mut shown = report.clone();
        shown["frames_sent"] = json!(report["frames_sent"].as_array().map_or(0, Vec::len));
        panic!("the aioquic train failed: {}\n{shown:#}\n{stderr}", report["failures"]);
    }
    println!("aioquic train ran {script:?}");

    // (a) Interoperability.
    let interop = &report["interop"];
    assert_eq!(interop["alpn"], cert["alpn"], "{interop}");
    assert_eq!(interop["welcome"]["max_payload"], 1150, "{interop}");
    let server_time = interop["welcome"]["server_time_us"].as_u64().expect("server_time_us");
    assert!(server_time.abs_diff(started_us) < 10_000_000, "{interop}");
    assert_eq!(interop["commands_acked"][0]["type"], "horn", "{interop}");
    watcher
        .wait_event("the train's telemetry", |e| {
            e["type"] == "telemetry" && e["train_id"] == FOREIGN && e["telemetry"]["speed_kmh"] == 42.0
        })
        .await;
    let sent = report["frames_sent"].as_array().expect("frames_sent");
    let sha_of = |seq: u64| sent.iter().find(|f| f["seq"] == seq).and_then(|f| f["sha256"].as_str());
    let received: Vec<_> = watcher.frames().into_iter().filter(|f| f.train.as_deref() == Some(FOREIGN)).collect();
    for f in &received {
        assert_eq!(sha_of(u64::from(f.seq)), Some(f.sha256.as_str()), "frame {} differs from what was sent", f.seq);
    }
    let got = |seq: &Value| received.iter().any(|f| Some(u64::from(f.seq)) == seq.as_u64());
    let interop_frames: Vec<_> = sent.iter().filter(|f| f["case"] == "interop").collect();
    let missing: Vec<_> = interop_frames.iter().filter(|f| !got(&f["seq"])).map(|f| &f["seq"]).collect();
    assert!(missing.is_empty(), "interop frames the client did not receive whole: {missing:?}");
    println!("{} interop frames relayed whole to the WebSocket client, SHA-256 equal", interop_frames.len());

    // (b) Fatal control-stream errors: the error frame, last on a finished stream, then close 1.
    let cases = &report["cases"];
    for (case, code) in [
        ("garbage_after_hello", "bad_magic"),
        ("second_hello", "unexpected_frame"),
        ("oversized_frame", "body_too_large"),
        ("server_kind_frame", "unexpected_frame"),
    ] {
        let c = &cases[case];
        assert_eq!(c["error"]["code"], code, "{case}: {c}");
        assert_eq!((c["error_is_last"].as_bool(), c["fin"].as_bool()), (Some(true), Some(true)), "{case}: {c}");
        assert_eq!((c["close"]["code"].as_u64(), c["close"]["transport"].as_bool()), (Some(1), Some(false)), "{c}");
        assert_eq!(c["close"]["reason"], c["error"]["message"], "{case}: {c}");
        assert!(c["ms"].as_f64().expect("ms") < 1000.0, "{case}: {c}");
        println!("{case:<20} {code:<17} closed {} ms after the bad bytes", c["ms"]);
    }

    // Malformed datagrams and packets: dropped and counted by reason, the connection stays up and
    // its next frame reaches the client.
    let m = &cases["malformed"];
    assert_eq!((m["still_open"].as_bool(), m["error_frames"].as_array().map(Vec::len)), (Some(true), Some(0)), "{m}");
    assert!(got(&m["frame_after"]["seq"]), "the frame after the malformed input did not arrive: {m}");
    let (_, t) = api("GET", &server.url(&format!("/api/trains/{FOREIGN}")), None).await;
    let rejected = &t["rejected_packets"];
    for reason in [
        "bad_magic",
        "unsupported_version",
        "wrong_kind",
        "unknown_codec",
        "bad_chunk",
        "payload_too_large",
        "truncated",
        "length_mismatch",
        "unknown_camera",
    ] {
        assert!(rejected[reason].as_u64().unwrap_or(0) >= 1, "no {reason} in {rejected}");
    }
    println!(
        "malformed: rejected {rejected}; {} raw UDP and {} mangled packets ignored",
        m["udp_garbage"], m["mangled_packets"]
    );

    // Streams: held back politely they harm nothing; sent beyond the limits, QUIC ends it.
    let s = &cases["many_streams"];
    assert_eq!(s["server_limits"], json!({"bidi": 1, "uni": 0}), "{s}");
    assert_eq!(s["polite_open"], true, "{s}");
    assert_eq!((s["close"]["transport"].as_bool(), s["close"]["code"].as_u64()), (Some(true), Some(0x4)), "{s}");

    // Abandoned without a close: offline once the idle timeout (1 s) passes.
    let offline = watcher
        .wait_event("train_offline after the abandon", |e| {
            e["type"] == "train_offline" && e["reason"].as_str().is_some_and(|r| r.contains("timed out"))
        })
        .await;
    let abandoned_us = cases["abandon"]["abandoned_at_us"].as_u64().expect("abandoned_at_us");
    let noticed_ms = (now_us().saturating_sub(abandoned_us)) / 1000;
    assert!(noticed_ms < 3000, "{noticed_ms} ms to notice the abandoned connection: {offline}");
    println!("abandoned connection offline after ≤ {noticed_ms} ms: {}", offline["reason"]);

    // The well-behaved train streamed to its client throughout, with no gap.
    let frames = steady.frames();
    verify(&frames, &sim.manifest());
    let mut arrivals: Vec<u64> = frames
        .iter()
        .map(|f| f.capture_us + f.latency_us)
        .filter(|&at| (started_us..=ended_us).contains(&at))
        .collect();
    arrivals.sort_unstable();
    let gap_ms = arrivals.windows(2).map(|w| (w[1] - w[0]) / 1000).max().unwrap_or(u64::MAX);
    println!("steady client: {} frames while the aioquic train ran, longest gap {gap_ms} ms", arrivals.len());
    assert!(arrivals.len() >= 10 && gap_ms < 500, "{} frames, longest gap {gap_ms} ms", arrivals.len());
    let (_, t1) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!((t1["online"].as_bool(), t1["connections"].as_u64()), (Some(true), Some(1)), "{t1}");
    assert_eq!(t1["rejected_packets"], json!({}), "{t1}");
    assert!(server.child.try_wait().expect("server status").is_none(), "the server is still running");
    let log = std::fs::read_to_string(&server.log).expect("server log");
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
