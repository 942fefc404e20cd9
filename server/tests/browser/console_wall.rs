//! The console's video wall in Chromium: four trains at 320×180 (16:9), one wall cell each with
//! its own remote control and WebSocket link (`RAILCAST_WALL_TRANSPORT=auto`: WebRTC).
//! `web-client/e2e/wall.mjs` checks from the page that every cell paints non-black pixels, that the
//! camera's displayed box is 16:9 within 2 %, that the trend plots gain points over 3 s, that an
//! enlarged cell takes control, and that leaving the wall ends its sessions and deletes its remote
//! controls; then, back in the single view, a train over WebRTC and a switch to WebSocket: the
//! Connection panel keeps no channel or ICE state of the closed WebRTC link. Checked again here from
//! outside with raw requests: no remote control of the wall is left, and nobody holds the train's
//! control.

use std::time::{Duration, Instant};

use testkit::console::{artifacts, web_root, Console};
use testkit::{api, scratch, Server, Sim};

/// Four small 16:9 trains, light enough for four decoders on two cores.
const WALL_VIDEO: &[&str] =
    &["--trains", "4", "--width", "320", "--height", "180", "--fps", "15", "--gop", "15", "--bitrate", "200k"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_of_four_trains_paints_them_all_and_plots_update() {
    let _serial = testkit::serial().await;
    let started = Instant::now();
    let dir = scratch("console_wall");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let _sim = Sim::start(&dir, &server, WALL_VIDEO);
    for n in 1..=4 {
        testkit::wait_for_train(&server, &format!("train-{n}"), true).await;
    }
    let port = server.http.rsplit(':').next().expect("port");
    // WebSocket by default: the lightest for four cells on two cores (`auto` puts them on WebRTC).
    let transport = std::env::var("RAILCAST_WALL_TRANSPORT").unwrap_or_else(|_| "websocket".to_owned());
    let console = Console::spawn_script(
        "wall.mjs",
        &[],
        &format!("http://localhost:{port}"),
        &artifacts("console_wall"),
        server.token("admin"),
        &[("WALL_CELLS", "4"), ("WALL_TRANSPORT", &transport), ("WALL_SWITCH", "1")],
    );
    let r = console.finish(Duration::from_secs(60)).await;
    println!(
        "wall: 4 cells painted {} ms after opening (first paint per cell, ms from its session start: {}) · \
         transports {} · boxes {} · pixels {} · glass-to-glass p50 {} ms · fps {} · trend points {} · \
         control taken in {} ms ({}) · goodbye: remote controls deleted {} ms, sessions {} closed {} ms after \
         leaving · driver {} ms",
        r["all_painted_ms"],
        r["first_paint_ms"],
        r["cell_transports"],
        r["boxes"],
        r["pixels"],
        r["latency_p50_ms"],
        r["fps"],
        r["trend_points"],
        r["take_control_ms"],
        r["server_control"],
        r["goodbye_ms"],
        r["wall_sessions"],
        r["sessions_closed_ms"],
        r["duration_ms"],
    );
    assert_eq!(r["wall_remote_controls"], 4, "one remote control per cell: {r}");
    assert_eq!(r["wall_sessions"].as_array().map(Vec::len), Some(4), "one session per cell: {r}");
    for b in r["boxes"].as_array().expect("boxes") {
        let ratio = b["ratio"].as_f64().expect("ratio");
        assert!((ratio / (16.0 / 9.0) - 1.0).abs() <= 0.02, "a 16:9 camera keeps its aspect: {b}");
    }
    for n in 1..=4 {
        let cell = &r["first_paint_ms"][format!("train-{n}")];
        assert!(cell.is_u64(), "train-{n} painted: {r}");
    }

    // Raw, from outside the browser: the wall said goodbye.
    let (s, rcs) = api("GET", &server.url("/api/remote-controls"), None).await;
    assert_eq!(s, 200, "{rcs}");
    let left: Vec<_> = rcs
        .as_array()
        .expect("list")
        .iter()
        .filter(|rc| rc["name"].as_str().is_some_and(|n| n.starts_with("wall ")))
        .collect();
    assert!(left.is_empty(), "the wall's remote controls are deleted: {rcs}");
    let (s, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(s, 200, "{train}");
    assert!(train["control"].is_null(), "the wall released control: {train}");
    // Back in the single view, WebRTC then WebSocket: the panel shows the current link only.
    let sw = &r["switch"];
    println!(
        "single view: {} over WebRTC in {} ms ({}), then WebSocket: WebRTC details {} · panel \"{}\"",
        sw["train"], sw["webrtc_ms"], sw["webrtc_open"], sw["webrtc_after"], sw["webrtc_panel"]
    );
    assert_eq!(sw["webrtc_open"]["restSignaling"], "connected (stable)", "{sw}");
    assert_eq!(sw["webrtc_after"]["state"], "closed", "{sw}");
    for stale in ["videoChannel", "commandChannel", "iceConnectionState", "connectionState"] {
        assert!(sw["webrtc_after"].get(stale).is_none(), "the closed WebRTC link still shows {stale}: {sw}");
    }
    assert_eq!(sw["websocket"]["state"], "open", "{sw}");
    println!("console_wall: {} ms in all", started.elapsed().as_millis());
}
