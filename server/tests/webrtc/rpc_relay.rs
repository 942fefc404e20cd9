//! JSON-RPC signaling to the relay: a webrtc-rs client announces on `/rpc`, offers to `relay`
//! (the offer without candidates, each trickled with `ice_candidate`), gets the answer as the
//! call's result and the relay's later candidates as notifications; its channels carry the
//! train's exact frames and a command's ack. `disconnect` ends the session; a socket that closes
//! ends the sessions it opened.

use std::time::Duration;

use serde_json::json;
use testkit::rpc::RelayClient;
use testkit::ws::verify;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offers_to_the_relay_over_rpc() {
    let dir = scratch("rpc_relay");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let c = RelayClient::offer(&server, &rc).await;
    println!(
        "rpc relay: answer {} ms, channels open {} ms after the offer",
        c.answered.as_millis(),
        c.setup.as_millis()
    );
    c.client.wait_event("welcome", |e| e["type"] == "welcome" && e["transport"] == "webrtc").await;
    c.client.wait_frames(20).await;
    assert!(verify(&c.client.frames(), &sim.manifest()) >= 20);
    let rtts = c.client.command_round_trips(2, Duration::from_secs(5), || "rpc relay".into()).await;
    println!("rpc relay: command round trips {rtts:?} ms");
    let (_, sessions) = api("GET", &server.url("/api/webrtc/sessions"), None).await;
    assert!(sessions.as_array().into_iter().flatten().any(|s| s["session_id"] == c.session_id.as_str()), "{sessions}");

    // `disconnect` to the relay ends the session (and only this socket's).
    let ended = c.rpc.ok("disconnect", json!({"to_peer_id": "relay"})).await;
    assert_eq!(ended["ended"], 1, "{ended}");
    testkit::wait_no_webrtc_sessions(&server).await;

    // A second session; closing the socket ends it.
    let d = RelayClient::offer(&server, &rc).await;
    d.client.wait_frames(5).await;
    d.rpc.close().await;
    testkit::wait_no_webrtc_sessions(&server).await;
    let _ = c.pc.close().await;
    let _ = d.pc.close().await;
}
