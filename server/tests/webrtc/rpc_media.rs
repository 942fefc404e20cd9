//! JSON-RPC signaling to the relay with media: an offer over `/rpc` whose SDP asks for video
//! (receive-only transceivers, as a WHEP player's) gets the same media tracks as WHEP — one
//! H.264 track per camera of the mapped train — and the player decodes the train's frames.

use std::time::Duration;

use serde_json::json;
use testkit::rpc::RpcSocket;
use testkit::whep::{Offer, Signaled, Whep};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_with_video_gets_media_tracks() {
    let dir = scratch("rpc_media");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let rpc = RpcSocket::connect(&server).await;
    rpc.ok("announce", json!({"name": "media player"})).await;
    let r = rpc.clone();
    let rc2 = rc.clone();
    let player = Whep::signal_with(Offer { cameras: 2, audio: 0, command: false }, |sdp| async move {
        let result = r.ok("offer", json!({"to_peer_id": "relay", "remote_control_id": rc2, "sdp": sdp})).await;
        let id = result["session_id"].as_str().expect("session_id").to_owned();
        Signaled {
            answer: result["sdp"].as_str().expect("sdp").to_owned(),
            url: String::new(),
            location: id,
            etag: String::new(),
            links: Vec::new(),
        }
    })
    .await;
    assert!(player.location.starts_with("whep-"), "a media session: {}", player.location);
    assert!(player.answer.contains("H264"), "{}", player.answer);
    player.wait_units(2, 10, Duration::from_secs(15)).await;
    println!("rpc media: camera 0 {} and camera 1 {} access units", player.units(0).len(), player.units(1).len());
    let ended = rpc.ok("disconnect", json!({"to_peer_id": "relay"})).await;
    assert_eq!(ended["ended"], 1, "{ended}");
    testkit::wait_no_webrtc_sessions(&server).await;
}
