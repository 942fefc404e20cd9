//! MQTT transport: the same video packets, events and client messages as the other transports,
//! through a real broker (mosquitto 2.0 with its dynamic-security plugin; `deploy/mosquitto/`).
//!
//! The server holds one connection to the broker ([`broker`]). A console first asks
//! `POST /api/mqtt/sessions` for a session: the server creates a broker client and role for it
//! ([`dynsec`]) that may read only that session's topics and publish only its command (and
//! signaling) topics ([`topics`]), and answers with the credentials. The client connects to the
//! broker, subscribes, and publishes its first client message on its command topic; that message
//! opens the [`Session`] (a [`crate::relay::Relay`] like every transport's). Video goes packed as on
//! a data channel (wire format §2.6) in messages of at most `mqtt_video_message` bytes. The session
//! ends on an empty command message (the client's goodbye or its will), on silence for
//! `mqtt_idle_timeout`, on `DELETE`, or for the relay's reasons; then the server publishes
//! `closing` and deletes the credentials, and the broker disconnects the client at once.
//!
//! Off unless `mqtt_url` is set.

pub mod broker;
pub mod dynsec;
mod session;
pub mod topics;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use dashmap::DashMap;
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use rumqttc::QoS;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use broker::{Broker, BrokerError, Inbound};
pub use session::Session;
pub use topics::{SessionTopics, SignalingTopics};

use crate::auth::Principal;
use crate::config::{invalid, Config, ConfigError};
use crate::core::Core;
use crate::http::{ApiError, ApiJson, ApiPath, Caller, ErrorBody};
use crate::limits::AddressGuard;
use crate::remote::RemoteControl;

/// The transport's name in the API and metric labels.
pub const NAME: &str = "mqtt";

/// Client messages queued for one session; beyond it they are dropped (and counted).
const INBOX: usize = 64;

/// Where the broker is, parsed from `mqtt_url`.
#[derive(Debug, Clone)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
}

impl BrokerUrl {
    /// `mqtt://[USER[:PASSWORD]@]HOST[:PORT]` (port 1883 by default).
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("mqtt://").or_else(|| s.strip_prefix("tcp://")).ok_or("must start with mqtt://")?;
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (username, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (u.to_owned(), p.to_owned()),
                None => (a.to_owned(), String::new()),
            },
            None => (String::new(), String::new()),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err("no host".into());
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
            None => 1883,
        };
        Ok(Self { host, port, username, password })
    }
}

/// MQTT settings (`mqtt_*` in the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: the transport is off.
    pub broker: Option<BrokerUrl>,
    /// The broker's MQTT-over-WebSocket URL for browsers; `None`: not told.
    pub browser_url: Option<String>,
    /// Largest video message, bytes (§2.6 packing); a larger packet travels alone.
    pub video_message: usize,
    /// Credentials not used within this are deleted.
    pub claim_timeout: Duration,
    /// A session whose client sends nothing for this long is ended.
    pub idle_timeout: Duration,
    /// Sessions (claimed or not) at once.
    pub max_sessions: usize,
    /// The STUN/TURN servers a client signaling WebRTC over MQTT should use (the WebRTC
    /// transport's `webrtc_ice_servers`, handed over by the composition root), with credentials
    /// issued per session.
    pub ice_servers: crate::ice::IceServers,
}

/// A STUN or TURN server for WebRTC signaled over MQTT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl From<crate::ice::IceServer> for IceServer {
    fn from(s: crate::ice::IceServer) -> Self {
        Self { urls: s.urls, username: s.username, credential: s.credential }
    }
}

impl Settings {
    pub fn from_config(c: &Config) -> Result<Self, ConfigError> {
        let broker = match c.mqtt_url.trim() {
            "" => None,
            u => Some(
                BrokerUrl::parse(u)
                    .map_err(|e| invalid("mqtt_url", format!("{e} (mqtt://[USER[:PASSWORD]@]HOST[:PORT])")))?,
            ),
        };
        let browser_url = match c.mqtt_browser_url.trim() {
            "" => None,
            u if u.starts_with("ws://") || u.starts_with("wss://") => Some(u.to_owned()),
            u => return Err(invalid("mqtt_browser_url", format!("must be a ws:// or wss:// URL, got {u:?}"))),
        };
        if !(1_200..=65_536).contains(&c.mqtt_video_message) {
            return Err(invalid(
                "mqtt_video_message",
                format!("must be within 1200..=65536, got {}", c.mqtt_video_message),
            ));
        }
        let claim_timeout = c.mqtt_claim_timeout.0;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&claim_timeout) {
            return Err(invalid("mqtt_claim_timeout", format!("must be within 1s..=1h, got {}", c.mqtt_claim_timeout)));
        }
        let idle_timeout = c.mqtt_idle_timeout.0;
        if !(Duration::from_secs(2)..=Duration::from_secs(3600)).contains(&idle_timeout) {
            return Err(invalid("mqtt_idle_timeout", format!("must be within 2s..=1h, got {}", c.mqtt_idle_timeout)));
        }
        if c.mqtt_max_sessions == 0 {
            return Err(invalid("mqtt_max_sessions", "must be at least 1"));
        }
        Ok(Self {
            broker,
            browser_url,
            video_message: c.mqtt_video_message,
            claim_timeout,
            idle_timeout,
            max_sessions: c.mqtt_max_sessions,
            ice_servers: crate::ice::IceServers::default(),
        })
    }
}

/// Metrics of the MQTT transport.
pub struct MqttMetrics {
    /// `railcast_mqtt_connected`: 1 while the server is connected to the broker.
    pub connected: IntGauge,
    /// `railcast_mqtt_connects_total`: connections made to the broker (reconnections included).
    pub connects: IntCounter,
    /// `railcast_mqtt_sessions`: sessions with credentials now (claimed or not).
    pub sessions: IntGauge,
    /// `railcast_mqtt_refused_total{reason}`: messages from clients refused: `retained`,
    /// `unknown_session`, `inbox_full`, `bad_message`, `too_large`.
    pub refused: IntCounterVec,
    /// `railcast_mqtt_inbound_dropped_total`: messages from the broker dropped because the
    /// server's queue for them was full.
    pub dropped_in: IntCounter,
    /// `railcast_mqtt_publish_full_total`: video publishes deferred because the connection's
    /// request queue was full (the hub holds or drops packets meanwhile).
    pub publish_full: IntCounter,
    /// `railcast_mqtt_control_failures_total`: dynamic-security commands refused or unanswered.
    pub control_failures: IntCounter,
}

impl std::fmt::Debug for MqttMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttMetrics").finish_non_exhaustive()
    }
}

pub static METRICS: LazyLock<MqttMetrics> = LazyLock::new(|| {
    let r = crate::metrics::METRICS.registry();
    let gauge = |name: &str, help: &str| {
        let g = IntGauge::new(name, help).expect("valid metric");
        r.register(Box::new(g.clone())).expect("unique metric");
        g
    };
    let count = |name: &str, help: &str| {
        let c = IntCounter::new(name, help).expect("valid metric");
        r.register(Box::new(c.clone())).expect("unique metric");
        c
    };
    MqttMetrics {
        connected: gauge("railcast_mqtt_connected", "1 while the server is connected to the MQTT broker."),
        connects: count("railcast_mqtt_connects_total", "Connections made to the MQTT broker."),
        sessions: gauge("railcast_mqtt_sessions", "MQTT sessions holding broker credentials."),
        refused: crate::metrics::counter(
            r,
            "railcast_mqtt_refused_total",
            "Messages from MQTT clients refused, by reason.",
            &["reason"],
        ),
        dropped_in: count("railcast_mqtt_inbound_dropped_total", "MQTT messages dropped: the server's queue was full."),
        publish_full: count(
            "railcast_mqtt_publish_full_total",
            "Video publishes deferred: the broker connection's queue was full.",
        ),
        control_failures: count(
            "railcast_mqtt_control_failures_total",
            "Dynamic-security commands refused or unanswered.",
        ),
    }
});

/// Credentials handed to a client for one session, until they are used, expire or end.
#[derive(Debug)]
pub struct Grant {
    /// `mq-` and 16 hex digits.
    pub id: String,
    /// The broker username, client id and role name.
    pub name: String,
    pub rc: Arc<RemoteControl>,
    pub principal: Principal,
    /// Where the `POST` came from.
    pub address: IpAddr,
    pub topics: SessionTopics,
    pub signaling: SignalingTopics,
    created: Instant,
    claimed: AtomicBool,
    /// Its place in the per-address limit, until a WebRTC peer takes its own ([`Grant::hand_over_slot`]).
    slot: std::sync::Mutex<Option<AddressGuard>>,
}

impl Grant {
    /// A WebRTC peer signaled with this grant counts in the per-address limit itself: the grant
    /// stops counting.
    pub fn hand_over_slot(&self) {
        self.slot.lock().map(|mut s| s.take()).ok();
    }
}

/// The connection's event loop until [`Server::serve`] drives it.
struct Parked(rumqttc::EventLoop);

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLoop")
    }
}

/// Accepts MQTT sessions; owns the broker connection.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    broker: Option<Arc<Broker>>,
    eventloop: std::sync::Mutex<Option<Parked>>,
    commands: std::sync::Mutex<Option<mpsc::Receiver<Inbound>>>,
    grants: DashMap<String, Arc<Grant>>,
    /// The inbox of each running session.
    inboxes: DashMap<String, mpsc::Sender<Bytes>>,
}

impl Server {
    pub fn new(settings: Settings) -> Arc<Self> {
        crate::sessions::Registry::declare_transport(NAME);
        let (broker, eventloop) = match Broker::new(&settings) {
            Some((b, e)) => (Some(b), Some(e)),
            None => (None, None),
        };
        let commands = broker.as_ref().map(|b| b.route(topics::COMMANDS, QoS::AtLeastOnce));
        Arc::new(Self {
            settings,
            broker,
            eventloop: std::sync::Mutex::new(eventloop.map(Parked)),
            commands: std::sync::Mutex::new(commands),
            grants: DashMap::new(),
            inboxes: DashMap::new(),
        })
    }

    /// The broker connection; `None` when the transport is off.
    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Routes to nest under `/api`.
    pub fn api_routes(self: &Arc<Self>) -> Router<Core> {
        Router::new()
            .route("/mqtt", get(info))
            .route("/mqtt/sessions", post(create))
            .route("/mqtt/sessions/{id}", axum::routing::delete(delete))
            .layer(Extension(Arc::clone(self)))
    }

    /// Create credentials for a session of `caller` on `rc` (see the module docs): the grant,
    /// and the password (kept nowhere but in the broker, hashed).
    pub async fn grant(
        &self,
        core: &Core,
        rc: Arc<RemoteControl>,
        caller: Principal,
        address: IpAddr,
    ) -> Result<(Arc<Grant>, String), ApiError> {
        let broker = self.broker.as_ref().ok_or_else(disabled)?;
        if core.stopping() {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"));
        }
        if let Some(e) = broker.unavailable() {
            return Err(unavailable(&e));
        }
        if !topics::valid_level(&rc.id) {
            return Err(ApiError::unprocessable(
                "bad_remote_control_id",
                format!("remote control id {:?} cannot be an MQTT topic level", rc.id),
            ));
        }
        let max = self.settings.max_sessions;
        if self.grants.len() >= max {
            return Err(ApiError::limit(
                crate::limits::Limit::MqttSessions.refuse(format!("{max} MQTT sessions are open (mqtt_max_sessions)")),
            ));
        }
        let slot = core.client_addresses.acquire(address).map_err(ApiError::limit)?;
        let id = format!("mq-{:016x}", rand::random::<u64>());
        let name = format!("{}{}", dynsec::SESSION_PREFIX, &id[3..]);
        let password = crate::auth::generate_token();
        let topics = SessionTopics::new(&rc.id, &id);
        let signaling = SignalingTopics::new(&id);
        broker
            .control(dynsec::create_session(&name, &password, &topics, &signaling))
            .await
            .map_err(|e| unavailable(&e))?;
        let grant = Arc::new(Grant {
            id: id.clone(),
            name,
            rc,
            principal: caller,
            address,
            topics,
            signaling,
            created: Instant::now(),
            claimed: AtomicBool::new(false),
            slot: std::sync::Mutex::new(Some(slot)),
        });
        self.grants.insert(id, Arc::clone(&grant));
        METRICS.sessions.set(self.grants.len() as i64);
        Ok((grant, password))
    }

    /// Take the unused grant `id` for a session (the transport's or signaling's). `None` when
    /// unknown, already taken, or its principal's token is no longer in force.
    pub fn claim(self: &Arc<Self>, core: &Core, id: &str) -> Option<Arc<Grant>> {
        let g = self.grants.get(id).map(|g| Arc::clone(g.value()))?;
        if g.claimed.swap(true, Ordering::AcqRel) {
            return None;
        }
        if !core.auth.in_force(&g.principal) {
            tracing::info!(session = id, principal = %g.principal.name, "mqtt credentials of a revoked token: deleted");
            let server_grant = Arc::clone(&g);
            self.release_later(server_grant);
            return None;
        }
        Some(g)
    }

    /// A grant, whether claimed or not.
    pub fn grant_of(&self, id: &str) -> Option<Arc<Grant>> {
        self.grants.get(id).map(|g| Arc::clone(g.value()))
    }

    /// Delete `grant`'s credentials (the broker disconnects its client), then forget it: at
    /// shutdown the broker connection ends once no grant is left, so one must not be forgotten
    /// before its deletion is answered.
    pub async fn release(&self, grant: &Grant) {
        if !self.grants.contains_key(&grant.id) {
            return;
        }
        if let Some(broker) = &self.broker {
            if let Err(e) = broker.control(dynsec::delete_session(&grant.name)).await {
                tracing::warn!(session = %grant.id, "mqtt credentials not deleted: {e}; they are deleted at the next start");
            }
        }
        self.grants.remove(&grant.id);
        METRICS.sessions.set(self.grants.len() as i64);
    }

    fn release_later(self: &Arc<Self>, grant: Arc<Grant>) {
        let server = Arc::clone(self);
        tokio::spawn(async move { server.release(&grant).await });
    }

    /// End session `id` at the client's request (`DELETE`).
    fn end(self: &Arc<Self>, id: &str) -> bool {
        match self.inboxes.get(id) {
            // An empty message is the goodbye; a full inbox means the session is busy, and the
            // grant's removal below ends it anyway.
            Some(tx) => {
                let _ = tx.try_send(Bytes::new());
                true
            }
            None => match self.grant_of(id) {
                Some(g) => {
                    self.release_later(g);
                    true
                }
                None => false,
            },
        }
    }

    /// Drive the broker connection and every session until shutdown; then wait for the
    /// sessions' goodbyes (their credentials deleted) before disconnecting.
    pub async fn serve(self: Arc<Self>, core: Core) {
        let (Some(broker), Some(Parked(eventloop))) =
            (self.broker.clone(), self.eventloop.lock().ok().and_then(|mut e| e.take()))
        else {
            return;
        };
        let Some(mut commands) = self.commands.lock().ok().and_then(|mut c| c.take()) else { return };
        let server = Arc::clone(&self);
        let done = async move {
            // Sessions end on the shutdown signal themselves; unclaimed grants are deleted here.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let unclaimed: Vec<_> = server
                    .grants
                    .iter()
                    .filter(|g| !g.claimed.load(Ordering::Acquire))
                    .map(|g| Arc::clone(g.value()))
                    .collect();
                for g in unclaimed {
                    server.release(&g).await;
                }
                if server.grants.is_empty() || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let connection = tokio::spawn(Arc::clone(&broker).run(eventloop, core.shutdown.clone(), done));
        let mut stop = core.shutdown.clone();
        let mut ready = broker.readiness();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                msg = commands.recv() => match msg {
                    Some(msg) => self.on_command(&core, msg),
                    None => break,
                },
                _ = tick.tick() => self.expire(),
                Ok(()) = ready.changed() => {
                    let server = Arc::clone(&self);
                    tokio::spawn(async move { server.delete_leftovers().await });
                }
                _ = crate::stopped(&mut stop) => break,
            }
        }
        let _ = connection.await;
    }

    /// One message on some session's command topic.
    fn on_command(self: &Arc<Self>, core: &Core, msg: Inbound) {
        if msg.retain {
            // Retained messages are old by definition: never a client's live message.
            METRICS.refused.with_label_values(&["retained"]).inc();
            return;
        }
        let Some((rc, sid)) = topics::parse_command(&msg.topic) else { return };
        if let Some(tx) = self.inboxes.get(sid) {
            if tx.try_send(msg.payload).is_err() {
                METRICS.refused.with_label_values(&["inbox_full"]).inc();
            }
            return;
        }
        let known = self.grant_of(sid).is_some_and(|g| g.rc.id == rc);
        let grant = if known { self.claim(core, sid) } else { None };
        let Some(grant) = grant else {
            METRICS.refused.with_label_values(&["unknown_session"]).inc();
            tracing::debug!(topic = %msg.topic, "mqtt message for no open session: ignored");
            return;
        };
        if msg.payload.is_empty() {
            // A goodbye before any session: the credentials go at once.
            self.release_later(grant);
            return;
        }
        let (tx, rx) = mpsc::channel(INBOX);
        self.inboxes.insert(grant.id.clone(), tx);
        let session = Session::new(core.clone(), Arc::clone(self), grant);
        tokio::spawn(session.run(msg.payload, rx));
    }

    /// Delete credentials not used within `mqtt_claim_timeout`.
    fn expire(self: &Arc<Self>) {
        let limit = self.settings.claim_timeout;
        let stale: Vec<_> = self
            .grants
            .iter()
            .filter(|g| !g.claimed.load(Ordering::Acquire) && g.created.elapsed() > limit)
            .map(|g| Arc::clone(g.value()))
            .collect();
        for g in stale {
            tracing::info!(session = %g.id, "mqtt credentials not used within mqtt_claim_timeout: deleted");
            self.release_later(g);
        }
    }

    /// Session clients and roles on the broker that no grant of this server holds: left by a
    /// previous run (sessions do not survive a restart).
    async fn delete_leftovers(&self) {
        let Some(broker) = &self.broker else { return };
        let listed = match broker.control(vec![dynsec::list_clients(), dynsec::list_roles()]).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("cannot list the broker's clients: {e}");
                return;
            }
        };
        let ours =
            |name: &String| name.starts_with(dynsec::SESSION_PREFIX) && !self.grants.iter().any(|g| &g.name == name);
        let mut commands = Vec::new();
        for name in dynsec::listed(&listed[0], "clients").iter().filter(|n| ours(n)) {
            commands.push(dynsec::delete_client(name));
        }
        for name in dynsec::listed(&listed[1], "roles").iter().filter(|n| ours(n)) {
            commands.push(dynsec::delete_role(name));
        }
        if !commands.is_empty() {
            tracing::info!(n = commands.len(), "deleting MQTT session clients and roles left by a previous run");
            if let Err(e) = broker.control(commands).await {
                tracing::warn!("cannot delete leftover MQTT sessions: {e}");
            }
        }
    }
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "mqtt_disabled",
        "the MQTT transport is off on this server (mqtt_url is empty)",
    )
}

fn unavailable(e: &BrokerError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "mqtt_unavailable", e.to_string())
}

/// This transport's fragment of the OpenAPI contract.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(info, create, delete),
    components(schemas(MqttInfo, NewMqttSession, MqttSession, SessionTopics, SignalingTopics, IceServer))
)]
pub struct ApiDoc;

/// The MQTT transport as a console sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MqttInfo {
    /// The broker's MQTT-over-WebSocket URL for browsers (`mqtt_browser_url`); null when the
    /// server was not told one.
    #[schema(example = "ws://127.0.0.1:9001")]
    pub url: Option<String>,
    /// Whether the server is connected to the broker now.
    pub connected: bool,
    /// Largest video message, bytes.
    pub max_message: usize,
}

/// `GET /api/mqtt`: whether and where the MQTT transport is offered. Any role.
#[utoipa::path(operation_id = "mqtt_info", get, path = "/api/mqtt", tag = "transports",
    responses((status = 200, body = MqttInfo), (status = 401, body = ErrorBody),
        (status = 404, description = "MQTT is off (`mqtt_disabled`)", body = ErrorBody)))]
async fn info(_caller: Caller, Extension(server): Extension<Arc<Server>>) -> Result<Json<MqttInfo>, ApiError> {
    let broker = server.broker.as_ref().ok_or_else(disabled)?;
    Ok(Json(MqttInfo {
        url: server.settings.browser_url.clone(),
        connected: broker.unavailable().is_none(),
        max_message: server.settings.video_message,
    }))
}

/// Body of `POST /api/mqtt/sessions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewMqttSession {
    #[schema(example = "rc-0123456789abcdef")]
    pub remote_control_id: String,
}

/// Credentials and topics of one MQTT session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MqttSession {
    #[schema(example = "mq-0123456789abcdef")]
    pub session_id: String,
    /// The broker's URL for browsers; null when the server was not told one.
    pub url: Option<String>,
    /// The MQTT client id to connect with (the only one these credentials accept).
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub topics: SessionTopics,
    /// WebRTC signaling over MQTT for the same remote control (docs/signaling.md).
    pub signaling: SignalingTopics,
    /// The STUN/TURN servers to offer with when signaling WebRTC over MQTT.
    pub ice_servers: Vec<IceServer>,
    /// Largest video message, bytes.
    pub max_message: usize,
    /// The credentials are deleted unless a first message arrives within this many seconds.
    pub claim_within_s: u64,
    /// A session whose client sends nothing for this long is ended (the console pings every second).
    pub idle_timeout_s: u64,
}

/// Create an MQTT session for a remote control: broker credentials allowed to read only its
/// own video and events and publish only its own commands. Same checks as `GET /ws`.
#[utoipa::path(operation_id = "create_mqtt_session", post, path = "/api/mqtt/sessions", tag = "transports", request_body = NewMqttSession,
    responses((status = 201, body = MqttSession), (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, description = "body over max_body", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 404, description = "unknown remote control, or MQTT is off (`mqtt_disabled`)", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, description = "the broker is not reachable (`mqtt_unavailable`)", body = ErrorBody)))]
async fn create(
    caller: Caller,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Extension(server): Extension<Arc<Server>>,
    ApiJson(body): ApiJson<NewMqttSession>,
) -> Result<(StatusCode, Json<MqttSession>), ApiError> {
    server.broker.as_ref().ok_or_else(disabled)?;
    let rc = core
        .remotes
        .get(&body.remote_control_id)
        .ok_or_else(|| ApiError::remote_control_not_found(&body.remote_control_id))?;
    caller.may_use(&rc.id, rc.owner.as_deref())?;
    let (grant, password) = server.grant(&core, rc, caller.0, peer.ip()).await?;
    let session = MqttSession {
        session_id: grant.id.clone(),
        url: server.settings.browser_url.clone(),
        client_id: grant.name.clone(),
        username: grant.name.clone(),
        password,
        topics: grant.topics.clone(),
        signaling: grant.signaling.clone(),
        ice_servers: server.settings.ice_servers.issue(&grant.id).into_iter().map(IceServer::from).collect(),
        max_message: server.settings.video_message,
        claim_within_s: server.settings.claim_timeout.as_secs(),
        idle_timeout_s: server.settings.idle_timeout.as_secs(),
    };
    Ok((StatusCode::CREATED, Json(session)))
}

/// End an MQTT session (its credentials are deleted; the broker disconnects the client).
#[utoipa::path(operation_id = "delete_mqtt_session", delete, path = "/api/mqtt/sessions/{id}", tag = "transports",
    params(("id" = String, Path, description = "session id")),
    responses((status = 204, description = "ended"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    server.broker.as_ref().ok_or_else(disabled)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "unknown_session", format!("no MQTT session {id:?}"));
    let grant = server.grant_of(&id).ok_or_else(not_found)?;
    if caller.0.role != crate::auth::Role::Admin && caller.0.name != grant.principal.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("MQTT session {id:?} belongs to another client"),
        ));
    }
    if server.end(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
