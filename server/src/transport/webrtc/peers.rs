//! [`Server`]: the registry of WebRTC peers, the transport's accepting side. A signaling
//! front-end (`crate::signaling`) asks it for a peer, in either direction, and relays the
//! answer and candidates; each peer's task ([`super::datachannel::Session`]) owns it once it
//! exists. Everything here speaks plain types: the front-ends have their own wire shapes.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use tokio::sync::Notify;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription};

use super::datachannel::{self, Opening};
use super::negotiate::{self, lock, Candidate, NegotiationError, PeerState, PortRange};
use super::{IceServer, Settings, METRICS};
use crate::auth::{Principal, Role};
use crate::core::Core;
use crate::limits::{AddressGuard, Limit, LimitHit};
use crate::metrics::ScrapeHook;
use crate::sessions::ClientSession;

/// Why a peer request failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("remote control '{0}' does not exist")]
    UnknownRemoteControl(String),
    #[error("WebRTC session '{0}' does not exist")]
    UnknownSession(String),
    #[error("WebRTC session '{0}' is closed")]
    Closed(String),
    #[error("WebRTC session '{0}' already has an answer")]
    AlreadyAnswered(String),
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Limit(#[from] LimitHit),
}

/// The server's offer for a new peer.
#[derive(Debug, Clone)]
pub struct Offer {
    pub id: String,
    pub sdp: String,
    pub ice_servers: Vec<IceServer>,
}

/// The server's answer to a client's offer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: String,
    pub sdp: String,
    pub ice_servers: Vec<IceServer>,
}

/// The server's candidates that its offer (or answer) did not carry, after some index.
#[derive(Debug, Clone)]
pub struct Candidates {
    pub candidates: Vec<Candidate>,
    /// Pass as `after` next time.
    pub next: usize,
    /// The server has gathered all its candidates: none will follow (end-of-candidates).
    pub complete: bool,
}

/// A client's candidate; `candidate` empty: the end of its candidates.
#[derive(Debug, Clone, Default)]
pub struct ClientCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
    pub username_fragment: Option<String>,
}

/// A peer as listed: its states, and its client session once its channels are open.
#[derive(Debug, Clone)]
pub struct PeerView {
    pub id: String,
    pub remote_control_id: String,
    /// Peer connection state: new, connecting, connected, disconnected, failed, closed.
    pub state: String,
    pub ice_state: String,
    pub created_at: SystemTime,
    /// Request → `video` channel open, ms.
    pub setup_ms: Option<f64>,
    pub session: Option<Arc<ClientSession>>,
}

/// One WebRTC peer, shared by the registry (signaling) and its task.
pub struct Peer {
    pub id: String,
    pub remote_control_id: String,
    /// Whose token asked for it; only it (or an admin) may continue the signaling.
    pub principal: Principal,
    /// This peer's place in the per-address limit, freed when the peer is gone.
    _slot: AddressGuard,
    pub created_at: SystemTime,
    pub(super) created: Instant,
    pub(super) pc: Arc<dyn PeerConnection>,
    pub(super) state: Arc<PeerState>,
    /// The remote description is set (the client's answer, or its offer).
    answered: AtomicBool,
    pub(super) closed: AtomicBool,
    pub(super) stop: Notify,
    /// Candidates that arrived before the answer (the library refuses them until then).
    early_candidates: Mutex<Vec<RTCIceCandidateInit>>,
    /// When the local description was ready to send (setup-phase log).
    pub(super) described_at: Instant,
    pub(super) answer_received_at: Mutex<Option<Instant>>,
    pub(super) answered_at: Mutex<Option<Instant>>,
    pub(super) video_open_at: Mutex<Option<Instant>>,
    pub(super) session: Mutex<Option<Arc<ClientSession>>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("remote_control_id", &self.remote_control_id)
            .finish_non_exhaustive()
    }
}

impl Peer {
    fn view(&self) -> PeerView {
        let state = if self.closed.load(Ordering::Relaxed) {
            "closed".to_owned()
        } else {
            self.state.connection.borrow().to_string()
        };
        PeerView {
            id: self.id.clone(),
            remote_control_id: self.remote_control_id.clone(),
            state,
            ice_state: lock(&self.state.ice).to_string(),
            created_at: self.created_at,
            setup_ms: lock(&self.video_open_at).map(|t| t.duration_since(self.created).as_secs_f64() * 1000.0),
            session: lock(&self.session).clone(),
        }
    }

    /// Close it: its task says goodbye and ends.
    fn close(&self) {
        self.stop.notify_one();
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// Which side offers.
enum Direction {
    /// The server offers (REST signaling).
    ServerOffers,
    /// The server answers this offer of the client's.
    ClientOffered(String),
}

/// The registry of peers: creates them, applies answers and candidates, lists and ends them.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    ports: PortRange,
    peers: DashMap<String, Arc<Peer>>,
    _gauge: Mutex<Option<ScrapeHook>>,
}

impl Server {
    pub fn new(settings: Settings) -> Arc<Self> {
        crate::sessions::Registry::declare_transport(super::NAME);
        let server = Arc::new(Self {
            ports: PortRange::new(settings.udp_ports),
            settings,
            peers: DashMap::new(),
            _gauge: Mutex::new(None),
        });
        let weak = Arc::downgrade(&server);
        let hook = crate::metrics::on_scrape(move || {
            METRICS.sessions.reset();
            if let Some(server) = weak.upgrade() {
                for (state, n) in server.count_by_state() {
                    METRICS.sessions.with_label_values(&[&state]).set(n);
                }
            }
        });
        *lock(&server._gauge) = Some(hook);
        server
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The peer `id`, if `caller` started it or is an admin.
    fn get(&self, id: &str, caller: &Principal) -> Result<Arc<Peer>, PeerError> {
        let s = self
            .peers
            .get(id)
            .map(|s| Arc::clone(s.value()))
            .ok_or_else(|| PeerError::UnknownSession(id.to_owned()))?;
        if caller.role != Role::Admin && caller.name != s.principal.name {
            return Err(PeerError::Forbidden(format!(
                "WebRTC session '{id}' was started by another client; {} may not use it",
                caller.name
            )));
        }
        Ok(s)
    }

    /// The server offers: create a peer with both channels for `remote_control_id` and return its
    /// offer (host candidates included). The peer's task starts at once and reaps it if it never
    /// connects.
    pub async fn offer(
        self: &Arc<Self>,
        core: &Core,
        remote_control_id: &str,
        caller: &Principal,
        address: IpAddr,
    ) -> Result<Offer, PeerError> {
        let (id, sdp) = self.open(core, remote_control_id, caller, address, Direction::ServerOffers).await?;
        Ok(Offer { id, sdp, ice_servers: self.settings.ice_servers.clone() })
    }

    /// The server answers: create a peer for `remote_control_id` from the client's `offer`, which
    /// must open the `video` and `command` data channels, and return the answer (host candidates
    /// included). Candidates found later come from [`Server::server_candidates`].
    pub async fn answer(
        self: &Arc<Self>,
        core: &Core,
        remote_control_id: &str,
        caller: &Principal,
        address: IpAddr,
        offer: String,
    ) -> Result<Answer, PeerError> {
        let (id, sdp) = self.open(core, remote_control_id, caller, address, Direction::ClientOffered(offer)).await?;
        Ok(Answer { id, sdp, ice_servers: self.settings.ice_servers.clone() })
    }

    async fn open(
        self: &Arc<Self>,
        core: &Core,
        remote_control_id: &str,
        caller: &Principal,
        address: IpAddr,
        direction: Direction,
    ) -> Result<(String, String), PeerError> {
        let rc = core
            .remotes
            .get(remote_control_id)
            .ok_or_else(|| PeerError::UnknownRemoteControl(remote_control_id.to_owned()))?;
        if !caller.may_use(rc.owner.as_deref()) {
            return Err(PeerError::Forbidden(format!(
                "remote control '{}' belongs to another client; {} may not use it",
                rc.id, caller.name
            )));
        }
        let max = core.limits.max_webrtc_sessions;
        if self.peers.len() >= max {
            return Err(Limit::WebRtcSessions
                .refuse(format!("{max} WebRTC sessions are open (max_webrtc_sessions)"))
                .into());
        }
        let slot = core.client_addresses.acquire(address)?;
        let created = Instant::now();
        let state = PeerState::new();
        let pc = negotiate::build(&self.settings, &self.ports, Arc::clone(&state))
            .await
            .map_err(NegotiationError::Internal)?;
        let negotiated = match direction {
            Direction::ServerOffers => {
                negotiate::offer(&pc, &state, &self.settings).await.map(|(ch, sdp)| (Opening::Offered(ch), sdp, false))
            }
            Direction::ClientOffered(offer) => negotiate::answer(&pc, &state, &self.settings, offer)
                .await
                .map(|(sdp, incoming)| (Opening::Incoming(incoming), sdp, true)),
        };
        let (opening, sdp, answered) = match negotiated {
            Ok(r) => r,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e.into());
            }
        };
        let id = format!("wrtc-{:016x}", rand::random::<u64>());
        let now = Instant::now();
        let peer = Arc::new(Peer {
            id: id.clone(),
            remote_control_id: rc.id.clone(),
            principal: caller.clone(),
            _slot: slot,
            created_at: SystemTime::now(),
            created,
            pc,
            state,
            answered: AtomicBool::new(answered),
            closed: AtomicBool::new(false),
            stop: Notify::new(),
            early_candidates: Mutex::new(Vec::new()),
            described_at: now,
            answer_received_at: Mutex::new(answered.then_some(created)),
            answered_at: Mutex::new(answered.then_some(now)),
            video_open_at: Mutex::new(None),
            session: Mutex::new(None),
        });
        self.peers.insert(id.clone(), Arc::clone(&peer));
        METRICS.created.inc();
        let session = datachannel::Session::new(core.clone(), rc, Arc::clone(self), peer);
        tokio::spawn(session.run(opening));
        Ok((id, sdp))
    }

    /// Apply the client's answer to the server's offer.
    pub async fn apply_answer(&self, id: &str, sdp: String, caller: &Principal) -> Result<(), PeerError> {
        let s = self.get(id, caller)?;
        if s.closed.load(Ordering::Relaxed) {
            return Err(PeerError::Closed(s.id.clone()));
        }
        if negotiate::application_mid(&sdp).is_none() {
            // An answer without it (an audio m-line, say) would be applied and the session would
            // only time out.
            return Err(NegotiationError::BadSdp(
                "the answer has no data-channel section (m=application … webrtc-datachannel) to answer the offer's"
                    .into(),
            )
            .into());
        }
        let desc = RTCSessionDescription::answer(sdp).map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
        if s.answered.swap(true, Ordering::AcqRel) {
            return Err(PeerError::AlreadyAnswered(s.id.clone()));
        }
        *lock(&s.answer_received_at) = Some(Instant::now());
        if let Err(e) = s.pc.set_remote_description(desc).await {
            // A semantically wrong answer can leave the peer half-applied; the client starts over
            // with a new offer.
            s.close();
            return Err(NegotiationError::BadSdp(format!("{e}; the session is closed, request a new offer")).into());
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

    /// Add a client candidate; an empty one signals the end of candidates.
    pub async fn add_candidate(&self, id: &str, c: ClientCandidate, caller: &Principal) -> Result<(), PeerError> {
        let s = self.get(id, caller)?;
        if s.closed.load(Ordering::Relaxed) {
            return Err(PeerError::Closed(s.id.clone()));
        }
        if !c.candidate.is_empty() {
            negotiate::check_candidate(&c.candidate)?;
        }
        let mid = lock(&s.state.mid).clone();
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: Some(c.sdp_mid.unwrap_or(mid)),
            sdp_mline_index: Some(c.sdp_mline_index.unwrap_or(0)),
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        if !s.answered.load(Ordering::Acquire) {
            lock(&s.early_candidates).push(init);
            return Ok(());
        }
        s.pc.add_ice_candidate(init).await.map_err(|e| NegotiationError::BadCandidate(e.to_string()).into())
    }

    /// The server's candidates that its offer (or answer) did not carry, after index `after` of
    /// that list, waiting up to `wait` (10 s at most) for one or for the end of gathering.
    pub async fn server_candidates(
        &self,
        id: &str,
        after: usize,
        wait: Duration,
        caller: &Principal,
    ) -> Result<Candidates, PeerError> {
        let s = self.get(id, caller)?;
        let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(10));
        loop {
            let notified = s.state.changed.notified();
            let (list, complete) = (s.state.trickled(), *lock(&s.state.gathering_complete));
            if list.len() > after || complete || tokio::time::Instant::now() >= deadline {
                let next = list.len();
                return Ok(Candidates { candidates: list.into_iter().skip(after).collect(), next, complete });
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// End a peer (the client's request).
    pub async fn close(&self, id: &str, caller: &Principal) -> Result<(), PeerError> {
        self.get(id, caller)?.close();
        Ok(())
    }

    pub(super) fn remove(&self, id: &str) {
        self.peers.remove(id);
    }

    /// Every peer, oldest first.
    pub fn list(&self) -> Vec<PeerView> {
        let mut v: Vec<_> = self.peers.iter().map(|s| s.view()).collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        v
    }

    pub fn view(&self, id: &str, caller: &Principal) -> Result<PeerView, PeerError> {
        Ok(self.get(id, caller)?.view())
    }

    /// Peers by connection state, for metrics.
    fn count_by_state(&self) -> Vec<(String, i64)> {
        let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
        for s in self.peers.iter() {
            *counts.entry(s.view().state).or_default() += 1;
        }
        counts.into_iter().collect()
    }
}

pub(super) fn is_finished(state: RTCPeerConnectionState) -> bool {
    matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)
}
