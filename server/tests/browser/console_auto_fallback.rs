//! Auto transport: with WebRTC made impossible (the page's `/api/webrtc/*` requests refused), the
//! console falls back to WebSocket within seconds and shows pictures; once WebRTC is possible
//! again, it goes back to WebRTC by itself. Those switches, and one by hand from WebRTC to
//! WebSocket, log no 404 and no error in the page console.

use std::time::Duration;

use testkit::console::{artifacts, report, web_root, Console};
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_websocket_and_returns() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_auto_fallback");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        "auto-fallback",
        &artifacts("console_auto_fallback"),
        server.token("admin"),
        &[],
    );
    let r = console.finish(Duration::from_secs(120)).await;
    report("console, Auto with WebRTC blocked", &r);
    assert_eq!(r["transport"], "websocket", "fell back to WebSocket: {r}");
    assert!(r["webrtc_requests_blocked"].as_u64().unwrap_or(0) > 0, "Auto tried WebRTC first: {r}");
    assert_eq!(r["transport_after_recovery"], "webrtc", "back on WebRTC once possible: {r}");
    // Coming back to WebRTC and leaving it by hand logged nothing: no 404 (the DELETE of a WebRTC
    // session the server had already dropped), no console error.
    let quiet = serde_json::json!({ "not_found": [], "console_errors": [] });
    assert_eq!(r["switch_logged"], quiet, "the transport switches logged errors: {r}");
    println!(
        "fell back: first frames over WebSocket {} ms after load; back on WebRTC {} ms after unblocking; \
         WebSocket by hand {} ms; 404s on the whole run {}",
        r["first_frames_ms"], r["back_to_webrtc_ms"], r["switch_to_websocket_ms"], r["not_found"]
    );
}
