//! A viewer on node B of a train on node A gets exact frames, in order, through NATS; a viewer
//! on A in the same run gives the latency the NATS hop adds. B lists the train as online with
//! ingest `cluster`.

use std::time::{Duration, Instant};

use testkit::ws::{verify, Client};
use testkit::{api, pct, remote_control, scratch};

use crate::Nodes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_another_node_gets_exact_frames() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_media");
    let nodes = Nodes::start(&dir).await;
    let rc_b = remote_control(&nodes.b, Some("train-1")).await;
    let rc_a = remote_control(&nodes.a, Some("train-1")).await;

    let (status, trains) = api("GET", &nodes.b.url("/api/trains"), None).await;
    assert_eq!(status, 200, "{trains}");
    let t = trains.as_array().expect("trains").iter().find(|t| t["id"] == "train-1").expect("train-1 on B").clone();
    assert_eq!((t["online"].as_bool(), t["ingest"].as_str()), (Some(true), Some("cluster")), "{t}");

    let started = Instant::now();
    let on_b = Client::connect(&nodes.b.ws_url(&rc_b)).await;
    on_b.wait_frames(1).await;
    let first_frame = started.elapsed();
    let on_a = Client::connect(&nodes.a.ws_url(&rc_a)).await;
    let window = Duration::from_secs(6);
    tokio::time::sleep(window).await;

    // What the clients got before what the train sent (see websocket/ws_fanout.rs).
    let (frames_b, frames_a) = (on_b.frames(), on_a.frames());
    let manifest = nodes.sim.manifest();
    let checked_b = verify(&frames_b, &manifest);
    let checked_a = verify(&frames_a, &manifest);
    assert!(frames_b.iter().all(|f| f.train.as_deref() == Some("train-1")));
    let first = frames_b.first().expect("a frame on B");
    assert!(first.keyframe, "B's first frame is a keyframe");
    let last_sent = manifest.of_train("train-1").filter(|e| e.camera == 0).map(|e| e.seq).max().unwrap_or(0);
    let expected = (last_sent - first.seq + 1) as usize;
    // Frames in flight when we stopped may be missing.
    assert!(checked_b + 3 >= expected, "B: {checked_b} of {expected} frames since its first");

    let latency = |frames: &[testkit::ws::Received]| {
        let mut l: Vec<u64> = frames.iter().map(|f| f.latency_us).collect();
        l.sort_unstable();
        (pct(&l, 0.5), pct(&l, 0.99))
    };
    let ((b50, b99), (a50, a99)) = (latency(&frames_b), latency(&frames_a));
    println!(
        "cluster: viewer on B: first frame {} ms after connecting, {checked_b} frames exact of {expected} sent; \
         frame latency (capture → client) on B p50 {b50} µs p99 {b99} µs, on A p50 {a50} µs p99 {a99} µs \
         ({checked_a} frames); the NATS hop adds ≈ {} µs at p50",
        first_frame.as_millis(),
        b50.saturating_sub(a50),
    );
}
