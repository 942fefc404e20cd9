//! The operator console in Chromium over WebRTC data channels: two cameras at 640×480, 30 fps
//! decode (WebCodecs) onto canvases that show changing, non-blank pictures; the overlay shows
//! latency; a command gets its ack over `command`. Prints the glass-to-glass figures.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_streams_over_webrtc() {
    let _serial = testkit::serial().await;
    testkit::console::stream_over("console_webrtc", "webrtc", "console over WebRTC (640×480, 30 fps, 2 cameras)").await;
}
