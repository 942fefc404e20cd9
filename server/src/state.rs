//! State shared by the HTTP API and every transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::auth::Auth;
use crate::hub::Hub;
use crate::limits::{LimitConfig, PerAddress};
use crate::remote::RemoteControls;
use crate::session::Sessions;

/// Facts about this server process, fixed at start-up.
#[derive(Debug)]
pub struct ServerInfo {
    pub started_at: SystemTime,
    pub http_addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub cert_sha256: String,
    pub cert_pem: String,
    pub self_signed: bool,
}

/// Cheap to clone: everything is behind `Arc`s.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Hub,
    pub remotes: Arc<RemoteControls>,
    pub sessions: Arc<Sessions>,
    pub info: Arc<ServerInfo>,
    pub ws: crate::ws::WsConfig,
    pub webrtc: Arc<crate::webrtc::Signaling>,
    pub auth: Arc<Auth>,
    pub limits: LimitConfig,
    /// Client sessions (WebSocket and WebRTC) per IP address.
    pub client_addresses: Arc<PerAddress>,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}
