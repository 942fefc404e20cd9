//! A node that joins a cluster whose shared state already holds remote controls takes them in
//! before it says it is ready, and its own changes reach the others.

use testkit::{remote_control, scratch, set_train, Server};

use crate::{wait_api, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_takes_the_shared_state_in() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_late_join");
    let nats = testkit::nats::Nats::start(&dir).await;
    let url = nats.url();
    let a = Server::start(&dir, &["--cluster-nats-url", &url, "--cluster-node-id", "node-a"]).await;
    wait_ready(&a).await;
    let rc = remote_control(&a, None).await;
    set_train(&a, &rc, "train-9").await;
    // B starts only now: the bucket is not empty.
    let b = Server::start_sharing(&dir, &a, &["--cluster-nats-url", &url, "--cluster-node-id", "node-b"]).await;
    let started = std::time::Instant::now();
    wait_ready(&b).await;
    let ready_in = started.elapsed();
    let on_b = wait_api(&b, &format!("/api/remote-controls/{rc}"), "A's remote control on B", |s, _| s == 200).await;
    assert_eq!(on_b["train_id"], "train-9", "{on_b}");
    set_train(&b, &rc, "train-2").await;
    wait_api(&a, &format!("/api/remote-controls/{rc}"), "B's remap on A", |_, v| v["train_id"] == "train-2").await;
    println!("cluster: a node joining a bucket with one remote control is ready in {} ms", ready_in.as_millis());
}
