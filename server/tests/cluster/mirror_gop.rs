//! A mirror whose last viewer left drops what it cached of the train: the next viewer on that
//! node starts with the owner's current GOP, not with frames from before the first one left.

use std::time::Duration;

use testkit::ws::{verify, Client};
use testkit::{now_us, remote_control, scratch};

use crate::Nodes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_viewer_on_a_mirror_gets_no_stale_gop() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_mirror_gop");
    let nodes = Nodes::start(&dir).await;
    let rc = remote_control(&nodes.b, Some("train-1")).await;
    let first = Client::connect(&nodes.b.ws_url(&rc)).await;
    first.wait_frames(5).await;
    drop(first);
    let left = now_us();
    // The simulator's GOP is 1 s (15 frames at 15 fps): the owner's GOP when the next viewer
    // joins starts at least 1.5 s after the first viewer left.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let next = Client::connect(&nodes.b.ws_url(&rc)).await;
    next.wait_frames(3).await;
    let frames = next.frames();
    let f = frames.first().expect("a frame");
    assert!(f.keyframe, "the first frame is a keyframe");
    assert!(
        f.capture_us > left + 1_000_000,
        "the next viewer's first frame was captured {} ms from when the first viewer left: the mirror's old GOP",
        (f.capture_us as i64 - left as i64) / 1000
    );
    verify(&frames, &nodes.sim.manifest());
    println!(
        "cluster: a viewer joining a mirror 2.5 s after its last viewer left: first frame captured {} ms after that, \
         received {} ms after capture",
        (f.capture_us - left) / 1000,
        f.latency_us / 1000
    );
}
