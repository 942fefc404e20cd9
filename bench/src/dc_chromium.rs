//! `dc-chromium`: one train → ONE real Chromium peer over the WebRTC `video` data channel, sent
//! faster than the target (≥ 400 Mbit/s), to measure what one data channel to a browser
//! carries.
//!
//! A fresh server (with generous send buffers, see [`SERVER_ARGS`]), one synthetic train at
//! `--dc-chromium-bitrate` and `--dc-chromium-fps`, one remote control mapped to it. Then
//! `node web-client/e2e/dc-throughput.mjs` drives Debian's Chromium through playwright-core: the
//! page does the REST signaling itself and counts what arrives on `video`. When it prints `READY`
//! (video flows), this waits `settle`, opens the measurement window in capture time (the train
//! counts what it captures inside it) and hands the window to the script on its stdin; the script
//! prints one JSON line with what the page received. Server and tool CPU, the browser's CPU (the
//! script's whole process tree), the server's byte counters and its drops are taken over the same
//! window.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::cli::Ctx;
use crate::procstat::{tree, udp_drops, CpuMeter, Pid, TreeCpuMeter};
use crate::report::{mark, Outcome, Target};
use crate::server::{Metrics, Server};
use crate::stats::Window;
use crate::train::{Train, TrainSpec};

/// The target for one data channel to Chromium, Mbit/s.
const TARGET_MBIT_S: f64 = 400.0;

/// Server flags added unless `--server-arg` sets them. At 800 Mbit/s and 200 fps a frame is
/// 500 KB (≈ 425 packets) and arrives as one burst: the default 256 KiB channel send buffer and
/// 1,024-packet subscriber queue hold about two frames. Past that the hub drops this peer's frames
/// until the next keyframe and the channel idles meanwhile, which measures the drop policy rather
/// than the channel (docs/benchmarks-history.md, "Session 4: one data channel to Chromium, the
/// first measurement"). With 8 MiB of send buffer and 16,384 packets of queue (≈ 19 MB) data is
/// always queued for the channel; a peer slower than the train still falls behind and drops
/// (counted), and latency shows the backlog.
///
/// The path is loopback (MTU 65,536), so SCTP packets may be as large as Chromium accepts
/// (`--webrtc-sctp-mtu 2000`, docs/configuration.md): the browser pays per datagram, and this
/// halves their number. The figure with the default 1191 (safe on any path) is in
/// docs/benchmarks.md, "Current figures" (history: docs/benchmarks-history.md, "Session 5");
/// `--server-arg=--webrtc-sctp-mtu=0` measures it.
pub const SERVER_ARGS: &[(&str, &str)] =
    &[("--webrtc-send-buffer", "8388608"), ("--subscriber-queue", "16384"), ("--webrtc-sctp-mtu", "2000")];

/// The script's path below the web-client directory.
const SCRIPT: &str = "e2e/dc-throughput.mjs";

#[derive(Debug, Serialize)]
pub struct Step {
    pub bitrate_bps: u64,
    pub fps: u32,
    pub frame_bytes: usize,
    pub window_s: f64,
    pub server_args: Vec<String>,
    /// What the train captured inside the window.
    pub train_frames: u64,
    pub train_packets: u64,
    pub train_bytes: u64,
    pub train_mbit_s: f64,
    /// The server's `railcast_bytes_in_total` / `railcast_bytes_out_total` (handed to the data
    /// channel) over the window, wall clock.
    pub server_in_mbit_s: Option<f64>,
    pub server_out_mbit_s: Option<f64>,
    /// Received by the page while the window was open (receive time).
    pub rx_bytes: u64,
    pub rx_messages: u64,
    pub rx_mbit_s: f64,
    pub rx_messages_per_s: f64,
    /// Video packets in those messages (a message holds one or more, docs/wire-format.md §2.6).
    pub rx_packets: u64,
    pub rx_packets_per_s: f64,
    /// Bytes of packets captured inside the window that reached the page (up to the grace time
    /// after the window) over the bytes the train sent in it.
    pub delivered_fraction: Option<f64>,
    /// `railcast_frames_dropped_total` from the window's start until the grace time after it.
    pub server_frames_dropped: Option<f64>,
    /// The session's counters from `GET /api/webrtc/sessions` at the end of the window.
    pub server_session: Value,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// `ping` on `command` every 100 ms of the window, and the `pong` round trips: how long an
    /// operator's command ack waits while video saturates the peer.
    pub command_pings: u64,
    pub command_pongs: u64,
    pub command_rtt_p50_ms: Option<f64>,
    pub command_rtt_p99_ms: Option<f64>,
    pub command_rtt_max_ms: Option<f64>,
    /// Datagrams the kernel dropped on arrival during the window because a UDP socket's receive
    /// buffer was full: the server's sockets (QUIC from the train, the peer's), the browser's.
    pub server_udp_drops: u64,
    pub browser_udp_drops: u64,
    pub server_cpu_pct: f64,
    /// This tool (the train among it).
    pub load_cpu_pct: f64,
    /// node and every Chromium process, and the same by Chromium process type.
    pub browser_cpu_pct: f64,
    pub browser_cpu_by_process: Vec<(String, f64)>,
    /// The script's whole JSON result.
    pub browser: Value,
}

/// Where the script and the browser are; an error names what is missing.
#[derive(Debug, Clone)]
pub struct Browser {
    pub web_client: PathBuf,
    pub chromium: PathBuf,
}

impl Browser {
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<Browser> {
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_owned()],
            None => {
                let mut c = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-client")];
                if let Ok(exe) = std::env::current_exe() {
                    c.extend(exe.ancestors().skip(1).map(|d| d.join("web-client")));
                }
                if let Ok(cwd) = std::env::current_dir() {
                    c.push(cwd.join("web-client"));
                }
                c
            }
        };
        let web_client = candidates.iter().find(|d| d.join(SCRIPT).is_file()).cloned().ok_or_else(|| {
            anyhow!(
                "{SCRIPT} not found (looked in {}); pass --web-client DIR",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })?;
        if !web_client.join("node_modules/playwright-core").is_dir() {
            bail!(
                "{}/node_modules/playwright-core missing: run `npm ci` in web-client (scripts/setup.sh does)",
                web_client.display()
            );
        }
        let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
        if !chromium.is_file() {
            bail!(
                "Chromium not found at {} (Debian: apt-get install chromium, or set CHROMIUM); never a downloaded browser",
                chromium.display()
            );
        }
        Ok(Browser { web_client, chromium })
    }
}

/// The script as a child in its own process group (so Chromium goes with it), its stdout as lines.
struct Script {
    child: Child,
    pid: u32,
    stdin: Option<tokio::process::ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    log: PathBuf,
}

impl Script {
    fn spawn(ctx: &Ctx, browser: &Browser, server: &Server, rc: &str, grace: Duration) -> anyhow::Result<Script> {
        let log = ctx.server.log_dir.join("browser-dc-chromium.log");
        let mut cmd = match &ctx.browser_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu, "node"]);
                c
            }
            None => Command::new("node"),
        };
        cmd.arg(browser.web_client.join(SCRIPT))
            .current_dir(&browser.web_client)
            .env("BASE_URL", format!("http://{}", server.http))
            .env("RAILCAST_TOKEN", server.admin_token())
            .env("RAILCAST_RC", rc)
            .env("CHROMIUM", &browser.chromium)
            .env("WINDOW", "stdin")
            .env("GRACE_MS", grace.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?)
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("`node` not found in PATH: Node.js drives Chromium here (scripts/setup.sh installs it)")
            } else {
                anyhow!("spawn node: {e}")
            }
        })?;
        let pid = child.id().ok_or_else(|| anyhow!("node exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Script { child, pid, stdin, lines, log })
    }

    /// The next stdout line that satisfies `want`, within `within`; the script's JSON error, or
    /// its log's tail, if it ends first.
    async fn line(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let read = async {
            while let Some(l) = self.lines.recv().await {
                if want(&l) {
                    return Ok(l);
                }
                if let Some(e) =
                    serde_json::from_str::<Value>(&l).ok().and_then(|v| v["error"].as_str().map(String::from))
                {
                    bail!("browser: {e}");
                }
            }
            bail!("the browser script ended early; its log {}:\n{}", self.log.display(), self.log_tail())
        };
        tokio::time::timeout(within, read)
            .await
            .map_err(|_| anyhow!("no answer from the browser script within {within:?}"))?
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Wait for the script to exit (it closes Chromium itself); past 10 s, kill its process group.
    async fn finish(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            self.kill_group();
            let _ = self.child.wait().await;
        }
    }

    /// SIGKILL to the script's process group: node and every Chromium process.
    fn kill_group(&self) {
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", self.pid)]).status();
    }
}

impl Drop for Script {
    /// A scenario cut short (its time budget) must not leave Chromium behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
        }
    }
}

fn server_opts(ctx: &Ctx) -> (crate::server::ServerOpts, Vec<String>) {
    let mut opts = ctx.server.clone();
    let mut added = Vec::new();
    for (flag, value) in SERVER_ARGS {
        if !opts.args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
            added.push(format!("{flag}={value}"));
        }
    }
    opts.args.extend(added.iter().cloned());
    let all = opts.args.clone();
    (opts, all)
}

async fn step(ctx: &Ctx, browser: &Browser) -> anyhow::Result<Step> {
    let (opts, args) = server_opts(ctx);
    let server = Server::start(&opts, "dc-chromium").await?;
    let result = run_step(ctx, browser, &server, args).await;
    server.stop().await;
    result
}

fn mbit(bytes: f64, secs: f64) -> f64 {
    bytes * 8.0 / secs / 1e6
}

async fn run_step(ctx: &Ctx, browser: &Browser, server: &Server, server_args: Vec<String>) -> anyhow::Result<Step> {
    let window = Arc::new(Window::default());
    let mut spec = TrainSpec::new("train-1".into(), 1, ctx.dc_chromium_bitrate, ctx, server);
    spec.fps = ctx.dc_chromium_fps;
    let train = Train::start(&server.api.base, spec, Arc::clone(&window)).await?;
    let result = async {
        server.api.wait_train_online("train-1", Duration::from_secs(10)).await?;
        let rc = server.api.remote_control("chromium", Some("train-1")).await?;
        let grace = if ctx.smoke { Duration::from_millis(500) } else { Duration::from_secs(1) };
        let mut script = Script::spawn(ctx, browser, server, &rc, grace)?;
        let r = measure(ctx, server, &train, &window, &mut script, grace, server_args).await;
        script.finish().await;
        r
    }
    .await;
    let stopped = train.stop().await;
    let mut s = result?;
    if let Err(e) = stopped {
        bail!("train: {e:#} (Chromium received {:.0} Mbit/s)", s.rx_mbit_s);
    }
    s.browser_cpu_by_process.retain(|(_, pct)| *pct >= 0.5);
    Ok(s)
}

/// Bytes in/out and frames dropped, summed over label sets.
fn counters(m: &Option<Metrics>) -> (Option<f64>, Option<f64>, Option<f64>) {
    match m {
        Some(m) => (
            m.sum("railcast_bytes_in_total"),
            m.sum("railcast_bytes_out_total"),
            Some(m.sum("railcast_frames_dropped_total").unwrap_or(0.0)),
        ),
        None => (None, None, None),
    }
}

async fn measure(
    ctx: &Ctx,
    server: &Server,
    train: &Train,
    window: &Window,
    script: &mut Script,
    grace: Duration,
    server_args: Vec<String>,
) -> anyhow::Result<Step> {
    // Chromium's start, signaling and ICE/DTLS, then the first video message.
    script.line(Duration::from_secs(60), |l| l.starts_with("READY")).await?;
    tokio::time::sleep(ctx.settle).await;

    let len = ctx.dc_chromium_window;
    let before = server.api.metrics().await.ok();
    let (server_cpu, load_cpu, browser_cpu) =
        (CpuMeter::start(server.pid()), CpuMeter::start(Pid::Myself), TreeCpuMeter::start(script.pid));
    let drops = || (udp_drops(&[server.pid]), udp_drops(&tree(script.pid)));
    let drops_before = drops();
    let opened = Instant::now();
    let (start, end) = window.open(len.as_micros() as u64);
    let stdin = script.stdin.as_mut().ok_or_else(|| anyhow!("no stdin"))?;
    stdin.write_all(format!("window {start} {end}\n").as_bytes()).await.context("hand the window to the script")?;
    stdin.flush().await?;
    tokio::time::sleep(len.saturating_sub(opened.elapsed())).await;
    let wall = opened.elapsed().as_secs_f64();
    let (server_cpu_pct, load_cpu_pct) = (server_cpu.percent(), load_cpu.percent());
    let (browser_cpu_pct, browser_cpu_by_process) = browser_cpu.percent();
    let drops_after = drops();
    let at_end = server.api.metrics().await.ok();
    let (_, v) = server.api.call("GET", "/api/webrtc/sessions", None).await?;
    let server_session = v.get(0).and_then(|s| s.get("counters")).cloned().unwrap_or(Value::Null);

    let line = script.line(len + grace + Duration::from_secs(30), |l| l.starts_with('{')).await?;
    let b: Value = serde_json::from_str(&line).with_context(|| format!("browser result: {line}"))?;
    if b["ok"] != true {
        bail!("browser: {}", b["error"].as_str().unwrap_or("failed without a reason"));
    }
    let after = server.api.metrics().await.ok();
    let ((in0, out0, drop0), (in1, out1, _), (_, _, drop1)) = (counters(&before), counters(&at_end), counters(&after));
    let rate = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| mbit(b - a, wall));

    let secs = len.as_secs_f64();
    let st = &train.stats;
    let train_bytes = st.window_bytes.load(Ordering::Relaxed);
    let num = |k: &str| b[k].as_f64().unwrap_or(0.0);
    let rx_bytes = num("bytes") as u64;
    let rx_messages = num("messages") as u64;
    let rx_packets = num("packets") as u64;
    Ok(Step {
        bitrate_bps: train.spec.bitrate_bps,
        fps: train.spec.fps,
        frame_bytes: train.spec.frame_bytes(),
        window_s: secs,
        server_args,
        train_frames: st.window_frames.load(Ordering::Relaxed),
        train_packets: st.window_packets.load(Ordering::Relaxed),
        train_bytes,
        train_mbit_s: mbit(train_bytes as f64, secs),
        server_in_mbit_s: rate(in0, in1),
        server_out_mbit_s: rate(out0, out1),
        rx_bytes,
        rx_messages,
        rx_mbit_s: mbit(rx_bytes as f64, secs),
        rx_messages_per_s: rx_messages as f64 / secs,
        rx_packets,
        rx_packets_per_s: rx_packets as f64 / secs,
        delivered_fraction: (train_bytes > 0).then(|| num("window_bytes") / train_bytes as f64),
        server_frames_dropped: drop0.zip(drop1).map(|(a, b)| b - a),
        server_session,
        latency_p50_ms: b["latency_p50_ms"].as_f64(),
        latency_p99_ms: b["latency_p99_ms"].as_f64(),
        latency_max_ms: b["latency_max_ms"].as_f64(),
        command_pings: num("pings") as u64,
        command_pongs: num("pongs") as u64,
        command_rtt_p50_ms: b["ping_rtt_p50_ms"].as_f64(),
        command_rtt_p99_ms: b["ping_rtt_p99_ms"].as_f64(),
        command_rtt_max_ms: b["ping_rtt_max_ms"].as_f64(),
        server_udp_drops: drops_after.0.saturating_sub(drops_before.0),
        browser_udp_drops: drops_after.1.saturating_sub(drops_before.1),
        server_cpu_pct,
        load_cpu_pct,
        browser_cpu_pct,
        browser_cpu_by_process,
        browser: b,
    })
}

pub const HEADERS: &[&str] = &[
    "set Mbit/s",
    "fps",
    "train Mbit/s",
    "srv in",
    "srv out",
    "Chromium Mbit/s",
    "msgs/s",
    "packets/s",
    "delivered",
    "srv drops",
    "UDP drops srv/browser",
    "p50 ms",
    "p99 ms",
    "pongs",
    "cmd RTT p50/p99 ms",
    "srv CPU%",
    "browser CPU%",
    "load CPU%",
    "≥ 400 Mbit/s",
];

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(HEADERS.to_vec());
    let browser = match Browser::find(ctx.web_client.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            out.fail(format!("{e:#}"));
            return out;
        }
    };
    eprintln!(
        "[dc-chromium] one train at {:.0} Mbit/s, {} fps → one Chromium peer …",
        ctx.dc_chromium_bitrate as f64 / 1e6,
        ctx.dc_chromium_fps
    );
    let s = match step(ctx, &browser).await {
        Ok(s) => s,
        Err(e) => {
            out.fail(format!("{e:#}"));
            return out;
        }
    };
    eprintln!(
        "[dc-chromium] train {:.0} Mbit/s, Chromium {:.0} Mbit/s, delivered {}, server CPU {:.0}%, browser CPU {:.0}%, load CPU {:.0}%",
        s.train_mbit_s,
        s.rx_mbit_s,
        crate::report::pct(s.delivered_fraction),
        s.server_cpu_pct,
        s.browser_cpu_pct,
        s.load_cpu_pct
    );
    if s.rx_bytes == 0 {
        out.fail("no byte reached Chromium during the window");
    }
    let pass = Some(s.rx_mbit_s >= TARGET_MBIT_S);
    out.table.rows.push(vec![
        format!("{:.0}", s.bitrate_bps as f64 / 1e6),
        s.fps.to_string(),
        format!("{:.0}", s.train_mbit_s),
        opt(s.server_in_mbit_s, 0),
        opt(s.server_out_mbit_s, 0),
        format!("{:.0}", s.rx_mbit_s),
        format!("{:.0}", s.rx_messages_per_s),
        format!("{:.0}", s.rx_packets_per_s),
        crate::report::pct(s.delivered_fraction),
        opt(s.server_frames_dropped, 0),
        format!("{} / {}", s.server_udp_drops, s.browser_udp_drops),
        opt(s.latency_p50_ms, 2),
        opt(s.latency_p99_ms, 2),
        format!("{}/{}", s.command_pongs, s.command_pings),
        format!("{} / {}", opt(s.command_rtt_p50_ms, 1), opt(s.command_rtt_p99_ms, 1)),
        format!("{:.0}", s.server_cpu_pct),
        format!("{:.0}", s.browser_cpu_pct),
        format!("{:.0}", s.load_cpu_pct),
        if ctx.smoke { "n/a" } else { mark(pass) }.to_owned(),
    ]);
    out.targets.push(Target::new(
        "one data channel to Chromium",
        "≥ 400 Mbit/s",
        format!("{:.0} Mbit/s (train sent {:.0})", s.rx_mbit_s, s.train_mbit_s),
        pass,
    ));
    out.step(&s);
    out
}
