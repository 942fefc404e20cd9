//! A train killed mid-stream goes offline for its clients; restarted, it comes back online and
//! video flows again to the same, still-connected clients.

use std::time::Instant;

use testkit::ws::{verify, Client};
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_train_goes_offline_and_returns() {
    let dir = scratch("train_restart");
    let server = Server::start(&dir, &["--quic-idle-timeout", "1500ms", "--quic-keep-alive", "300ms"]).await;
    let mut first = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(10).await;

    let killed = Instant::now();
    first.kill().await; // SIGKILL: no goodbye, the server notices by the idle timeout
    let ev = client.wait_event("train_offline", |e| e["type"] == "train_offline").await;
    println!("offline seen {} ms after SIGKILL: {}", killed.elapsed().as_millis(), ev["reason"]);
    let (_, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(train["online"], false, "{train}");
    assert!(train["offline_reason"].is_string(), "{train}");
    verify(&client.frames(), &first.manifest());
    let before = client.frames().len();

    let second = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    client.wait_event("train_online", |e| e["type"] == "train_online" && e["train_id"] == "train-1").await;
    client.wait_frames(before + 10).await;
    let frames = client.frames();
    verify(&frames[before..], &second.manifest());
    assert!(frames[before].keyframe);
    let (_, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(train["online"], true);
    assert_eq!(train["connections"], 2);
}
