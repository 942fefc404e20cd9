//! Prometheus metrics, served at `GET /metrics` (text exposition format).
//!
//! A leaf: it imports nothing of the server. Counters are process-wide (one registry per process)
//! and incremented where things happen: ingest and hub for what comes in and what is dropped,
//! transports for what goes out. A module with metrics of its own registers them in
//! [`Metrics::registry`] (the WebRTC transport does). Gauges are kept by their owners, or
//! refreshed at each scrape by a hook the owner installs ([`on_scrape`]). README lists every
//! metric.

use std::sync::LazyLock;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Label value of the train-facing transport.
pub const QUIC: &str = "quic";
/// The ingest of a train mirrored from another node of a cluster (`GET /api/trains`:
/// `"ingest": "cluster"`; metrics).
pub const CLUSTER: &str = "cluster";

pub struct Metrics {
    registry: Registry,
    pub trains_connected: IntGauge,
    pub trains_known: IntGauge,
    pub remote_controls: IntGauge,
    pub sessions: IntGaugeVec,
    pub packets_in: IntCounterVec,
    pub frames_in: IntCounterVec,
    pub bytes_in: IntCounterVec,
    pub packets_out: IntCounterVec,
    pub frames_out: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub packets_rejected: IntCounterVec,
    pub frames_dropped: IntCounterVec,
    pub relay_latency: HistogramVec,
    pub commands_sent: IntCounter,
    pub commands_acked: IntCounterVec,
    pub commands_failed: IntCounterVec,
    /// A command handed to its train → its ack back.
    pub command_rtt: Histogram,
    pub train_connections: IntCounter,
    pub tokio_tasks: IntGauge,
    pub limit_refusals: IntCounterVec,
    pub auth_refusals: IntCounterVec,
    /// Per-train series ([`TrainSample`]), rebuilt at each scrape.
    trains: TrainSeries,
    /// Refreshers run before each scrape, by id.
    hooks: Mutex<Vec<(u64, Hook)>>,
    /// One scrape at a time: refreshing resets the per-train series.
    scrape: Mutex<()>,
    next_hook: AtomicU64,
}

type Hook = Box<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A labelled counter, registered in `r`.
pub fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let trains_connected = gauge("railcast_trains_connected", "Trains with a live QUIC session.");
        let trains_known = gauge("railcast_trains_known", "Trains seen since start-up, online or not.");
        let remote_controls = gauge("railcast_remote_controls", "Remote controls defined.");
        let sessions = IntGaugeVec::new(
            Opts::new("railcast_sessions", "Live remote-control sessions by transport."),
            &["transport"],
        )
        .expect("valid metric");
        r.register(Box::new(sessions.clone())).expect("unique metric");
        let relay_latency = HistogramVec::new(
            HistogramOpts::new(
                "railcast_relay_latency_seconds",
                "Capture timestamp of a packet (train clock) to the moment it is handed to a transport.",
            )
            .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),
            &["transport"],
        )
        .expect("valid metric");
        r.register(Box::new(relay_latency.clone())).expect("unique metric");
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        Self {
            trains_connected,
            trains_known,
            remote_controls,
            sessions,
            packets_in: counter(&r, "railcast_packets_in_total", "Video packets received from trains.", &["transport"]),
            frames_in: counter(&r, "railcast_frames_in_total", "Video frames (first chunks) received from trains.", &["transport"]),
            bytes_in: counter(&r, "railcast_bytes_in_total", "Video packet bytes received from trains.", &["transport"]),
            packets_out: counter(&r, "railcast_packets_out_total", "Video packets handed to clients.", &["transport"]),
            frames_out: counter(&r, "railcast_frames_out_total", "Video frames (first chunks) handed to clients.", &["transport"]),
            bytes_out: counter(&r, "railcast_bytes_out_total", "Video packet bytes handed to clients.", &["transport"]),
            packets_rejected: counter(&r, "railcast_packets_rejected_total", "Packets from trains refused, by reason.", &["reason"]),
            frames_dropped: counter(
                &r,
                "railcast_frames_dropped_total",
                "Frames not delivered to a subscriber, by reason (queue_full: it fell behind; awaiting_keyframe: skipped until the next keyframe).",
                &["reason"],
            ),
            relay_latency,
            commands_sent: plain("railcast_commands_sent_total", "Commands handed to trains."),
            commands_acked: counter(
                &r,
                "railcast_commands_acked_total",
                "Command acks received, by result (ok: the train carried it out; error: it refused).",
                &["result"],
            ),
            command_rtt: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "railcast_command_rtt_seconds",
                        "A command handed to its train until its ack came back (acked commands only).",
                    )
                    .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            commands_failed: counter(&r, "railcast_commands_failed_total", "Commands that got no ack, by reason.", &["reason"]),
            train_connections: plain("railcast_train_connections_total", "Train sessions accepted (hello → welcome)."),
            tokio_tasks: {
                let g = IntGauge::new("railcast_tokio_alive_tasks", "Tasks alive in the server's async runtime.").expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            limit_refusals: counter(&r, "railcast_limit_refusals_total", "Requests, connections and commands refused by a limit, by limit.", &["limit"]),
            auth_refusals: counter(
                &r,
                "railcast_auth_refusals_total",
                "Refused credentials: peer is train or client; reason is missing, invalid, unknown_train or forbidden (authenticated, but the role or owner does not allow it).",
                &["peer", "reason"],
            ),
            trains: TrainSeries::new(&r),
            hooks: Mutex::new(Vec::new()),
            next_hook: AtomicU64::new(1),
            scrape: Mutex::new(()),
            registry: build_and_process(r),
        }
    }
}

/// `railcast_build_info{version, commit}` and the process collector (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, …), registered in `r`.
fn build_and_process(r: Registry) -> Registry {
    let info = IntGaugeVec::new(
        Opts::new("railcast_build_info", "Always 1; the labels say which build runs."),
        &["version", "commit"],
    )
    .expect("valid metric");
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), COMMIT]).set(1);
    r.register(Box::new(info)).expect("unique metric");
    r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("unique metric");
    r
}

/// The git commit the server was built from (`build.rs`; `unknown` outside a checkout).
pub const COMMIT: &str = env!("RAILCAST_GIT_COMMIT");

/// One train's figures for its own series, as its owner reads them at a scrape.
#[derive(Debug, Clone, Default)]
pub struct TrainSample {
    pub train: String,
    pub online: bool,
    pub bytes_in: u64,
    pub frames_in: u64,
    pub frames_dropped: u64,
    pub subscribers: usize,
    pub bitrate_bps: f64,
    pub fps: f64,
}

/// The per-train series. Their number is bounded by `max_trains` (a train beyond it is refused
/// at its hello); a forgotten train's series go at the next scrape.
struct TrainSeries {
    online: IntGaugeVec,
    bytes_in: IntCounterVec,
    frames_in: IntCounterVec,
    frames_dropped: IntCounterVec,
    subscribers: IntGaugeVec,
    bitrate: GaugeVec,
    fps: GaugeVec,
}

impl TrainSeries {
    fn new(r: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["train"]).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let float = |name: &str, help: &str| {
            let g = GaugeVec::new(Opts::new(name, help), &["train"]).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        Self {
            online: gauge("railcast_train_online", "1 while the train has a live session, 0 while known but offline."),
            bytes_in: counter(r, "railcast_train_bytes_in_total", "Media bytes received from the train.", &["train"]),
            frames_in: counter(r, "railcast_train_frames_in_total", "Frames received from the train.", &["train"]),
            frames_dropped: counter(
                r,
                "railcast_train_frames_dropped_total",
                "Frames of the train its subscribers did not get (queue full, waiting for a keyframe).",
                &["train"],
            ),
            subscribers: gauge("railcast_train_subscribers", "Client sessions subscribed to the train."),
            bitrate: float(
                "railcast_train_bitrate_bits_per_second",
                "The train's media bitrate over the last seconds, all cameras.",
            ),
            fps: float(
                "railcast_train_frames_per_second",
                "The train's frame rate over the last seconds, its fastest camera.",
            ),
        }
    }

    /// Replace every series by `samples`' (a counter is set by a reset and one increment: the
    /// owner keeps the running totals).
    fn set(&self, samples: &[TrainSample]) {
        for v in [&self.online, &self.subscribers] {
            v.reset();
        }
        for v in [&self.bytes_in, &self.frames_in, &self.frames_dropped] {
            v.reset();
        }
        self.bitrate.reset();
        self.fps.reset();
        for t in samples {
            let l = [t.train.as_str()];
            self.online.with_label_values(&l).set(i64::from(t.online));
            self.bytes_in.with_label_values(&l).inc_by(t.bytes_in);
            self.frames_in.with_label_values(&l).inc_by(t.frames_in);
            self.frames_dropped.with_label_values(&l).inc_by(t.frames_dropped);
            self.subscribers.with_label_values(&l).set(t.subscribers as i64);
            self.bitrate.with_label_values(&l).set(t.bitrate_bps);
            self.fps.with_label_values(&l).set(t.fps);
        }
    }
}

/// Set the per-train series (call it from an [`on_scrape`] refresher).
pub fn set_trains(samples: &[TrainSample]) {
    METRICS.trains.set(samples);
}

/// Every `reason` of `railcast_commands_failed_total` (the hub's `CommandError::code`s; a test
/// there keeps the two lists equal).
pub const COMMAND_FAILURE_REASONS: &[&str] =
    &["train_not_found", "train_offline", "train_lost", "train_busy", "command_timeout", "not_in_control"];

/// Every `reason` of `railcast_frames_dropped_total`.
pub const DROP_REASONS: &[&str] = &["queue_full", "awaiting_keyframe"];

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics::new();
    // Series with known label values exist from the start, at 0: a rate or an alert over them
    // works before the first event, and a dashboard can be checked against a fresh server.
    for result in ["ok", "error"] {
        let _ = m.commands_acked.with_label_values(&[result]);
    }
    for reason in COMMAND_FAILURE_REASONS {
        let _ = m.commands_failed.with_label_values(&[reason]);
    }
    for reason in DROP_REASONS {
        let _ = m.frames_dropped.with_label_values(&[reason]);
    }
    m
});

impl Metrics {
    /// The registry, for a module that registers metrics of its own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Run `refresh` before every scrape, until the returned guard drops: the owner of a gauge
/// computed from live state (trains, remote controls, peers) sets it there.
pub fn on_scrape(refresh: impl Fn() + Send + Sync + 'static) -> ScrapeHook {
    let m = &*METRICS;
    let id = m.next_hook.fetch_add(1, Ordering::Relaxed);
    m.hooks.lock().unwrap_or_else(PoisonError::into_inner).push((id, Box::new(refresh)));
    ScrapeHook(id)
}

/// Keeps a refresher of [`on_scrape`] installed.
#[derive(Debug)]
pub struct ScrapeHook(u64);

impl Drop for ScrapeHook {
    fn drop(&mut self) {
        METRICS.hooks.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _)| *id != self.0);
    }
}

/// Refresh the gauges and render every metric.
pub fn render() -> String {
    let m = &*METRICS;
    let _one_at_a_time = m.scrape.lock().unwrap_or_else(PoisonError::into_inner);
    for (_, refresh) in m.hooks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        refresh();
    }
    m.tokio_tasks.set(tokio::runtime::Handle::current().metrics().num_alive_tasks() as i64);
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::error!("cannot encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// One transport's per-packet metrics, resolved once per session: looking the labels up on every
/// packet (hashing, a read lock) was a visible share of the server's CPU in the fan-out's profile
/// (docs/benchmarks-history.md, "Sessions 1–3: why targets were missed").
#[derive(Debug, Clone)]
pub struct PacketOut {
    packets: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    frames: prometheus::IntCounter,
    latency: prometheus::Histogram,
}

/// What the metrics need of one video packet handed to a client.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub len: usize,
    pub starts_frame: bool,
    /// Capture time on the train's clock, µs since the UNIX epoch.
    pub capture_us: u64,
}

impl PacketOut {
    pub fn new(transport: &str) -> Self {
        let m = &*METRICS;
        Self {
            packets: m.packets_out.with_label_values(&[transport]),
            bytes: m.bytes_out.with_label_values(&[transport]),
            frames: m.frames_out.with_label_values(&[transport]),
            latency: m.relay_latency.with_label_values(&[transport]),
        }
    }

    /// Video packets handed to a client at once, at `now_us`; returns their bytes.
    pub fn record_batch(&self, packets: impl IntoIterator<Item = Sent>, now_us: u64) -> u64 {
        let (mut n, mut bytes, mut frames) = (0u64, 0u64, 0u64);
        // One atomic update per bucket touched, instead of several per packet.
        let latency = self.latency.local();
        for p in packets {
            n += 1;
            bytes += p.len as u64;
            frames += u64::from(p.starts_frame);
            latency.observe(now_us.saturating_sub(p.capture_us) as f64 / 1e6);
        }
        latency.flush();
        self.packets.inc_by(n);
        self.bytes.inc_by(bytes);
        self.frames.inc_by(frames);
        bytes
    }
}
