//! Capture timestamps that jump (a train clock set back an hour, forward an hour, to zero, to the
//! far future) are relayed unchanged: every frame arrives whole and in order, the latency
//! histogram takes them without harm, and the server stays healthy.

use std::time::Duration;

use testkit::ws::Client;
use testkit::{api, remote_control, scratch, sha256_hex, RawTrain, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jumping_train_clocks_harm_nothing() {
    let dir = scratch("clock_jumps");
    let server = Server::start(&dir, &[]).await;
    let train = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_event("mapped", |e| e["type"] == "mapped_train_changed").await;

    let hour = 3_600_000_000u64;
    let now = testkit::now_us();
    let stamps = [now, now - hour, now + hour, 0, 1, u64::MAX / 2, u64::MAX, now];
    let mut sums = Vec::new();
    for (i, &t) in stamps.iter().enumerate() {
        let frame = vec![i as u8 + 1; 2500];
        train.send_frame(i as u32 + 1, true, t, &frame, None);
        sums.push(sha256_hex(&frame));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    client.wait_frames(stamps.len()).await;
    let frames = client.frames();
    let got: Vec<(u64, String)> = frames.iter().map(|f| (f.capture_us, f.sha256.clone())).collect();
    let want: Vec<(u64, String)> = stamps.iter().copied().zip(sums).collect();
    assert_eq!(got, want, "every frame, in order, with its timestamp untouched");

    let (s, text) = api("GET", &server.url("/metrics"), None).await;
    assert_eq!(s, 200);
    let text = text.as_str().expect("metrics");
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("railcast_relay_latency_seconds_count{transport=\"websocket\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("latency count");
    assert!(count >= stamps.len() as u64, "{count}");
    let (s, t) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!((s, t["online"].as_bool()), (200, Some(true)));
}
