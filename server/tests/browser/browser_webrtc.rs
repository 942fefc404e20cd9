//! Real browser: a plain test page (tests/browser/webrtc-test.html, at the server's origin) drives the REST signaling flow in headless
//! Chromium (Debian's, through playwright-core), receives frames on `video` whose SHA-256 match
//! the simulator's manifest, gets a command ack on `command`, then opens and closes 100
//! connections. Prints the setup time distribution; saves a screenshot.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use testkit::{pct, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_receives_verified_frames_over_data_channels() {
    let _serial = testkit::serial().await;
    let browser_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser"));
    assert!(
        browser_dir.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and `npm ci` in tests/browser: run scripts/setup.sh"
    );
    let dir = scratch("browser_webrtc");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let port = server.http.rsplit(':').next().expect("port");
    // `localhost`, not 127.0.0.1 or about:blank: a secure context, as real deployments have.
    let url =
        format!("http://localhost:{port}/webrtc-test.html?rc={rc}&frames=30&count=100&token={}", server.token("admin"));
    let shot = dir.join("browser-webrtc.png");
    // The page is the test's, not the server's: the browser gets it at the server's origin.
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("run-page.mjs"))
        .arg(&url)
        .arg(&shot)
        .arg("120000")
        .arg(browser_dir.join("webrtc-test.html"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("node");
    assert!(out.status.success(), "browser run failed: {}", String::from_utf8_lossy(&out.stdout));
    let result: Value = serde_json::from_slice(&out.stdout).expect("result JSON");
    assert!(result["error"].is_null(), "page error: {}", result["error"]);

    let manifest = sim.manifest();
    let frames = result["frames"].as_array().expect("frames");
    assert!(frames.len() >= 30);
    for f in frames {
        let (camera, seq) = (f["camera"].as_u64().expect("camera") as u16, f["seq"].as_u64().expect("seq") as u32);
        let e = manifest.get("train-1", camera, seq).unwrap_or_else(|| panic!("frame {camera}/{seq} not in manifest"));
        assert_eq!(f["sha256"], e.sha256.as_str(), "frame {camera}/{seq} differs from what the train sent");
    }
    assert_eq!(result["ack"]["type"], "command_ack", "{}", result["ack"]);
    let mut setups: Vec<u64> = result["setups"]
        .as_array()
        .expect("setups")
        .iter()
        .map(|v| (v.as_f64().expect("ms") * 1000.0) as u64)
        .collect();
    assert_eq!(setups.len(), 100, "every connection opened");
    setups.sort_unstable();
    println!(
        "Chromium: {} frames verified; command ack in {:.1} ms; 100/100 connections opened, setup (offer request → both channels open) p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms max {:.1} ms",
        frames.len(),
        result["ack"]["rtt_ms"].as_f64().unwrap_or(f64::NAN),
        pct(&setups, 0.5) as f64 / 1000.0,
        pct(&setups, 0.95) as f64 / 1000.0,
        pct(&setups, 0.99) as f64 / 1000.0,
        *setups.last().expect("n") as f64 / 1000.0,
    );
    println!("Chromium's view, median ms after the offer request: {}", result["phase_p50"]);
    println!("screenshot: {}", shot.display());
}
