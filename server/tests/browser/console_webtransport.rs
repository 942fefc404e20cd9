//! The operator console in Chromium over WebTransport: the console fetches the certificate hashes
//! from `/api/webtransport`, opens a session pinned to them, and two cameras at 640×480, 30 fps
//! decode onto canvases; the overlay shows glass-to-glass latency; a command gets its ack over the
//! session's stream. Then Auto: with WebRTC made impossible, Auto takes the next transport of its
//! ranking (WebTransport) and returns to WebRTC once it is possible again.

use std::time::Duration;

use testkit::console::{artifacts, report, web_root, Console};
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_streams_over_webtransport() {
    let _serial = testkit::serial().await;
    testkit::console::stream_over(
        "console_webtransport",
        "webtransport",
        "console over WebTransport (640×480, 30 fps, 2 cameras)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ranks_webtransport_after_webrtc() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_auto_webtransport");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        "auto-webtransport",
        &artifacts("console_auto_webtransport"),
        server.token("admin"),
        &[],
    );
    let r = console.finish(Duration::from_secs(120)).await;
    report("console, Auto with WebRTC blocked (WebTransport next)", &r);
    assert_eq!(r["ranking"], serde_json::json!(["webrtc", "webtransport", "websocket"]), "{r}");
    assert_eq!(r["transport"], "webtransport", "took the next of the ranking: {r}");
    assert!(r["webrtc_requests_blocked"].as_u64().unwrap_or(0) > 0, "Auto tried WebRTC first: {r}");
    assert_eq!(r["transport_after_recovery"], "webrtc", "back on WebRTC once possible: {r}");
}
