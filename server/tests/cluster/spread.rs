//! A fleet given one list of nodes spreads over them: with `--server-order spread` each train
//! starts at a node chosen by its id (FNV-1a of the id, modulo the list's length), so four
//! trains given A and B land two on each; the same list in the listed order puts all on A.

use testkit::{scratch, Sim, SMALL_VIDEO};

use crate::wait_api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_given_one_list_spreads_over_the_nodes() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_spread");
    let (_nats, a, b) = crate::two_nodes(&dir).await;
    let _spread =
        Sim::start_on(&dir, &[&a, &b], &[&["--trains", "4", "--server-order", "spread"], SMALL_VIDEO].concat());
    // train-1 → 1 (B), train-2 → 0 (A), train-3 → 1 (B), train-4 → 0 (A).
    for (train, node) in [("train-1", "node-b"), ("train-2", "node-a"), ("train-3", "node-b"), ("train-4", "node-a")] {
        wait_api(&a, &format!("/api/trains/{train}"), "the train on its node", |s, v| {
            s == 200 && v["online"] == true && v["owner_node"] == node
        })
        .await;
    }
    let _listed = Sim::start_on(&dir, &[&a, &b], &[&["--trains", "2", "--first", "11"], SMALL_VIDEO].concat());
    for train in ["train-11", "train-12"] {
        wait_api(&b, &format!("/api/trains/{train}"), "the train on A", |s, v| {
            s == 200 && v["online"] == true && v["owner_node"] == "node-a"
        })
        .await;
    }
}
