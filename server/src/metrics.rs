//! Prometheus metrics, served at `GET /metrics` (text exposition format).
//!
//! Counters are process-wide (one registry per process) and incremented where things happen:
//! ingest and hub for what comes in and what is dropped, transports for what goes out. Gauges
//! are computed from the live registries when scraped. README lists every metric.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::state::AppState;

/// Label value of the train-facing transport.
pub const QUIC: &str = "quic";

#[derive(Debug)]
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
    pub train_connections: IntCounter,
    pub tokio_tasks: IntGauge,
    pub webrtc_sessions: IntGaugeVec,
    pub webrtc_sessions_created: IntCounter,
    pub webrtc_sessions_failed: IntCounterVec,
    pub webrtc_setup_seconds: prometheus::Histogram,
    pub limit_refusals: IntCounterVec,
    pub auth_refusals: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
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
            commands_acked: counter(&r, "railcast_commands_acked_total", "Command acks received, by outcome.", &["ok"]),
            commands_failed: counter(&r, "railcast_commands_failed_total", "Commands that got no ack, by reason.", &["reason"]),
            train_connections: plain("railcast_train_connections_total", "Train sessions accepted (hello → welcome)."),
            tokio_tasks: {
                let g = IntGauge::new("railcast_tokio_alive_tasks", "Tasks alive in the server's async runtime.").expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            webrtc_sessions: {
                let g = IntGaugeVec::new(Opts::new("railcast_webrtc_sessions", "WebRTC sessions by peer connection state."), &["state"])
                    .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            webrtc_sessions_created: plain("railcast_webrtc_sessions_created_total", "WebRTC sessions created (offers made)."),
            webrtc_sessions_failed: counter(&r, "railcast_webrtc_sessions_failed_total", "WebRTC sessions that never opened, by reason.", &["reason"]),
            limit_refusals: counter(&r, "railcast_limit_refusals_total", "Requests, connections and commands refused by a limit, by limit.", &["limit"]),
            auth_refusals: counter(
                &r,
                "railcast_auth_refusals_total",
                "Refused credentials: peer is train or client; reason is missing, invalid, unknown_train or forbidden (authenticated, but the role or owner does not allow it).",
                &["peer", "reason"],
            ),
            webrtc_setup_seconds: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new("railcast_webrtc_setup_seconds", "Offer request to `video` data channel open.")
                        .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            registry: r,
        }
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Refresh the gauges from `app` and render every metric.
pub fn render(app: &AppState) -> String {
    let m = &*METRICS;
    let streams = app.hub.streams();
    m.trains_known.set(streams.len() as i64);
    m.trains_connected.set(streams.iter().filter(|s| s.is_online()).count() as i64);
    m.remote_controls.set(app.remotes.len() as i64);
    for t in crate::session::Transport::ALL {
        m.sessions.with_label_values(&[t.name()]).set(0);
    }
    for s in app.sessions.all() {
        m.sessions.with_label_values(&[s.transport.name()]).inc();
    }
    m.tokio_tasks.set(tokio::runtime::Handle::current().metrics().num_alive_tasks() as i64);
    m.webrtc_sessions.reset();
    for (state, n) in app.webrtc.count_by_state() {
        m.webrtc_sessions.with_label_values(&[&state]).set(n);
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::error!("cannot encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Count one video packet handed to a client over `transport`.
/// One transport's per-packet metrics, resolved once per session: looking the labels up on every
/// packet (hashing, a read lock) was ≈ 12 % of the server's CPU at 1,000 WebSocket clients
/// (railcast-bench ws-fanout, perf).
#[derive(Debug, Clone)]
pub struct PacketOut {
    packets: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    frames: prometheus::IntCounter,
    latency: prometheus::Histogram,
}

/// Whether a video packet starts a frame, and its relay latency at `now_us` in seconds. The hub
/// validated the packet; only the header is read here.
fn frame_start_and_latency(packet: &[u8], now_us: u64) -> Option<(bool, f64)> {
    let h = railcast_protocol::VideoHeader::parse(packet, usize::MAX).ok()?;
    Some((h.starts_frame(), now_us.saturating_sub(h.capture_us) as f64 / 1e6))
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
    pub fn record_batch(&self, packets: &[bytes::Bytes], now_us: u64) -> u64 {
        let mut bytes = 0u64;
        let mut frames = 0u64;
        // One atomic update per bucket touched, instead of several per packet.
        let latency = self.latency.local();
        for p in packets {
            bytes += p.len() as u64;
            if let Some((starts, seconds)) = frame_start_and_latency(p, now_us) {
                frames += u64::from(starts);
                latency.observe(seconds);
            }
        }
        latency.flush();
        self.packets.inc_by(packets.len() as u64);
        self.bytes.inc_by(bytes);
        self.frames.inc_by(frames);
        bytes
    }

    /// A video packet handed to a client at `now_us`.
    pub fn record(&self, packet: &[u8], now_us: u64) {
        self.packets.inc();
        self.bytes.inc_by(packet.len() as u64);
        if let Some((starts, seconds)) = frame_start_and_latency(packet, now_us) {
            if starts {
                self.frames.inc();
            }
            self.latency.observe(seconds);
        }
    }
}
