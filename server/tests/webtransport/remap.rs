//! A mapping change takes effect live over WebTransport: after `mapped_train_changed`, the
//! client's video is the new train's (exact frames, starting at a keyframe) without reconnecting;
//! after an unmap no video arrives.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::ws::verify;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remap_switches_the_video_live() {
    let dir = scratch("wt_remap");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "2"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-2", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = testkit::wt::connect(&server, &rc).await;
    client.wait_frames(10).await;
    let before = client.frames().len();

    let switched = Instant::now();
    let (status, v) =
        api("PUT", &server.url(&format!("/api/remote-controls/{rc}/train")), Some(json!({"train_id": "train-2"})))
            .await;
    assert_eq!(status, 200, "{v}");
    client
        .wait_event("mapped_train_changed to train-2", |e| {
            e["type"] == "mapped_train_changed" && e["train_id"] == "train-2"
        })
        .await;
    client.wait_frames(before + 1).await;
    let first_frame = switched.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let frames = client.frames();
    verify(&frames, &sim.manifest());
    assert!(frames[..before].iter().all(|f| f.train.as_deref() == Some("train-1")));
    let after = &frames[before..];
    assert!(after.len() >= 20, "only {} frames of train-2 after the switch", after.len());
    assert!(after.iter().all(|f| f.train.as_deref() == Some("train-2")));
    assert!(after[0].keyframe, "the first frame after a switch is a keyframe");
    let welcomes = client.events().iter().filter(|e| e["type"] == "welcome").count();
    assert_eq!(welcomes, 1, "the client must not have reconnected");
    println!("wt remap: first frame of the new train {} ms after the PUT", first_frame.as_millis());

    let (status, v) = api("DELETE", &server.url(&format!("/api/remote-controls/{rc}/train")), None).await;
    assert_eq!(status, 200, "{v}");
    client.wait_event("unmapped", |e| e["type"] == "mapped_train_changed" && e["train_id"].is_null()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let packets = client.log.lock().expect("lock").packets;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.log.lock().expect("lock").packets, packets, "video kept flowing after unmap");
}
