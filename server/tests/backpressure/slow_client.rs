//! A WebSocket client that never reads does not delay the others, and its drops are counted.

use std::time::Duration;

use testkit::ws::{verify, Client};
use testkit::{api, pct, remote_control, scratch, Server, Sim, BUSY_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_loses_frames_others_do_not() {
    let _serial = testkit::serial().await;
    let dir = scratch("slow_client");
    // A small queue and socket buffer make the stalled client fall behind within seconds.
    let server = Server::start(&dir, &["--subscriber-queue", "32", "--ws-send-buffer", "8192"]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], BUSY_VIDEO].concat());
    let stalled_rc = remote_control(&server, Some("train-1")).await;
    let stalled = testkit::ws::stalled(&server.ws_url(&stalled_rc), &server.http).await;

    let mut healthy = Vec::new();
    for _ in 0..2 {
        let rc = remote_control(&server, Some("train-1")).await;
        healthy.push((rc.clone(), Client::connect(&server.ws_url(&rc)).await));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;

    let (_, view) = api("GET", &server.url(&format!("/api/remote-controls/{stalled_rc}")), None).await;
    let s = &view["sessions"][0];
    let dropped = s["frames_dropped"].as_u64().expect("frames_dropped");
    println!(
        "stalled client: {} packets sent, {} packets and {dropped} frames dropped",
        s["packets_sent"], s["packets_dropped"]
    );
    assert!(dropped > 0, "the stalled client's drops must be counted: {view}");

    let received: Vec<_> = healthy.iter().map(|(_, client)| client.frames()).collect();
    let manifest = sim.manifest();
    for ((rc, _), frames) in healthy.iter().zip(received) {
        verify(&frames, &manifest);
        let first = frames.first().expect("frames").seq;
        let last_sent = manifest.of_train("train-1").map(|e| e.seq).max().unwrap_or(0);
        let expected = (last_sent - first + 1) as usize;
        let mut lat: Vec<u64> = frames.iter().map(|f| f.latency_us).collect();
        lat.sort_unstable();
        println!(
            "healthy client {rc}: {} of {expected} frames, latency p50 {} µs p99 {} µs max {} µs",
            frames.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(0)
        );
        assert!(frames.len() + 3 >= expected, "healthy client lost frames: {} of {expected}", frames.len());
        let (_, v) = api("GET", &server.url(&format!("/api/remote-controls/{rc}")), None).await;
        assert_eq!(v["sessions"][0]["frames_dropped"], 0, "{v}");
        // Loose bound: a stalled peer must not hold the others back by anything like its backlog.
        assert!(pct(&lat, 0.99) < 500_000, "healthy client delayed: p99 {} µs", pct(&lat, 0.99));
    }
    drop(stalled);
}
