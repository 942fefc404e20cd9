//! WebRTC transport: two data channels per peer, `video` (unordered, `maxRetransmits: 0`: a lost
//! chunk costs its frame, never the stream) and `command` (ordered, reliable).
//!
//! Same shape as [`crate::transport::ws`]: [`Server`] accepts (it creates peers when a signaling
//! front-end asks, in either direction) and one [`datachannel::Session`] task per peer owns it,
//! around a [`crate::relay::Relay`]. The `video` channel carries exactly the packets the WebSocket
//! transport carries; `command` carries the same JSON. The peer's send-buffer limit is on: when
//! the channel is full the session stops draining its hub queue, so the hub drops whole frames
//! for this peer only.
//!
//! Every peer connection shares one UDP socket (`webrtc_udp_port`, bound at start-up by
//! [`Settings::bind_udp`]): the vendored webrtc-rs's `UdpMux` routes its datagrams by ICE ufrag,
//! then by the client's address (third_party/PATCHES.md, 18). `webrtc_udp_ports` instead gives
//! each peer a socket of its own from a range.
//!
//! - [`peers`]: the registry ([`Server`]), with plain types for the front-ends;
//! - [`negotiate`]: the peer connection, SDP and candidates, both directions;
//! - [`datachannel`]: the session over the two channels;
//! - [`tracks`]: RTP media tracks, the session of a WHEP peer (H.264 per camera, keyframe
//!   requests from RTCP, `command` when the client opens it).
//!
//! Signaling front-ends live in `crate::signaling`; this module knows none of them.

pub mod datachannel;
pub mod feedback;
pub mod negotiate;
pub mod peers;
pub mod tracks;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::{HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use webrtc::peer_connection::{UdpMux, UdpMuxStats};

pub use negotiate::{Candidate, NegotiationError, StateChange};
pub use peers::{
    Answer, Candidates, ClientCandidate, Fragment, Kind, MediaAnswer, Offer, Patched, PeerError, PeerView, Server,
    StateChanges,
};

use crate::config::{invalid, Config, ConfigError};

/// The transport's name in the API and metric labels.
pub const NAME: &str = "webrtc";

/// The largest message webrtc-rs sends on a data channel: its default `a=max-message-size`,
/// which railcast keeps. What a session may send is the size the SCTP transport negotiated
/// (this, or less when the peer's SDP says so; RFC 8841).
pub const MAX_MESSAGE_SIZE: usize = 65_536;

pub use crate::ice::{IceServer, IceServers};

/// WebRTC settings (`webrtc_*` in the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the peers' UDP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address announced in candidates instead of `bind_ip` (deployments behind NAT).
    pub advertised_ip: Option<IpAddr>,
    /// The one UDP port every session shares (0: one the OS picks), unless `udp_ports` is set.
    pub udp_port: u16,
    /// One UDP port per session from this range, inclusive, instead of the shared port.
    pub udp_ports: Option<(u16, u16)>,
    /// The shared socket, bound by [`Settings::bind_udp`] at start-up (when `udp_ports` is
    /// `None`); every peer connection uses it.
    pub udp_mux: Option<Arc<UdpMux>>,
    /// Keeps the shared socket's metrics refreshed while these settings live.
    pub udp_metrics: Option<Arc<crate::metrics::ScrapeHook>>,
    /// STUN/TURN servers, used by the server and handed to clients with credentials issued
    /// per session.
    pub ice_servers: IceServers,
    /// Only TURN relay candidates (ICE transport policy `relay`).
    pub relay_only: bool,
    /// A peer whose `video` channel is not open this long after it was created is reaped.
    pub connect_timeout: Duration,
    /// Per-channel send buffer limit, bytes.
    pub send_buffer: usize,
    /// Outbound SCTP packet budget, bytes; `None`: the library's default (1191).
    pub sctp_mtu: Option<u32>,
    /// Largest `video` message, bytes: packets are packed into messages up to this size
    /// (docs/wire-format.md §2.6), and never above the peer's max-message-size.
    pub video_message: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            advertised_ip: None,
            udp_port: 0,
            udp_ports: None,
            udp_mux: None,
            udp_metrics: None,
            ice_servers: IceServers::default(),
            relay_only: false,
            connect_timeout: Duration::from_secs(15),
            send_buffer: 256 * 1024,
            sctp_mtu: None,
            video_message: MAX_MESSAGE_SIZE,
        }
    }
}

impl Settings {
    /// The `webrtc_*` settings, parsed and validated.
    pub fn from_config(c: &Config) -> Result<Self, ConfigError> {
        let advertised_ip = match c.webrtc_advertised_ip.trim() {
            "" => None,
            ip => {
                Some(ip.parse().map_err(|_| invalid("webrtc_advertised_ip", format!("{ip:?} is not an IP address")))?)
            }
        };
        let udp_ports = match c.webrtc_udp_ports.trim() {
            "" => None,
            range => {
                let bad = || invalid("webrtc_udp_ports", format!("{range:?} is not a range like 50000-50100"));
                let (lo, hi) = range.split_once('-').ok_or_else(bad)?;
                let (lo, hi): (u16, u16) =
                    (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
                if lo == 0 || lo > hi {
                    return Err(bad());
                }
                Some((lo, hi))
            }
        };
        if udp_ports.is_some() && c.webrtc_udp_port != 0 {
            return Err(invalid(
                "webrtc_udp_port",
                "set webrtc_udp_port (one port shared by every session) or webrtc_udp_ports (a port per session \
                 from a range), not both",
            ));
        }
        if udp_ports.is_none() && c.webrtc_bind_ip.is_unspecified() && advertised_ip.is_none() {
            return Err(invalid(
                "webrtc_advertised_ip",
                format!(
                    "with webrtc_bind_ip {} and one shared UDP port, candidates need the address clients reach: \
                     set webrtc_advertised_ip, or bind a concrete address",
                    c.webrtc_bind_ip
                ),
            ));
        }
        let ice_servers = IceServers::from_config(c)?;
        if c.webrtc_relay_only && !ice_servers.has_turn() {
            return Err(invalid("webrtc_relay_only", "needs a turn: URL in webrtc_ice_servers"));
        }
        if c.webrtc_connect_timeout.0 < Duration::from_millis(100) {
            return Err(invalid("webrtc_connect_timeout", "must be at least 100ms"));
        }
        if !(16 * 1024..=64 << 20).contains(&c.webrtc_send_buffer) {
            return Err(invalid("webrtc_send_buffer", "must be within 16 KiB..=64 MiB"));
        }
        if !(1..=MAX_MESSAGE_SIZE).contains(&c.webrtc_video_message) {
            return Err(invalid("webrtc_video_message", format!("must be within 1..={MAX_MESSAGE_SIZE}")));
        }
        // One SCTP packet is one DTLS record in one datagram; Chromium drops DTLS packets over
        // 2,048 bytes (record overhead: 37).
        if c.webrtc_sctp_mtu != 0 && !(576..=2000).contains(&c.webrtc_sctp_mtu) {
            return Err(invalid("webrtc_sctp_mtu", "must be 0 (the default) or within 576..=2000"));
        }
        Ok(Self {
            bind_ip: c.webrtc_bind_ip,
            advertised_ip,
            udp_port: c.webrtc_udp_port,
            udp_ports,
            udp_mux: None,
            udp_metrics: None,
            ice_servers,
            relay_only: c.webrtc_relay_only,
            connect_timeout: c.webrtc_connect_timeout.0,
            send_buffer: c.webrtc_send_buffer,
            sctp_mtu: (c.webrtc_sctp_mtu != 0).then_some(c.webrtc_sctp_mtu),
            video_message: c.webrtc_video_message,
        })
    }
}

impl Settings {
    /// Bind the shared UDP socket (unless a port range is configured): call once, at start-up,
    /// inside the runtime. Its address is the one every session's host candidate carries.
    pub fn bind_udp(&mut self) -> std::io::Result<Option<SocketAddr>> {
        if self.udp_ports.is_some() {
            return Ok(None);
        }
        let runtime = webrtc::runtime::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
        let addr = SocketAddr::new(self.bind_ip, self.udp_port);
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
        // Every session's datagrams wait in this one kernel buffer.
        crate::ask_udp_recv_buffer(&socket, "webrtc_udp_port");
        socket.bind(&addr.into())?;
        let mux = UdpMux::from_std(socket.into(), runtime)?;
        let addr = mux.local_addr();
        let weak = Arc::downgrade(&mux);
        let last = std::sync::Mutex::new(UdpMuxStats::default());
        let hook = crate::metrics::on_scrape(move || {
            if let Some(mux) = weak.upgrade() {
                let now = mux.stats();
                let mut last = negotiate::lock(&last);
                METRICS.udp_mux_record(&now, &last);
                *last = now;
            }
        });
        self.udp_mux = Some(mux);
        self.udp_metrics = Some(Arc::new(hook));
        Ok(Some(addr))
    }
}

/// The transport's own metrics, registered in the process's registry on first use.
#[derive(Debug)]
pub struct WebRtcMetrics {
    /// `railcast_webrtc_sessions{state}`: peers by connection state (refreshed at each scrape).
    pub sessions: IntGaugeVec,
    pub created: IntCounter,
    pub failed: IntCounterVec,
    pub setup_seconds: prometheus::Histogram,
    /// `railcast_whep_keyframe_requests_total{outcome}`: WHEP players' PLI/FIR turned into the
    /// hub's keyframe requests (`sent`), held back by the per-camera interval (`limited`), or not
    /// deliverable (`not_sent`: the train offline or its control queue full).
    pub keyframe_requests: IntCounterVec,
    /// `railcast_whep_nack_packets_total{outcome}`: RTP packets WHEP players asked for again
    /// (RTCP generic NACK): sent again from the track's history (`resent`), or too old or never
    /// sent (`unavailable`).
    pub nack_packets: IntCounterVec,
    /// `railcast_webrtc_udp_dropped_total{reason}`: datagrams on the shared port that reached no
    /// session (`unknown_ufrag`, `unknown_address`, `queue_full`, `bad_integrity`).
    pub udp_dropped: IntCounterVec,
    /// `railcast_webrtc_udp_received_total`: datagrams received on the shared port.
    pub udp_received: IntCounter,
    /// `railcast_webrtc_udp_routes{kind}`: routing entries on the shared port now.
    pub udp_routes: IntGaugeVec,
    /// `railcast_webrtc_udp_connections`: peer connections on the shared port now.
    pub udp_connections: IntGauge,
}

impl WebRtcMetrics {
    /// Bring the shared port's metrics up to `now` (`last`: the previous scrape's counts).
    fn udp_mux_record(&self, now: &UdpMuxStats, last: &UdpMuxStats) {
        let dropped = [
            ("unknown_ufrag", now.dropped_unknown_ufrag, last.dropped_unknown_ufrag),
            ("unknown_address", now.dropped_unknown_address, last.dropped_unknown_address),
            ("queue_full", now.dropped_queue_full, last.dropped_queue_full),
            ("bad_integrity", now.dropped_bad_integrity, last.dropped_bad_integrity),
        ];
        for (reason, now, last) in dropped {
            self.udp_dropped.with_label_values(&[reason]).inc_by(now.saturating_sub(last));
        }
        self.udp_received.inc_by(now.received.saturating_sub(last.received));
        for (kind, n) in [("ufrag", now.ufrags), ("address", now.addresses), ("transaction", now.transactions)] {
            self.udp_routes.with_label_values(&[kind]).set(n as i64);
        }
        self.udp_connections.set(now.connections as i64);
    }
}

pub static METRICS: LazyLock<WebRtcMetrics> = LazyLock::new(|| {
    let r = crate::metrics::METRICS.registry();
    let sessions = IntGaugeVec::new(
        Opts::new("railcast_webrtc_sessions", "WebRTC sessions by peer connection state."),
        &["state"],
    )
    .expect("valid metric");
    r.register(Box::new(sessions.clone())).expect("unique metric");
    let created = IntCounter::new("railcast_webrtc_sessions_created_total", "WebRTC sessions created (offers made).")
        .expect("valid metric");
    r.register(Box::new(created.clone())).expect("unique metric");
    let failed = crate::metrics::counter(
        r,
        "railcast_webrtc_sessions_failed_total",
        "WebRTC sessions that never opened, by reason.",
        &["reason"],
    );
    for reason in ["timeout", "failed"] {
        failed.with_label_values(&[reason]);
    }
    let setup_seconds = prometheus::Histogram::with_opts(
        HistogramOpts::new("railcast_webrtc_setup_seconds", "Offer request to `video` data channel open.")
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
    )
    .expect("valid metric");
    r.register(Box::new(setup_seconds.clone())).expect("unique metric");
    let keyframe_requests = crate::metrics::counter(
        r,
        "railcast_whep_keyframe_requests_total",
        "WHEP players' keyframe requests (RTCP PLI/FIR), by outcome.",
        &["outcome"],
    );
    let nack_packets = crate::metrics::counter(
        r,
        "railcast_whep_nack_packets_total",
        "RTP packets WHEP players asked for again (NACK): resent, or unavailable (too old, never sent).",
        &["outcome"],
    );
    for outcome in ["resent", "unavailable"] {
        nack_packets.with_label_values(&[outcome]);
    }
    let udp_dropped = crate::metrics::counter(
        r,
        "railcast_webrtc_udp_dropped_total",
        "Datagrams on the shared WebRTC UDP port that reached no session, by reason.",
        &["reason"],
    );
    for reason in ["unknown_ufrag", "unknown_address", "queue_full", "bad_integrity"] {
        udp_dropped.with_label_values(&[reason]);
    }
    let udp_received =
        IntCounter::new("railcast_webrtc_udp_received_total", "Datagrams received on the shared WebRTC UDP port.")
            .expect("valid metric");
    r.register(Box::new(udp_received.clone())).expect("unique metric");
    let udp_routes = IntGaugeVec::new(
        Opts::new("railcast_webrtc_udp_routes", "Routing entries of the shared WebRTC UDP port, by kind."),
        &["kind"],
    )
    .expect("valid metric");
    r.register(Box::new(udp_routes.clone())).expect("unique metric");
    let udp_connections =
        IntGauge::new("railcast_webrtc_udp_connections", "Peer connections on the shared WebRTC UDP port.")
            .expect("valid metric");
    r.register(Box::new(udp_connections.clone())).expect("unique metric");
    WebRtcMetrics {
        sessions,
        created,
        failed,
        setup_seconds,
        keyframe_requests,
        nack_packets,
        udp_dropped,
        udp_received,
        udp_routes,
        udp_connections,
    }
});

#[cfg(test)]
mod tests;
