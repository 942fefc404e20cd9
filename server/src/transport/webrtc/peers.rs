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
use super::negotiate::{self, lock, Candidate, NegotiationError, PeerState, PortRange, StateChange};
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
    /// WHEP: a PATCH without `If-Match`.
    #[error("this PATCH needs an If-Match header with the session's ETag (or \"*\")")]
    PreconditionRequired,
    /// WHEP: a PATCH whose `If-Match` is not the session's current ETag.
    #[error("If-Match {0:?} is not the session's current ETag")]
    PreconditionFailed(String),
    /// WHEP: a PATCH that restarts ICE (new ufrag and pwd) could not be applied.
    #[error("the ICE restart failed ({0}); end this session (DELETE) and POST a new offer")]
    IceRestart(String),
}

/// What a WHEP PATCH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patched {
    /// Candidates added (or the end of them noted).
    Applied,
    /// ICE restarted with the client's new credentials: the server's new ones, as a trickle-ICE
    /// fragment, and the new ICE session's entity tag.
    Restarted { etag: String, fragment: String },
}

/// What a peer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The `video` and `command` data channels ([`super::datachannel`]).
    DataChannels,
    /// RTP media tracks, and `command` when asked for ([`super::tracks`], WHEP).
    Media,
}

impl Kind {
    /// The transport's name in the API and metrics.
    pub fn transport(self) -> &'static str {
        match self {
            Self::DataChannels => super::NAME,
            Self::Media => super::tracks::NAME,
        }
    }
}

/// The server's answer to a WHEP offer.
#[derive(Debug, Clone)]
pub struct MediaAnswer {
    pub id: String,
    pub sdp: String,
    /// The entity tag of the session's ICE session, for `If-Match` on PATCH.
    pub etag: String,
    pub ice_servers: Vec<IceServer>,
}

/// Whether a PATCH's `If-Match` names `current` (an entity tag, or `*`).
pub fn etag_matches(if_match: &str, current: &str) -> bool {
    if_match.trim() == "*" || if_match.split(',').any(|t| t.trim() == current)
}

/// Add `f`'s candidates (and its end-of-candidates) to `pc`, those without a mid under
/// `default_mid`: what a WHEP or WHIP PATCH does after any ICE restart.
pub async fn add_candidates(pc: &dyn PeerConnection, f: Fragment, default_mid: &str) -> Result<(), NegotiationError> {
    let mut lines = f.candidates;
    if f.end_of_candidates {
        lines.push((None, String::new()));
    }
    for (mid, candidate) in lines {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: Some(mid.unwrap_or_else(|| default_mid.to_owned())),
            sdp_mline_index: Some(0),
            username_fragment: f.ufrag.clone(),
            ..Default::default()
        };
        pc.add_ice_candidate(init).await.map_err(|e| NegotiationError::BadCandidate(e.to_string()))?;
    }
    Ok(())
}

/// A client's trickle-ICE fragment (RFC 8840), as a WHEP PATCH carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// `(mid, candidate line without "a=")`.
    pub candidates: Vec<(Option<String>, String)>,
    pub end_of_candidates: bool,
}

impl Fragment {
    /// Parse `application/trickle-ice-sdpfrag`: session- and media-level `a=ice-ufrag`,
    /// `a=ice-pwd`, `a=mid`, `a=candidate`, `a=end-of-candidates`; other lines are ignored.
    pub fn parse(text: &str) -> Result<Self, NegotiationError> {
        let mut f = Fragment::default();
        let mut mid = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with("m=") {
                mid = None;
            } else if let Some(v) = line.strip_prefix("a=mid:") {
                mid = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
                f.ufrag = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
                f.pwd = Some(v.to_owned());
            } else if let Some(c) = line.strip_prefix("a=") {
                if c.starts_with("candidate:") {
                    negotiate::check_candidate(c)?;
                    f.candidates.push((mid.clone(), c.to_owned()));
                } else if c == "end-of-candidates" {
                    f.end_of_candidates = true;
                }
            } else if !(line.len() > 1 && line.as_bytes()[1] == b'=') {
                return Err(NegotiationError::BadSdp(format!("{line:?} is not an SDP line (x=…)")));
            }
        }
        Ok(f)
    }
}

/// A new entity tag.
pub fn new_etag() -> String {
    format!("\"{:016x}\"", rand::random::<u64>())
}

/// The client's `offer` again, for an ICE restart: its credentials replaced, its candidates
/// dropped (new ones come by trickle), its session version one up (RFC 8866 §5.2).
pub fn restart_offer(offer: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines().map(str::trim_end) {
        let line = if line.starts_with("a=ice-ufrag:") {
            format!("a=ice-ufrag:{ufrag}")
        } else if line.starts_with("a=ice-pwd:") {
            format!("a=ice-pwd:{pwd}")
        } else if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        } else if let Some(o) = line.strip_prefix("o=") {
            let mut f: Vec<String> = o.split(' ').map(String::from).collect();
            if let Some(v) = f.get_mut(2) {
                *v = v.parse::<u64>().map_or_else(|_| v.clone(), |n| n.wrapping_add(1).to_string());
            }
            format!("o={}", f.join(" "))
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// The ICE part of a local description as a trickle-ICE fragment (RFC 8840): credentials, the
/// first m-line with its mid, its candidates and end-of-candidates.
pub fn local_fragment(sdp: &str) -> String {
    let mut head = String::new();
    let mut media = String::new();
    let mut sections = 0;
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            sections += 1;
            if sections == 1 {
                media.push_str(line);
                media.push_str("\r\n");
            }
            continue;
        }
        let ice = line.starts_with("a=ice-ufrag:") || line.starts_with("a=ice-pwd:");
        if ice && !head.contains(&line[..line.find(':').unwrap_or(0)]) {
            head.push_str(line);
            head.push_str("\r\n");
        } else if sections == 1
            && (line.starts_with("a=mid:") || line.starts_with("a=candidate:") || line == "a=end-of-candidates")
        {
            media.push_str(line);
            media.push_str("\r\n");
        }
    }
    head + &media
}

/// The first `a=ice-ufrag:` of an SDP.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:").map(str::to_owned))
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

/// A peer's connection and ICE state changes after some index.
#[derive(Debug, Clone)]
pub struct StateChanges {
    pub changes: Vec<StateChange>,
    /// Pass as `after` next time.
    pub next: usize,
    /// The peer is closed or its connection failed: its session is ending (or gone).
    pub ended: bool,
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
    /// Request → `video` channel open (WHEP: first frame sent), ms.
    pub setup_ms: Option<f64>,
    pub session: Option<Arc<ClientSession>>,
    /// `webrtc` (data channels) or `whep` (media tracks).
    pub transport: &'static str,
}

/// One WebRTC peer, shared by the registry (signaling) and its task.
pub struct Peer {
    pub id: String,
    pub kind: Kind,
    /// WHEP: the entity tag of the current ICE session.
    etag: Mutex<String>,
    /// The client's ICE username fragment (from its offer or answer).
    remote_ufrag: Mutex<Option<String>>,
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
            transport: self.kind.transport(),
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
    /// The server answers this WHEP offer with media tracks.
    Media(String),
}

/// How a peer's session starts.
enum Start {
    Channels(Opening),
    Tracks(super::tracks::Opening),
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
        crate::sessions::Registry::declare_transport(super::tracks::NAME);
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
        let (peer, sdp) = self.open(core, remote_control_id, caller, address, Direction::ServerOffers).await?;
        Ok(Offer { id: peer.id.clone(), sdp, ice_servers: self.settings.ice_servers.issue(&peer.id) })
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
        let (peer, sdp) = self.open(core, remote_control_id, caller, address, Direction::ClientOffered(offer)).await?;
        Ok(Answer { id: peer.id.clone(), sdp, ice_servers: self.settings.ice_servers.issue(&peer.id) })
    }

    /// WHEP: answer the client's `offer` of receive-only video transceivers with one H.264 track
    /// per camera of the train `remote_control_id` is mapped to and an Opus track for its audio
    /// (see [`super::tracks`]), and its `command` channel when it asks for one. The answer has the
    /// host candidates.
    pub async fn media(
        self: &Arc<Self>,
        core: &Core,
        remote_control_id: &str,
        caller: &Principal,
        address: IpAddr,
        offer: String,
    ) -> Result<MediaAnswer, PeerError> {
        let (peer, sdp) = self.open(core, remote_control_id, caller, address, Direction::Media(offer)).await?;
        let etag = lock(&peer.etag).clone();
        Ok(MediaAnswer { id: peer.id.clone(), sdp, etag, ice_servers: self.settings.ice_servers.issue(&peer.id) })
    }

    /// WHEP: the media peer `id`, if `caller` started it or is an admin.
    fn get_media(&self, id: &str, caller: &Principal) -> Result<Arc<Peer>, PeerError> {
        // A deleted session is gone at once, though its task may still be saying goodbye.
        match self.peers.get(id).map(|p| (p.kind, p.closed.load(Ordering::Relaxed))) {
            Some((Kind::Media, false)) => self.get(id, caller),
            _ => Err(PeerError::UnknownSession(id.to_owned())),
        }
    }

    /// WHEP: a PATCH of session `id` with a trickle-ICE fragment. `if_match` must be the current
    /// ETag (or `*`). Candidates are added, an end-of-candidates noted. A fragment with other ICE
    /// credentials than the client's restarts ICE: webrtc-rs restarts only through an offer, so
    /// the client's last offer is applied again with the new credentials (and a new session
    /// version), and the answer's new credentials and candidates go back as a fragment.
    pub async fn patch(
        &self,
        id: &str,
        caller: &Principal,
        if_match: Option<&str>,
        fragment: &str,
    ) -> Result<Patched, PeerError> {
        let s = self.get_media(id, caller)?;
        let Some(if_match) = if_match else { return Err(PeerError::PreconditionRequired) };
        if !etag_matches(if_match, &lock(&s.etag)) {
            return Err(PeerError::PreconditionFailed(if_match.to_owned()));
        }
        if s.closed.load(Ordering::Relaxed) {
            return Err(PeerError::Closed(s.id.clone()));
        }
        let f = Fragment::parse(fragment)?;
        let known = lock(&s.remote_ufrag).clone();
        let restarted = match (&f.ufrag, &f.pwd) {
            (Some(ufrag), Some(pwd)) if Some(ufrag) != known.as_ref() => Some(self.restart(&s, ufrag, pwd).await?),
            (Some(ufrag), None) if Some(ufrag) != known.as_ref() => {
                return Err(NegotiationError::BadSdp("an ICE restart needs a=ice-pwd beside a=ice-ufrag".into()).into())
            }
            _ => None,
        };
        let mid = lock(&s.state.mid).clone();
        add_candidates(s.pc.as_ref(), f, &mid).await?;
        Ok(restarted.unwrap_or(Patched::Applied))
    }

    /// Restart ICE of media peer `s` with the client's new `ufrag` and `pwd` (see [`Server::patch`]).
    async fn restart(&self, s: &Peer, ufrag: &str, pwd: &str) -> Result<Patched, PeerError> {
        let failed = |e: &dyn std::fmt::Display| PeerError::IceRestart(e.to_string());
        let remote = s.pc.remote_description().await.ok_or_else(|| failed(&"no remote description"))?;
        let offer = restart_offer(&remote.sdp, ufrag, pwd);
        let desc = RTCSessionDescription::offer(offer).map_err(|e| failed(&e))?;
        s.pc.set_remote_description(desc).await.map_err(|e| failed(&e))?;
        let answer = s.pc.create_answer(None).await.map_err(|e| failed(&e))?;
        s.pc.set_local_description(answer).await.map_err(|e| failed(&e))?;
        s.state.wait_for_candidates(self.settings.relay_only).await;
        let local = s.pc.local_description().await.ok_or_else(|| failed(&"no local description"))?;
        let local = negotiate::Advertise { bind: self.settings.bind_ip, advertised: self.settings.advertised_ip }
            .rewrite_sdp(&local.sdp);
        *lock(&s.remote_ufrag) = Some(ufrag.to_owned());
        let etag = new_etag();
        *lock(&s.etag) = etag.clone();
        tracing::debug!(session = %s.id, "ICE restarted");
        Ok(Patched::Restarted { etag, fragment: local_fragment(&local) })
    }

    /// WHEP: whether media peer `id` exists (and is not closed), whoever asks.
    pub fn has_media(&self, id: &str) -> bool {
        self.peers.get(id).is_some_and(|p| p.kind == Kind::Media && !p.closed.load(Ordering::Relaxed))
    }

    /// WHEP: the media peer `id`, if `caller` started it or is an admin.
    pub fn view_media(&self, id: &str, caller: &Principal) -> Result<PeerView, PeerError> {
        Ok(self.get_media(id, caller)?.view())
    }

    /// WHEP: end session `id`.
    pub fn close_media(&self, id: &str, caller: &Principal) -> Result<(), PeerError> {
        self.get_media(id, caller)?.close();
        Ok(())
    }

    async fn open(
        self: &Arc<Self>,
        core: &Core,
        remote_control_id: &str,
        caller: &Principal,
        address: IpAddr,
        direction: Direction,
    ) -> Result<(Arc<Peer>, String), PeerError> {
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
        let kind = if matches!(direction, Direction::Media(_)) { Kind::Media } else { Kind::DataChannels };
        let media = (kind == Kind::Media).then_some(super::tracks::media_sender as fn() -> _);
        let pc = negotiate::build(&self.settings, &self.ports, Arc::clone(&state), media)
            .await
            .map_err(NegotiationError::Internal)?;
        let remote_ufrag = match &direction {
            Direction::ServerOffers => None,
            Direction::ClientOffered(offer) | Direction::Media(offer) => ice_ufrag(offer),
        };
        let negotiated = match direction {
            Direction::ServerOffers => negotiate::offer(&pc, &state, &self.settings)
                .await
                .map(|(ch, sdp)| (Start::Channels(Opening::Offered(ch)), sdp, false)),
            Direction::ClientOffered(offer) => negotiate::answer(&pc, &state, &self.settings, offer)
                .await
                .map(|(sdp, incoming)| (Start::Channels(Opening::Incoming(incoming)), sdp, true)),
            Direction::Media(offer) => {
                // The mapped train's cameras, one track each; unknown yet: every video m-line.
                // Its audio on the first audio m-line, when it has some or is unknown yet.
                let stream = rc.train().and_then(|t| core.hub.stream(&t));
                let cameras = stream.as_ref().map(|s| s.cameras().len()).filter(|n| *n > 0);
                let audio = cameras.is_none() || stream.is_some_and(|s| !s.audio().is_empty());
                let wanted = super::tracks::Wanted { cameras, audio };
                super::tracks::answer(&pc, &state, &self.settings, offer, wanted)
                    .await
                    .map(|(sdp, opening)| (Start::Tracks(opening), sdp, true))
            }
        };
        let (opening, sdp, answered) = match negotiated {
            Ok(r) => r,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e.into());
            }
        };
        let prefix = if kind == Kind::Media { "whep" } else { "wrtc" };
        let id = format!("{prefix}-{:016x}", rand::random::<u64>());
        let now = Instant::now();
        let peer = Arc::new(Peer {
            id: id.clone(),
            kind,
            etag: Mutex::new(new_etag()),
            remote_ufrag: Mutex::new(remote_ufrag),
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
        match opening {
            Start::Channels(opening) => {
                let session = datachannel::Session::new(core.clone(), rc, Arc::clone(self), Arc::clone(&peer));
                tokio::spawn(session.run(opening));
            }
            Start::Tracks(opening) => {
                let session = super::tracks::Session::new(core.clone(), rc, Arc::clone(self), Arc::clone(&peer));
                tokio::spawn(session.run(opening));
            }
        }
        Ok((peer, sdp))
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

    /// Peer `id`'s connection and ICE state changes after index `after` of its list, waiting up
    /// to `wait` (10 s at most) for one or for its end. `UnknownSession` once it is gone.
    pub async fn state_changes(
        &self,
        id: &str,
        after: usize,
        wait: Duration,
        caller: &Principal,
    ) -> Result<StateChanges, PeerError> {
        let s = self.get(id, caller)?;
        let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(10));
        loop {
            let notified = s.state.changed.notified();
            let list = lock(&s.state.changes).clone();
            let ended = s.closed.load(Ordering::Relaxed)
                || is_finished(*s.state.connection.borrow())
                || !self.peers.contains_key(id);
            if list.len() > after || ended || tokio::time::Instant::now() >= deadline {
                let next = list.len();
                return Ok(StateChanges { changes: list.into_iter().skip(after).collect(), next, ended });
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
        if let Some((_, peer)) = self.peers.remove(id) {
            // Waiters on its state learn it is gone.
            peer.state.changed.notify_waiters();
        }
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

pub fn is_finished(state: RTCPeerConnectionState) -> bool {
    matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)
}
