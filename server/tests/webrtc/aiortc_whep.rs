//! A foreign WHEP player, aiortc 1.16 (`tests/foreign/aiortc_whep.py`, the test venv's Python):
//! it offers two receive-only video transceivers and no data channel, as a plain player does, and
//! decodes both H.264 tracks with FFmpeg (PyAV): 30 frames each at the simulator's picture size,
//! pictures that change. `OPTIONS` announces `application/sdp`; the `201` has a `Location` and
//! an `ETag`; `DELETE` ends the session (`204`), and a second one finds nothing (`404`).

use std::time::Duration;

use serde_json::Value;
use testkit::{foreign_script, python, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_plays_every_camera_over_whep() {
    let _serial = testkit::serial().await;
    let dir = scratch("aiortc_whep");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let run = tokio::process::Command::new(python())
        .arg(foreign_script("aiortc_whep.py"))
        .args(["--http", &server.http, "--token", server.token("operator"), "--remote-control", &rc])
        .args(["--cameras", "2", "--frames", "30", "--timeout", "30"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("aiortc_whep.py ends within 60 s (it gives up after 30)")
        .expect("run the venv's python");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report on the last line.\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    println!("aiortc WHEP: {r}");
    assert!(out.status.success() && r["ok"] == true, "aiortc_whep.py failed: {r}\nstderr:\n{stderr}");
    assert!(r["options"]["accept_post"].as_str().is_some_and(|a| a.contains("application/sdp")), "{r}");
    assert_eq!(r["post"]["status"], 201, "{r}");
    assert!(r["post"]["location"].as_str().is_some_and(|l| l.starts_with("/api/whep/")), "{r}");
    assert!(r["post"]["etag"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    assert_eq!(r["answer_video_mlines"], 2, "{r}");
    let (width, height) = small_video_size();
    let tracks = r["tracks"].as_array().expect("tracks");
    assert_eq!(tracks.len(), 2, "{r}");
    for t in tracks {
        assert!(t["frames"].as_u64().unwrap_or(0) >= 30, "{t}");
        assert_eq!((t["width"].as_u64(), t["height"].as_u64()), (Some(width), Some(height)), "{t}");
        assert!(t["distinct"].as_u64().unwrap_or(0) >= 10, "the picture moves: {t}");
    }
    assert_eq!(r["delete"], 204, "{r}");
    assert_eq!(r["delete_again"], 404, "{r}");
}

/// The picture size `SMALL_VIDEO` asks the simulator for.
fn small_video_size() -> (u64, u64) {
    let arg = |name: &str| {
        let i = SMALL_VIDEO.iter().position(|a| *a == name).unwrap_or_else(|| panic!("SMALL_VIDEO sets {name}"));
        SMALL_VIDEO[i + 1].parse::<u64>().expect("a number")
    };
    (arg("--width"), arg("--height"))
}
