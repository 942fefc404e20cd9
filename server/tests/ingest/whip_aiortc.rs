//! A foreign WebRTC stack, aiortc 1.16 (`tests/foreign/aiortc_whip.py`, the test venv's Python),
//! publishes a train over WHIP: two H.264 cameras (320×240 and 384×288, 30 fps, libx264 through
//! PyAV) and Opus, with the `command` data channel. It is a train like a QUIC one:
//!
//! - `GET /api/trains` lists it online, `"ingest": "whip"`, with both cameras at the sizes their
//!   SPS say;
//! - a WebSocket viewer receives both cameras at the rate aiortc sends (frames whose keyframes
//!   start SPS, PPS and whose first slice is the IDR), the audio, and the telemetry aiortc sends on the channel;
//! - the viewer's `horn` reaches aiortc on the channel and its ack comes back; `request_keyframe`
//!   is answered by the server (a PLI) and a keyframe follows;
//! - DELETE takes the train offline (the viewer is told why) and a second DELETE is 404.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{api, foreign_script, python, remote_control, scratch, wait_for_train, Server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TRAIN: &str = "train-7";
const AUDIO_ID: u16 = 256;

async fn command(client: &Client, id: &str, command: Value) -> Value {
    client.send_text(json!({"type": "command", "request_id": id, "command": command}).to_string()).await;
    client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await
}

/// aiortc_whip.py publishing one train, driven through its stdin.
pub(crate) struct Aiortc {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Aiortc {
    /// Start it and wait until it publishes (its offer answered, its `command` channel open).
    pub(crate) async fn start(server: &Server, train: &str, token: &str, args: &[&str]) -> Aiortc {
        let mut child = tokio::process::Command::new(python())
            .arg(foreign_script("aiortc_whip.py"))
            .args(["--http", &server.http, "--train", train, "--token", token, "--timeout", "60"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run the venv's python");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("aiortc_whip.py publishes within 30 s")
            .expect("read stdout")
            .unwrap_or_default();
        assert!(first.contains("\"publishing\""), "aiortc_whip.py did not start publishing: {first}");
        Aiortc { child, stdin, lines }
    }

    /// SIGKILL it: the publisher vanishes without a word.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Tell it to stop (it DELETEs its session) and return its report; `ok` is not checked.
    pub(crate) async fn stop(mut self) -> Value {
        self.stdin.write_all(b"stop\n").await.expect("tell aiortc_whip.py to stop");
        let mut last = String::new();
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(30), self.lines.next_line()).await.expect("report in 30 s")
        {
            last = line;
        }
        let _ = self.child.wait().await;
        serde_json::from_str(&last).unwrap_or_else(|_| panic!("no JSON report: {last}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_a_train_over_whip() {
    let dir = scratch("whip_aiortc");
    let server = Server::start(&dir, &[]).await;
    let token = server.train_token(TRAIN);
    let posted = Instant::now();
    let publisher = Aiortc::start(&server, TRAIN, &token, &["--cameras", "2", "--audio"]).await;
    wait_for_train(&server, TRAIN, true).await;
    let online_ms = posted.elapsed().as_millis();

    let (status, train) = api("GET", &server.url(&format!("/api/trains/{TRAIN}")), None).await;
    assert_eq!(status, 200, "{train}");
    assert_eq!(train["ingest"], "whip", "{train}");
    let sizes: Vec<(u64, u64)> = train["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .map(|c| (c["width"].as_u64().unwrap_or(0), c["height"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(sizes, [(320, 240), (384, 288)], "{train}");

    let rc = remote_control(&server, Some(TRAIN)).await;
    let joined = Instant::now();
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(1).await;
    let first_frame_ms = joined.elapsed().as_millis();
    let online = client.wait_event("mapped_train_changed", |e| e["type"] == "mapped_train_changed").await;
    assert_eq!(online["audio"][0]["id"], AUDIO_ID, "{online}");
    client.wait_event("telemetry from aiortc", |e| e["type"] == "telemetry").await;

    let ack = command(&client, "horn", json!({"type": "horn", "duration_ms": 200})).await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    assert_eq!(ack["message"], "done by aiortc", "{ack}");

    // Three seconds of video, then a keyframe asked for.
    let window = Instant::now();
    let before = client.frames().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let frames = client.frames();
    let secs = window.elapsed().as_secs_f64();
    let rate = |camera: u16| frames[before..].iter().filter(|f| f.camera == camera).count() as f64 / secs;
    let (fps0, fps1, audio_rate) = (rate(0), rate(1), rate(AUDIO_ID));
    let keyframes_before = frames.iter().filter(|f| f.keyframe && f.camera == 0).count();
    let ack = command(&client, "kf", json!({"type": "request_keyframe", "camera": 0})).await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.frames().iter().filter(|f| f.keyframe && f.camera == 0).count() == keyframes_before {
        assert!(Instant::now() < deadline, "no keyframe on camera 0 within 5 s of request_keyframe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ack = command(&client, "kf9", json!({"type": "request_keyframe", "camera": 9})).await;
    assert_eq!(ack["ok"], false, "{ack}");

    let report = publisher.stop().await;
    let offline = client.wait_event("train_offline", |e| e["type"] == "train_offline").await;
    assert!(offline["reason"].as_str().unwrap_or_default().contains("DELETE"), "{offline}");
    assert!(report["ok"] == true, "aiortc_whip.py failed: {report}");
    assert_eq!((report["delete"].as_u64(), report["delete_again"].as_u64()), (Some(204), Some(404)), "{report}");
    let acked: Vec<&str> =
        report["commands"].as_array().expect("commands").iter().filter_map(|c| c["command"]["type"].as_str()).collect();
    assert_eq!(acked, ["horn"], "request_keyframe is the server's: only the horn reached aiortc");

    let (_, train) = api("GET", &server.url(&format!("/api/trains/{TRAIN}")), None).await;
    assert_eq!(train["online"], false, "{train}");
    assert_eq!(report["options"]["status"], 204, "{report}");
    assert_eq!(report["options"]["accept_post"], "application/sdp", "{report}");
    let (_, _, metrics) = testkit::request("GET", &server.url("/metrics"), &[], b"").await;
    for line in
        ["railcast_whip_publications_total{outcome=\"answered\"} 1", "railcast_whip_frames_total{outcome=\"relayed\"}"]
    {
        assert!(metrics.contains(line), "/metrics has {line}");
    }
    let frames = client.frames();
    let video: Vec<_> = frames.iter().filter(|f| f.camera != AUDIO_ID).collect();
    for camera in [0u16, 1] {
        let of: Vec<_> = video.iter().filter(|f| f.camera == camera).collect();
        assert!(of.first().is_some_and(|f| f.keyframe), "camera {camera} starts with a keyframe");
        for f in of.iter().filter(|f| f.keyframe) {
            // SPS, PPS, then (after an SEI, as x264 writes one in its first IDR) the IDR slice.
            let t = &f.nal_types;
            let idr = t.iter().position(|&n| n == 5);
            let first_slice = t.iter().position(|&n| (1..=5).contains(&n));
            assert!(
                t.starts_with(&[7, 8]) && idr.is_some() && idr == first_slice,
                "keyframe {} of camera {camera}: NAL types {t:?}",
                f.seq
            );
        }
        assert!(of.iter().all(|f| !f.nal_types.is_empty()), "every frame has NAL units");
    }
    let sent: Vec<u64> = report["frames_sent"].as_array().expect("sent").iter().filter_map(Value::as_u64).collect();
    let received_in: Vec<u64> =
        train["cameras"].as_array().expect("cameras").iter().filter_map(|c| c["frames"].as_u64()).collect();
    for (i, (s, r)) in sent.iter().zip(&received_in).enumerate() {
        // Frames still in the encoder or on the wire at the DELETE are the only ones missing.
        assert!(*r + 5 >= *s && r <= s, "camera {i}: aiortc sent {s} frames, the hub took {r}");
    }
    assert!(fps0 >= 25.0 && fps1 >= 25.0, "viewer rates {fps0:.1} and {fps1:.1} fps, aiortc sends 30");
    assert!(audio_rate >= 40.0, "audio {audio_rate:.1} packets/s, aiortc sends 50");
    let mut latency: Vec<u64> = video.iter().map(|f| f.latency_us).collect();
    latency.sort_unstable();
    println!(
        "WHIP aiortc: POST {} ms, channel open {} ms (aiortc's clock); online {online_ms} ms after spawn; \
         first frame {first_frame_ms} ms after the viewer joined; viewer {fps0:.1}/{fps1:.1} fps (sent {:?} fps), \
         audio {audio_rate:.1}/s; sent {sent:?} frames, hub took {received_in:?}; relay latency p50 {} µs p99 {} µs",
        report["post"]["ms"],
        report["channel_open_ms"],
        report["fps_sent"],
        testkit::pct(&latency, 0.5),
        testkit::pct(&latency, 0.99),
    );
}
