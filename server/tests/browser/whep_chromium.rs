//! A foreign WHEP player: headless Chromium (a plain page, tests/browser/whep-test.html, with no
//! railcast code) offers an audio and two video receive-only transceivers and a `command` data
//! channel, POSTs the offer, and plays both cameras of a train (a simulator with `--audio tone`)
//! in `<video>` elements and its cab audio in an `<audio>` element (`command` says welcome and
//! answers a ping): `requestVideoFrameCallback` counts at least 30 painted frames each and shows
//! the test picture (not black), `getStats()` shows frames decoded per video track with H.264,
//! packetization mode 1, and an audio `inbound-rtp` with Opus, packets received and at least a
//! second of samples received, the chime's energy in it, and `remote-outbound-rtp` for every
//! track (the server's RTCP sender reports). Prints setup, first-frame and audio figures.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_every_camera_over_whep() {
    let _serial = testkit::serial().await;
    let browser_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser"));
    assert!(
        browser_dir.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and `npm ci` in tests/browser: run scripts/setup.sh"
    );
    let dir = scratch("whep_chromium");
    let server = Server::start(&dir, &[]).await;
    let _sim =
        Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2", "--audio", "tone"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let port = server.http.rsplit(':').next().expect("port");
    let url = format!(
        "http://localhost:{port}/whep-test.html?rc={rc}&cameras=2&frames=30&audio=1&samples=48000&command=1&token={}",
        server.token("admin")
    );
    let shot = dir.join("whep-chromium.png"); // taken after the session ended: black
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("run-page.mjs"))
        .arg(&url)
        .arg(&shot)
        .arg("60000")
        .arg(browser_dir.join("whep-test.html"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("node");
    assert!(out.status.success(), "browser run failed: {}", String::from_utf8_lossy(&out.stdout));
    let result: Value = serde_json::from_slice(&out.stdout).expect("result JSON");
    println!("Chromium over WHEP: {result}");
    assert!(result["error"].is_null(), "page error: {}", result["error"]);
    let painted = result["painted"].as_array().expect("painted");
    assert_eq!(painted.len(), 2, "{result}");
    for (i, n) in painted.iter().enumerate() {
        assert!(n.as_u64().unwrap_or(0) >= 30, "camera {i}: {n} frames painted");
    }
    for (i, lit) in result["lit"].as_array().expect("lit").iter().enumerate() {
        assert!(lit.as_f64().unwrap_or(0.0) > 0.5, "camera {i}: the video shows black ({lit} of its pixels lit)");
    }
    let decoded = result["decoded"].as_array().expect("decoded");
    assert_eq!(decoded.len(), 2, "{result}");
    assert!(decoded.iter().all(|n| n.as_u64().unwrap_or(0) >= 30), "{result}");
    for codec in result["codecs"].as_array().expect("codecs") {
        let codec = codec.as_str().unwrap_or_default();
        assert!(codec.starts_with("video/H264") && codec.contains("packetization-mode=1"), "{codec}");
    }
    // The cab audio: Opus on the audio m-line, decoded (samples received), not silence.
    let audio = &result["audio"];
    let codec = audio["codec"].as_str().unwrap_or_default();
    assert!(codec.starts_with("audio/opus/48000/2"), "audio codec: {audio}");
    assert!(audio["packetsReceived"].as_u64().unwrap_or(0) >= 50, "audio packets: {audio}");
    assert!(audio["totalSamplesReceived"].as_u64().unwrap_or(0) >= 48_000, "audio samples: {audio}");
    assert!(audio["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.0, "the chime is not silence: {audio}");
    // The server's sender reports reach the browser for every track (a player's lip sync and
    // `remote-outbound-rtp` come from them).
    let reports = result["senderReports"].as_array().map(Vec::as_slice).unwrap_or_default();
    for kind in ["video", "video", "audio"] {
        let n = reports.iter().filter(|r| r["kind"] == kind && r["reportsSent"].as_u64().unwrap_or(0) >= 1).count();
        let want = if kind == "video" { 2 } else { 1 };
        assert!(n >= want, "{kind}: sender reports for {n} tracks, not {want}: {reports:?}");
    }
    let events: Vec<&str> = result["events"].as_array().expect("events").iter().filter_map(Value::as_str).collect();
    assert_eq!(events.first(), Some(&"welcome whep"), "the command channel in the same connection: {events:?}");
    assert!(events.contains(&"pong"), "{events:?}");
}
