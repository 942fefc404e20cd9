//! One NATS server of three is killed: the relays move to the others and the service carries
//! on — video to a viewer on B of the train on A, commands, and shared state (kept in three
//! copies) changed after the loss.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::ws::{verify, Client};
use testkit::{scratch, set_train, Sim, SMALL_VIDEO};

use crate::{shared_remote_control, wait_api, Three};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_nats_server_leaves_the_cluster_working() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_nats_node_lost");
    let mut t = Three::start(&dir).await;
    let sim = Sim::start(&dir, &t.a, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_api(&t.b, "/api/trains/train-1", "train-1 mirrored", |s, v| s == 200 && v["online"] == true).await;
    let rc = shared_remote_control(&t.a, &[&t.b]).await;
    set_train(&t.b, &rc, "train-1").await;
    let on_b = Client::connect(&t.b.ws_url(&rc)).await;
    on_b.wait_frames(1).await;

    // Every relay is connected to the first server given (the list's order) at first.
    let killed = Instant::now();
    t.nats[0].kill().await;
    let before = on_b.frames().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while on_b.frames().len() < before + 30 {
        assert!(Instant::now() < deadline, "no video on B after losing a NATS server ({} frames)", on_b.frames().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let video_again = killed.elapsed();
    verify(&on_b.frames(), &sim.manifest());
    on_b.send_text(
        json!({"type": "command", "request_id": "h", "command": {"type": "horn", "duration_ms": 10}}).to_string(),
    )
    .await;
    let ack = on_b.wait_event("the ack", |e| e["request_id"] == "h").await;
    assert_eq!(ack["type"], "command_ack", "{ack}");
    // Shared state still changes everywhere.
    let started = Instant::now();
    let rc2 = shared_remote_control(&t.c, &[&t.a, &t.b]).await;
    let shared_in = started.elapsed();
    for node in [&t.a, &t.b, &t.c] {
        wait_api(node, "/readyz", "ready", |s, _| s == 200).await;
    }
    println!(
        "cluster: one NATS server of three killed: 30 more frames on B within {} ms of the kill; a remote \
         control ({rc2}) made on C afterwards is on A and B in {} ms",
        video_again.as_millis(),
        shared_in.as_millis()
    );
}
