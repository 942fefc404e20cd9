//! A train that connects to another node while its old connection still stands (it moved
//! before node A noticed the old path died) belongs to the newer claim — a higher epoch, not
//! whichever message arrived last: node A closes its connection (code 2, replaced) and mirrors
//! the train from B, and a viewer on A gets the new connection's frames.

use std::time::{Duration, Instant};

use testkit::ws::{verify, Client};
use testkit::{remote_control, scratch, RawTrain, Sim, SMALL_VIDEO};

use crate::wait_api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_connection_owns_a_train_across_nodes() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_ownership");
    let (_nats, a, b) = crate::two_nodes(&dir).await;
    // The old connection: a train on A that will not notice anything.
    let old = RawTrain::connect(&a, "train-1", Duration::ZERO).await;
    let v = wait_api(&b, "/api/trains/train-1", "train-1 mirrored on B", |s, v| s == 200 && v["online"] == true).await;
    assert_eq!(v["owner_node"], "node-a", "{v}");
    let rc = remote_control(&a, Some("train-1")).await;
    let on_a = Client::connect(&a.ws_url(&rc)).await;

    // The train again, now through B.
    let moved = Instant::now();
    let sim = Sim::start(&dir, &b, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let closed =
        tokio::time::timeout(Duration::from_secs(15), old.conn.closed()).await.expect("A closes the old connection");
    let handover = moved.elapsed();
    match &closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(u64::from(c.error_code), 2, "replaced: {c:?}");
        }
        other => panic!("the old connection ended otherwise: {other}"),
    }
    let v =
        wait_api(&a, "/api/trains/train-1", "train-1 owned by B", |s, v| s == 200 && v["owner_node"] == "node-b").await;
    assert_eq!((v["online"].as_bool(), v["ingest"].as_str()), (Some(true), Some("cluster")), "{v}");
    let v = wait_api(&b, "/api/trains/train-1", "train-1 on B", |s, _| s == 200).await;
    assert_eq!((v["ingest"].as_str(), v["owner_node"].as_str()), (Some("quic"), Some("node-b")), "{v}");

    // The viewer on A, never reconnected, gets the new connection's frames through B.
    let deadline = Instant::now() + Duration::from_secs(15);
    while on_a.frames().len() < 20 {
        assert!(Instant::now() < deadline, "the viewer on A got {} frames", on_a.frames().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames = on_a.frames();
    let checked = verify(&frames, &sim.manifest());
    println!(
        "cluster: a train reconnecting through B while its old connection to A stood: A closed the old \
         one {} ms after the new one began; {checked} exact frames from it on A's viewer",
        handover.as_millis()
    );
}
