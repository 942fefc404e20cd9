//! NATS goes away: the mirrored train goes offline on node B (not on A, which has the train);
//! NATS comes back on the same address: the nodes reconnect by themselves and B's viewer, still
//! mapped, gets exact frames again. `/readyz` says 503 `cluster_unreachable` while NATS is away.
//! A remote control made on A while NATS was away reaches B once it is back (the write is
//! retried), and the watches carry on: a remap on B after the restart reaches A.

use std::time::Instant;

use testkit::ws::{verify, Client};
use testkit::{api, remote_control, scratch, wait_for_train, Server};

use crate::Nodes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_survive_a_nats_restart() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_nats_restart");
    let mut nodes = Nodes::start(&dir).await;
    let rc_b = remote_control(&nodes.b, Some("train-1")).await;
    let on_b = Client::connect(&nodes.b.ws_url(&rc_b)).await;
    on_b.wait_frames(1).await;
    assert_eq!(ready(&nodes.b).await, (200, None));

    let killed = Instant::now();
    nodes.nats.kill().await;
    on_b.wait_event("train_offline on B", |e| e["type"] == "train_offline").await;
    let offline_after = killed.elapsed();
    wait_for_train(&nodes.b, "train-1", false).await;
    wait_for_train(&nodes.a, "train-1", true).await;
    let before = on_b.frames().len();
    assert_eq!(ready(&nodes.b).await, (503, Some("cluster_unreachable".to_owned())));
    let made_meanwhile = remote_control(&nodes.a, None).await;

    let restarted = Instant::now();
    nodes.nats.restart().await;
    wait_for_train(&nodes.b, "train-1", true).await;
    let online_after = restarted.elapsed();
    on_b.wait_frames(before + 15).await;
    let frames_after = restarted.elapsed();
    assert_eq!(ready(&nodes.a).await, (200, None));
    crate::wait_api(&nodes.b, &format!("/api/remote-controls/{made_meanwhile}"), "made while NATS was away", |s, _| {
        s == 200
    })
    .await;
    testkit::set_train(&nodes.b, &made_meanwhile, "train-1").await;
    crate::wait_api(&nodes.a, &format!("/api/remote-controls/{made_meanwhile}"), "remapped on B", |_, v| {
        v["train_id"] == "train-1"
    })
    .await;
    let state_after = restarted.elapsed();
    let frames = on_b.frames();
    let manifest = nodes.sim.manifest();
    verify(&frames, &manifest);
    println!(
        "cluster: NATS killed: train offline on B after {} ms; NATS restarted: online on B after {} ms, \
         15 more exact frames after {} ms; shared state in step both ways after {} ms",
        offline_after.as_millis(),
        online_after.as_millis(),
        frames_after.as_millis(),
        state_after.as_millis()
    );
}

/// `/readyz`: the status and the error code.
async fn ready(server: &Server) -> (u16, Option<String>) {
    let (status, body) = api("GET", &server.url("/readyz"), None).await;
    (status, body["code"].as_str().map(str::to_owned))
}
