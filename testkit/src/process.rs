//! The workspace's binaries as processes on loopback: `railcast-server` ([`Server`]) and
//! `railcast-train-sim` ([`Sim`], with the [`Manifest`] of what it sent), found beside the running
//! executable, with their logs in a scratch directory under the target directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A workspace binary beside the running executable: beside a test (`target/<profile>/deps/`)
/// that is the parent directory, beside a tool (`target/<profile>/`) the directory itself.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let found = [Some(dir), dir.parent()].into_iter().flatten().map(|d| d.join(name)).find(|p| p.is_file());
    found
}

/// [`find_bin`], or fail the test saying how to build it.
pub fn bin(name: &str) -> PathBuf {
    find_bin(name).unwrap_or_else(|| {
        panic!(
            "{name} is missing beside the test executable: build the workspace first (cargo build --workspace --bins)"
        )
    })
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

/// What `railcast-server` prints on stdout as it starts: its addresses, the QUIC certificate's
/// fingerprint and, when it generated credentials, a line per client token and then the line
/// about the train tokens, last.
#[derive(Debug, Default)]
pub struct Banner {
    /// The HTTP listener's address (`listening http ADDR` or, with `--http-tls-cert`,
    /// `listening https ADDR`).
    pub http: Option<String>,
    /// The listener speaks HTTPS.
    pub https: bool,
    pub quic: Option<String>,
    /// The WebTransport endpoint (absent when disabled).
    pub webtransport: Option<String>,
    /// The UDP address every WebRTC session shares (absent with a port range).
    pub webrtc_udp: Option<String>,
    /// `/metrics` on its own address (`--metrics-addr`).
    pub metrics: Option<String>,
    pub fingerprint: Option<String>,
    /// Generated client tokens by role ("admin", "operator", "viewer").
    pub tokens: HashMap<String, String>,
    /// The train tokens' line was read: with generated credentials, the banner is complete.
    pub trains: bool,
}

impl Banner {
    /// Take in one line of the server's stdout.
    pub fn read(&mut self, line: &str) {
        if let Some(a) = line.strip_prefix("listening http ") {
            self.http = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening https ") {
            self.http = Some(a.to_owned());
            self.https = true;
        } else if let Some(a) = line.strip_prefix("listening quic ") {
            self.quic = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening webtransport ") {
            self.webtransport = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening webrtc-udp ") {
            self.webrtc_udp = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening metrics ") {
            self.metrics = Some(a.to_owned());
        } else if let Some(f) = line.strip_prefix("quic certificate sha256 ") {
            self.fingerprint = Some(f.to_owned());
        } else if let Some(t) = line.strip_prefix("token ") {
            let f: Vec<&str> = t.split(' ').collect();
            if let (Some(role), Some(token)) = (f.first(), f.get(2)) {
                self.tokens.insert((*role).to_owned(), (*token).to_owned());
            }
        } else if line.starts_with("train token") {
            self.trains = true;
        }
    }
}

/// A running `railcast-server`.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    /// The HTTP listener's address, `IP:PORT`.
    pub http: String,
    /// The HTTP listener speaks HTTPS (`--http-tls-cert`): [`Server::url`] and
    /// [`Server::ws_url`] give `https://` and `wss://` URLs.
    pub https: bool,
    pub quic: String,
    /// The WebTransport endpoint's UDP address, when enabled.
    pub webtransport: Option<String>,
    /// The UDP address every WebRTC session shares (`None` with `--webrtc-udp-ports`).
    pub webrtc_udp: Option<String>,
    /// `/metrics` on its own address (`--metrics-addr`), `IP:PORT`.
    pub metrics: Option<String>,
    pub fingerprint: String,
    pub log: PathBuf,
    /// Generated client tokens by role ("admin", "operator", "viewer"); empty with `--auth-file`.
    pub tokens: HashMap<String, String>,
    /// The generated credentials file (train tokens), for the simulator.
    pub credentials: Option<PathBuf>,
}

impl Server {
    pub async fn start(dir: &Path, args: &[&str]) -> Server {
        let n = rand_suffix();
        let log = dir.join(format!("server-{n}.log"));
        let mut cmd = Command::new(bin("railcast-server"));
        for (flag, default) in
            [("--http-addr", "127.0.0.1:0"), ("--quic-addr", "127.0.0.1:0"), ("--webtransport-addr", "127.0.0.1:0")]
        {
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
        let mut banner = Banner::default();
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                banner.read(&line);
                if banner.http.is_some()
                    && banner.quic.is_some()
                    && banner.fingerprint.is_some()
                    && (!generated || banner.trains)
                {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read).await.expect("server did not print its addresses");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let Banner { http, https, quic, webtransport, webrtc_udp, metrics, fingerprint, tokens, .. } = banner;
        let http = http.expect("http");
        if let Some(admin) = tokens.get("admin") {
            crate::api::remember_admin(&http, admin);
        }
        let credentials = (generated && credentials.exists()).then_some(credentials);
        Server {
            child,
            http,
            https,
            quic: quic.expect("quic"),
            webtransport,
            webrtc_udp,
            metrics,
            fingerprint: fingerprint.expect("fp"),
            log,
            tokens,
            credentials,
        }
    }

    /// Another node of a cluster: started with `first`'s generated credentials as its
    /// `--auth-file`, so every token works on both; it takes `first`'s tokens.
    pub async fn start_sharing(dir: &Path, first: &Server, args: &[&str]) -> Server {
        let credentials = first.credentials.clone().expect("the first node generated its credentials");
        let path = credentials.display().to_string();
        let mut all = vec!["--auth-file", path.as_str()];
        all.extend_from_slice(args);
        let mut server = Server::start(dir, &all).await;
        server.tokens = first.tokens.clone();
        server.credentials = Some(credentials);
        crate::api::remember_admin(&server.http, server.token("admin"));
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", if self.https { "https" } else { "http" }, self.http)
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
        let scheme = if self.https { "wss" } else { "ws" };
        match token {
            Some(t) => format!("{scheme}://{}/ws?remote_control_id={rc}&access_token={t}", self.http),
            None => format!("{scheme}://{}/ws?remote_control_id={rc}", self.http),
        }
    }

    /// The generated token of a train, from the credentials file.
    pub fn train_token(&self, train: &str) -> String {
        let path = self.credentials.as_ref().expect("generated credentials");
        let trains = railcast_train_sim::credentials::train_tokens(path).expect("credentials");
        trains.get(train).unwrap_or_else(|| panic!("no token for {train}")).clone()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("pid");
        std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill");
    }
}

/// A file generated from the code (`what`, at `path` from the repository root) must equal its
/// committed copy; with `RAILCAST_BLESS` set, the copy is rewritten first. `regenerate` is the
/// command that does it, for the failure message. Returns the committed text.
pub fn committed_matches(path: &str, generated: &str, regenerate: &str) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    if std::env::var_os("RAILCAST_BLESS").is_some() {
        std::fs::write(&file, generated).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{path} is missing; run {regenerate}"));
    assert!(committed == generated, "{path} is out of date: run {regenerate}");
    committed
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running `railcast-train-sim`.
#[derive(Debug)]
pub struct Sim {
    pub child: Child,
    pub manifest: PathBuf,
    /// Its stderr (the log).
    pub log: PathBuf,
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
        Self::start_on(dir, &[server], args)
    }

    /// A simulator given several servers (`--server A,B`): it connects to the first and, when
    /// that connection is lost or refused, to the next. The credentials are the first server's.
    pub fn start_on(dir: &Path, servers: &[&Server], args: &[&str]) -> Sim {
        let server = servers.first().expect("a server");
        let list = servers.iter().map(|s| s.url("")).collect::<Vec<_>>().join(",");
        let n = rand_suffix();
        let manifest = dir.join(format!("manifest-{n}.jsonl"));
        let log = dir.join(format!("sim-{n}.log"));
        let mut cmd = Command::new(bin("railcast-train-sim"));
        if let Some(c) = &server.credentials {
            cmd.arg("--credentials").arg(c);
        }
        let child = cmd
            .args(["--server", &list])
            .arg("--manifest")
            .arg(&manifest)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sim");
        Sim { child, manifest, log }
    }

    /// Every frame the simulator has sent so far (it writes each line before sending). Take what
    /// the clients received first, then the manifest: the train keeps sending, and a frame that
    /// arrives after this read is in no manifest the test holds.
    pub fn manifest(&self) -> Manifest {
        Manifest::read(&self.manifest)
    }

    /// Wait (up to `timeout`) until its log contains `text`; the log so far.
    pub async fn wait_log(&self, text: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(text) {
                return log;
            }
            assert!(tokio::time::Instant::now() < deadline, "the simulator never logged {text:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    /// `"h264"` or `"opus"` (docs/wire-format.md §2.7; "" in a manifest from before audio).
    #[serde(default)]
    pub codec: String,
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

/// The test-only venv's Python (scripts/setup.sh makes it; `RAILCAST_VENV` moves it), which has
/// the foreign peers nobody on the project wrote: aiortc and aioquic (pinned by
/// tests/requirements.txt). Fails the test saying how to make it.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("RAILCAST_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
        cache.join("railcast-venv")
    });
    let python = venv.join("bin").join("python");
    assert!(python.is_file(), "{} is missing: run ./scripts/setup.sh (it makes the test venv)", python.display());
    python
}

/// A script of the foreign-peer suite, `tests/foreign/<name>` in the repository.
pub fn foreign_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/foreign").join(name)
}
