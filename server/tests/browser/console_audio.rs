//! The console's cab audio in Chromium (docs/wire-format.md §2.7): a simulator with `--audio
//! tone`, the real server serving the built console, and `web-client/e2e/console-audio.mjs` on
//! WebSocket, WebRTC and WebTransport in turn. On each, WebCodecs `AudioDecoder` decodes the Opus
//! packets while the console is muted (its default), and after a real click on the mute button the
//! `AudioContext` runs and the decoded frames are scheduled. Prints the figures per transport.

use std::time::Duration;

use testkit::console::{artifacts, web_client, web_root};
use tokio::io::AsyncBufReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_decodes_and_plays_cab_audio_on_every_packet_transport() {
    let _serial = testkit::serial().await;
    let dir = testkit::scratch("console_audio");
    let root = web_root();
    let server = testkit::Server::start(&dir, &["--web-root", &root]).await;
    let _sim =
        testkit::Sim::start(&dir, &server, &[&["--trains", "1", "--audio", "tone"], testkit::SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let port = server.http.rsplit(':').next().expect("port");
    let mut child = tokio::process::Command::new("node")
        .arg(web_client().join("e2e/console-audio.mjs"))
        .env("BASE_URL", format!("http://localhost:{port}"))
        .env("RAILCAST_TOKEN", server.token("admin"))
        .env("TRAIN", "train-1")
        .env("ARTIFACTS_DIR", artifacts("console_audio"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let read = async {
        let mut last = None;
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.trim_start().starts_with('{') {
                last = Some(line);
            }
        }
        last
    };
    let line = tokio::time::timeout(Duration::from_secs(150), read).await.expect("the audio script in time");
    let status = child.wait().await.expect("wait node");
    let r: serde_json::Value = serde_json::from_str(&line.expect("a result line")).expect("JSON");
    assert!(status.success() && r["ok"] == true, "console audio failed: {}", r["error"]);
    for transport in ["websocket", "webrtc", "webtransport"] {
        let t = &r["transports"][transport];
        println!("console audio over {transport}: {t}");
        assert_eq!(t["transport"], transport, "{t}");
        assert_eq!(t["sources"], serde_json::json!([256]), "the microphone was announced: {t}");
        assert!(t["muted_before_click"] == true, "muted by default: {t}");
        assert!(t["decoded"].as_u64().unwrap_or(0) > 25, "AudioDecoder output: {t}");
        assert_eq!(t["decode_errors"], 0, "{t}");
        let rate = t["packets_per_s"].as_f64().unwrap_or(0.0);
        assert!((40.0..=60.0).contains(&rate), "≈ 50 packets/s: {t}");
        let decoded = t["decoded_per_s"].as_f64().unwrap_or(0.0);
        assert!((40.0..=60.0).contains(&decoded), "≈ 50 decoded frames/s: {t}");
        assert_eq!(t["context_state"], "running", "{t}");
        assert!(t["scheduled"].as_u64().unwrap_or(0) > 50, "frames played after the click: {t}");
    }
}
