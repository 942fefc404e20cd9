//! The console's playback view (issue 26) in Chromium, against the real recorder and playback
//! API: the server records `train-1` (10 fps, a keyframe every second) in 2 s segments.
//! `web-client/e2e/playback.mjs` sends a horn from the single view, clicks its "▶ replay" (the
//! view opens at most 5 s before the command), checks the timeline's bars, then plays a 4 s window
//! from 1 s into the recording, which crosses a segment boundary, counting the frames Chromium
//! presents (`requestVideoFrameCallback`): the video plays to its end, its duration is the window
//! within a frame, the frames are fps × duration within 3; then a seek, the next window, the cab
//! audio (audio-256) alongside, and the admin's recording toggle off and on.
//! Checked again here from outside: the window holds a segment boundary (the files on disk), and
//! the replay's playhead lies within 5 s before the horn's moment in the audit log.

use std::time::{Duration, Instant};

use testkit::console::{artifacts, web_root, Console};
use testkit::record::recordings;
use testkit::{api, scratch, Server, Sim};

const FPS: u32 = 10;
/// 10 fps with a keyframe every second, the cab chime as audio-256.
const VIDEO: &[&str] =
    &["--trains", "1", "--width", "320", "--height", "240", "--fps", "10", "--gop", "10", "--audio", "tone"];

/// `20261202T064500.123Z` (a segment's file name) → `2026-12-02T06:45:00.123Z`, as the driver prints times.
fn rfc3339(name: &str) -> String {
    let s = name.trim_end_matches(".mp4");
    format!("{}-{}-{}T{}:{}:{}", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playback_view_plays_a_window_across_segments_and_replays_a_command() {
    let _serial = testkit::serial().await;
    let started = Instant::now();
    let dir = scratch("console_playback");
    let rec = dir.join("rec");
    let root = web_root();
    let args = ["--web-root", &root, "--record-dir", rec.to_str().expect("utf8"), "--record-segment-duration", "2s"];
    let server = Server::start(&dir, &args).await;
    let _sim = Sim::start(&dir, &server, VIDEO);
    testkit::wait_for_train(&server, "train-1", true).await;
    let port = server.http.rsplit(':').next().expect("port");
    let fps = FPS.to_string();
    let console = Console::spawn_script(
        "playback.mjs",
        &[],
        &format!("http://localhost:{port}"),
        &artifacts("console_playback"),
        server.token("admin"),
        &[("PLAYBACK_TRAIN", "train-1"), ("PLAYBACK_FPS", &fps), ("PLAYBACK_SECONDS", "4"), ("PLAYBACK_OFFSET_S", "1")],
    );
    let r = console.finish(Duration::from_secs(45)).await;
    let (play, seek, replay, window) = (&r["play"], &r["seek"], &r["replay"], &r["window"]);
    println!(
        "playback: window {} → {} ({} s requested, {} s into the recording) · video.duration {} s ({} ms off) · \
         {} frames presented of {} expected ({} callbacks, media time {} → {} s) · played in {} ms",
        window["start"],
        window["end"],
        window["requested_s"],
        window["offset_s"],
        play["duration_s"],
        play["duration_error_ms"],
        play["frames_presented"],
        play["frames_expected"],
        play["callbacks"],
        play["first_media_time"],
        play["last_media_time"],
        play["wall_ms"],
    );
    println!(
        "seek: to {} s → currentTime {} s, playhead {} ({} ms off), {} frames presented after it (of {}) · next window {}",
        seek["to_s"],
        seek["current_time_s"],
        seek["playhead"],
        seek["playhead_error_ms"],
        seek["frames_after"],
        seek["frames_expected"],
        r["next_window"],
    );
    println!(
        "replay: horn at {} → playhead {} ({} ms before; window {}, opened in {} ms) · timeline {} · sources {}",
        r["command_at"],
        replay["playhead"],
        replay["lead_ms"],
        replay["window"],
        replay["ms"],
        r["timeline"],
        r["api_sources"],
    );

    println!(
        "audio alongside: {} · recording toggle: {} · \"Recordings\" from the single view: {}",
        r["audio"], r["toggle"], r["recordings_button"]
    );
    assert_eq!(r["recordings_button"]["train"], "train-1", "{r}");

    let requested = window["requested_s"].as_f64().expect("requested");
    assert!((requested - 4.0).abs() < 0.01, "a 4 s window: {window}");
    let duration = play["duration_s"].as_f64().expect("duration");
    assert!((duration - requested).abs() <= 1.0 / f64::from(FPS) + 0.002, "duration within a frame: {play}");
    let frames = play["frames_presented"].as_i64().expect("frames");
    assert!((frames - (requested * f64::from(FPS)).round() as i64).abs() <= 3, "fps × duration frames: {play}");
    assert_eq!(play["ended"], true, "{play}");
    assert!(seek["frames_after"].as_i64().is_some_and(|n| n > 0), "frames after the seek: {seek}");
    assert!(r["timeline"]["rows"].as_array().is_some_and(|rows| rows.iter().any(|s| s == "audio-256")), "{r}");
    assert_eq!(r["audio"]["source"], "audio-256", "the cab audio plays alongside: {r}");

    // The window crosses a segment boundary: a segment of camera-0 starts inside it.
    let (start, end) = (window["start"].as_str().expect("start"), window["end"].as_str().expect("end"));
    let starts: Vec<String> = recordings(&rec.join("train-1").join("camera-0"))
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(rfc3339))
        .collect();
    assert!(
        starts.iter().any(|s| s.as_str() > start && s.as_str() < end),
        "a segment starts within {start}..{end}: {starts:?}"
    );

    // The replay's playhead: within 5 s before the horn as the audit log has it.
    let (s, audit) = api("GET", &server.url("/api/audit?train=train-1&limit=100"), None).await;
    assert_eq!(s, 200, "{audit}");
    let horn = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["command"]["type"] == "horn")
        .unwrap_or_else(|| panic!("the horn is audited: {audit}"));
    let horn_ms = horn["at_us"].as_f64().expect("at_us") / 1000.0;
    let playhead = replay["playhead_ms"].as_f64().expect("playhead");
    println!("replay vs audit: horn audited {:.0} ms after the playhead", horn_ms - playhead);
    assert!(
        (0.0..=5000.0).contains(&(horn_ms - playhead)),
        "the replay opens within 5 s before the horn: {replay}, {horn}"
    );
    println!("console_playback: {} ms in all", started.elapsed().as_millis());
}
