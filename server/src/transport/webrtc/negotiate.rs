//! Negotiation: building the server's peer connection, turning its callbacks into state, and the
//! offer/answer exchange in both directions: the server offers ([`offer`], REST signaling) or
//! answers a client's offer of data channels ([`answer`], for JSON-RPC- and MQTT-style
//! signaling); a WHEP offer of media is answered by [`super::tracks::answer`] over the same
//! [`build`] and [`local_sdp`]. SDP and candidates are checked here, with the ICE crate's own
//! candidate parser.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceConnectionState, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

use super::Settings;

/// The tracks a receiving peer's client sends, as they arrive ([`PeerState::receive`]).
pub type RemoteTracks = mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>;
/// The data channels a peer's client opens, as they arrive.
pub type RemoteChannels = mpsc::UnboundedReceiver<Arc<dyn DataChannel>>;

/// One of the server's ICE candidates, for the client's `addIceCandidate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
}

/// Most state changes a peer keeps (a peer flapping for hours must not grow without bound):
/// later ones are still applied, only no longer listed.
pub const MAX_STATE_CHANGES: usize = 64;

/// One change of a peer's connection or ICE state, as its callback reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub at: Instant,
    /// `connection` (the peer connection) or `ice` (the ICE transport).
    pub what: &'static str,
    /// The state's W3C name: new, checking, connected, …
    pub state: String,
}

/// What the callbacks report, read by the registry and the session task.
#[derive(Debug)]
pub struct PeerState {
    pub connection: watch::Sender<RTCPeerConnectionState>,
    pub ice: Mutex<RTCIceConnectionState>,
    /// Every candidate gathered, in order, as the callbacks report them.
    pub candidates: Mutex<Vec<Candidate>>,
    /// The candidate lines of the local description (offer or answer) as the client received it:
    /// the client has them, so the late-candidates list leaves them out.
    pub described: Mutex<HashSet<String>>,
    pub gathering_complete: Mutex<bool>,
    /// Wakes waiters on candidates and gathering.
    pub changed: Notify,
    pub connected_at: Mutex<Option<Instant>>,
    pub ice_connected_at: Mutex<Option<Instant>>,
    /// Every connection and ICE state change in order (at most [`MAX_STATE_CHANGES`]): a
    /// signaling front-end logs and relays them without missing a short-lived one.
    pub changes: Mutex<Vec<StateChange>>,
    /// The media id of the data channels' m-line, for the server's trickled candidates.
    pub mid: Mutex<String>,
    /// Channels the client opened, to the session task: set by [`answer`] (when the server offers,
    /// it opens them itself and keeps no channel for this).
    pub(super) incoming: Mutex<Option<mpsc::UnboundedSender<Arc<dyn DataChannel>>>>,
    /// Media tracks the client sends (WHIP), to the session task: set by [`PeerState::receive`].
    remote_tracks: Mutex<Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>>,
}

impl PeerState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            connection: watch::Sender::new(RTCPeerConnectionState::New),
            ice: Mutex::new(RTCIceConnectionState::New),
            candidates: Mutex::new(Vec::new()),
            described: Mutex::new(HashSet::new()),
            gathering_complete: Mutex::new(false),
            changed: Notify::new(),
            connected_at: Mutex::new(None),
            ice_connected_at: Mutex::new(None),
            changes: Mutex::new(Vec::new()),
            mid: Mutex::new("0".into()),
            incoming: Mutex::new(None),
            remote_tracks: Mutex::new(None),
        })
    }

    /// For a peer that receives (WHIP): the tracks and the data channels the client opens, as
    /// they arrive. Call before the remote description is set.
    pub fn receive(&self) -> (RemoteTracks, RemoteChannels) {
        let (tracks_tx, tracks) = mpsc::unbounded_channel();
        let (channels_tx, channels) = mpsc::unbounded_channel();
        *lock(&self.remote_tracks) = Some(tracks_tx);
        *lock(&self.incoming) = Some(channels_tx);
        (tracks, channels)
    }

    /// Wait until the local description has its host candidates (a millisecond or two) or, with
    /// `relay_only`, its first relay candidate; at most 2 s. STUN/TURN candidates found later go
    /// to the client by trickle.
    pub async fn wait_for_candidates(&self, relay_only: bool) {
        let wanted = if relay_only { " typ relay" } else { " typ host" };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let notified = self.changed.notified();
            if *lock(&self.gathering_complete)
                || lock(&self.candidates).iter().any(|c| c.candidate.contains(wanted))
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Record what the local description `sdp` tells the client: its candidates, and whether it
    /// ends them (`a=end-of-candidates`, which webrtc-rs writes only once gathering is complete;
    /// the candidates list then says complete too, even before its own callback has run).
    fn describe(&self, sdp: &str) {
        let mut complete = false;
        let mut described = lock(&self.described);
        for attribute in sdp.lines().filter_map(|l| l.trim_end().strip_prefix("a=")) {
            if attribute.starts_with("candidate:") {
                described.insert(attribute.to_owned());
            } else if attribute == "end-of-candidates" {
                complete = true;
            }
        }
        drop(described);
        if complete {
            *lock(&self.gathering_complete) = true;
            self.changed.notify_waiters();
        }
    }

    /// The candidates gathered that the local description does not carry, in the order they
    /// were found: the client learns them by trickle. The list only grows (the description is
    /// fixed before the client can ask), so an index into it stays valid between calls.
    pub fn trickled(&self) -> Vec<Candidate> {
        let described = lock(&self.described);
        lock(&self.candidates).iter().filter(|c| !described.contains(&c.candidate)).cloned().collect()
    }
}

impl PeerState {
    /// Note a state change and wake the waiters.
    fn record(&self, what: &'static str, state: String) {
        let mut changes = lock(&self.changes);
        if changes.len() < MAX_STATE_CHANGES {
            changes.push(StateChange { at: Instant::now(), what, state });
        }
        drop(changes);
        self.changed.notify_waiters();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Library callbacks → [`PeerState`]. Holds no reference to the peer connection (no cycle).
#[derive(Debug)]
struct Handler {
    state: Arc<PeerState>,
    advertise: Advertise,
}

/// Rewrites the bound address to the advertised one in candidates. webrtc 0.21.1 stores its own
/// NAT 1:1 setting but never applies it, so railcast does it on the signaling path.
#[derive(Debug, Clone, Copy)]
pub struct Advertise {
    pub bind: IpAddr,
    pub advertised: Option<IpAddr>,
}

impl Advertise {
    /// `candidate:<foundation> <component> <transport> <priority> <address> <port> typ …`
    pub fn rewrite_candidate(&self, candidate: &str) -> String {
        let Some(adv) = self.advertised else { return candidate.to_owned() };
        let mut fields: Vec<String> = candidate.split(' ').map(String::from).collect();
        if fields.len() > 4 && fields[4].parse::<IpAddr>().ok() == Some(self.bind) {
            fields[4] = adv.to_string();
        }
        fields.join(" ")
    }
    /// Rewrite every `a=candidate:` line and the `c=` line of an SDP.
    pub fn rewrite_sdp(&self, sdp: &str) -> String {
        let Some(adv) = self.advertised else { return sdp.to_owned() };
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            let (body, eol) = line.split_at(line.trim_end_matches(['\r', '\n']).len());
            if let Some(c) = body.strip_prefix("a=") {
                if c.starts_with("candidate:") {
                    out.push_str("a=");
                    out.push_str(&self.rewrite_candidate(c));
                    out.push_str(eol);
                    continue;
                }
            }
            if body.starts_with("c=IN IP") && body.ends_with(&self.bind.to_string()) {
                out.push_str(&format!("c=IN {} {adv}", if adv.is_ipv6() { "IP6" } else { "IP4" }));
                out.push_str(eol);
                continue;
            }
            out.push_str(line);
        }
        out
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            if !init.candidate.is_empty() {
                // The SDP has one m-line (the data channels).
                let mid = lock(&self.state.mid).clone();
                lock(&self.state.candidates).push(Candidate {
                    candidate: self.advertise.rewrite_candidate(&init.candidate),
                    sdp_mid: Some(mid),
                    sdp_mline_index: Some(0),
                });
                self.state.changed.notify_waiters();
            }
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            *lock(&self.state.gathering_complete) = true;
            self.state.changed.notify_waiters();
        }
    }
    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            lock(&self.state.ice_connected_at).get_or_insert_with(Instant::now);
        }
        *lock(&self.state.ice) = state;
        self.state.record("ice", state.to_string());
    }
    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        if let Some(incoming) = &*lock(&self.state.incoming) {
            let _ = incoming.send(data_channel);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(tracks) = &*lock(&self.state.remote_tracks) {
            let _ = tracks.send(track);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            lock(&self.state.connected_at).get_or_insert_with(Instant::now);
        }
        self.state.connection.send_replace(state);
        self.state.record("connection", state.to_string());
    }
}

/// Picks UDP ports from the configured range, round-robin.
#[derive(Debug, Default)]
pub struct PortRange {
    range: Option<(u16, u16)>,
    next: AtomicU16,
}

impl PortRange {
    pub fn new(range: Option<(u16, u16)>) -> Self {
        Self { range, next: AtomicU16::new(0) }
    }
    fn candidates(&self) -> Vec<u16> {
        match self.range {
            None => vec![0],
            Some((lo, hi)) => {
                let n = hi - lo + 1;
                let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
                (0..n).map(|i| lo + (start + i) % n).collect()
            }
        }
    }
}

/// A media peer's RTP/RTCP interceptors.
pub enum Interceptors {
    /// webrtc-rs' chain of the registry's interceptors (each packet walks through every one's
    /// queue, then the terminus that keeps inbound RTCP from the application).
    Chain(Registry),
    /// One interceptor that is the whole chain and does the terminus's duty itself (vendored
    /// patch 23): each packet is handed to it directly.
    Only(Box<dyn rtc::interceptor::Interceptor>),
}

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Chain(_) => "Interceptors::Chain",
            Self::Only(_) => "Interceptors::Only",
        })
    }
}

/// Build a peer connection on the shared UDP socket, or, with a port range, bound to `bind_ip`
/// (a port from the range). `media`: the codecs and RTP/RTCP interceptors of a peer that sends
/// media tracks (WHEP, [`super::tracks::media_sender`]) or receives them (WHIP,
/// [`super::tracks::media`]); `None` for a data-channel peer, which negotiates no codec.
pub async fn build(
    config: &Settings,
    ports: &PortRange,
    state: Arc<PeerState>,
    media: Option<fn() -> (MediaEngine, Interceptors)>,
) -> Result<Arc<dyn PeerConnection>, String> {
    let runtime = webrtc::runtime::default_runtime().ok_or("no async runtime")?;
    let mut last_err = String::from("no port available");
    for port in ports.candidates() {
        let mut settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_network_types(network_types(config.bind_ip));
        // A candidate seen by the server's checks before the client's trickled one arrives is
        // peer-reflexive; the default makes ICE wait a second before using it (browsers hide
        // their host candidates, so this is the usual case).
        settings = settings.with_prflx_acceptance_min_wait(Some(std::time::Duration::ZERO));
        if let Some(mtu) = config.sctp_mtu {
            settings = settings.with_sctp_mtu(mtu);
        }
        if config.relay_only {
            // Relayed pairs are held back 2 s by default in case a direct one succeeds; with
            // relay_only there is nothing better to wait for.
            settings = settings.with_relay_acceptance_min_wait(Some(std::time::Duration::ZERO));
        }
        let ice_servers = config
            .ice_servers
            .issue("railcast")
            .into_iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        let mut builder = PeerConnectionBuilder::new();
        if let Some(media) = media {
            // A media engine and a chain are consumed by the builder: one per attempt.
            let (engine, interceptors) = media();
            builder = match interceptors {
                Interceptors::Chain(registry) => builder.with_media_engine(engine).with_interceptor_registry(registry),
                Interceptors::Only(interceptor) => builder.with_media_engine(engine).with_interceptor(interceptor),
            };
        }
        let builder = builder
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .with_ice_transport_policy(if config.relay_only {
                        RTCIceTransportPolicy::Relay
                    } else {
                        RTCIceTransportPolicy::All
                    })
                    .build(),
            )
            .with_setting_engine(settings.build())
            .with_handler(Arc::new(Handler {
                state: Arc::clone(&state),
                advertise: Advertise { bind: config.bind_ip, advertised: config.advertised_ip },
            }) as Arc<dyn PeerConnectionEventHandler>)
            .with_runtime(runtime.clone())
            .with_data_channel_send_buffer_limit(config.send_buffer);
        // Every session on the one shared socket, or a socket of its own from the range.
        let built = match &config.udp_mux {
            Some(mux) => builder.with_udp_mux(Arc::clone(mux)).build().await,
            None => {
                builder
                    .with_udp_addrs(vec![format!("{}", std::net::SocketAddr::new(config.bind_ip, port))])
                    .build()
                    .await
            }
        };
        match built {
            Ok(pc) => return Ok(Arc::new(pc)),
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(last_err)
}

/// The two data channels of a session.
#[derive(Clone)]
pub struct Channels {
    /// `video`: unordered, no retransmissions (a lost chunk costs its frame, never the stream).
    pub video: Arc<dyn DataChannel>,
    /// `command`: ordered, reliable.
    pub command: Arc<dyn DataChannel>,
}

/// Why a negotiation step failed.
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    #[error("invalid SDP: {0}")]
    BadSdp(String),
    /// The offer is valid SDP but asks for nothing this server sends (WHEP: no video m-line, or
    /// no H.264 codec it can send).
    #[error("{0}")]
    NoMedia(String),
    #[error("invalid ICE candidate: {0}")]
    BadCandidate(String),
    #[error("cannot create the peer connection: {0}")]
    Internal(String),
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

fn internal(e: webrtc::error::Error) -> NegotiationError {
    NegotiationError::Internal(e.to_string())
}

/// The server offers: create both channels, set the offer locally, and return it once it has the
/// host candidates (rewritten to the advertised address).
pub async fn offer(
    pc: &Arc<dyn PeerConnection>,
    state: &PeerState,
    config: &Settings,
) -> Result<(Channels, String), NegotiationError> {
    let video_init = RTCDataChannelInit { ordered: false, max_retransmits: Some(0), ..Default::default() };
    let video = pc.create_data_channel("video", Some(video_init)).await.map_err(internal)?;
    let command = pc.create_data_channel("command", None).await.map_err(internal)?;
    let offer = pc.create_offer(None).await.map_err(internal)?;
    pc.set_local_description(offer).await.map_err(internal)?;
    Ok((Channels { video, command }, local_sdp(pc, state, config).await?))
}

/// The server answers the client's `offer`, which must carry the data channels' m-line; the
/// client opens `video` and `command` itself, and they arrive on the returned receiver. Returns
/// the answer once it has the host candidates.
pub async fn answer(
    pc: &Arc<dyn PeerConnection>,
    state: &PeerState,
    config: &Settings,
    offer: String,
) -> Result<(String, mpsc::UnboundedReceiver<Arc<dyn DataChannel>>), NegotiationError> {
    let mid = application_mid(&offer).ok_or_else(|| {
        NegotiationError::BadSdp("the offer has no data-channel section (m=application … webrtc-datachannel)".into())
    })?;
    *lock(&state.mid) = mid;
    let (inbox, incoming) = mpsc::unbounded_channel();
    *lock(&state.incoming) = Some(inbox);
    let desc = RTCSessionDescription::offer(offer).map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
    pc.set_remote_description(desc).await.map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
    let answer = pc.create_answer(None).await.map_err(internal)?;
    pc.set_local_description(answer).await.map_err(internal)?;
    Ok((local_sdp(pc, state, config).await?, incoming))
}

pub async fn local_sdp(
    pc: &Arc<dyn PeerConnection>,
    state: &PeerState,
    config: &Settings,
) -> Result<String, NegotiationError> {
    state.wait_for_candidates(config.relay_only).await;
    let sdp =
        pc.local_description().await.ok_or_else(|| NegotiationError::Internal("no local description".into()))?.sdp;
    let sdp = Advertise { bind: config.bind_ip, advertised: config.advertised_ip }.rewrite_sdp(&sdp);
    state.describe(&sdp);
    Ok(sdp)
}

/// The `a=mid:` of an SDP's data-channel section (`m=application`), if it has one.
pub(super) fn application_mid(sdp: &str) -> Option<String> {
    let mut in_application = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_application = m.starts_with("application") && m.contains("webrtc-datachannel");
        } else if in_application {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                return Some(mid.to_owned());
            }
        }
    }
    None
}

/// Check a client's candidate line (`candidate:<foundation> <component> <transport> <priority>
/// <address> <port> typ <type> …`, RFC 8839 §5.1) with the ICE crate's own parser, before the
/// peer connection, which takes some malformed lines silently.
pub fn check_candidate(line: &str) -> Result<(), NegotiationError> {
    let body = line.strip_prefix("candidate:").unwrap_or(line);
    let bad = |why: String| Err(NegotiationError::BadCandidate(why));
    let fields: Vec<&str> = body.split_whitespace().collect();
    // The parser reads the type from the 8th field without checking the 7th is the keyword.
    if fields.get(6).is_some_and(|f| *f != "typ") {
        return bad(format!("expected \"typ\" as the 7th field, got {:?}", fields[6]));
    }
    // The server must never resolve or contact a name a client handed it: an address is an IP
    // address, or an mDNS name (`….local`, which browsers use to hide theirs; mDNS is off here).
    if let Some(address) = fields.get(4) {
        if address.parse::<IpAddr>().is_err() && !address.to_ascii_lowercase().ends_with(".local") {
            return bad(format!("the address {address:?} is neither an IP address nor an mDNS .local name"));
        }
    }
    match rtc::ice::candidate::unmarshal_candidate(body) {
        Ok(_) => Ok(()),
        Err(e) => bad(e.to_string()),
    }
}

fn network_types(ip: IpAddr) -> Vec<rtc::ice::network_type::NetworkType> {
    use rtc::ice::network_type::NetworkType;
    if ip.is_ipv6() {
        vec![NetworkType::Udp6]
    } else {
        vec![NetworkType::Udp4]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_address_replaces_the_bound_one() {
        let a = Advertise { bind: IpAddr::from([127, 0, 0, 1]), advertised: Some(IpAddr::from([203, 0, 113, 7])) };
        assert_eq!(
            a.rewrite_candidate("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"),
            "candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host"
        );
        assert_eq!(
            a.rewrite_candidate("candidate:1 1 udp 1 10.0.0.1 5 typ host"),
            "candidate:1 1 udp 1 10.0.0.1 5 typ host"
        );
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=mid:0\r\n";
        assert_eq!(
            a.rewrite_sdp(sdp),
            "v=0\r\nc=IN IP4 203.0.113.7\r\na=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host\r\na=mid:0\r\n"
        );
        let none = Advertise { advertised: None, ..a };
        assert_eq!(none.rewrite_sdp(sdp), sdp);
    }
}
