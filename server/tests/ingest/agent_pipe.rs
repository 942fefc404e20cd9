//! The train agent fed by ffmpeg through a pipe: `ffmpeg -re -f lavfi -i testsrc … -f h264 -`
//! into the agent's standard input (camera 0), the same bytes into `source.h264`. A WebSocket client
//! watching the train receives access units that are, byte for byte and in order, the ones
//! ffmpeg's own H.264 parser finds in the same stream (`framehash`, SHA-256); they decode without
//! an error; their rate is the source's. Prints the relay latency (capture = the agent's clock when
//! a unit's first byte arrived; it includes the one frame a pipe's unit waits for the next).

use std::time::{Duration, Instant};

use railcast_protocol::h264::AccessUnitSplitter;
use testkit::agent::{ffmpeg_decode, ffmpeg_live, ffmpeg_unit_hashes, server_table, Agent};
use testkit::ws::Client;
use testkit::{pct, remote_control, scratch, Server};

const FPS: u32 = 25;
const SECONDS: u32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_access_units_arrive_byte_for_byte() {
    let dir = scratch("agent_pipe");
    let server = Server::start(&dir, &[]).await;
    let source = dir.join("source.h264");
    let config = format!(
        "train_id = \"train-1\"\n{}\n[[camera]]\nid = 0\nname = \"ffmpeg\"\nsource = \"pipe\"\npath = \"-\"\nfps = {FPS}\n",
        server_table(&server, "train-1")
    );
    let (_ffmpeg, stdout) = ffmpeg_live("320x240", FPS, SECONDS, &source);
    let agent = Agent::start(&dir, "pipe", &config, stdout);
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    agent.wait_log("standard input ended", Duration::from_secs(SECONDS as u64 + 15)).await;
    // Until the last unit the agent sent has arrived (or 3 s: datagrams may be lost).
    let deadline = Instant::now() + Duration::from_secs(3);
    let last_sent = agent.manifest().entries.last().map(|e| e.sha256.clone());
    while client.frames().last().map(|f| f.sha256.clone()) != last_sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let frames = client.frames();
    let reference = ffmpeg_unit_hashes(&source);
    assert_eq!(reference.len(), (FPS * SECONDS) as usize, "ffmpeg wrote {SECONDS} s at {FPS} fps");
    // The frames received are a run of ffmpeg's units, in order, byte for byte.
    let first = reference.iter().position(|h| *h == frames[0].sha256).unwrap_or_else(|| {
        panic!("the first unit received ({}) is none of ffmpeg's: {}", frames[0].sha256, agent.log_text())
    });
    // The agent connects within a second and starts at the next keyframe (every {FPS} units).
    assert!(first <= 2 * FPS as usize, "the first unit received is ffmpeg's unit {first}");
    // Each received unit is ffmpeg's next (QUIC datagrams may lose one now and then: a gap
    // shows as a skipped unit, and the relay then waits for a keyframe, so allow two).
    let mut at = first;
    for (k, f) in frames.iter().enumerate() {
        let found = reference[at..].iter().position(|h| *h == f.sha256).map(|i| at + i);
        let Some(i) = found else { panic!("unit {k} (seq {}) is none of ffmpeg's units after {at}", f.seq) };
        at = i + 1;
    }
    let missing = at - first - frames.len();
    assert!(missing <= 2, "{missing} of ffmpeg's units from {first} to {at} did not arrive");
    assert!(reference.len() - at <= 2, "the last {} units did not arrive", reference.len() - at);
    assert!(frames[0].keyframe, "the first unit a viewer gets is a keyframe");
    // What the agent recorded it sent is what arrived.
    testkit::ws::verify(&frames, &agent.manifest());

    // The received units decode: the source from the first unit received on (the units proven
    // identical above), fed to ffmpeg, decodes to as many pictures, without an error.
    let mut splitter = AccessUnitSplitter::new(1 << 24);
    let mut units = splitter.push(&std::fs::read(&source).expect("source"));
    units.extend(splitter.finish());
    assert_eq!(units.len(), reference.len(), "the agent's splitter and ffmpeg's parser agree on the units");
    let (decoded, errors) = ffmpeg_decode(&units[first..].concat());
    assert_eq!(decoded, units.len() - first, "ffmpeg decoded every unit from the first received: {errors}");
    assert!(errors.is_empty(), "ffmpeg: {errors}");

    let span_us = frames.last().expect("frames").capture_us - frames[0].capture_us;
    let rate = (frames.len() - 1) as f64 / (span_us as f64 / 1e6);
    let mut lat: Vec<u64> = frames.iter().map(|f| f.latency_us).collect();
    lat.sort_unstable();
    println!(
        "agent pipe: {} of {} ffmpeg units received byte for byte from unit {first} ({missing} missing), {rate:.1} \
         units/s (source {FPS}); \
         relay latency p50 {} µs p99 {} µs (one frame interval is {} µs)",
        frames.len(),
        reference.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        1_000_000 / FPS
    );
    assert!((rate - f64::from(FPS)).abs() < 2.0, "{rate:.1} units/s from a {FPS} fps source");
}
