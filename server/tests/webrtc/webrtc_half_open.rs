//! Half-open WebRTC sessions (an offer nobody answers; an answer from a peer that is gone before
//! ICE connects) are reaped by `webrtc_connect_timeout` at the latest, counted as never opened, and
//! give their place back: with `max_webrtc_sessions = 1` a new client gets in after each.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::webrtc::RtcClient;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// Sessions that never opened, all reasons (`timeout`, or `failed` when ICE gave up first).
fn never_opened(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("railcast_webrtc_sessions_failed_total{"))
        .inspect(|l| println!("{l}"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.trim().parse::<u64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sessions_are_reaped_and_free_their_place() {
    let dir = scratch("webrtc_half_open");
    let server = Server::start(&dir, &["--webrtc-connect-timeout", "1s", "--max-webrtc-sessions", "1"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let url = server.url("/api/webrtc/offer");
    let offer = || api("POST", &url, Some(json!({"remote_control_id": rc})));

    // 1. An offer nobody answers.
    let (s, _) = offer().await;
    assert_eq!(s, 200);
    let (s, b) = offer().await;
    assert_eq!((s, b["code"].as_str()), (429, Some("limit_webrtc_sessions")), "{b}");
    let t = Instant::now();
    testkit::wait_no_webrtc_sessions(&server).await;
    println!("unanswered offer reaped after {} ms", t.elapsed().as_millis());

    // 2. An answer from a peer that closes before any candidate is exchanged.
    let (s, o) = offer().await;
    assert_eq!(s, 200, "{o}");
    let sid = o["session_id"].as_str().expect("sid");
    let pc = testkit::webrtc::answerer(o["sdp"].as_str().expect("sdp")).await;
    let answer = pc.local_description().await.expect("answer").sdp;
    // Strip the answer's candidates: the server has nowhere to send its checks.
    let answer: String =
        answer.split("\r\n").filter(|l| !l.starts_with("a=candidate")).collect::<Vec<_>>().join("\r\n");
    let (s, v) = api(
        "POST",
        &server.url("/api/webrtc/answer"),
        Some(json!({"session_id": sid, "type": "answer", "sdp": answer})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let _ = pc.close().await;
    let t = Instant::now();
    testkit::wait_no_webrtc_sessions(&server).await;
    println!("answered but never connected: reaped after {} ms", t.elapsed().as_millis());

    let (_, text) = api("GET", &server.url("/metrics"), None).await;
    assert_eq!(never_opened(text.as_str().expect("metrics")), 2);

    // The place is free: a real client connects and gets video.
    let client = RtcClient::connect(&server, &rc).await;
    client.client.wait_frames(3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, list) = api("GET", &server.url("/api/webrtc/sessions"), None).await;
    assert_eq!(list[0]["state"], "connected", "an open session is not reaped by the connect timeout: {list}");
}
