//! The train leaves node A (the simulator is killed): node B shows it offline soon after A does.

use std::time::{Duration, Instant};

use testkit::ws::Client;
use testkit::{remote_control, scratch, wait_for_train};

use crate::Nodes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_train_leaving_its_node_goes_offline_on_the_others() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_offline");
    let mut nodes = Nodes::start(&dir).await;
    let rc_b = remote_control(&nodes.b, Some("train-1")).await;
    let on_b = Client::connect(&nodes.b.ws_url(&rc_b)).await;
    on_b.wait_frames(1).await;

    let killed = Instant::now();
    nodes.sim.kill().await;
    wait_for_train(&nodes.a, "train-1", false).await;
    let on_a = killed.elapsed();
    let ev = on_b.wait_event("train_offline on B", |e| e["type"] == "train_offline").await;
    let on_b_at = killed.elapsed();
    wait_for_train(&nodes.b, "train-1", false).await;
    println!(
        "cluster: train offline on A {} ms after the kill, on B {} ms ({} ms later): {ev}",
        on_a.as_millis(),
        on_b_at.as_millis(),
        on_b_at.saturating_sub(on_a).as_millis()
    );
    assert!(on_b_at.saturating_sub(on_a) <= Duration::from_secs(4), "B lagged A by {:?}", on_b_at - on_a);
}
