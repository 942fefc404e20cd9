//! A WHIP publisher killed (SIGKILL: no DELETE, no DTLS close): the server notices the peer is
//! gone (ICE `disconnected` for 5 s, then 2 s of grace) and takes the train offline within 10 s,
//! not after webrtc-rs' 30 s to `failed`; the viewer is told why.

use std::time::{Duration, Instant};

use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};

use crate::whip_aiortc::Aiortc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_publisher_takes_the_train_offline() {
    let dir = scratch("whip_publisher_vanishes");
    let server = Server::start(&dir, &[]).await;
    let token = server.train_token("train-8");
    let publisher = Aiortc::start(&server, "train-8", &token, &["--cameras", "1"]).await;
    let rc = remote_control(&server, Some("train-8")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(5).await;
    let killed = Instant::now();
    publisher.kill().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let offline = loop {
        if let Some(e) = client.events().into_iter().find(|e| e["type"] == "train_offline") {
            break e;
        }
        assert!(Instant::now() < deadline, "the train is still online 60 s after its publisher died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = killed.elapsed();
    println!("train_offline {} ms after SIGKILL: {offline}", took.as_millis());
    // webrtc-rs says `disconnected` after 5 s without ICE traffic; the session waits 2 s more.
    assert!(took < Duration::from_secs(10), "offline only after {took:?}");
    assert!(offline["reason"].as_str().unwrap_or_default().contains("disconnected"), "{offline}");
}
