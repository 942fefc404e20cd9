//! WebRTC transport: two data channels per session, `video` (unordered, `maxRetransmits: 0`: a
//! lost chunk costs its frame, never the stream) and `command` (ordered, reliable), with REST
//! signaling in which the server is the offerer (`crate::api::webrtc` documents the flow).
//!
//! Same shape as [`crate::ws`]: [`Signaling`] accepts (creates peers and sessions) and one
//! [`session`] task per peer owns it, fed by a [`crate::dispatch::Follower`]. The `video` channel
//! carries exactly the packets the WebSocket transport carries; `command` carries the same JSON.
//! The peer's send-buffer limit is on: when the channel is full the session stops draining its hub
//! queue, so the hub drops whole frames for this peer only.

mod peer;
mod session;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use tokio::sync::Notify;
use webrtc::data_channel::RTCDataChannelInit;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription};

use crate::api::webrtc::{AnswerRequest, IceCandidateRequest, IceServer, OfferResponse, ServerCandidates, SessionView};
use crate::auth::{Principal, Role};
use crate::limits::{AddressGuard, LimitHit};
use crate::session::SessionInfo;
use crate::state::AppState;
use peer::{lock, PeerState, PortRange};

/// WebRTC settings, from the server configuration.
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// Address the peers' UDP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address announced in candidates instead of `bind_ip` (deployments behind NAT).
    pub advertised_ip: Option<IpAddr>,
    /// UDP ports to bind, inclusive; `None`: any free port.
    pub udp_ports: Option<(u16, u16)>,
    /// STUN/TURN servers, used by the server and handed to clients.
    pub ice_servers: Vec<IceServer>,
    /// Only TURN relay candidates (ICE transport policy `relay`).
    pub relay_only: bool,
    /// A session whose `video` channel is not open this long after the offer is reaped.
    pub connect_timeout: Duration,
    /// Per-channel send buffer limit, bytes.
    pub send_buffer: usize,
    /// Outbound SCTP packet budget, bytes; `None`: the library's default (1191).
    pub sctp_mtu: Option<u32>,
    /// Largest `video` message, bytes: packets are packed into messages up to this size
    /// (docs/wire-format.md §2.6), and never above the peer's max-message-size.
    pub video_message: usize,
}

/// The largest message webrtc-rs sends on a data channel: its default `a=max-message-size`,
/// which railcast keeps. What a session may send is the size the SCTP transport negotiated
/// (this, or less when the peer's SDP says so; RFC 8841).
pub const MAX_MESSAGE_SIZE: usize = 65_536;

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            advertised_ip: None,
            udp_ports: None,
            ice_servers: Vec::new(),
            relay_only: false,
            connect_timeout: Duration::from_secs(15),
            send_buffer: 256 * 1024,
            sctp_mtu: None,
            video_message: MAX_MESSAGE_SIZE,
        }
    }
}

/// Why a signaling request failed.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("remote control '{0}' does not exist")]
    UnknownRemoteControl(String),
    #[error("WebRTC session '{0}' does not exist")]
    UnknownSession(String),
    #[error("WebRTC session '{0}' is closed")]
    Closed(String),
    #[error("WebRTC session '{0}' already has an answer")]
    AlreadyAnswered(String),
    #[error("expected \"type\": \"answer\", got {0:?}")]
    BadType(String),
    #[error("invalid SDP: {0}")]
    BadSdp(String),
    #[error("invalid ICE candidate: {0}")]
    BadCandidate(String),
    #[error("cannot create the peer connection: {0}")]
    Internal(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitHit),
}

/// One WebRTC session, shared by the API and its task.
pub struct Session {
    pub id: String,
    pub remote_control_id: String,
    /// Whose token asked for the offer; only it (or an admin) may continue the signaling.
    pub principal: Principal,
    /// This session's place in the per-address limit, freed when the session is gone.
    _slot: AddressGuard,
    pub created_at: SystemTime,
    created: Instant,
    pc: Arc<dyn PeerConnection>,
    peer: Arc<PeerState>,
    answered: AtomicBool,
    closed: AtomicBool,
    stop: Notify,
    /// Candidates that arrived before the answer (the library refuses them until then).
    early_candidates: Mutex<Vec<RTCIceCandidateInit>>,
    /// When the offer was ready to send (setup-phase log).
    offered_at: Instant,
    answer_received_at: Mutex<Option<Instant>>,
    answered_at: Mutex<Option<Instant>>,
    video_open_at: Mutex<Option<Instant>>,
    info: Mutex<Option<Arc<SessionInfo>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("remote_control_id", &self.remote_control_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn view(&self) -> SessionView {
        let info = lock(&self.info).clone();
        let state = if self.closed.load(Ordering::Relaxed) {
            "closed".to_owned()
        } else {
            self.peer.connection.borrow().to_string()
        };
        SessionView {
            session_id: self.id.clone(),
            remote_control_id: self.remote_control_id.clone(),
            state,
            ice_state: lock(&self.peer.ice).to_string(),
            created_at: crate::api::rfc3339(self.created_at),
            setup_ms: lock(&self.video_open_at).map(|t| t.duration_since(self.created).as_secs_f64() * 1000.0),
            counters: info.map(|i| crate::api::Session::from(&*i)),
        }
    }
}

/// Accepts WebRTC sessions: creates peers on offer requests, applies answers and candidates.
#[derive(Debug)]
pub struct Signaling {
    config: WebRtcConfig,
    ports: PortRange,
    sessions: DashMap<String, Arc<Session>>,
}

impl Signaling {
    pub fn new(config: WebRtcConfig) -> Self {
        Self { ports: PortRange::new(config.udp_ports), config, sessions: DashMap::new() }
    }

    pub fn config(&self) -> &WebRtcConfig {
        &self.config
    }

    /// The session `id`, if `caller` started it or is an admin.
    fn get(&self, id: &str, caller: &Principal) -> Result<Arc<Session>, SignalingError> {
        let s = self
            .sessions
            .get(id)
            .map(|s| Arc::clone(s.value()))
            .ok_or_else(|| SignalingError::UnknownSession(id.to_owned()))?;
        if caller.role != Role::Admin && caller.name != s.principal.name {
            return Err(SignalingError::Forbidden(format!(
                "WebRTC session '{id}' was started by another client; {} may not use it",
                caller.name
            )));
        }
        Ok(s)
    }

    /// Create a peer connection with both channels and return its offer (host candidates
    /// included). The session's task starts at once and reaps it if it never connects.
    pub async fn offer(
        self: &Arc<Self>,
        app: &AppState,
        remote_control_id: &str,
        caller: &Principal,
        address: IpAddr,
    ) -> Result<OfferResponse, SignalingError> {
        let rc = app
            .remotes
            .get(remote_control_id)
            .ok_or_else(|| SignalingError::UnknownRemoteControl(remote_control_id.to_owned()))?;
        if !caller.may_use(rc.owner.as_deref()) {
            return Err(SignalingError::Forbidden(format!(
                "remote control '{}' belongs to another client; {} may not use it",
                rc.id, caller.name
            )));
        }
        let max = app.limits.max_webrtc_sessions;
        if self.sessions.len() >= max {
            return Err(LimitHit::new(
                "webrtc_sessions",
                format!("{max} WebRTC sessions are open (max_webrtc_sessions)"),
            )
            .into());
        }
        let slot = app.client_addresses.acquire(address)?;
        let created = Instant::now();
        let state = PeerState::new();
        let pc = peer::build(&self.config, &self.ports, Arc::clone(&state)).await.map_err(SignalingError::Internal)?;
        let internal = |e: webrtc::error::Error| SignalingError::Internal(e.to_string());
        let result = async {
            let video_init = RTCDataChannelInit { ordered: false, max_retransmits: Some(0), ..Default::default() };
            let video = pc.create_data_channel("video", Some(video_init)).await.map_err(internal)?;
            let command = pc.create_data_channel("command", None).await.map_err(internal)?;
            let offer = pc.create_offer(None).await.map_err(internal)?;
            pc.set_local_description(offer).await.map_err(internal)?;
            // Host candidates are gathered within a millisecond or two; wait so the offer has them,
            // but not for STUN/TURN ones, which clients get by trickle (`.../candidates`). With
            // relay_only there are only TURN candidates: wait for the first.
            let wanted = if self.config.relay_only { " typ relay" } else { " typ host" };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            loop {
                let notified = state.changed.notified();
                if *lock(&state.gathering_complete)
                    || lock(&state.candidates).iter().any(|c| c.candidate.contains(wanted))
                    || tokio::time::Instant::now() >= deadline
                {
                    break;
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
            let sdp = pc
                .local_description()
                .await
                .ok_or_else(|| SignalingError::Internal("no local description".into()))?
                .sdp;
            let sdp =
                peer::Advertise { bind: self.config.bind_ip, advertised: self.config.advertised_ip }.rewrite_sdp(&sdp);
            Ok::<_, SignalingError>((video, command, sdp))
        }
        .await;
        let (video, command, sdp) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        let id = format!("wrtc-{:016x}", rand::random::<u64>());
        let session = Arc::new(Session {
            id: id.clone(),
            remote_control_id: rc.id.clone(),
            principal: caller.clone(),
            _slot: slot,
            created_at: SystemTime::now(),
            created,
            pc,
            peer: state,
            answered: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop: Notify::new(),
            early_candidates: Mutex::new(Vec::new()),
            offered_at: Instant::now(),
            answer_received_at: Mutex::new(None),
            answered_at: Mutex::new(None),
            video_open_at: Mutex::new(None),
            info: Mutex::new(None),
        });
        self.sessions.insert(id.clone(), Arc::clone(&session));
        crate::metrics::METRICS.webrtc_sessions_created.inc();
        tokio::spawn(session::run(app.clone(), rc, Arc::clone(self), session, video, command));
        Ok(OfferResponse { session_id: id, kind: "offer".into(), sdp, ice_servers: self.config.ice_servers.clone() })
    }

    pub async fn answer(&self, req: AnswerRequest, caller: &Principal) -> Result<(), SignalingError> {
        let s = self.get(&req.session_id, caller)?;
        if req.kind != "answer" {
            return Err(SignalingError::BadType(req.kind));
        }
        if s.closed.load(Ordering::Relaxed) {
            return Err(SignalingError::Closed(s.id.clone()));
        }
        let desc = RTCSessionDescription::answer(req.sdp).map_err(|e| SignalingError::BadSdp(e.to_string()))?;
        if s.answered.swap(true, Ordering::AcqRel) {
            return Err(SignalingError::AlreadyAnswered(s.id.clone()));
        }
        *lock(&s.answer_received_at) = Some(Instant::now());
        if let Err(e) = s.pc.set_remote_description(desc).await {
            // A semantically wrong answer can leave the peer half-applied; the client starts over
            // with a new offer.
            s.stop.notify_one();
            s.closed.store(true, Ordering::Relaxed);
            return Err(SignalingError::BadSdp(format!("{e}; the session is closed, request a new offer")));
        }
        *lock(&s.answered_at) = Some(Instant::now());
        let early = std::mem::take(&mut *lock(&s.early_candidates));
        for init in early {
            if let Err(e) = s.pc.add_ice_candidate(init).await {
                tracing::debug!(session = %s.id, "early candidate refused: {e}");
            }
        }
        Ok(())
    }

    /// Add a client candidate; `candidate` null or empty signals the end of candidates.
    pub async fn candidate(&self, req: IceCandidateRequest, caller: &Principal) -> Result<(), SignalingError> {
        let s = self.get(&req.session_id, caller)?;
        if s.closed.load(Ordering::Relaxed) {
            return Err(SignalingError::Closed(s.id.clone()));
        }
        let candidate = req.candidate.unwrap_or_default();
        if !candidate.is_empty() {
            // The library accepts some malformed lines silently; check the grammar first so the
            // client learns what is wrong (RFC 8839 §5.1).
            validate_candidate(&candidate).map_err(SignalingError::BadCandidate)?;
        }
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: Some(req.sdp_mid.unwrap_or_else(|| "0".into())),
            sdp_mline_index: Some(req.sdp_mline_index.unwrap_or(0)),
            username_fragment: req.username_fragment,
            ..Default::default()
        };
        if !s.answered.load(Ordering::Acquire) {
            lock(&s.early_candidates).push(init);
            return Ok(());
        }
        s.pc.add_ice_candidate(init).await.map_err(|e| SignalingError::BadCandidate(e.to_string()))
    }

    /// The server's candidates after index `after`, waiting up to `wait` for one to appear.
    pub async fn server_candidates(
        &self,
        id: &str,
        after: usize,
        wait: Duration,
        caller: &Principal,
    ) -> Result<ServerCandidates, SignalingError> {
        let s = self.get(id, caller)?;
        let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(10));
        loop {
            let notified = s.peer.changed.notified();
            let (list, complete) = (lock(&s.peer.candidates).clone(), *lock(&s.peer.gathering_complete));
            if list.len() > after || complete || tokio::time::Instant::now() >= deadline {
                let next = list.len();
                return Ok(ServerCandidates { candidates: list.into_iter().skip(after).collect(), next, complete });
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// End a session (the client's DELETE, or its task ending).
    pub async fn close(&self, id: &str, caller: &Principal) -> Result<(), SignalingError> {
        let s = self.get(id, caller)?;
        s.stop.notify_one();
        s.closed.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, id: &str) {
        self.sessions.remove(id);
    }

    pub fn list(&self) -> Vec<SessionView> {
        let mut v: Vec<_> = self.sessions.iter().map(|s| s.view()).collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.session_id.cmp(&b.session_id)));
        v
    }

    pub fn view(&self, id: &str, caller: &Principal) -> Result<SessionView, SignalingError> {
        Ok(self.get(id, caller)?.view())
    }

    /// Sessions by connection state, for metrics.
    pub fn count_by_state(&self) -> Vec<(String, i64)> {
        let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
        for s in self.sessions.iter() {
            *counts.entry(s.view().state).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// Ask every session to close (server shutdown).
    pub fn close_all(&self) {
        for s in self.sessions.iter() {
            s.stop.notify_one();
        }
    }
}

/// `candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> …`
fn validate_candidate(c: &str) -> Result<(), String> {
    let body = c.strip_prefix("candidate:").unwrap_or(c);
    let f: Vec<&str> = body.split_whitespace().collect();
    if f.len() < 8 {
        return Err(format!(
            "expected at least 8 fields (foundation component transport priority address port typ type), got {}",
            f.len()
        ));
    }
    f[1].parse::<u16>().map_err(|_| format!("component {:?} is not a number", f[1]))?;
    if !matches!(f[2].to_ascii_lowercase().as_str(), "udp" | "tcp") {
        return Err(format!("transport {:?} is not udp or tcp", f[2]));
    }
    f[3].parse::<u32>().map_err(|_| format!("priority {:?} is not a 32-bit number", f[3]))?;
    f[5].parse::<u16>().map_err(|_| format!("port {:?} is not a port number", f[5]))?;
    if f[6] != "typ" {
        return Err(format!("expected \"typ\" as the 7th field, got {:?}", f[6]));
    }
    if !matches!(f[7], "host" | "srflx" | "prflx" | "relay") {
        return Err(format!("candidate type {:?} is not host, srflx, prflx or relay", f[7]));
    }
    Ok(())
}

fn is_finished(state: RTCPeerConnectionState) -> bool {
    matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn candidate_grammar() {
        assert!(super::validate_candidate("candidate:1 1 udp 2122260223 127.0.0.1 50123 typ host").is_ok());
        assert!(super::validate_candidate("candidate:1 1 UDP 1 ::1 9 typ srflx raddr ::1 rport 9").is_ok());
        for bad in [
            "",
            "candidate:",
            "candidate:1 1 udp x 127.0.0.1 1 typ host",
            "candidate:1 1 sctp 1 h 1 typ host",
            "candidate:1 1 udp 1 h 99999 typ host",
            "candidate:1 1 udp 1 h 1 type host",
            "candidate:1 1 udp 1 h 1 typ weird",
        ] {
            assert!(super::validate_candidate(bad).is_err(), "{bad}");
        }
    }
}
