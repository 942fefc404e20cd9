//! Test harness: the real `railcast-server` and `railcast-train-sim` binaries as processes on
//! loopback, a plain HTTP client, and WebSocket clients that reassemble and verify frames.
//!
//! Credentials: unless a test passes `--auth-file`, the server generates demo credentials and
//! writes them to the scratch directory; [`Server`] keeps the tokens, [`Sim`] is given the file,
//! and [`api`] and [`Server::ws_url`] act as the admin (use [`api_as`] and
//! [`Server::ws_url_as`] for other roles or none).
#![allow(dead_code)]

pub mod console;
pub mod link;
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
    /// Generated client tokens by role ("admin", "operator", "viewer"); empty with `--auth-file`.
    pub tokens: HashMap<String, String>,
    /// The generated credentials file (train tokens), for the simulator.
    pub credentials: Option<PathBuf>,
}

/// Admin token of each server started by this test binary, by HTTP address, for [`api`].
static ADMIN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn admin_token_for(url: &str) -> Option<String> {
    let list = ADMIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    list.iter().rev().find(|(addr, _)| url.contains(&format!("//{addr}/"))).map(|(_, t)| t.clone())
}

impl Server {
    pub async fn start(dir: &Path, args: &[&str]) -> Server {
        let n = rand_suffix();
        let log = dir.join(format!("server-{n}.log"));
        let mut cmd = Command::new(bin("railcast-server"));
        for (flag, default) in [("--http-addr", "127.0.0.1:0"), ("--quic-addr", "127.0.0.1:0")] {
            if !args.contains(&flag) {
                cmd.args([flag, default]);
            }
        }
        let generated = !args.contains(&"--auth-file");
        let credentials = dir.join(format!("credentials-{n}.toml"));
        if generated && !args.contains(&"--credentials-out") {
            cmd.arg("--credentials-out").arg(&credentials);
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
        let mut tokens = HashMap::new();
        let mut trains_line = false;
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(a) = line.strip_prefix("listening http ") {
                    http = Some(a.to_owned());
                } else if let Some(a) = line.strip_prefix("listening quic ") {
                    quic = Some(a.to_owned());
                } else if let Some(f) = line.strip_prefix("quic certificate sha256 ") {
                    fp = Some(f.to_owned());
                } else if let Some(t) = line.strip_prefix("token ") {
                    let f: Vec<&str> = t.split(' ').collect();
                    tokens.insert(f[0].to_owned(), f[2].to_owned());
                } else if line.starts_with("train token") {
                    trains_line = true;
                }
                if http.is_some() && quic.is_some() && fp.is_some() && (!generated || trains_line) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read).await.expect("server did not print its addresses");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = http.expect("http");
        if let Some(admin) = tokens.get("admin") {
            ADMIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((http.clone(), admin.clone()));
        }
        let credentials = (generated && credentials.exists()).then_some(credentials);
        Server { child, http, quic: quic.expect("quic"), fingerprint: fp.expect("fp"), log, tokens, credentials }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The generated token of `role`.
    pub fn token(&self, role: &str) -> &str {
        self.tokens.get(role).map(String::as_str).unwrap_or_else(|| panic!("no generated {role} token"))
    }

    /// `/ws` for a remote control, as the admin.
    pub fn ws_url(&self, rc: &str) -> String {
        self.ws_url_as(rc, self.tokens.get("admin").map(String::as_str))
    }

    /// `/ws` for a remote control with `token` (none: no credentials at all).
    pub fn ws_url_as(&self, rc: &str, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("ws://{}/ws?remote_control_id={rc}&access_token={t}", self.http),
            None => format!("ws://{}/ws?remote_control_id={rc}", self.http),
        }
    }

    /// The generated token of a train, from the credentials file.
    pub fn train_token(&self, train: &str) -> String {
        let path = self.credentials.as_ref().expect("generated credentials");
        let file: railcast_server::auth::CredentialsFile =
            toml::from_str(&std::fs::read_to_string(path).expect("read credentials")).expect("credentials");
        file.trains.get(train).unwrap_or_else(|| panic!("no token for {train}")).clone()
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

/// Heavier video, to fill a stalled client's buffers quickly: 640×480, 30 fps, ≈ 2 Mbit/s.
pub const BUSY_VIDEO: &[&str] = &["--width", "640", "--height", "480", "--fps", "30", "--gop", "10", "--bitrate", "2M"];

/// Every frame a keyframe at 640×480, 15 fps: ≈ 1 Mbit/s, to saturate a slow link.
pub const KEYFRAME_VIDEO: &[&str] =
    &["--width", "640", "--height", "480", "--fps", "15", "--gop", "1", "--bitrate", "4M"];

impl Sim {
    pub fn start(dir: &Path, server: &Server, args: &[&str]) -> Sim {
        let n = rand_suffix();
        let manifest = dir.join(format!("manifest-{n}.jsonl"));
        let log = dir.join(format!("sim-{n}.log"));
        let mut cmd = Command::new(bin("railcast-train-sim"));
        if let Some(c) = &server.credentials {
            cmd.arg("--credentials").arg(c);
        }
        let child = cmd
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

/// Plain HTTP/1.1 JSON calls, as the admin of the server at `url`.
pub async fn api(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    api_as(admin_token_for(url).as_deref(), method, url, body).await
}

/// Plain HTTP/1.1 JSON calls with `token` as the bearer (none: no `Authorization`).
pub async fn api_as(token: Option<&str>, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
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
    if let Some(t) = admin_token_for(url) {
        req = req.header("authorization", format!("Bearer {t}"));
    }
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

/// Map `rc` to `train` as the admin (the train need not be online).
pub async fn set_train(server: &Server, rc: &str, train: &str) {
    let url = server.url(&format!("/api/remote-controls/{rc}/train"));
    let (status, v) = api("PUT", &url, Some(serde_json::json!({"train_id": train}))).await;
    assert_eq!(status, 200, "{v}");
}

/// Create a remote control mapped to `train` (waits until the train is known).
pub async fn remote_control(server: &Server, train: Option<&str>) -> String {
    let (status, rc) = api("POST", &server.url("/api/remote-controls"), Some(serde_json::json!({}))).await;
    assert_eq!(status, 201, "{rc}");
    let id = rc["id"].as_str().expect("id").to_owned();
    if let Some(train) = train {
        wait_for_train(server, train, true).await;
        set_train(server, &id, train).await;
    }
    id
}

/// Wait until `train` is online (or offline), per the API.
pub async fn wait_for_train(server: &Server, train: &str, online: bool) {
    wait_for_train_as(server, admin_token_for(&server.url("/")).as_deref(), train, online).await;
}

/// [`wait_for_train`] asking with `token` (a server started with `--auth-file` has no generated
/// admin token).
pub async fn wait_for_train_as(server: &Server, token: Option<&str>, train: &str, online: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = api_as(token, "GET", &server.url(&format!("/api/trains/{train}")), None).await;
        if status == 200 && v["online"] == online {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "train {train} not online={online} in time: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Write a credentials file for `--auth-file` (re-read by the server on SIGHUP).
pub fn write_credentials(path: &Path, file: &railcast_server::auth::CredentialsFile) {
    std::fs::write(path, toml::to_string(file).expect("toml")).expect("write credentials");
}

/// The token of client `name` in a credentials file.
pub fn client_token(file: &railcast_server::auth::CredentialsFile, name: &str) -> String {
    file.clients
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.token.clone())
        .unwrap_or_else(|| panic!("no token for {name}"))
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

/// A hello for one 320×240 camera, with the train's token.
pub fn hello(server: &Server, train_id: &str) -> railcast_protocol::ControlMessage {
    hello_with(train_id, Some(server.train_token(train_id)))
}

/// A hello for one 320×240 camera with `token` (none: no token).
pub fn hello_with(train_id: &str, token: Option<String>) -> railcast_protocol::ControlMessage {
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
        token: token.map(railcast_protocol::Secret),
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

/// A hand-driven train: says hello with its token, sends frames you give it as datagrams, and
/// records (and acks, after `ack_delay`) every command it receives.
pub struct RawTrain {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub commands: std::sync::Arc<std::sync::Mutex<Vec<railcast_protocol::control::Command>>>,
}

impl RawTrain {
    pub async fn connect(server: &Server, id: &str, ack_delay: Duration) -> RawTrain {
        let (endpoint, conn) = raw_train(server).await;
        Self::hello(server, id, ack_delay, endpoint, conn).await
    }

    /// Connect through `via` (a relay in front of the server's QUIC port).
    pub async fn connect_via(server: &Server, id: &str, via: std::net::SocketAddr) -> RawTrain {
        let target = railcast_train_sim::connect::discover(&server.url("")).await.expect("discover");
        let endpoint = railcast_train_sim::connect::endpoint(via).expect("endpoint");
        let cfg = railcast_train_sim::connect::client_config(target.sha256, Duration::from_secs(5)).expect("config");
        let conn = endpoint.connect_with(cfg, via, "localhost").expect("connect").await.expect("handshake");
        Self::hello(server, id, Duration::ZERO, endpoint, conn).await
    }

    async fn hello(
        server: &Server,
        id: &str,
        ack_delay: Duration,
        endpoint: quinn::Endpoint,
        conn: quinn::Connection,
    ) -> RawTrain {
        let (mut send, mut recv) = conn.open_bi().await.expect("bi");
        send.write_all(&hello(server, id).to_bytes()).await.expect("hello");
        match read_control(&mut recv).await {
            Some(railcast_protocol::ControlMessage::Welcome(_)) => {}
            other => panic!("{id}: expected a welcome, got {other:?}"),
        }
        let commands = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&commands);
        tokio::spawn(async move {
            let mut d = railcast_protocol::ControlDecoder::new(65_536);
            let mut buf = [0u8; 4096];
            loop {
                while let Ok(Some(m)) = d.next_frame() {
                    if let railcast_protocol::ControlMessage::Command(c) = m {
                        seen.lock().expect("lock").push(c.clone());
                        tokio::time::sleep(ack_delay).await;
                        let ack = railcast_protocol::ControlMessage::CommandAck(railcast_protocol::CommandAck {
                            command_id: c.command_id,
                            ok: true,
                            message: "done".into(),
                        });
                        if send.write_all(&ack.to_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
                match recv.read(&mut buf).await {
                    Ok(Some(n)) => d.push(&buf[..n]),
                    _ => return,
                }
            }
        });
        RawTrain { endpoint, conn, commands }
    }

    /// Send one frame of `payload` on camera 0 (all chunks, or only the first `only` of them).
    pub fn send_frame(&self, seq: u32, keyframe: bool, capture_us: u64, payload: &[u8], only: Option<usize>) -> usize {
        use railcast_protocol::packet::{packetize, Codec, FrameMeta};
        let meta = FrameMeta {
            keyframe,
            codec: Codec::H264AnnexB,
            camera: railcast_protocol::CameraId(0),
            seq: railcast_protocol::FrameSeq(seq),
            capture_us,
        };
        let packets = packetize(meta, payload, 1150).expect("packetize");
        let n = only.unwrap_or(packets.len()).min(packets.len());
        for p in packets.into_iter().take(n) {
            self.conn.send_datagram(p).expect("datagram");
        }
        n
    }
}

/// SHA-256 of a frame, hex, as [`ws::Received::sha256`] has it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
