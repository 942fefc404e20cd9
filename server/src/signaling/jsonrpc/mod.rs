//! JSON-RPC 2.0 signaling over WebSocket (`GET /rpc`; docs/signaling.md): clients announce
//! themselves as peers, see each other, and route offers, answers and ICE candidates to each
//! other; the relay is the peer [`RELAY`], and an offer to it opens a session through
//! `transport::webrtc::Server` (data channels, or media tracks as WHEP) that the server answers.
//!
//! [`rpc`] is JSON-RPC itself, sans IO; [`connection`] runs one socket; [`Peers`] is the
//! registry of announced peers, shared by every connection.

mod connection;
pub mod rpc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use dashmap::DashMap;
use prometheus::{IntCounterVec, IntGauge};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Role;
use crate::core::Core;
use crate::http::{ApiError, UpgradeCaller};
use crate::transport::webrtc;

/// The relay's reserved peer id.
pub const RELAY: &str = "relay";
/// The path.
pub const PATH: &str = "/rpc";
/// Largest message answered; larger ones get -32002, and over [`MAX_FRAME`] the socket closes.
pub const MAX_MESSAGE: usize = 64 * 1024;
const MAX_FRAME: usize = 256 * 1024;
/// Messages a connection may send per second, and in a burst.
pub const RATE: f64 = 20.0;
pub const BURST: u32 = 40;
/// Messages queued for one socket; beyond it notifications to it are dropped (it is not reading).
const OUTBOX: usize = 256;

/// Metrics of the JSON-RPC front-end.
pub struct RpcMetrics {
    /// `railcast_rpc_peers`: announced peers now.
    pub peers: IntGauge,
    /// `railcast_rpc_connections`: open `/rpc` sockets.
    pub connections: IntGauge,
    /// `railcast_rpc_errors_total{code}`: error replies (and dropped notifications) by code.
    pub errors: IntCounterVec,
    /// `railcast_rpc_requests_total{method}`: calls by canonical method (`unknown` otherwise).
    pub requests: IntCounterVec,
}

impl std::fmt::Debug for RpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcMetrics").finish_non_exhaustive()
    }
}

pub static METRICS: LazyLock<RpcMetrics> = LazyLock::new(|| {
    let r = crate::metrics::METRICS.registry();
    let gauge = |name: &str, help: &str| {
        let g = IntGauge::new(name, help).expect("valid metric");
        r.register(Box::new(g.clone())).expect("unique metric");
        g
    };
    RpcMetrics {
        peers: gauge("railcast_rpc_peers", "Peers announced on /rpc."),
        connections: gauge("railcast_rpc_connections", "Open /rpc sockets."),
        errors: crate::metrics::counter(r, "railcast_rpc_errors_total", "JSON-RPC error replies by code.", &["code"]),
        requests: crate::metrics::counter(r, "railcast_rpc_requests_total", "JSON-RPC calls by method.", &["method"]),
    }
});

/// One announced peer.
#[derive(Debug)]
pub struct Peer {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub role: Role,
    /// Who announced it (its token's principal).
    pub principal: String,
    created: SystemTime,
    seq: u64,
    outbox: mpsc::Sender<String>,
}

impl Peer {
    pub fn view(&self) -> Value {
        json!({ "peer_id": self.id, "name": self.name, "capabilities": self.capabilities, "role": self.role.name() })
    }
}

/// The relay as a peer.
pub fn relay_view() -> Value {
    json!({ "peer_id": RELAY, "name": "railcast relay", "capabilities": ["datachannel", "media"], "role": "relay" })
}

/// Every announced peer, shared by the connections.
#[derive(Debug, Default)]
pub struct Peers {
    map: DashMap<String, Arc<Peer>>,
    seq: AtomicU64,
}

impl Peers {
    fn add(
        &self,
        name: String,
        capabilities: Vec<String>,
        role: Role,
        principal: String,
        outbox: mpsc::Sender<String>,
    ) -> Arc<Peer> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let peer = loop {
            let id = format!("p-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
            if let dashmap::Entry::Vacant(slot) = self.map.entry(id.clone()) {
                let peer =
                    Arc::new(Peer { id, name, capabilities, role, principal, created: SystemTime::now(), seq, outbox });
                slot.insert(Arc::clone(&peer));
                break peer;
            }
        };
        METRICS.peers.set(self.map.len() as i64);
        self.broadcast(&peer.id, &rpc::notification("peer_joined", json!({ "peer": peer.view() })));
        peer
    }

    fn remove(&self, id: &str) {
        if self.map.remove(id).is_some() {
            METRICS.peers.set(self.map.len() as i64);
            self.broadcast(id, &rpc::notification("peer_left", json!({ "peer_id": id })));
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Peer>> {
        self.map.get(id).map(|p| Arc::clone(p.value()))
    }

    /// The relay, then the announced peers, oldest first.
    pub fn list(&self) -> Vec<Value> {
        let mut peers: Vec<Arc<Peer>> = self.map.iter().map(|p| Arc::clone(p.value())).collect();
        peers.sort_by_key(|p| (p.created, p.seq));
        std::iter::once(relay_view()).chain(peers.iter().map(|p| p.view())).collect()
    }

    /// Send `msg` to every peer but `except`, never waiting (a full outbox drops it).
    fn broadcast(&self, except: &str, msg: &Value) {
        let text = msg.to_string();
        for p in self.map.iter().filter(|p| p.id != except) {
            deliver(p.value(), text.clone());
        }
    }
}

/// Queue `text` for `peer`; false (and counted) when its outbox is full.
fn deliver(peer: &Peer, text: String) -> bool {
    let ok = peer.outbox.try_send(text).is_ok();
    if !ok {
        METRICS.errors.with_label_values(&["outbox_full"]).inc();
    }
    ok
}

/// The front-end: its registry and the WebRTC server it signals for.
#[derive(Debug)]
pub struct JsonRpc {
    peers: Peers,
    webrtc: Arc<webrtc::Server>,
}

impl JsonRpc {
    pub fn new(webrtc: &Arc<webrtc::Server>) -> Arc<Self> {
        LazyLock::force(&METRICS);
        Arc::new(Self { peers: Peers::default(), webrtc: Arc::clone(webrtc) })
    }

    /// `GET /rpc`.
    pub fn routes(self: &Arc<Self>) -> Router<Core> {
        Router::new().route(PATH, get(upgrade)).layer(Extension(Arc::clone(self)))
    }
}

/// This front-end's fragment of the OpenAPI contract.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(upgrade))]
pub struct ApiDoc;

/// JSON-RPC 2.0 signaling (WebSocket upgrade; docs/signaling.md): announce, list peers, offer,
/// answer and ICE candidates between peers, the relay (`relay`) answering offers itself. The
/// token as on `/ws` (header or `access_token`).
#[utoipa::path(operation_id = "rpc_upgrade", get, path = "/rpc", tag = "webrtc",
    params(("access_token" = Option<String>, Query, description = "the client token, when no Authorization header can be set")),
    responses((status = 101, description = "Switching to the JSON-RPC WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::http::ErrorBody),
        (status = 401, body = crate::http::ErrorBody),
        (status = 429, description = "max_connections_per_address", body = crate::http::ErrorBody),
        (status = 503, description = "shutting down", body = crate::http::ErrorBody)))]
async fn upgrade(
    UpgradeCaller(caller): UpgradeCaller,
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Extension(front): Extension<Arc<JsonRpc>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| ApiError::bad_request("not_websocket", format!("GET /rpc is a WebSocket upgrade: {e}")))?;
    if core.stopping() {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let slot = core.client_addresses.acquire(peer.ip()).map_err(ApiError::limit)?;
    let principal = caller.0;
    Ok(ws
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| connection::run(front, core, principal, peer, slot, socket)))
}
