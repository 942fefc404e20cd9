//! Three relay nodes on a cluster of three NATS servers act as one service: the trains on node
//! A, a remote control made on B and mapped on C; a WebSocket viewer on B and a WebRTC viewer on
//! C get exact frames; a remap on C switches the viewer on B; a command from B is acked by the
//! train on A.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::webrtc::RtcClient;
use testkit::ws::{verify, Client};
use testkit::{scratch, set_train, Sim, SMALL_VIDEO};

use crate::{shared_remote_control, wait_api, Three};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_remote_controls_media_and_commands() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_three_nodes");
    let t = Three::start(&dir).await;
    let sim = Sim::start(&dir, &t.a, &[&["--trains", "2"], SMALL_VIDEO].concat());
    for node in [&t.b, &t.c] {
        wait_api(node, "/api/trains/train-2", "train-2 mirrored", |s, v| s == 200 && v["online"] == true).await;
    }

    // Made on B, mapped on C: B's sessions follow.
    let started = Instant::now();
    let rc = shared_remote_control(&t.b, &[&t.a, &t.c]).await;
    let shared_in = started.elapsed();
    set_train(&t.c, &rc, "train-1").await;
    let on_b = Client::connect(&t.b.ws_url(&rc)).await;
    on_b.wait_frames(1).await;
    // A WebRTC viewer on C, its remote control made on A.
    let rc_c = shared_remote_control(&t.a, &[&t.c]).await;
    set_train(&t.a, &rc_c, "train-1").await;
    let rtc = RtcClient::connect(&t.c, &rc_c).await;
    rtc.client.wait_frames(1).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (frames_b, frames_c) = (on_b.frames(), rtc.client.frames());
    let manifest = sim.manifest();
    let (checked_b, checked_c) = (verify(&frames_b, &manifest), verify(&frames_c, &manifest));
    assert!(checked_b >= 45 && checked_c >= 45, "exact frames: B {checked_b}, C {checked_c}");

    let trains = wait_api(&t.c, "/api/trains/train-1", "train-1", |s, _| s == 200).await;
    assert_eq!(
        (trains["ingest"].as_str(), trains["owner_node"].as_str()),
        (Some("cluster"), Some("node-a")),
        "{trains}"
    );
    let on_a = wait_api(&t.a, "/api/trains/train-1", "train-1", |s, _| s == 200).await;
    assert_eq!((on_a["ingest"].as_str(), on_a["owner_node"].as_str()), (Some("quic"), Some("node-a")), "{on_a}");

    // Remap on C: the viewer on B switches to train-2.
    let remapped = Instant::now();
    set_train(&t.c, &rc, "train-2").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !on_b.frames().iter().any(|f| f.train.as_deref() == Some("train-2")) {
        assert!(Instant::now() < deadline, "the viewer on B never got train-2 after the remap on C");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let switch = remapped.elapsed();
    verify(&on_b.frames(), &sim.manifest());

    // A command from B reaches train-2 on A; its ack comes back.
    let sent = Instant::now();
    on_b.send_text(
        json!({"type": "command", "request_id": "s", "command": {"type": "set_speed", "kmh": 70}}).to_string(),
    )
    .await;
    let ack = on_b.wait_event("the ack", |e| e["request_id"] == "s").await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    println!(
        "cluster (3 NATS, 3 nodes): a remote control made on B is on A and C {} ms later; exact frames \
         on B (WebSocket) {checked_b}, on C (WebRTC) {checked_c}; remap on C → train-2's first frame on B \
         {} ms; command from B acked in {} ms",
        shared_in.as_millis(),
        switch.as_millis(),
        sent.elapsed().as_millis(),
    );
}
