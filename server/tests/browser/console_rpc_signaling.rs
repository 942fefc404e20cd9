//! The operator console in Chromium over WebRTC data channels signaled over JSON-RPC 2.0
//! (`?signaling=rpc`): the console opens `/rpc` with its token, announces itself, offers both
//! channels to the peer `relay` with its remote control, applies the answer from the result and the
//! relay's `ice_candidate` notifications, and keeps the socket open; then two cameras at 640×480,
//! 30 fps paint, the overlay shows glass-to-glass latency, a command gets its ack over the
//! `command` channel, and the Connection panel lists the peers (the relay, the console). No broker.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_streams_over_webrtc_signaled_over_json_rpc() {
    let _serial = testkit::serial().await;
    let r = testkit::console::stream_scenario(
        "console_rpc_signaling",
        "webrtc-rpc",
        "webrtc",
        "console over WebRTC, JSON-RPC signaling (/rpc, 640×480, 30 fps, 2 cameras)",
        &[],
    )
    .await;
    assert_eq!(r["signaling"], "rpc", "the WebRTC link signaled over JSON-RPC: {r}");
    let s = &r["rpc_signaling"];
    assert_eq!(s["state"], "open (socket kept for the session)", "the /rpc socket stays while the link lives: {r}");
    assert!(s["peer_id"].as_str().is_some_and(|p| !p.is_empty() && p != "relay"), "the console announced itself: {r}");
    assert!(s["session"].as_str().is_some_and(|x| !x.is_empty()), "the relay answered with a session: {r}");
    assert!(s["candidates_sent"].as_u64().unwrap_or(0) > 0, "the console trickled its candidates: {r}");
    let peers = r["peers"].as_array().expect("the peer list");
    assert_eq!(peers.first().map(|p| &p["peer_id"]), Some(&"relay".into()), "the relay first: {r}");
    assert!(
        r["peers_shown"].as_array().is_some_and(|v| v.iter().any(|p| p == "relay")),
        "the panel lists the peers: {r}"
    );
    println!(
        "rpc signaling: setup {} ms in the console (server: {} ms offer → video open) · first frames {} ms · \
         candidates sent {} · relay candidates {} · session {} · peers {}",
        r["webrtc_setup_ms"],
        r["server_setup_ms"],
        r["first_frames_ms"],
        s["candidates_sent"],
        s["relay_candidates"],
        s["session"],
        r["peers"]
    );
}
