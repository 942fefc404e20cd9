//! WebSocket transport: `GET /ws?remote_control_id=ID`.
//!
//! Video packets go to the client as binary messages, byte for byte as the train sent them.
//! Events (JSON text) go the same way; the client sends commands and pings as JSON text.
//! [`Server`] accepts (the upgrade route); one [`Session`] task per connection runs a
//! [`crate::relay::Relay`]. The handshake is [`upgrade::WsUpgrade`], and video packets are written
//! by [`video::Batch`].

mod session;
mod stall;
mod upgrade;
mod video;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::{invalid, Config, ConfigError};
use crate::core::Core;
use crate::http::{ApiError, ApiQuery, UpgradeCaller};

pub use session::{close_code, Session};
pub use upgrade::{UpgradeRejection, WsUpgrade};

/// Most packets per vectored write (two slices each; Linux takes at most 1,024 slices).
pub const MAX_BATCH: usize = 512;

/// The transport's name in the API and metric labels.
pub const NAME: &str = "websocket";

/// Read buffer per WebSocket connection, bytes.
const READ_BUFFER: usize = 4 * 1024;

/// WebSocket settings (`ws_*` in the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest message the server reads from a client; beyond it the connection is closed (1009).
    /// Messages between [`railcast_protocol::client::MAX_CLIENT_MESSAGE`] and this are refused with
    /// an error event and the connection stays up.
    pub max_message: usize,
    /// Most packets written at once (one vectored write) when several are queued; at most
    /// [`MAX_BATCH`].
    pub batch: usize,
    /// Longest a write to the client may wait for room before the session ends.
    pub write_timeout: Duration,
    /// Kernel send buffer of each connection, bytes (0: the OS default).
    pub send_buffer: usize,
    /// Unsent bytes a connection's socket may hold (`TCP_NOTSENT_LOWAT`; 0: no limit).
    pub unsent_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_message: 64 * 1024,
            batch: 32,
            write_timeout: Duration::from_secs(30),
            send_buffer: 256 * 1024,
            unsent_limit: 16 * 1024,
        }
    }
}

impl Settings {
    /// The `ws_*` settings, validated.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        if config.ws_write_timeout.0 < Duration::from_millis(100) {
            return Err(invalid(
                "ws_write_timeout",
                format!("must be at least 100ms, got {}", config.ws_write_timeout),
            ));
        }
        if config.ws_max_message < railcast_protocol::client::MAX_CLIENT_MESSAGE {
            return Err(invalid(
                "ws_max_message",
                format!("must be at least {}", railcast_protocol::client::MAX_CLIENT_MESSAGE),
            ));
        }
        Ok(Self {
            max_message: config.ws_max_message,
            write_timeout: config.ws_write_timeout.0,
            send_buffer: config.ws_send_buffer,
            unsent_limit: config.ws_unsent_limit,
            ..Self::default()
        })
    }

    /// Socket options for every accepted HTTP connection (the WebSocket's connection is one):
    /// no Nagle, and the send-side limits.
    pub fn tune(&self, tcp: &tokio::net::TcpStream) {
        let _ = tcp.set_nodelay(true);
        let sock = socket2::SockRef::from(tcp);
        if self.send_buffer > 0 {
            let _ = sock.set_send_buffer_size(self.send_buffer);
        }
        if self.unsent_limit > 0 {
            let _ = sock.set_tcp_notsent_lowat(u32::try_from(self.unsent_limit).unwrap_or(u32::MAX));
        }
    }
}

/// Accepts WebSocket sessions: the upgrade route.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
}

impl Server {
    pub fn new(settings: Settings) -> Arc<Self> {
        crate::sessions::Registry::declare_transport(NAME);
        Arc::new(Self { settings })
    }

    /// The transport's route: `GET /ws`.
    pub fn routes(self: &Arc<Self>) -> Router<Core> {
        Router::new().route("/ws", get(upgrade)).layer(Extension(Arc::clone(self)))
    }
}

/// This transport's fragment of the OpenAPI contract.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(upgrade))]
pub struct ApiDoc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// The remote control this connection speaks for.
    pub remote_control_id: String,
    /// The client token, for browsers (they cannot set `Authorization` on a WebSocket).
    #[serde(default)]
    pub access_token: Option<String>,
}

/// Upgrade to a WebSocket for a remote control.
#[utoipa::path(operation_id = "ws_upgrade", 
    get,
    path = "/ws",
    tag = "transports",
    params(WsQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::http::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::http::ErrorBody),
        (status = 403, description = "The remote control belongs to another client", body = crate::http::ErrorBody),
        (status = 404, description = "Unknown remote control", body = crate::http::ErrorBody),
        (status = 429, description = "Too many sessions from this address", body = crate::http::ErrorBody),
    )
)]
async fn upgrade(
    UpgradeCaller(caller): UpgradeCaller,
    State(app): State<Core>,
    Extension(server): Extension<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    query: Result<ApiQuery<WsQuery>, ApiError>,
    ws: Result<WsUpgrade, UpgradeRejection>,
) -> Result<Response, ApiError> {
    let ApiQuery(q) = query?;
    let rc = app
        .remotes
        .get(&q.remote_control_id)
        .ok_or_else(|| ApiError::remote_control_not_found(&q.remote_control_id))?;
    caller.may_use(&rc.id, rc.owner.as_deref())?;
    let ws = ws?;
    let slot = app.client_addresses.acquire(peer.ip()).map_err(ApiError::limit)?;
    let max = server.settings.max_message;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // tungstenite zero-fills a 128 KiB read buffer per connection on its first read, and all
        // of it stayed resident for an idle client (docs/benchmarks-history.md, "Sessions 1–3:
        // after the first fixes"). Clients send small JSON; larger messages still arrive, in
        // several reads.
        .read_buffer_size(READ_BUFFER);
    let batch = server.settings.batch.clamp(1, MAX_BATCH);
    Ok(ws.on_upgrade(config, server.settings.write_timeout, move |socket| {
        Session::new(app, rc, caller.0, peer.to_string(), slot, batch).run(socket)
    }))
}
