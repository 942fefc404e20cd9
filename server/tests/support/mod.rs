//! Test harness: the real `railcast-server` and `railcast-train-sim` binaries as processes on
//! loopback, a plain HTTP client, and WebSocket clients that reassemble and verify frames.
#![allow(dead_code)]

pub mod console;
pub mod webrtc;
pub mod ws;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A workspace binary next to the test executable (`target/<profile>/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the workspace first (cargo build --workspace --bins)", path.display());
    path
}

/// Per-test scratch directory under the target dir (logs, manifests).
pub fn scratch(test: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("test-scratch")
        .join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as u64
}

/// A running `railcast-server`.
pub struct Server {
    pub child: Child,
    pub http: String,
    pub quic: String,
    pub fingerprint: String,
    pub log: PathBuf,
}

impl Server {
    pub async fn start(dir: &Path, args: &[&str]) -> Server {
        let log = dir.join(format!("server-{}.log", rand_suffix()));
        let mut cmd = Command::new(bin("railcast-server"));
        for (flag, default) in [("--http-addr", "127.0.0.1:0"), ("--quic-addr", "127.0.0.1:0")] {
            if !args.contains(&flag) {
                cmd.args([flag, default]);
            }
        }
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", std::env::var("RAILCAST_TEST_LOG").unwrap_or_else(|_| "info,railcast_server=debug".into()))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut http, mut quic, mut fp) = (None, None, None);
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(a) = line.strip_prefix("listening http ") {
                    http = Some(a.to_owned());
                } else if let Some(a) = line.strip_prefix("listening quic ") {
                    quic = Some(a.to_owned());
                } else if let Some(f) = line.strip_prefix("quic certificate sha256 ") {
                    fp = Some(f.to_owned());
                }
                if http.is_some() && quic.is_some() && fp.is_some() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read).await.expect("server did not print its addresses");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, http: http.expect("http"), quic: quic.expect("quic"), fingerprint: fp.expect("fp"), log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn ws_url(&self, rc: &str) -> String {
        format!("ws://{}/ws?remote_control_id={rc}", self.http)
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("pid");
        std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill");
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running `railcast-train-sim`.
pub struct Sim {
    pub child: Child,
    pub manifest: PathBuf,
}

/// Small, cheap video for tests: 320×240, 15 fps, keyframe every 15 frames.
pub const SMALL_VIDEO: &[&str] =
    &["--width", "320", "--height", "240", "--fps", "15", "--gop", "15", "--bitrate", "300k"];

impl Sim {
    pub fn start(dir: &Path, server: &Server, args: &[&str]) -> Sim {
        let n = rand_suffix();
        let manifest = dir.join(format!("manifest-{n}.jsonl"));
        let log = dir.join(format!("sim-{n}.log"));
        let child = Command::new(bin("railcast-train-sim"))
            .args(["--server", &server.url("")])
            .arg("--manifest")
            .arg(&manifest)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sim");
        Sim { child, manifest }
    }

    pub fn manifest(&self) -> Manifest {
        Manifest::read(&self.manifest)
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// One manifest line.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Entry {
    pub train: String,
    pub camera: u16,
    pub seq: u32,
    pub capture_us: u64,
    pub size: usize,
    pub keyframe: bool,
    pub sha256: String,
}

/// What the simulator says it sent.
#[derive(Debug, Default)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    index: HashMap<(String, u16, u32), usize>,
}

impl Manifest {
    pub fn read(path: &Path) -> Manifest {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut m = Manifest::default();
        for line in text.lines() {
            // The simulator may be writing the last line right now.
            let Ok(e) = serde_json::from_str::<Entry>(line) else { continue };
            m.index.insert((e.train.clone(), e.camera, e.seq), m.entries.len());
            m.entries.push(e);
        }
        m
    }
    pub fn get(&self, train: &str, camera: u16, seq: u32) -> Option<&Entry> {
        self.index.get(&(train.to_owned(), camera, seq)).map(|&i| &self.entries[i])
    }
    pub fn of_train(&self, train: &str) -> impl Iterator<Item = &Entry> {
        let t = train.to_owned();
        self.entries.iter().filter(move |e| e.train == t)
    }
}

/// Plain HTTP/1.1 JSON calls.
pub async fn api(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    let payload = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            bytes::Bytes::from(v.to_string())
        }
        None => bytes::Bytes::new(),
    };
    let resp = client.request(req.body(Full::new(payload)).expect("request")).await.expect("http call");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, v)
}

/// Raw request (for bodies that are not JSON).
pub async fn raw(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = client
        .request(req.body(Full::new(bytes::Bytes::copy_from_slice(body))).expect("request"))
        .await
        .expect("http call");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Create a remote control mapped to `train` (waits until the train is known).
pub async fn remote_control(server: &Server, train: Option<&str>) -> String {
    let (status, rc) = api("POST", &server.url("/api/remote-controls"), Some(serde_json::json!({}))).await;
    assert_eq!(status, 201, "{rc}");
    let id = rc["id"].as_str().expect("id").to_owned();
    if let Some(train) = train {
        wait_for_train(server, train, true).await;
        let (status, v) = api(
            "PUT",
            &server.url(&format!("/api/remote-controls/{id}/train")),
            Some(serde_json::json!({"train_id": train})),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    id
}

/// Wait until `train` is online (or offline), per the API.
pub async fn wait_for_train(server: &Server, train: &str, online: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = api("GET", &server.url(&format!("/api/trains/{train}")), None).await;
        if status == 200 && v["online"] == online {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "train {train} not online={online} in time: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Percentile of a sorted slice.
pub fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A hand-driven QUIC train connection (pinned like the simulator's), for protocol-level tests.
pub async fn raw_train(server: &Server) -> (quinn::Endpoint, quinn::Connection) {
    let target = railcast_train_sim::connect::discover(&server.url("")).await.expect("discover");
    let endpoint = railcast_train_sim::connect::endpoint(target.addr).expect("endpoint");
    let cfg = railcast_train_sim::connect::client_config(target.sha256, Duration::from_secs(5)).expect("config");
    let conn = endpoint.connect_with(cfg, target.addr, "localhost").expect("connect").await.expect("handshake");
    (endpoint, conn)
}

/// Read one control frame; `None` at the end of the stream.
pub async fn read_control(recv: &mut quinn::RecvStream) -> Option<railcast_protocol::ControlMessage> {
    let mut d = railcast_protocol::ControlDecoder::new(65_536);
    loop {
        if let Some(m) = d.next_frame().expect("valid frame") {
            return Some(m);
        }
        let mut buf = [0u8; 4096];
        match recv.read(&mut buf).await {
            Ok(Some(n)) => d.push(&buf[..n]),
            _ => return None,
        }
    }
}

/// A hello for one 320×240 camera.
pub fn hello(train_id: &str) -> railcast_protocol::ControlMessage {
    use railcast_protocol::control::{CameraInfo, Hello};
    railcast_protocol::ControlMessage::Hello(Hello {
        train_id: railcast_protocol::TrainId::new(train_id).expect("id"),
        cameras: vec![CameraInfo {
            id: railcast_protocol::CameraId(0),
            codec: "h264".into(),
            width: 320,
            height: 240,
            fps: 15,
        }],
        software: None,
    })
}

/// Wait until the server lists no WebRTC session (closed ones are removed).
pub async fn wait_no_webrtc_sessions(server: &Server) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = api("GET", &server.url("/api/webrtc/sessions"), None).await;
        if list.as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "WebRTC sessions left: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
