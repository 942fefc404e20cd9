//! WHIP ingest (RFC 9725): a train that speaks WebRTC instead of the railcast wire format
//! publishes its cameras and microphone as RTP, and takes commands on a data channel.
//!
//! [`Server`] is the registry of publications; `crate::signaling::whip` is its HTTP front-end
//! (`POST /api/whip/trains/{train}`, `PATCH`/`DELETE /api/whip/sessions/{id}`, docs/whip.md).
//! A publication's peer is built by `transport::webrtc`'s negotiation, on the same UDP socket,
//! settings and candidate checks as every other WebRTC peer; from there on it is a train like a
//! QUIC one: one [`session`] task per publication owns the peer, reads its tracks, and drives a
//! [`crate::hub::Publisher`].
//!
//! - [`offer`]: the offer's layout (sans IO): its H.264 sections are the cameras, camera `i` the
//!   i-th in m-line order, the first Opus section the audio source, and a data-channel section
//!   the `command` channel;
//! - [`depacketize`]: RTP H.264 into Annex B access units (sans IO), with the drop rules;
//! - [`session`]: the task: tracks → frames → hub, hub → PLI and commands → the publisher.
//!
//! The train goes online (its hello-like announcement, `train_online`) once every camera has
//! sent a keyframe, whose SPS gives the picture size; it sends PLIs until then.

mod depacketize;
mod offer;
mod reorder;
mod session;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use railcast_protocol::{Secret, TrainId};
use tokio::sync::{watch, Notify};
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::auth::{Auth, TrainAuthError};
use crate::hub::Hub;
use crate::limits::{Limit, LimitHit};
use crate::transport::webrtc::negotiate::{self, lock, NegotiationError, PeerState, PortRange};
use crate::transport::webrtc::peers::{add_candidates, etag_matches, local_fragment, new_etag, restart_offer};
use crate::transport::webrtc::{Fragment, IceServer, Patched, Settings};

pub use depacketize::{AccessUnit, Counters, Depacketizer, Rtp};
pub use offer::{Layout, OfferError};

/// The ingest's name in the API (`GET /api/trains`: `"ingest": "whip"`) and the metrics.
pub const NAME: &str = "whip";

/// The id of a WHIP train's audio source, as the simulator's (cameras are 0..n).
pub const AUDIO_ID: u16 = 256;

/// The WHIP ingest's metrics (registered in the server's registry on first use).
#[derive(Debug)]
pub struct WhipMetrics {
    /// `railcast_whip_frames_total{outcome}`: H.264 frames of WHIP publishers, `relayed`, or
    /// dropped: `incomplete` (a packet missing or unreadable), `held_back` (a delta while waiting
    /// for a keyframe), `unannounced` (a camera left out of the announcement).
    pub frames: prometheus::IntCounterVec,
    /// `railcast_whip_plis_total`: RTCP PLIs sent to WHIP publishers.
    pub plis: prometheus::IntCounter,
    /// `railcast_whip_rtp_reorder_total{kind, outcome}`: RTP packets (`kind` `video` or `audio`)
    /// that arrived ahead of a missing one and were put back in order (`reordered`), gaps given
    /// up after waiting (`gap`), and audio packets dropped as behind one already relayed, or
    /// duplicates (`late`: Opus is played in order).
    pub reorder: prometheus::IntCounterVec,
    /// `railcast_whip_publications_total{outcome}`: POSTs `answered`, or refused (`unauthorized`,
    /// `bad_offer`, `limit`, `failed`).
    pub publications: prometheus::IntCounterVec,
}

pub static METRICS: LazyLock<WhipMetrics> = LazyLock::new(|| {
    let r = crate::metrics::METRICS.registry();
    let plis = prometheus::IntCounter::new("railcast_whip_plis_total", "RTCP PLIs sent to WHIP publishers.")
        .expect("valid metric");
    r.register(Box::new(plis.clone())).expect("unique metric");
    WhipMetrics {
        frames: crate::metrics::counter(
            r,
            "railcast_whip_frames_total",
            "H.264 frames of WHIP publishers: relayed, or dropped and why.",
            &["outcome"],
        ),
        plis,
        reorder: crate::metrics::counter(
            r,
            "railcast_whip_rtp_reorder_total",
            "RTP packets of WHIP publishers put back in sequence order, gaps given up, late audio dropped.",
            &["kind", "outcome"],
        ),
        publications: crate::metrics::counter(
            r,
            "railcast_whip_publications_total",
            "WHIP POSTs: answered, or refused and why.",
            &["outcome"],
        ),
    }
});

/// Why a WHIP request failed.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("train {train}: {reason}")]
    Unauthorized { train: String, reason: TrainAuthError },
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error("WHIP session '{0}' does not exist")]
    UnknownSession(String),
    #[error("this PATCH needs an If-Match header with the session's ETag (or \"*\")")]
    PreconditionRequired,
    #[error("If-Match {0:?} is not the session's current ETag")]
    PreconditionFailed(String),
    #[error("the ICE restart failed ({0}); end this session (DELETE) and POST a new offer")]
    IceRestart(String),
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    #[error(transparent)]
    Limit(#[from] LimitHit),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// The answer to a WHIP offer.
#[derive(Debug, Clone)]
pub struct Published {
    pub id: String,
    pub sdp: String,
    pub etag: String,
    pub ice_servers: Vec<IceServer>,
}

/// One publication, shared by the registry (signaling) and its task.
pub struct Publication {
    pub id: String,
    pub train: TrainId,
    etag: Mutex<String>,
    remote_ufrag: Mutex<Option<String>>,
    /// The token the train published with, checked again after each credentials reload.
    token: Secret,
    pc: Arc<dyn PeerConnection>,
    state: Arc<PeerState>,
    closed: AtomicBool,
    stop: Notify,
    /// Why it was closed from outside its task (DELETE, a newer POST for the train).
    end: Mutex<Option<String>>,
    created: Instant,
}

impl std::fmt::Debug for Publication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publication").field("id", &self.id).field("train", &self.train).finish_non_exhaustive()
    }
}

impl Publication {
    /// Close it for `reason`: its task takes the train offline and ends.
    fn close(&self, reason: &str) {
        lock(&self.end).get_or_insert_with(|| reason.to_owned());
        self.closed.store(true, Ordering::Relaxed);
        self.stop.notify_one();
    }
}

/// The registry of WHIP publications.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    ports: PortRange,
    hub: Hub,
    auth: Arc<Auth>,
    max_trains: usize,
    sessions: DashMap<String, Arc<Publication>>,
    /// Wakes [`Server::closed`] when a session ends.
    ended: Notify,
    shutdown: watch::Receiver<bool>,
}

impl Server {
    pub fn new(
        settings: Settings,
        hub: Hub,
        auth: Arc<Auth>,
        max_trains: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            ports: PortRange::new(settings.udp_ports),
            settings,
            hub,
            auth,
            max_trains,
            sessions: DashMap::new(),
            ended: Notify::new(),
            shutdown,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Check `token` against the one configured for `train` (the QUIC hello's check).
    pub fn authorize(&self, train: &TrainId, token: Option<&str>) -> Result<(), WhipError> {
        let secret = token.map(|t| Secret(t.to_owned()));
        self.auth.train(train, secret.as_ref()).map_err(|reason| {
            crate::metrics::METRICS.auth_refusals.with_label_values(&["train", reason.reason()]).inc();
            WhipError::Unauthorized { train: train.to_string(), reason }
        })
    }

    /// A train publishes: check its token, read its offer, answer it (host candidates included)
    /// and start its session. The train goes online when every camera has sent a keyframe.
    pub async fn publish(
        self: &Arc<Self>,
        train: TrainId,
        token: Option<&str>,
        offer: String,
    ) -> Result<Published, WhipError> {
        let result = self.answer(train, token, offer).await;
        let outcome = match &result {
            Ok(_) => "answered",
            Err(WhipError::Unauthorized { .. }) => "unauthorized",
            Err(WhipError::Offer(_) | WhipError::Negotiation(NegotiationError::BadSdp(_))) => "bad_offer",
            Err(WhipError::Limit(_)) => "limit",
            Err(_) => "failed",
        };
        METRICS.publications.with_label_values(&[outcome]).inc();
        result
    }

    async fn answer(
        self: &Arc<Self>,
        train: TrainId,
        token: Option<&str>,
        offer: String,
    ) -> Result<Published, WhipError> {
        self.authorize(&train, token)?;
        if *self.shutdown.borrow() {
            return Err(WhipError::ShuttingDown);
        }
        let layout = offer::read(&offer, railcast_protocol::control::MAX_CAMERAS)?;
        if self.hub.stream(&train).is_none() && self.hub.train_count() >= self.max_trains {
            return Err(Limit::Trains
                .refuse(format!("{} trains are known already (max_trains)", self.max_trains))
                .into());
        }
        let created = Instant::now();
        let state = PeerState::new();
        let (tracks, channels) = state.receive();
        let media = Some(crate::transport::webrtc::tracks::media as fn() -> _);
        let pc = negotiate::build(&self.settings, &self.ports, Arc::clone(&state), media)
            .await
            .map_err(NegotiationError::Internal)?;
        let negotiated = async {
            if let Some(mid) = layout.cameras.first().and_then(|c| c.mid.clone()) {
                *lock(&state.mid) = mid;
            }
            let desc =
                RTCSessionDescription::offer(offer.clone()).map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
            pc.set_remote_description(desc).await.map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
            let answer = pc.create_answer(None).await.map_err(|e| NegotiationError::Internal(e.to_string()))?;
            pc.set_local_description(answer).await.map_err(|e| NegotiationError::Internal(e.to_string()))?;
            negotiate::local_sdp(&pc, &state, &self.settings).await
        }
        .await;
        let sdp = match negotiated {
            Ok(sdp) => sdp,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e.into());
            }
        };
        let id = format!("whip-{:016x}", rand::random::<u64>());
        let etag = new_etag();
        let publication = Arc::new(Publication {
            id: id.clone(),
            train,
            etag: Mutex::new(etag.clone()),
            remote_ufrag: Mutex::new(ice_ufrag(&offer)),
            token: Secret(token.unwrap_or_default().to_owned()),
            pc,
            state,
            closed: AtomicBool::new(false),
            stop: Notify::new(),
            end: Mutex::new(None),
            created,
        });
        // One publication per train id: a newer POST ends an older one at once (newest wins, as in
        // the hub), so a token holder cannot pile up peers that never connect.
        for older in self.sessions.iter().filter(|p| p.train == publication.train) {
            older.close("replaced by a newer WHIP publication for the same train id");
        }
        self.sessions.insert(id.clone(), Arc::clone(&publication));
        tracing::info!(session = %id, train = %publication.train, cameras = layout.cameras.len(),
            audio = layout.audio.is_some(), command = layout.data_channel, "WHIP publication answered");
        let session = session::Session::new(Arc::clone(self), publication, layout, tracks, channels);
        tokio::spawn(session.run());
        let ice_servers = self.settings.ice_servers.issue(&id);
        Ok(Published { id, sdp, etag, ice_servers })
    }

    /// The open publication `id`, if `token` is its train's.
    fn get(&self, id: &str, token: Option<&str>) -> Result<Arc<Publication>, WhipError> {
        let p = self
            .sessions
            .get(id)
            .map(|p| Arc::clone(p.value()))
            .filter(|p| !p.closed.load(Ordering::Relaxed))
            .ok_or_else(|| WhipError::UnknownSession(id.to_owned()))?;
        self.authorize(&p.train, token)?;
        Ok(p)
    }

    /// Whether a token is configured for train id `train` (so it may publish).
    pub fn knows_train(&self, train: &str) -> bool {
        self.auth.knows_train(train)
    }

    /// Whether publication `id` exists (and is not closed), whoever asks.
    pub fn exists(&self, id: &str) -> bool {
        self.sessions.get(id).is_some_and(|p| !p.closed.load(Ordering::Relaxed))
    }

    /// Trickle ICE or an ICE restart for publication `id`, as WHEP's PATCH
    /// (`transport::webrtc::Server::patch`): `if_match` must be the current ETag or `*`.
    pub async fn patch(
        &self,
        id: &str,
        token: Option<&str>,
        if_match: Option<&str>,
        fragment: &str,
    ) -> Result<Patched, WhipError> {
        let p = self.get(id, token)?;
        let Some(if_match) = if_match else { return Err(WhipError::PreconditionRequired) };
        if !etag_matches(if_match, &lock(&p.etag)) {
            return Err(WhipError::PreconditionFailed(if_match.to_owned()));
        }
        let f = Fragment::parse(fragment)?;
        let known = lock(&p.remote_ufrag).clone();
        let restarted = match (&f.ufrag, &f.pwd) {
            (Some(ufrag), Some(pwd)) if Some(ufrag) != known.as_ref() => Some(self.restart(&p, ufrag, pwd).await?),
            (Some(ufrag), None) if Some(ufrag) != known.as_ref() => {
                return Err(NegotiationError::BadSdp("an ICE restart needs a=ice-pwd beside a=ice-ufrag".into()).into())
            }
            _ => None,
        };
        let mid = lock(&p.state.mid).clone();
        add_candidates(p.pc.as_ref(), f, &mid).await?;
        Ok(restarted.unwrap_or(Patched::Applied))
    }

    async fn restart(&self, p: &Publication, ufrag: &str, pwd: &str) -> Result<Patched, WhipError> {
        let failed = |e: &dyn std::fmt::Display| WhipError::IceRestart(e.to_string());
        let remote = p.pc.remote_description().await.ok_or_else(|| failed(&"no remote description"))?;
        let desc = RTCSessionDescription::offer(restart_offer(&remote.sdp, ufrag, pwd)).map_err(|e| failed(&e))?;
        p.pc.set_remote_description(desc).await.map_err(|e| failed(&e))?;
        let answer = p.pc.create_answer(None).await.map_err(|e| failed(&e))?;
        p.pc.set_local_description(answer).await.map_err(|e| failed(&e))?;
        let local = negotiate::local_sdp(&p.pc, &p.state, &self.settings).await.map_err(|e| failed(&e))?;
        *lock(&p.remote_ufrag) = Some(ufrag.to_owned());
        let etag = new_etag();
        *lock(&p.etag) = etag.clone();
        tracing::debug!(session = %p.id, "WHIP ICE restarted");
        Ok(Patched::Restarted { etag, fragment: local_fragment(&local) })
    }

    /// End publication `id` (the train goes offline).
    pub fn delete(&self, id: &str, token: Option<&str>) -> Result<(), WhipError> {
        self.get(id, token)?.close("the publisher ended the session (DELETE)");
        Ok(())
    }

    /// Publications open now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Called by a session's task as it ends.
    fn remove(&self, id: &str) {
        self.sessions.remove(id);
        self.ended.notify_waiters();
    }

    /// Resolves once the server is shutting down and every publication has ended (each session
    /// watches the shutdown signal itself).
    pub async fn closed(&self) {
        let mut stop = self.shutdown.clone();
        crate::stopped(&mut stop).await;
        loop {
            let ended = self.ended.notified();
            if self.sessions.is_empty() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), ended).await;
        }
    }
}

/// The first `a=ice-ufrag:` of an SDP.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:").map(str::to_owned))
}
