//! A WHIP publisher whose second camera never sends a picture: the train still goes online, about
//! `ONLINE_WAIT` (3 s) after the first camera's keyframe, announcing camera 0 only (its id stays
//! its m-line index), and a viewer gets its video.

use std::time::{Duration, Instant};

use testkit::ws::Client;
use testkit::{api, remote_control, scratch, wait_for_train, Server};

use crate::whip_aiortc::Aiortc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_camera_does_not_keep_the_train_offline() {
    let dir = scratch("whip_stalled_camera");
    let server = Server::start(&dir, &[]).await;
    let token = server.train_token("train-6");
    let started = Instant::now();
    let publisher = Aiortc::start(&server, "train-6", &token, &["--cameras", "2", "--stall", "1"]).await;
    wait_for_train(&server, "train-6", true).await;
    let waited = started.elapsed();
    println!("online {} ms after the publisher started", waited.as_millis());
    assert!(waited >= Duration::from_secs(3), "online before ONLINE_WAIT: {waited:?}");
    let (_, train) = api("GET", &server.url("/api/trains/train-6"), None).await;
    let ids: Vec<u64> = train["cameras"].as_array().expect("cameras").iter().filter_map(|c| c["id"].as_u64()).collect();
    assert_eq!(ids, [0], "{train}");
    let rc = remote_control(&server, Some("train-6")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(10).await;
    assert!(client.frames().iter().all(|f| f.camera == 0));
    let report = publisher.stop().await;
    assert_eq!(report["delete"], 204, "{report}");
    assert_eq!(report["frames_sent"][1], 0, "camera 1 sent nothing: {report}");
}
