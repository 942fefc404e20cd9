//! WebSocket transport: `GET /ws?remote_control_id=ID`.
//!
//! Video packets go to the client as binary messages, byte for byte as the train sent them.
//! Events (JSON text) go the same way; the client sends commands and pings as JSON text.
//! One [`Session`] task per connection, fed by a [`crate::dispatch::Follower`]; the handshake is
//! [`upgrade::WsUpgrade`], and video packets are written by [`video::Batch`].

mod session;
mod stall;
mod upgrade;
mod video;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio_tungstenite_ws::tungstenite::protocol::WebSocketConfig;

use crate::api::ApiError;
use crate::state::AppState;

pub use session::{close_code, Session};
pub use upgrade::{UpgradeRejection, WsUpgrade};

/// Most packets per vectored write (two slices each; Linux takes at most 1,024 slices).
pub const MAX_BATCH: usize = 512;

/// WebSocket settings.
/// Read buffer per WebSocket connection, bytes.
const READ_BUFFER: usize = 4 * 1024;

#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message the server reads from a client; beyond it the connection is closed (1009).
    /// Messages between [`railcast_protocol::client::MAX_CLIENT_MESSAGE`] and this are refused with
    /// an error event and the connection stays up.
    pub max_message: usize,
    /// Commands one session may have in flight.
    pub max_inflight_commands: usize,
    /// Most packets written at once (one vectored write) when several are queued; at most
    /// [`MAX_BATCH`].
    pub batch: usize,
    /// Longest a write to the client may wait for room before the session ends.
    pub write_timeout: std::time::Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message: 64 * 1024,
            max_inflight_commands: 16,
            batch: 32,
            write_timeout: std::time::Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WsQuery {
    /// The remote control this connection speaks for.
    pub remote_control_id: String,
    /// The client token, for browsers (they cannot set `Authorization` on a WebSocket).
    #[serde(default)]
    pub access_token: Option<String>,
}

/// Upgrade to a WebSocket for a remote control.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "transports",
    params(WsQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::api::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::api::ErrorBody),
        (status = 403, description = "The remote control belongs to another client", body = crate::api::ErrorBody),
        (status = 404, description = "Unknown remote control", body = crate::api::ErrorBody),
        (status = 429, description = "Too many sessions from this address", body = crate::api::ErrorBody),
    )
)]
pub async fn upgrade(
    caller: crate::api::Caller,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WsUpgrade, UpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let rc = app
        .remotes
        .get(&q.remote_control_id)
        .ok_or_else(|| ApiError::remote_control_not_found(&q.remote_control_id))?;
    caller.may_use(&rc.id, rc.owner.as_deref())?;
    let ws = ws?;
    let slot = app.client_addresses.acquire(peer.ip()).map_err(ApiError::limit)?;
    let max = app.ws.max_message;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // tungstenite zero-fills a 128 KiB read buffer per connection on its first read, which
        // made an idle client cost ≈ 136 KB (railcast-bench memory). Clients send small JSON;
        // larger messages still arrive, in several reads.
        .read_buffer_size(READ_BUFFER);
    Ok(ws.on_upgrade(config, app.ws.write_timeout, move |socket| {
        Session::new(app, rc, caller.0, peer.to_string(), slot).run(socket)
    }))
}
