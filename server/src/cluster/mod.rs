//! Several relay nodes acting as one service, over core NATS (docs/cluster.md).
//!
//! A hub participant like the recorder: it uses the hub, the configuration and the metrics only
//! (the `layering` test). Each node plays both parts:
//! - [`owner`]: announces the trains it has through a real ingest (QUIC, WHIP) on
//!   `railcast.presence` every second; while another node holds an interest lease on one of them
//!   it subscribes to its own hub for that train, like a viewer, and publishes every packet on
//!   `railcast.media.<train>` (the hub's queue drops whole frames when NATS cannot keep up: the
//!   train's fan-out never waits); it answers commands and keyframe requests for its trains.
//! - [`mirror`]: a train another node announces goes online here as a train of ingest
//!   `cluster`, so remote controls map to it and sessions subscribe as to any train. While it has
//!   subscribers the mirror renews its lease and publishes what arrives into its own hub (GOP
//!   cache, drop policy and metrics unchanged); commands and keyframe requests go to the owner
//!   and the owner's outcome completes the local command.
//!
//! - [`state`]: what every node must agree on lives in JetStream key-value buckets, watched by
//!   every node: remote controls and their mappings, credential revocations, and which node owns
//!   each train. A train's *epoch* is the revision of its owner's claim: when a train is on two
//!   nodes at once (it reconnected elsewhere before the old connection timed out), the higher
//!   epoch wins and the other node closes its connection.
//!
//! Off (no `cluster_nats_url`): nothing here runs.

pub mod ask;
pub mod mirror;
pub mod owner;
pub mod state;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use railcast_protocol::TrainId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::Hub;
use crate::remote::RemoteControls;

/// The ingest name of a mirrored train (`GET /api/trains`: `"ingest": "cluster"`; metrics).
pub const INGEST: &str = crate::metrics::CLUSTER;
/// How often a node announces its trains.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);
/// A train not announced for this long is offline on the other nodes.
pub const PRESENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a mirror with subscribers renews its interest lease.
pub const WANT_INTERVAL: Duration = Duration::from_secs(1);
/// An owner stops publishing a train's media when no lease came for this long.
pub const LEASE: Duration = Duration::from_secs(3);
/// A node not heard from for this long is forgotten: a cluster-wide audit page no longer names
/// it as missing.
pub const FORGET_NODE: Duration = Duration::from_secs(600);
/// A take or release of a train's control lease through another node waits this long for the
/// owner's answer.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// The cluster's metrics.
#[derive(Debug)]
pub struct ClusterMetrics {
    /// `railcast_cluster_rejected_total{kind}`: messages from other nodes that were not used.
    pub rejected: prometheus::IntCounterVec,
    /// `railcast_cluster_media_out_total`: packets this node published for other nodes.
    pub media_out: prometheus::IntCounter,
    /// `railcast_cluster_node_info{node}`: 1, naming this node (joins the node id to the
    /// instance's other series).
    pub node_info: prometheus::IntGaugeVec,
    /// `railcast_cluster_connected`: 1 while the NATS connection is up.
    pub connected: prometheus::IntGauge,
    /// `railcast_cluster_mirrored_trains`: trains of other nodes shown here.
    pub mirrored: prometheus::IntGauge,
}

/// The `kind` label values of `railcast_cluster_rejected_total`.
pub const REJECTED_KINDS: &[&str] =
    &["presence", "want", "media", "telemetry", "command", "keyframe", "control", "remote_control", "revocation"];

pub static METRICS: LazyLock<ClusterMetrics> = LazyLock::new(|| {
    let r = crate::metrics::METRICS.registry();
    let m = ClusterMetrics {
        rejected: crate::metrics::counter(
            r,
            "railcast_cluster_rejected_total",
            "Cluster messages from other nodes that were malformed or refused, by subject kind.",
            &["kind"],
        ),
        media_out: {
            let c = prometheus::IntCounter::new(
                "railcast_cluster_media_out_total",
                "Packets this node published on NATS for other nodes' viewers.",
            )
            .expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        },
        node_info: {
            let g = prometheus::IntGaugeVec::new(
                prometheus::Opts::new("railcast_cluster_node_info", "This relay's node id in the cluster (value 1)."),
                &["node"],
            )
            .expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        },
        connected: gauge(r, "railcast_cluster_connected", "1 while this node's NATS connection is up."),
        mirrored: gauge(r, "railcast_cluster_mirrored_trains", "Trains of other nodes shown on this node."),
    };
    for kind in REJECTED_KINDS {
        let _ = m.rejected.with_label_values(&[kind]);
    }
    m
});

fn gauge(r: &prometheus::Registry, name: &str, help: &str) -> prometheus::IntGauge {
    let g = prometheus::IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Longest a publish may wait for room in the client's queue (NATS down, the queue full): the
/// loops stay responsive to shutdown and leases instead of waiting for the reconnection.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Publish, waiting at most [`SEND_TIMEOUT`]; false when the message was not queued.
pub(crate) async fn send(
    client: &async_nats::Client,
    subject: impl async_nats::subject::ToSubject,
    body: bytes::Bytes,
) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, client.publish(subject, body)).await, Ok(Ok(())))
}

/// Count and log a message that was not used.
pub(crate) fn rejected(kind: &'static str, subject: &str, error: &dyn std::fmt::Display) {
    METRICS.rejected.with_label_values(&[kind]).inc();
    tracing::warn!(kind, subject, "cluster message ignored: {error}");
}

/// The cluster settings, validated ([`Config::validate`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// One NATS server, or several of one NATS cluster (comma-separated).
    pub nats_url: String,
    pub node: String,
    /// Commands forwarded to an owner wait this long for its answer (the hub's own timeout
    /// fires first, with the usual error).
    pub command_timeout: Duration,
    /// Copies of the key-value buckets (`cluster_kv_replicas`).
    pub kv_replicas: usize,
    /// `control_required`: the owner refuses another node's commands while nobody holds the
    /// train's control lease (it is held on the owner only).
    pub control_required: bool,
}

impl Settings {
    /// `None` when clustering is off (`cluster_nats_url` empty).
    pub fn from_config(config: &Config) -> Option<Self> {
        let url = config.cluster_nats_url.trim();
        if url.is_empty() {
            return None;
        }
        let node = if config.cluster_node_id.is_empty() { default_node_id() } else { config.cluster_node_id.clone() };
        Some(Self {
            nats_url: url.to_owned(),
            node,
            command_timeout: config.command_timeout.0,
            kv_replicas: config.cluster_kv_replicas,
            control_required: config.control_required,
        })
    }

    /// The servers to connect to (validated by the configuration).
    fn servers(&self) -> Vec<async_nats::ServerAddr> {
        self.nats_url.split(',').filter_map(|u| u.trim().parse().ok()).collect()
    }
}

/// The current connection's number when `stream`'s train is connected to this node through a
/// real ingest (QUIC, WHIP), not mirrored from another node.
pub fn local_connection(stream: &crate::hub::Stream) -> Option<u64> {
    stream.connection().filter(|(ingest, _)| *ingest != INGEST).map(|(_, n)| n)
}

/// A train's owner's claim: the revision of its entry in the owners bucket (the epoch), made for
/// one connection of the train to this node (the hub's connection count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub connection: u64,
    pub epoch: u64,
}

/// Claims of the trains connected to this node, shared by the owner (who makes them) and the
/// mirror (who compares another node's epoch with them).
pub type Claims = Arc<Mutex<HashMap<TrainId, Claim>>>;

/// What the rest of the server may ask the cluster (`/readyz`, `GET /api/trains`).
#[derive(Debug, Clone)]
pub struct Status {
    node: Arc<str>,
    connected: watch::Receiver<bool>,
    /// Buckets of shared state taken in (ready at [`state::SYNCED`]).
    in_step: watch::Receiver<usize>,
    /// Mirrored trains → the node that owns them.
    owners: Arc<DashMap<TrainId, String>>,
    /// The NATS connection, once made.
    client: Arc<std::sync::OnceLock<async_nats::Client>>,
    /// The other nodes → when their presence was last heard.
    peers: Peers,
}

/// The other nodes → when their presence was last heard.
pub type Peers = Arc<DashMap<String, std::time::Instant>>;

/// Why a control request to a train's owner node got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlForwardError {
    #[error("the cluster's NATS connection is not up")]
    NotConnected,
    #[error("the node {train} is connected to did not answer ({why})")]
    NoAnswer { train: TrainId, why: String },
    #[error("the answer of {train}'s node was malformed: {why}")]
    Malformed { train: TrainId, why: String },
}

impl Status {
    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }
    /// Whether the NATS connection is up now.
    pub fn connected(&self) -> bool {
        *self.connected.borrow()
    }
    /// Whether this node has taken in the shared state (remote controls, revocations) since it
    /// started: until then it may not know a remote control another node made.
    pub fn in_step(&self) -> bool {
        *self.in_step.borrow() >= state::SYNCED
    }
    /// Ask the owner of `train` (mirrored here) about its control lease for a session of this
    /// node: the owner's answer.
    pub async fn control(
        &self,
        train: &TrainId,
        op: wire::ControlOp,
    ) -> Result<wire::ControlReply, ControlForwardError> {
        let client = self.client.get().ok_or(ControlForwardError::NotConnected)?;
        let body = wire::to_json(&wire::ControlRequest { node: self.node.to_string(), op });
        let request = async_nats::Request::new().payload(body).timeout(Some(CONTROL_TIMEOUT));
        let reply = client
            .send_request(wire::control(train), request)
            .await
            .map_err(|e| ControlForwardError::NoAnswer { train: train.clone(), why: e.to_string() })?;
        serde_json::from_slice(&reply.payload)
            .map_err(|e| ControlForwardError::Malformed { train: train.clone(), why: e.to_string() })
    }

    /// Tell the owner of `train` (mirrored here) about a session of this node that holds its
    /// lease (alive, or ended), without waiting. Lost when NATS is away: the owner's watchdog
    /// then ends the lease at its heartbeat timeout.
    pub fn control_notify(&self, train: &TrainId, op: wire::ControlOp) {
        let Some(client) = self.client.get().cloned() else { return };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let body = wire::to_json(&wire::ControlRequest { node: self.node.to_string(), op });
        let subject = wire::control(train);
        tokio::spawn(async move {
            let _ = send(&client, subject, body).await;
        });
    }

    /// The other nodes heard from within [`PRESENCE_TIMEOUT`] (up), and those heard from within
    /// [`FORGET_NODE`] but not since (down).
    pub fn peers(&self) -> (Vec<String>, Vec<String>) {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for e in self.peers.iter() {
            let age = e.value().elapsed();
            if age < PRESENCE_TIMEOUT {
                up.push(e.key().clone());
            } else if age < FORGET_NODE {
                down.push(e.key().clone());
            }
        }
        up.sort();
        down.sort();
        (up, down)
    }

    /// Ask every other node (`subject`: one [`ask::answer`] runs on each): their answers by node,
    /// and the nodes whose answer is missing: those up that did not answer within
    /// [`ask::ASK_TIMEOUT`], and those down (not asked, not waited for).
    pub async fn ask_all(
        &self,
        subject: &'static str,
        body: bytes::Bytes,
    ) -> (Vec<(String, bytes::Bytes)>, Vec<String>) {
        let (up, down) = self.peers();
        let (answers, mut missing) = match self.client.get() {
            Some(client) if self.connected() => ask::ask_all(client, &self.node, up, subject, body).await,
            _ => (Vec::new(), up),
        };
        missing.extend(down.into_iter().filter(|d| !answers.iter().any(|(n, _)| n == d)));
        missing.sort();
        (answers, missing)
    }

    /// The node a train connected to this node or mirrored here belongs to (`None`: neither,
    /// offline).
    pub fn owner_of(&self, stream: &crate::hub::Stream) -> Option<String> {
        if local_connection(stream).is_some() {
            return Some(self.node.to_string());
        }
        self.owners.get(stream.train_id()).map(|o| o.value().clone())
    }
}

/// The host name and a random suffix: unique enough for nodes started from one image.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).collect())
        .filter(|h: &String| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let host: String = host.chars().take(50).collect();
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// What the cluster shares between the nodes, beside the hub.
#[derive(Clone)]
pub struct Shared {
    pub remotes: Arc<RemoteControls>,
    pub auth: Arc<Auth>,
    /// Answers the other nodes' audit queries ([`wire::AUDIT`]).
    pub audit: ask::Answerer,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("remotes", &self.remotes).field("auth", &self.auth).finish_non_exhaustive()
    }
}

/// The running cluster participant.
#[derive(Debug)]
pub struct Cluster {
    task: JoinHandle<()>,
    status: Status,
}

impl Cluster {
    /// Connect (in the background, retrying with backoff) and run every part until `shutdown`.
    pub fn start(hub: Hub, shared: Shared, settings: Settings, shutdown: watch::Receiver<bool>) -> Self {
        METRICS.node_info.with_label_values(&[settings.node.as_str()]).set(1);
        let url = crate::config::redact_password(&settings.nats_url);
        tracing::info!(node = %settings.node, %url, "cluster node");
        let (up, connected) = watch::channel(false);
        let (synced, in_step) = watch::channel(0);
        let status = Status {
            node: settings.node.as_str().into(),
            connected,
            in_step,
            owners: Arc::default(),
            client: Arc::default(),
            peers: Arc::default(),
        };
        let parts = Parts {
            owners: Arc::clone(&status.owners),
            peers: Arc::clone(&status.peers),
            up,
            in_step: Arc::new(synced),
            client: Arc::clone(&status.client),
        };
        let task = tokio::spawn(run(hub, shared, settings, parts, shutdown));
        Self { task, status }
    }

    pub fn node(&self) -> &str {
        self.status.node()
    }

    /// What the API and `/readyz` read.
    pub fn status(&self) -> Status {
        self.status.clone()
    }

    /// Wait until its tasks ended (after shutdown).
    pub async fn closed(self) {
        let _ = self.task.await;
    }
}

/// What the running parts report through [`Status`].
struct Parts {
    owners: Arc<DashMap<TrainId, String>>,
    peers: Peers,
    client: Arc<std::sync::OnceLock<async_nats::Client>>,
    up: watch::Sender<bool>,
    in_step: Arc<watch::Sender<usize>>,
}

async fn run(hub: Hub, shared: Shared, settings: Settings, parts: Parts, shutdown: watch::Receiver<bool>) {
    let Parts { owners, peers, up, in_step, client: shared_client } = parts;
    let up = std::sync::Arc::new(up);
    // Set once "cannot reach NATS" was said, until the next connection.
    let quiet = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = crate::config::redact_password(&settings.nats_url);
    let events_url = url.clone();
    let connect = async_nats::ConnectOptions::new()
        .name(format!("railcast {}", settings.node))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let (url, up, quiet) = (events_url.clone(), std::sync::Arc::clone(&up), std::sync::Arc::clone(&quiet));
            async move {
                match event {
                    async_nats::Event::Connected => {
                        up.send_replace(true);
                        METRICS.connected.set(1);
                        quiet.store(false, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(%url, "cluster: connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        up.send_replace(false);
                        METRICS.connected.set(0);
                        quiet.store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::error!(%url, "cluster: NATS unreachable; mirrored trains go offline, retrying")
                    }
                    // A failed (re)connection attempt, again and again with backoff: said once
                    // while down (the watch), then at debug.
                    async_nats::Event::ClientError(e) if !*up.borrow() => {
                        if !quiet.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::error!(%url, "cluster: cannot reach NATS, retrying with backoff: {e}");
                        } else {
                            tracing::debug!(%url, "cluster: NATS still unreachable: {e}");
                        }
                    }
                    other => tracing::warn!(%url, "cluster: NATS {other}"),
                }
            }
        })
        .connect(settings.servers())
        .await;
    let client = match connect {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%url, "cluster: cannot use NATS, this node stands alone: {e}");
            return;
        }
    };
    let _ = shared_client.set(client.clone());
    let claims = Claims::default();
    let buckets = state::Buckets::new(client.clone(), settings.kv_replicas);
    let audit = tokio::spawn(ask::answer(
        client.clone(),
        settings.node.clone(),
        wire::AUDIT,
        Arc::clone(&shared.audit),
        shutdown.clone(),
    ));
    let state = tokio::spawn(state::run(buckets.clone(), shared, in_step, shutdown.clone()));
    let owner = tokio::spawn(owner::run(
        hub.clone(),
        client.clone(),
        buckets,
        settings.clone(),
        Arc::clone(&claims),
        shutdown.clone(),
    ));
    let mirror = tokio::spawn(mirror::run(hub, client, settings, claims, owners, peers, shutdown));
    let _ = tokio::join!(state, owner, mirror, audit);
}
