//! The operator console in Chromium over WebRTC data channels signaled over JSON-RPC 2.0
//! (`?signaling=rpc`): the console opens `/rpc` with its token, announces itself, offers both
//! channels to the peer `relay` with its remote control, applies the answer from the result and the
//! relay's `ice_candidate` notifications, and keeps the socket open; then two cameras at 640×480,
//! 30 fps paint, the overlay shows glass-to-glass latency, a command gets its ack over the
//! `command` channel, and the Connection panel lists the peers (the relay, the console). Then the
//! console switches to REST signaling: the JSON-RPC link's end (`disconnect`, the socket closed)
//! must end its relay session, and a REST-signaled link takes over. No broker.

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
    assert!(s["error"].is_null(), "no signaling error (a refused candidate, a stray message): {r}");
    assert!(s["candidates_sent"].as_u64().unwrap_or(0) > 0, "the console trickled its candidates: {r}");
    let peers = r["peers"].as_array().expect("the peer list");
    assert_eq!(peers.first().map(|p| &p["peer_id"]), Some(&"relay".into()), "the relay first: {r}");
    assert!(
        r["peers_shown"].as_array().is_some_and(|v| v.iter().any(|p| p == "relay")),
        "the panel lists the peers: {r}"
    );
    // The link's end (the console switched to REST): `disconnect`, the socket closed, the relay
    // session gone, and no peer list without a JSON-RPC link.
    assert!(r["rpc_session_ended_ms"].as_u64().is_some(), "the relay session ended with its link: {r}");
    assert!(r["rpc_disconnects"].as_u64().unwrap_or(0) >= 1, "the server took the console's disconnect: {r}");
    assert!(r["rpc_peers_after_leaving"].is_null(), "no peer list once the JSON-RPC link is over: {r}");
    println!(
        "rpc signaling: setup {} ms in the console (server: {} ms offer → video open) · first frames {} ms · \
         candidates sent {} · relay candidates {} (end: {}) · session {} · peers {} · after switching to REST: \
         relay session gone in {} ms, disconnects {}",
        r["webrtc_setup_ms"],
        r["server_setup_ms"],
        r["first_frames_ms"],
        s["candidates_sent"],
        s["relay_candidates"],
        s["relay_candidates_end"],
        s["session"],
        r["peers"],
        r["rpc_session_ended_ms"],
        r["rpc_disconnects"]
    );
}
