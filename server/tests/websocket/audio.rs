//! Audio end to end (docs/wire-format.md §2.7): the real simulator with `--audio tone` and the real
//! server. A WebSocket remote control learns of the cab microphone from `mapped_train_changed`,
//! then gets its Opus packets at 50 a second, each exactly the packet the train sent (SHA-256 as
//! in the manifest), in order and 20 ms apart in capture time, with the video as before. A train
//! of a simulator without `--audio` announces no audio and sends none: its events are what they
//! were before audio existed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::ws::{verify, Client};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// The simulator's microphone id.
const MIC: u16 = 256;

fn audio_count(client: &Client) -> usize {
    client.frames().iter().filter(|f| f.camera == MIC).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_packets_arrive_at_50_per_second_exactly_as_sent() {
    let dir = scratch("ws_audio");
    let server = Server::start(&dir, &[]).await;
    let with_audio = Sim::start(&dir, &server, &[&["--trains", "1", "--audio", "tone"], SMALL_VIDEO].concat());
    let without = Sim::start(&dir, &server, &[&["--trains", "1", "--first", "2"], SMALL_VIDEO].concat());

    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    let rc2 = remote_control(&server, Some("train-2")).await;
    let silent = Client::connect(&server.ws_url(&rc2)).await;

    let mapped = client.wait_event("mapped_train_changed", |e| e["type"] == "mapped_train_changed").await;
    assert_eq!(
        mapped["audio"],
        json!([{"id": MIC, "codec": "opus", "sample_rate": 48000, "channels": 1, "frame_ms": 20}]),
        "{mapped}"
    );
    assert_eq!(mapped["cameras"].as_array().map(Vec::len), Some(1), "{mapped}");

    // Measure the rate once audio flows.
    let deadline = Instant::now() + Duration::from_secs(20);
    while audio_count(&client) == 0 {
        assert!(Instant::now() < deadline, "no audio packet arrived; events {:?}", client.events());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (t0, n0) = (Instant::now(), audio_count(&client));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (elapsed, n1) = (t0.elapsed().as_secs_f64(), audio_count(&client));
    let rate = (n1 - n0) as f64 / elapsed;

    let frames = client.frames();
    let manifest = with_audio.manifest();
    let checked = verify(&frames, &manifest);
    let audio: Vec<_> = frames.iter().filter(|f| f.camera == MIC).collect();
    let video = frames.iter().filter(|f| f.camera == 0).count();
    let first = audio.first().expect("audio").seq;
    let last = audio.last().expect("audio").seq;
    let missing = (last - first + 1) as usize - audio.len();
    let mut spacing = Vec::new();
    for w in audio.windows(2) {
        if w[1].seq == w[0].seq + 1 {
            assert!(w[1].capture_us > w[0].capture_us, "capture times go back: {:?} then {:?}", w[0], w[1]);
            spacing.push(w[1].capture_us - w[0].capture_us);
        }
    }
    let exact = spacing.iter().filter(|&&d| d == 20_000).count();
    let mut latency: Vec<u64> = audio.iter().map(|f| f.latency_us).collect();
    latency.sort_unstable();
    println!(
        "audio: {rate:.1} packets/s over {elapsed:.1} s; {} audio packets and {video} video frames verified \
         against the manifest ({checked} in all), {missing} audio packets missing between seq {first} and {last}; \
         {exact} of {} consecutive pairs exactly 20 ms apart; latency p50 {} µs p99 {} µs",
        audio.len(),
        spacing.len(),
        testkit::pct(&latency, 0.5),
        testkit::pct(&latency, 0.99),
    );
    assert!((45.0..=55.0).contains(&rate), "{rate:.1} audio packets/s, expected ≈ 50");
    assert!(audio.iter().all(|f| f.keyframe), "every audio packet is a keyframe");
    assert!(missing <= 2, "{missing} audio packets lost on loopback");
    assert!(video > 30, "video goes on beside audio: {video} frames");
    // Capture times: one run of packets on the video's clock, 20 ms apart (a re-anchored run after
    // a late wake-up is allowed, rarely).
    assert!(exact * 10 >= spacing.len() * 9, "{exact} of {} pairs 20 ms apart", spacing.len());

    // The manifest lists the microphone's packets as Opus, the camera's frames as H.264.
    let text = std::fs::read_to_string(&with_audio.manifest).expect("manifest");
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.iter().any(|l| l["camera"] == MIC));
    for l in &lines {
        let codec = if l["camera"] == MIC { "opus" } else { "h264" };
        assert_eq!(l["codec"], codec, "{l}");
    }

    // The train without audio: no `audio` in its events, no Opus packet.
    let mapped = silent.wait_event("mapped_train_changed", |e| e["type"] == "mapped_train_changed").await;
    assert!(mapped.get("audio").is_none(), "no audio field without audio: {mapped}");
    silent.wait_frames(5).await;
    assert!(silent.frames().iter().all(|f| f.camera == 0), "only camera 0");
    let text = std::fs::read_to_string(&without.manifest).expect("manifest");
    assert!(!text.contains("opus"), "the simulator without --audio sent audio");
}
