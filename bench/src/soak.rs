//! `soak`: a long run at a moderate, steady load, looking for what only time shows: memory
//! growth, disconnects, drops, panics. Not part of `all` nor of `--smoke`; run it by name or with
//! `scripts/soak.sh`.
//!
//! One fresh server; 5 trains (one camera each, `--soak-bitrate` 1 Mbit/s, `--fps` 30) and 50
//! remote controls, 10 per train: 5 over WebSocket and 5 over WebRTC data channels. Once every
//! client receives video, one measurement window of `--soak-duration` (10 min) opens in capture
//! time. Every `--soak-interval` (10 s, shortened to give at least 6 samples) a sample records the
//! server's RSS, CPU, threads, descriptors and tasks, and the cumulative frames and packets
//! expected and delivered per transport. The last sample is taken after the window has closed and
//! in-flight frames have landed, so its delivery figures are exact; earlier ones may count a frame
//! in flight (at most about one per client) as missing.
//!
//! The run fails when a client could not connect, disconnected or got nothing for a whole
//! interval, a train stopped, the server's log has a `panicked` line, or a transport delivered
//! fewer than 99 % of the frames.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::Ctx;
use crate::fanout::Transport;
use crate::procstat::{self, CpuMeter, Pid};
use crate::report::{ms, pct, Latency, Outcome, Target};
use crate::rtc_client::{self, RtcConn};
use crate::server::Server;
use crate::stats::{FrameCounter, Window};
use crate::train::{Train, TrainSpec};
use crate::ws_client;

const TRAINS: usize = 5;
/// Clients per train and transport (5 trains × 5 × 2 transports = 50 clients).
const PER_TRAIN: usize = 5;
const TRANSPORTS: [Transport; 2] = [Transport::WebSocket, Transport::WebRtc];
/// Delivered fraction below which the run fails (per transport).
const MIN_DELIVERED: f64 = 0.99;
/// Server counters reported at the end (every label set), cumulative since the server started.
const COUNTERS: &[&str] = &[
    "railcast_frames_in_total",
    "railcast_frames_out_total",
    "railcast_packets_out_total",
    "railcast_frames_dropped_total",
    "railcast_packets_rejected_total",
    "railcast_train_connections_total",
    "railcast_auth_refusals_total",
    "railcast_limit_refusals_total",
    "railcast_webrtc_sessions_created_total",
    "railcast_webrtc_sessions_failed_total",
    "railcast_commands_failed_total",
];

fn train_id(t: usize) -> String {
    format!("train-{}", t + 1)
}

fn name(t: Transport) -> &'static str {
    match t {
        Transport::WebSocket => "WebSocket",
        Transport::WebRtc => "WebRTC",
        Transport::WebTransport => "WebTransport",
        Transport::Whep => "WHEP",
        Transport::Mqtt => "MQTT",
    }
}

/// What a client has counted so far, readable while it runs.
#[derive(Debug, Default)]
struct Live {
    /// Whole frames captured inside the window.
    frames: AtomicU64,
    /// Packets of frames captured inside the window.
    packets: AtomicU64,
    /// Any video packet.
    packets_any: AtomicU64,
    /// Why the client stopped early (disconnect, error), once it has.
    error: Mutex<Option<String>>,
}

impl Live {
    fn publish(&self, c: &FrameCounter) {
        self.frames.store(c.frames, Ordering::Relaxed);
        self.packets.store(c.packets, Ordering::Relaxed);
        self.packets_any.store(c.packets_any, Ordering::Relaxed);
    }
    fn set_error(&self, e: String) {
        if let Ok(mut g) = self.error.lock() {
            g.get_or_insert(e);
        }
    }
    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|g| g.clone())
    }
}

#[derive(Debug)]
struct Client {
    transport: Transport,
    train: usize,
    live: Arc<Live>,
    task: JoinHandle<FrameCounter>,
    /// WebRTC: the peer, closed at the end.
    peer: Option<RtcConn>,
    /// `packets_any` at the previous sample, to find clients that got nothing in an interval.
    seen: u64,
}

/// Connect the clients of one transport, `concurrency` at a time; (train, error) of those that
/// failed.
#[allow(clippy::too_many_arguments)]
async fn connect_all(
    server: &Server,
    transport: Transport,
    planned: Vec<(usize, String)>,
    concurrency: usize,
    window: &Arc<Window>,
    warm: &Arc<AtomicUsize>,
    stop_rx: &watch::Receiver<bool>,
    clients: &mut Vec<Client>,
) -> Vec<(usize, String)> {
    let results = stream::iter(planned)
        .map(|(train, rc)| {
            let (window, warm, stop_rx) = (Arc::clone(window), Arc::clone(warm), stop_rx.clone());
            async move {
                let live = Arc::new(Live::default());
                let r = match transport {
                    Transport::WebTransport | Transport::Whep | Transport::Mqtt => {
                        Err(anyhow::anyhow!("soak covers WebSocket and WebRTC data channels"))
                    }
                    Transport::WebSocket => ws_client::connect(&server.ws_url(&rc)).await.map(|ws| {
                        let live = Arc::clone(&live);
                        let task = tokio::spawn(async move {
                            let r = ws_client::run_observed(ws, window, warm, stop_rx, |c| live.publish(c)).await;
                            if let Some(e) = r.error {
                                live.set_error(format!("WebSocket: {e}"));
                            }
                            r.counter
                        });
                        (task, None)
                    }),
                    Transport::WebRtc => {
                        rtc_client::connect(&server.api, &rc, Duration::from_secs(20)).await.map(|c| {
                            c.spawn_drain_command();
                            let (dc, live) = (Arc::clone(&c.video), Arc::clone(&live));
                            let task = tokio::spawn(async move {
                                let (counter, error) =
                                    rtc_client::count_video(dc, window, warm, stop_rx, |c| live.publish(c)).await;
                                if let Some(e) = error {
                                    live.set_error(format!("WebRTC: {e}"));
                                }
                                counter
                            });
                            (task, Some(c))
                        })
                    }
                };
                (train, r.map(|(task, peer)| Client { transport, train, live, task, peer, seen: 0 }))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut failed = Vec::new();
    for (train, r) in results {
        match r {
            Ok(c) => clients.push(c),
            Err(e) => failed.push((train, format!("{} connect ({}): {e:#}", name(transport), train_id(train)))),
        }
    }
    failed
}

/// Frames and packets, expected and delivered, summed over the clients of a transport.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub frames_expected: u64,
    pub frames_delivered: u64,
    pub packets_expected: u64,
    pub packets_delivered: u64,
}

impl Tally {
    fn delivered(&self) -> Option<f64> {
        (self.frames_expected > 0).then(|| self.frames_delivered as f64 / self.frames_expected as f64)
    }
    fn packets_delivered_fraction(&self) -> Option<f64> {
        (self.packets_expected > 0).then(|| self.packets_delivered as f64 / self.packets_expected as f64)
    }
    fn frames_missing(&self) -> u64 {
        self.frames_expected.saturating_sub(self.frames_delivered)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the window opened.
    pub t_s: f64,
    pub server_rss_kb: u64,
    /// Server CPU since the previous sample, % of one core.
    pub server_cpu_pct: f64,
    pub load_cpu_pct: f64,
    pub load_rss_kb: u64,
    pub server_threads: u64,
    pub server_fds: u64,
    /// `railcast_tokio_alive_tasks`.
    pub server_tasks: Option<f64>,
    /// Cumulative since the window opened.
    pub websocket: Tally,
    pub webrtc: Tally,
    /// Change of `railcast_frames_dropped_total` since the window opened.
    pub server_frames_dropped: Option<f64>,
    /// Clients that have stopped with an error (disconnect) so far.
    pub client_errors: usize,
    /// Clients that received no video packet since the previous sample.
    pub stalled: usize,
    /// Trains that sent no frame since the previous sample.
    pub trains_stalled: usize,
    /// Whether the delivery figures are final (after the window closed and the last frames
    /// landed).
    pub exact: bool,
}

#[derive(Debug, Serialize)]
pub struct TransportSummary {
    pub transport: Transport,
    pub clients: usize,
    pub connected: usize,
    #[serde(flatten)]
    pub tally: Tally,
    pub frames_missing: u64,
    pub delivered_fraction: Option<f64>,
    pub packets_delivered_fraction: Option<f64>,
    /// The lowest delivered fraction of a single client.
    pub worst_client_delivered: Option<f64>,
    pub latency: Latency,
    pub client_errors: usize,
}

#[derive(Debug, Serialize)]
pub struct RssSummary {
    pub start_kb: u64,
    /// The largest of the samples and `VmHWM` (reset when the window opened).
    pub peak_kb: u64,
    pub end_kb: u64,
    /// The first sample at or after this time is the baseline of the growth.
    pub warmup_s: f64,
    pub baseline_t_s: f64,
    pub baseline_kb: u64,
    pub growth_kb: i64,
    pub growth_pct: f64,
    /// Least-squares slope of the samples from the baseline on.
    pub slope_kb_per_min: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct LogScan {
    pub path: String,
    pub panics: usize,
    pub error_lines: usize,
    pub warn_lines: usize,
    /// The first panic and ERROR lines (colour codes removed).
    pub first: Vec<String>,
    /// The first WARN lines.
    pub first_warn: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SoakRun {
    pub trains: usize,
    pub cameras_per_train: u16,
    pub bitrate_bps_per_train: u64,
    pub fps: u32,
    pub clients: usize,
    pub duration_s: f64,
    pub interval_s: f64,
    pub connect_s: f64,
    pub warm: usize,
    pub samples: Vec<Sample>,
    pub rss: RssSummary,
    pub server_cpu_pct_mean: f64,
    pub load_cpu_pct_mean: f64,
    pub transports: Vec<TransportSummary>,
    pub server_frames_dropped: Option<f64>,
    /// Final values of the counters in [`COUNTERS`], `name{labels}` → value.
    pub server_counters: BTreeMap<String, f64>,
    pub keyframe_requests: u64,
    pub stalled_intervals: usize,
    pub client_errors: Vec<String>,
    pub train_errors: Vec<String>,
    pub log: LogScan,
}

/// `name{labels}` → value for every sample of the metrics in `names`.
fn parse_counters(text: &str, names: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let metric = key.split('{').next().unwrap_or(key);
        if names.contains(&metric) {
            if let Ok(v) = value.parse::<f64>() {
                out.insert(key.to_owned(), v);
            }
        }
    }
    out
}

fn sum_of(counters: &BTreeMap<String, f64>, metric: &str) -> f64 {
    counters.iter().filter(|(k, _)| k.split('{').next() == Some(metric)).map(|(_, v)| v).sum()
}

async fn metrics(server: &Server) -> Option<BTreeMap<String, f64>> {
    match server.api.call("GET", "/metrics", None).await {
        Ok((200, Value::String(text))) => {
            let mut names = COUNTERS.to_vec();
            names.push("railcast_tokio_alive_tasks");
            Some(parse_counters(&text, &names))
        }
        _ => None,
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Count `panicked` lines (the standard panic hook's message) and ERROR/WARN events.
fn scan_log(path: &Path) -> anyhow::Result<LogScan> {
    let text = std::fs::read_to_string(path)?;
    let mut scan = LogScan { path: path.display().to_string(), ..LogScan::default() };
    for line in text.lines() {
        let line = strip_ansi(line);
        let level = line.split_whitespace().nth(1).unwrap_or("");
        let first = if line.contains("panicked") {
            scan.panics += 1;
            &mut scan.first
        } else if level == "ERROR" {
            scan.error_lines += 1;
            &mut scan.first
        } else if level == "WARN" {
            scan.warn_lines += 1;
            &mut scan.first_warn
        } else {
            continue;
        };
        if first.len() < 5 {
            first.push(line.chars().take(300).collect());
        }
    }
    Ok(scan)
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Everything the sampler reads.
#[derive(Debug)]
struct Fleet<'a> {
    server: &'a Server,
    trains: Vec<Train>,
    /// Packets per frame of each train (every frame has the same size).
    ppf: Vec<u64>,
    clients: Vec<Client>,
    /// Clients that never connected: (transport, train). They expected their train's frames too.
    unconnected: Vec<(Transport, usize)>,
    /// Each train's frame count at the previous sample.
    train_seen: Vec<u64>,
}

impl Fleet<'_> {
    fn expected(&self) -> Vec<u64> {
        self.trains.iter().map(|t| t.stats.window_frames.load(Ordering::Relaxed)).collect()
    }

    /// Per-transport tallies. Clients are read before the trains, so a frame in flight counts as
    /// missing, never the other way round.
    fn tallies(&self) -> (Tally, Tally) {
        let delivered: Vec<(Transport, usize, u64, u64)> = self
            .clients
            .iter()
            .map(|c| {
                (c.transport, c.train, c.live.frames.load(Ordering::Relaxed), c.live.packets.load(Ordering::Relaxed))
            })
            .collect();
        let expected = self.expected();
        let (mut ws, mut dc) = (Tally::default(), Tally::default());
        let all = delivered.into_iter().chain(self.unconnected.iter().map(|&(tr, t)| (tr, t, 0, 0)));
        for (transport, train, frames, packets) in all {
            let t = if transport == Transport::WebSocket { &mut ws } else { &mut dc };
            t.frames_expected += expected[train];
            t.packets_expected += expected[train] * self.ppf[train];
            t.frames_delivered += frames;
            t.packets_delivered += packets;
        }
        (ws, dc)
    }

    fn client_errors(&self) -> usize {
        self.clients.iter().filter(|c| c.live.error().is_some()).count()
    }

    /// Clients without a video packet, and trains without a frame, since the previous call.
    fn stalls(&mut self) -> (usize, usize) {
        let frames: Vec<u64> = self.trains.iter().map(|t| t.stats.frames.load(Ordering::Relaxed)).collect();
        let mut stalled = 0;
        for c in &mut self.clients {
            let now = c.live.packets_any.load(Ordering::Relaxed);
            if now == c.seen && frames[c.train] > self.train_seen[c.train] {
                stalled += 1;
            }
            c.seen = now;
        }
        let trains_stalled = frames.iter().zip(&self.train_seen).filter(|(now, before)| now <= before).count();
        self.train_seen = frames;
        (stalled, trains_stalled)
    }
}

/// The server's figures at one sample; `cpu` is restarted. The first sample (`t_s` 0) only
/// starts the stall detection; the last one (`exact`) is taken once the window has closed.
async fn take_sample(
    fleet: &mut Fleet<'_>,
    t_s: f64,
    cpu: &mut (CpuMeter, CpuMeter),
    dropped_at_open: Option<f64>,
    exact: bool,
) -> Sample {
    let server = fleet.server;
    let (server_cpu_pct, load_cpu_pct) = (cpu.0.percent(), cpu.1.percent());
    *cpu = (CpuMeter::start(server.pid()), CpuMeter::start(Pid::Myself));
    let server_rss_kb = server.rss_kb();
    let (websocket, webrtc) = fleet.tallies();
    let stalls = fleet.stalls();
    let (stalled, trains_stalled) = if t_s == 0.0 { (0, 0) } else { stalls };
    let m = metrics(server).await;
    Sample {
        t_s,
        server_rss_kb,
        server_cpu_pct,
        load_cpu_pct,
        load_rss_kb: procstat::rss_kb(Pid::Myself),
        server_threads: procstat::status_field(server.pid(), "Threads").unwrap_or(0),
        server_fds: procstat::fds(server.pid()),
        server_tasks: m.as_ref().and_then(|m| m.get("railcast_tokio_alive_tasks").copied()),
        websocket,
        webrtc,
        server_frames_dropped: m
            .as_ref()
            .zip(dropped_at_open)
            .map(|(m, before)| sum_of(m, "railcast_frames_dropped_total") - before),
        client_errors: fleet.client_errors(),
        stalled,
        trains_stalled,
        exact,
    }
}

fn server_alive(server: &Server) -> bool {
    // A process that exited (a zombie until reaped, or gone) has no VmRSS line.
    procstat::status_field(server.pid(), "VmRSS").is_some()
}

async fn soak(ctx: &Ctx, server: &Server, errors: &mut Vec<String>) -> anyhow::Result<SoakRun> {
    let duration = ctx.soak_duration;
    let interval = ctx.soak_interval.min(duration / 6).max(Duration::from_millis(100));
    let window = Arc::new(Window::default());
    let mut trains = Vec::new();
    for t in 0..TRAINS {
        let spec = TrainSpec::new(train_id(t), 1, ctx.soak_bitrate, ctx, server);
        trains.push(Train::start(&server.api.base, spec, Arc::clone(&window)).await?);
    }
    for t in &trains {
        server.api.wait_train_online(&t.spec.id, Duration::from_secs(10)).await?;
    }
    // Client i of a transport watches train i % TRAINS.
    let n = TRAINS * PER_TRAIN;
    let rcs = server.api.remote_controls(2 * n, |i| Some(train_id(i % TRAINS))).await?;
    let planned = |k: usize| -> Vec<(usize, String)> { (0..n).map(|i| (i % TRAINS, rcs[k * n + i].clone())).collect() };

    let (stop_tx, stop_rx) = watch::channel(false);
    let warm = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    let mut unconnected = Vec::new();
    for (k, transport) in TRANSPORTS.into_iter().enumerate() {
        eprintln!("[soak] connecting {n} {} clients …", name(transport));
        let concurrency = match transport {
            Transport::WebSocket | Transport::WebTransport | Transport::Mqtt => ctx.ws_connect_concurrency,
            Transport::WebRtc | Transport::Whep => ctx.rtc_connect_concurrency,
        };
        let failed =
            connect_all(server, transport, planned(k), concurrency, &window, &warm, &stop_rx, &mut clients).await;
        for (train, e) in failed {
            unconnected.push((transport, train));
            errors.push(e);
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while warm.load(Ordering::Relaxed) < clients.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warm_n = warm.load(Ordering::Relaxed);
    if warm_n < clients.len() {
        errors.push(format!("only {warm_n} of {} connected clients received video within 30 s", clients.len()));
    }
    tokio::time::sleep(ctx.settle).await;

    let ppf = trains
        .iter()
        .map(|t| {
            let (p, f) = (t.stats.packets.load(Ordering::Relaxed), t.stats.frames.load(Ordering::Relaxed));
            if f == 0 {
                1
            } else {
                (p as f64 / f as f64).round() as u64
            }
        })
        .collect();
    let mut fleet = Fleet { server, trains, ppf, clients, unconnected, train_seen: vec![0; TRAINS] };
    let at_open = metrics(server).await;
    let dropped_at_open = at_open.as_ref().map(|m| sum_of(m, "railcast_frames_dropped_total"));
    let kf_before: u64 = fleet.trains.iter().map(|t| t.stats.keyframe_requests.load(Ordering::Relaxed)).sum();
    procstat::reset_peak(server.pid());
    let mut cpu = (CpuMeter::start(server.pid()), CpuMeter::start(Pid::Myself));
    let whole = (CpuMeter::start(server.pid()), CpuMeter::start(Pid::Myself));
    eprintln!(
        "[soak] {} clients connected in {connect_s:.1} s; streaming for {} (a sample every {})",
        fleet.clients.len(),
        humantime::format_duration(duration),
        humantime::format_duration(interval)
    );
    window.open(duration.as_micros() as u64);
    let t0 = tokio::time::Instant::now();
    let mut samples = vec![take_sample(&mut fleet, 0.0, &mut cpu, dropped_at_open, false).await];
    let progress = |s: &Sample| {
        eprintln!(
            "[soak] {:>5.0}/{:.0} s: server RSS {:.1} MB, CPU {:.0} %; delivered WebSocket {}, WebRTC {}; \
             server drops {}; client errors {}, stalled {}",
            s.t_s,
            duration.as_secs_f64(),
            s.server_rss_kb as f64 / 1024.0,
            s.server_cpu_pct,
            pct(s.websocket.delivered()),
            pct(s.webrtc.delivered()),
            s.server_frames_dropped.map(|d| format!("{d:.0}")).unwrap_or_else(|| "?".into()),
            s.client_errors,
            s.stalled
        );
    };
    let mut server_gone = false;
    for k in 1u32.. {
        let at = interval * k;
        // The end of the window is the last sample (not one a rounding error before it).
        if at + interval / 10 >= duration {
            break;
        }
        tokio::time::sleep_until(t0 + at).await;
        let s = take_sample(&mut fleet, at.as_secs_f64(), &mut cpu, dropped_at_open, false).await;
        progress(&s);
        samples.push(s);
        if !server_alive(server) {
            server_gone = true;
            break;
        }
    }
    if !server_gone {
        tokio::time::sleep_until(t0 + duration).await;
    }
    // Server figures at the end of the window; delivery once the last frames have landed.
    let end_rss = server.rss_kb();
    let end_cpu = (cpu.0.percent(), cpu.1.percent());
    let (server_cpu_pct_mean, load_cpu_pct_mean) = (whole.0.percent(), whole.1.percent());
    let peak_kb = procstat::peak_rss_kb(server.pid());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut last =
        take_sample(&mut fleet, t0.elapsed().min(duration).as_secs_f64(), &mut cpu, dropped_at_open, true).await;
    (last.server_rss_kb, last.server_cpu_pct, last.load_cpu_pct) = (end_rss, end_cpu.0, end_cpu.1);
    progress(&last);
    samples.push(last);
    if server_gone || !server_alive(server) {
        errors.push("the server exited during the soak".into());
    }
    let final_counters = metrics(server).await.unwrap_or_default();
    let keyframe_requests =
        fleet.trains.iter().map(|t| t.stats.keyframe_requests.load(Ordering::Relaxed)).sum::<u64>() - kf_before;

    // Stop the clients; their counters give latency and the worst client.
    let _ = stop_tx.send(true);
    let expected = fleet.expected();
    let mut per = [(Vec::<f64>::new(), FrameCounter::default(), 0usize), Default::default()];
    let mut client_errors = Vec::new();
    let mut peers = Vec::new();
    for c in fleet.clients.drain(..) {
        let slot = &mut per[usize::from(c.transport == Transport::WebRtc)];
        match tokio::time::timeout(Duration::from_secs(10), c.task).await {
            Ok(Ok(counter)) => slot.1.merge(&counter),
            Ok(Err(e)) => c.live.set_error(format!("client task: {e}")),
            Err(_) => c.live.set_error("client did not stop".into()),
        }
        if let Some(e) = c.live.error() {
            slot.2 += 1;
            client_errors.push(format!("{} client of {}: {e}", name(c.transport), train_id(c.train)));
        }
        let exp = expected[c.train];
        slot.0.push(if exp > 0 { c.live.frames.load(Ordering::Relaxed) as f64 / exp as f64 } else { 1.0 });
        peers.extend(c.peer);
    }
    stream::iter(peers)
        .for_each_concurrent(16, |c| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.pc.close()).await;
        })
        .await;
    let mut train_errors = Vec::new();
    for t in fleet.trains.drain(..) {
        let id = t.spec.id.clone();
        if let Err(e) = t.stop().await {
            train_errors.push(format!("{id}: {e:#}"));
        }
    }

    let last = samples.last().cloned().ok_or_else(|| anyhow::anyhow!("no sample"))?;
    let transports = TRANSPORTS
        .into_iter()
        .zip(per)
        .map(|(transport, (fractions, counter, errs))| {
            let tally = if transport == Transport::WebSocket { last.websocket } else { last.webrtc };
            TransportSummary {
                transport,
                clients: n,
                connected: fractions.len(),
                tally,
                frames_missing: tally.frames_missing(),
                delivered_fraction: tally.delivered(),
                packets_delivered_fraction: tally.packets_delivered_fraction(),
                worst_client_delivered: fractions
                    .iter()
                    .copied()
                    .chain(fleet.unconnected.iter().filter(|u| u.0 == transport).map(|_| 0.0))
                    .reduce(f64::min),
                latency: Latency::from(&counter.latency),
                client_errors: errs,
            }
        })
        .collect();

    let warmup = interval.max(Duration::from_secs(60).min(duration / 10)).as_secs_f64();
    let first = samples.first().cloned().unwrap_or_else(|| last.clone());
    let baseline = samples.iter().find(|s| s.t_s + 1e-6 >= warmup).unwrap_or(&last);
    let after: Vec<(f64, f64)> =
        samples.iter().filter(|s| s.t_s >= baseline.t_s).map(|s| (s.t_s / 60.0, s.server_rss_kb as f64)).collect();
    let growth_kb = last.server_rss_kb as i64 - baseline.server_rss_kb as i64;
    let rss = RssSummary {
        start_kb: first.server_rss_kb,
        peak_kb: samples.iter().map(|s| s.server_rss_kb).max().unwrap_or(0).max(peak_kb),
        end_kb: last.server_rss_kb,
        warmup_s: warmup,
        baseline_t_s: baseline.t_s,
        baseline_kb: baseline.server_rss_kb,
        growth_kb,
        growth_pct: growth_kb as f64 / baseline.server_rss_kb.max(1) as f64 * 100.0,
        slope_kb_per_min: slope(&after),
    };
    let log_path = ctx.server.log_dir.join("server-soak.log");
    let log = scan_log(&log_path).unwrap_or_else(|e| {
        errors.push(format!("cannot read the server log {}: {e}", log_path.display()));
        LogScan { path: log_path.display().to_string(), ..LogScan::default() }
    });
    Ok(SoakRun {
        trains: TRAINS,
        cameras_per_train: 1,
        bitrate_bps_per_train: ctx.soak_bitrate,
        fps: ctx.fps,
        clients: 2 * n,
        duration_s: duration.as_secs_f64(),
        interval_s: interval.as_secs_f64(),
        connect_s,
        warm: warm_n,
        stalled_intervals: samples.iter().map(|s| s.stalled).sum(),
        server_frames_dropped: last.server_frames_dropped,
        samples,
        rss,
        server_cpu_pct_mean,
        load_cpu_pct_mean,
        transports,
        server_counters: final_counters.into_iter().filter(|(k, _)| k != "railcast_tokio_alive_tasks").collect(),
        keyframe_requests,
        client_errors,
        train_errors,
        log,
    })
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(vec![
        "t s",
        "srv RSS MB",
        "srv CPU%",
        "load CPU%",
        "threads",
        "fds",
        "tasks",
        "ws delivered",
        "dc delivered",
        "missing",
        "srv drops",
        "errors",
        "stalled",
    ]);
    eprintln!(
        "[soak] {TRAINS} trains at {} Mbit/s, {} WebSocket + {} WebRTC clients, {} …",
        ctx.soak_bitrate as f64 / 1e6,
        TRAINS * PER_TRAIN,
        TRAINS * PER_TRAIN,
        humantime::format_duration(ctx.soak_duration)
    );
    let server = match Server::start(&ctx.server, "soak").await {
        Ok(s) => s,
        Err(e) => {
            out.fail(format!("{e:#}"));
            return out;
        }
    };
    let mut errors = Vec::new();
    let result = soak(ctx, &server, &mut errors).await;
    server.stop().await;
    for e in errors {
        out.fail(e);
    }
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            out.fail(format!("{e:#}"));
            return out;
        }
    };
    for s in &r.samples {
        let missing = s.websocket.frames_missing() + s.webrtc.frames_missing();
        out.table.rows.push(vec![
            if s.exact { format!("{:.0} end", s.t_s) } else { format!("{:.0}", s.t_s) },
            mb(s.server_rss_kb),
            if s.t_s == 0.0 { "-".into() } else { format!("{:.1}", s.server_cpu_pct) },
            if s.t_s == 0.0 { "-".into() } else { format!("{:.1}", s.load_cpu_pct) },
            s.server_threads.to_string(),
            s.server_fds.to_string(),
            s.server_tasks.map(|t| format!("{t:.0}")).unwrap_or_else(|| "?".into()),
            pct(s.websocket.delivered()),
            pct(s.webrtc.delivered()),
            missing.to_string(),
            s.server_frames_dropped.map(|d| format!("{d:.0}")).unwrap_or_else(|| "?".into()),
            s.client_errors.to_string(),
            s.stalled.to_string(),
        ]);
    }

    // What fails the run.
    for t in &r.transports {
        if t.connected < t.clients {
            out.fail(format!("{}: only {} of {} clients connected", name(t.transport), t.connected, t.clients));
        }
        if t.delivered_fraction.is_none_or(|d| d < MIN_DELIVERED) {
            out.fail(format!(
                "{}: delivered {} of the frames (below {:.0} %)",
                name(t.transport),
                pct(t.delivered_fraction),
                MIN_DELIVERED * 100.0
            ));
        }
    }
    for e in r.client_errors.iter().take(5) {
        out.fail(format!("client error: {e}"));
    }
    if r.client_errors.len() > 5 {
        out.fail(format!("… {} client errors in all", r.client_errors.len()));
    }
    if r.stalled_intervals > 0 {
        out.fail(format!("{} times a client received nothing for a whole sample interval", r.stalled_intervals));
    }
    let trains_stalled: usize = r.samples.iter().map(|s| s.trains_stalled).sum();
    if trains_stalled > 0 {
        out.fail(format!("{trains_stalled} times a train sent nothing for a whole sample interval"));
    }
    for e in &r.train_errors {
        out.fail(format!("train stopped early: {e}"));
    }
    if r.log.panics > 0 {
        out.fail(format!("{} `panicked` lines in the server log {}", r.log.panics, r.log.path));
    }
    for l in &r.log.first {
        out.errors.push(format!("server log: {l}"));
    }

    // Targets (the run's verdict is above; these show the figures).
    out.targets.push(Target::new(
        "panics in the server log",
        "0 (fails the run)",
        format!("{} ({} ERROR and {} WARN lines)", r.log.panics, r.log.error_lines, r.log.warn_lines),
        Some(r.log.panics == 0),
    ));
    out.targets.push(Target::new(
        "client errors and disconnects",
        "0 (fails the run)",
        format!(
            "{} errors, {} stalled intervals, {} of {} clients connected",
            r.client_errors.len(),
            r.stalled_intervals,
            r.transports.iter().map(|t| t.connected).sum::<usize>(),
            r.clients
        ),
        Some(
            r.client_errors.is_empty()
                && r.stalled_intervals == 0
                && r.transports.iter().all(|t| t.connected == t.clients),
        ),
    ));
    for t in &r.transports {
        out.targets.push(Target::new(
            format!("{} delivered frames", name(t.transport)),
            "≥ 99 % (fails the run); 100 % expected",
            format!(
                "{} ({} of {} missing; packets {}; worst client {}; p50/p99/max {}/{}/{} ms)",
                pct(t.delivered_fraction),
                t.frames_missing,
                t.tally.frames_expected,
                pct(t.packets_delivered_fraction),
                pct(t.worst_client_delivered),
                ms(t.latency.p50_us),
                ms(t.latency.p99_us),
                ms(t.latency.max_us)
            ),
            Some(t.delivered_fraction.is_some_and(|d| d >= MIN_DELIVERED)),
        ));
    }
    out.targets.push(Target::new(
        "frames dropped by the server",
        "0 expected (for reference)",
        format!(
            "{} during the window ({} keyframe requests)",
            r.server_frames_dropped.map(|d| format!("{d:.0}")).unwrap_or_else(|| "?".into()),
            r.keyframe_requests
        ),
        r.server_frames_dropped.map(|d| d == 0.0),
    ));
    let rss = &r.rss;
    out.targets.push(Target::new(
        "server RSS growth after warm-up",
        "≤ 10 % (no target in the issue; for reference)",
        format!(
            "start {} MB, peak {}, end {}; {:+.1} MB ({:+.1} %) since t={:.0} s, slope {} kB/min",
            mb(rss.start_kb),
            mb(rss.peak_kb),
            mb(rss.end_kb),
            rss.growth_kb as f64 / 1024.0,
            rss.growth_pct,
            rss.baseline_t_s,
            rss.slope_kb_per_min.map(|s| format!("{s:+.0}")).unwrap_or_else(|| "-".into())
        ),
        (rss.end_kb > 0).then_some(rss.growth_pct <= 10.0),
    ));
    out.step(&r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_panics_errors_and_warnings_in_a_coloured_log() {
        let dir = std::env::temp_dir().join(format!("railcast-soak-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("server.log");
        let log =
            "\u{1b}[2m2026-11-22T22:12:45.9Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m \u{1b}[2mrtc_ice\u{1b}[0m: no pairs\n\
                   2026-11-22T22:12:46.0Z  INFO railcast_server: listening\n\
                   thread 'tokio-runtime-worker' panicked at server/src/hub/mod.rs:1:1:\n\
                   2026-11-22T22:12:47.0Z ERROR railcast_server::ws: write failed\n";
        std::fs::write(&path, log).expect("write log");
        let scan = scan_log(&path).expect("scan");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!((scan.panics, scan.error_lines, scan.warn_lines), (1, 1, 1));
        assert_eq!(scan.first_warn, vec!["2026-11-22T22:12:45.9Z  WARN rtc_ice: no pairs".to_owned()]);
        assert_eq!(scan.first.len(), 2);
    }

    #[test]
    fn parses_counters_by_label_set() {
        let text = "# HELP railcast_frames_dropped_total Frames not delivered.\n\
                    # TYPE railcast_frames_dropped_total counter\n\
                    railcast_frames_dropped_total{reason=\"queue_full\"} 3\n\
                    railcast_frames_dropped_total{reason=\"awaiting_keyframe\"} 4\n\
                    railcast_frames_dropped_totally 100\n\
                    railcast_train_connections_total 5\n";
        let c = parse_counters(text, COUNTERS);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("railcast_train_connections_total"), Some(&5.0));
        assert_eq!(sum_of(&c, "railcast_frames_dropped_total"), 7.0);
    }

    #[test]
    fn slope_of_a_line() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0)]), None);
    }
}
