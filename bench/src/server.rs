//! The real `railcast-server` as a child process on loopback (optionally pinned with `taskset`,
//! with its descriptor limit raised), and a small JSON client for its HTTP API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procstat::{self, Pid};

/// How to start servers.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    pub bin: PathBuf,
    /// Pin the server to this CPU list (`taskset -c`).
    pub cpu: Option<String>,
    /// Extra arguments for every server.
    pub args: Vec<String>,
    /// `RUST_LOG` for the server.
    pub log_filter: String,
    /// Where server logs go.
    pub log_dir: PathBuf,
}

/// Find `railcast-server` next to this executable (`target/<profile>/`).
pub fn find_server_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_owned());
        }
        bail!("--server-bin {}: no such file", p.display());
    }
    if let Some(p) = testkit::find_bin("railcast-server") {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("current exe")?;
    bail!(
        "railcast-server not found next to {} — build it with the same profile \
         (`cargo build -p railcast-server`, or `--release`) or pass --server-bin PATH",
        exe.display()
    )
}

/// A running server, with the demo credentials it generated.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub pid: u32,
    pub http: String,
    /// Acts as the generated admin.
    pub api: Api,
    admin: String,
    train_tokens: std::collections::BTreeMap<String, String>,
    /// The WebTransport endpoint's UDP address.
    pub webtransport: Option<String>,
}

impl Server {
    pub async fn start(opts: &ServerOpts, name: &str) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&opts.log_dir).ok();
        let log = opts.log_dir.join(format!("server-{name}.log"));
        // `sh` raises the descriptor limit to its hard limit, then `exec`s (taskset and) the
        // server, so the child's pid is the server's.
        let credentials = opts.log_dir.join(format!("credentials-{name}.toml"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#).arg("sh");
        if let Some(cpu) = &opts.cpu {
            cmd.args(["taskset", "-c", cpu]);
        }
        cmd.arg(&opts.bin)
            .args(["--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--webtransport-addr", "127.0.0.1:0"])
            .arg("--credentials-out")
            .arg(&credentials)
            .args(&opts.args)
            .env("RUST_LOG", &opts.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?)
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawn {}", opts.bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let read = async {
            let mut banner = testkit::Banner::default();
            while let Some(line) = lines.next_line().await? {
                banner.read(&line);
                if banner.trains {
                    let wt = banner.webtransport.take();
                    return Ok::<_, anyhow::Error>(
                        banner.http.zip(banner.tokens.remove("admin")).map(|(h, a)| (h, a, wt)),
                    );
                }
            }
            Ok(None)
        };
        let (http, admin, webtransport) = match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(Some(a))) => a,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("server exited before listening; log {}:\n{}", log.display(), tail_lines(&tail, 20))
            }
            Err(_) => bail!("server did not print its address within 30 s (log {})", log.display()),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let api = Api::new(format!("http://{http}"), Some(admin.clone()));
        let train_tokens = railcast_train_sim::credentials::train_tokens(&credentials)?;
        Ok(Server { child, pid, http, api, admin, train_tokens, webtransport })
    }

    pub fn ws_url(&self, rc: &str) -> String {
        format!("ws://{}/ws?remote_control_id={rc}&access_token={}", self.http, self.admin)
    }

    /// The WebTransport session URL of a remote control, as the admin.
    pub fn wt_url(&self, rc: &str) -> Option<String> {
        let port = self.webtransport.as_deref()?.rsplit(':').next()?.to_owned();
        Some(format!("https://127.0.0.1:{port}/wt?remote_control_id={rc}&access_token={}", self.admin))
    }

    /// The generated admin's token (for clients outside this process, e.g. the browser).
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    /// The generated token of a train (`train-1` … `train-64`).
    pub fn train_token(&self, train: &str) -> Option<String> {
        self.train_tokens.get(train).cloned()
    }

    pub fn pid(&self) -> Pid {
        Pid::Other(self.pid)
    }

    pub fn rss_kb(&self) -> u64 {
        procstat::rss_kb(self.pid())
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// JSON over HTTP/1.1 with a keep-alive pool.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    client: testkit::HttpClient,
}

impl Api {
    pub fn new(base: String, token: Option<String>) -> Self {
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build_http();
        Self { base, token, client }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let fut = testkit::call(&self.client, self.token.as_deref(), method, &url, body);
        let answer = tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .map_err(|_| anyhow!("{method} {path}: timed out"))?;
        answer.map_err(|e| anyhow!(e))
    }

    /// Create a remote control; map it to `train` when given.
    pub async fn remote_control(&self, name: &str, train: Option<&str>) -> anyhow::Result<String> {
        let (status, v) = self.call("POST", "/api/remote-controls", Some(json!({ "name": name }))).await?;
        if status != 201 {
            bail!("create remote control: {status} {v}");
        }
        let id = v["id"].as_str().ok_or_else(|| anyhow!("no id in {v}"))?.to_owned();
        if let Some(train) = train {
            let path = format!("/api/remote-controls/{id}/train");
            let (status, v) = self.call("PUT", &path, Some(json!({ "train_id": train }))).await?;
            if status != 200 {
                bail!("map {id} to {train}: {status} {v}");
            }
        }
        Ok(id)
    }

    /// Create `n` remote controls, `concurrency` requests at a time; the i-th is mapped to
    /// `train(i)`.
    pub async fn remote_controls(
        &self,
        n: usize,
        train: impl Fn(usize) -> Option<String>,
    ) -> anyhow::Result<Vec<String>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        stream::iter((0..n).map(|i| (i, train(i))))
            .map(|(i, t)| async move { self.remote_control(&format!("bench {i}"), t.as_deref()).await })
            .buffered(16)
            .try_collect()
            .await
    }

    /// Wait until the server lists `train` as online.
    pub async fn wait_train_online(&self, train: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, v) = self.call("GET", &format!("/api/trains/{train}"), None).await?;
            if status == 200 && v["online"] == true {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("train {train} not online within {within:?}: {status} {v}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Length of a JSON list endpoint (`/api/sessions`, `/api/webrtc/sessions`).
    pub async fn count(&self, path: &str) -> anyhow::Result<usize> {
        let (_, v) = self.call("GET", path, None).await?;
        v.as_array().map(Vec::len).ok_or_else(|| anyhow!("{path}: not a list: {v}"))
    }

    /// Wait until no transport session is left (WebSocket or WebRTC).
    pub async fn wait_no_sessions(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (a, b) = (self.count("/api/sessions").await?, self.count("/api/webrtc/sessions").await?);
            if a == 0 && b == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{a} sessions and {b} WebRTC sessions still open after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let (status, v) = self.call("GET", "/metrics", None).await?;
        match v {
            Value::String(s) if status == 200 => Ok(Metrics(s)),
            other => bail!("/metrics: {status} {other}"),
        }
    }
}

/// A Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Metrics(String);

/// Cumulative histogram buckets: (upper bound `le`, count), all label sets summed.
#[derive(Debug, Default, Clone)]
pub struct Buckets(pub Vec<(f64, f64)>);

impl Buckets {
    /// Per-bucket difference `self − before`.
    pub fn since(&self, before: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|&(le, c)| (le, c - before.0.iter().find(|b| b.0 == le).map(|b| b.1).unwrap_or(0.0)))
                .collect(),
        )
    }
    /// Upper bound (seconds) of the bucket holding the `q` quantile; `None` without samples,
    /// infinity when it is in the overflow bucket.
    pub fn quantile_le(&self, q: f64) -> Option<f64> {
        let total = self.0.last()?.1;
        if total <= 0.0 {
            return None;
        }
        self.0.iter().find(|(_, c)| *c >= q * total).map(|(le, _)| *le)
    }
}

impl Metrics {
    /// The `_bucket` samples of histogram `name`, summed over label sets, sorted by `le`.
    pub fn buckets(&self, name: &str) -> Buckets {
        let prefix = format!("{name}_bucket{{");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for line in self.0.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else { continue };
            let Some(le) = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next()) else { continue };
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
            let Some(c) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
            match out.iter_mut().find(|b| b.0 == le) {
                Some(b) => b.1 += c,
                None => out.push((le, c)),
            }
        }
        out.retain(|b| !b.0.is_nan());
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(out)
    }

    /// Sum of the samples of `name` whose label set has `label="value"`.
    pub fn labeled(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        let prefix = format!("{name}{{");
        let pair = format!("{label}=\"{value}\"");
        let mut found = None;
        for line in self.0.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else { continue };
            let Some((labels, sample)) = rest.rsplit_once("} ") else { continue };
            if !labels.split(',').any(|l| l == pair) {
                continue;
            }
            if let Ok(v) = sample.trim().parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// Sum of every sample of `name` (all label sets).
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines() {
            let Some(rest) = line.strip_prefix(name) else { continue };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }
}
