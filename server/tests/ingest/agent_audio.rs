//! The train agent's audio: ffmpeg encodes a live tone to Ogg Opus into a named pipe the agent
//! reads as audio source 256, beside a camera on standard input. The hello announces the source
//! (opus, 48 kHz, mono, 20 ms); a WebSocket viewer gets 50 packets a second, every one byte for
//! byte an Opus packet of ffmpeg's stream (its own Ogg demuxer's `framehash`), in order, with
//! capture times 20 ms apart.

use std::time::Duration;

use serde_json::json;
use testkit::agent::{ffmpeg_live, ffmpeg_opus_live, ffmpeg_unit_hashes_of, server_table, Agent};
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};

const MIC: u16 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ogg_opus_from_a_pipe_arrives_packet_for_packet() {
    let dir = scratch("agent_audio");
    let server = Server::start(&dir, &[]).await;
    let fifo = dir.join("mic.ogg");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let config = format!(
        "train_id = \"train-1\"\n{}\n[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n\
         [[audio]]\nid = {MIC}\nname = \"cab\"\nsource = \"pipe\"\npath = \"{}\"\n",
        server_table(&server, "train-1"),
        fifo.display()
    );
    let (_video, stdout) = ffmpeg_live("160x120", 10, 30, &dir.join("video.h264"));
    let agent = Agent::start(&dir, "audio", &config, stdout);
    let copy = dir.join("mic-copy.ogg");
    let mut opus = ffmpeg_opus_live(5, &fifo, &copy);
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    let mapped = client.wait_event("mapped", |e| e["type"] == "mapped_train_changed").await;
    assert_eq!(
        mapped["audio"],
        json!([{"id": MIC, "codec": "opus", "sample_rate": 48000, "channels": 1, "frame_ms": 20}]),
        "{mapped}"
    );
    let status =
        tokio::time::timeout(Duration::from_secs(15), opus.wait()).await.expect("ffmpeg ends").expect("ffmpeg");
    assert!(status.success(), "ffmpeg: {status}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let audio: Vec<_> = client.frames().into_iter().filter(|f| f.camera == MIC).collect();
    let reference = ffmpeg_unit_hashes_of("ogg", &copy);
    assert!(reference.len() >= 245, "ffmpeg wrote {} Opus packets in 5 s", reference.len());
    assert!(audio.len() >= reference.len() * 3 / 4, "{} of {} packets arrived", audio.len(), reference.len());
    // The stream's very last packet (at end of stream) is left out: ffmpeg's Ogg demuxer hands it
    // out trimmed to the end granule, so its bytes differ from what the encoder wrote.
    let mut at = 0;
    for (k, f) in audio[..audio.len() - 1].iter().enumerate() {
        let i = reference[at..].iter().position(|h| *h == f.sha256).unwrap_or_else(|| {
            panic!("packet {k} (seq {}) is none of ffmpeg's after {at}: {}", f.seq, agent.log_text())
        });
        at += i + 1;
    }
    let steps: Vec<u64> = audio.windows(2).map(|w| w[1].capture_us - w[0].capture_us).collect();
    let exact = steps.iter().filter(|&&d| d == 20_000).count();
    let span = (audio[audio.len() - 1].capture_us - audio[0].capture_us) as f64 / 1e6;
    let rate = (audio.len() - 1) as f64 / span;
    let mut lat: Vec<u64> = audio.iter().map(|f| f.latency_us).collect();
    lat.sort_unstable();
    println!(
        "agent audio: {} of {} ffmpeg Opus packets received byte for byte, {rate:.1} packets/s, {exact} of {} steps \
         exactly 20 ms; relay latency p50 {} µs",
        audio.len(),
        reference.len(),
        steps.len(),
        testkit::pct(&lat, 0.5)
    );
    assert!((rate - 50.0).abs() < 3.0, "{rate:.1} packets/s");
    assert!(exact * 10 >= steps.len() * 9, "{exact} of {} capture steps are 20 ms", steps.len());
}
