//! Ingest: trains connect here, over QUIC (this module) or WHIP ([`whip`]: WebRTC, RFC 9725).
//!
//! A train connects with ALPN `railcast/1`, opens one bidirectional stream (the control stream)
//! and sends a hello. The server answers with a welcome; from then on the train sends video
//! packets as QUIC datagrams and exchanges control frames on the stream (commands and keyframe
//! requests down, acks and telemetry up). One task per connection ([`Connection`]) owns it.

mod connection;
pub mod whip;

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::hub::Hub;
use crate::tls::{Identity, TlsError};

pub use connection::Connection;

/// Application close codes sent to trains (QUIC `CONNECTION_CLOSE` error codes).
pub mod close_code {
    pub const NORMAL: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const REPLACED: u32 = 2;
    pub const SHUTDOWN: u32 = 3;
    pub const HELLO_TIMEOUT: u32 = 4;
    /// The hello's token was missing or wrong.
    pub const UNAUTHORIZED: u32 = 5;
    /// A limit was hit (too many trains, too many connections from the address).
    pub const LIMIT: u32 = 6;
}

/// What a train must pass before it may publish: its token, and the limits.
#[derive(Debug, Clone)]
pub struct Gate {
    pub auth: Arc<crate::auth::Auth>,
    /// Train ids known at once (`max_trains`).
    pub max_trains: usize,
    /// Connections per IP address.
    pub addresses: Arc<crate::limits::PerAddress>,
}

/// Ingest settings, from the server configuration.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// A connection with no packet for this long is closed (a train that vanished).
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be below `idle_timeout`.
    pub keep_alive: Duration,
    /// Time a new connection has to send its hello.
    pub hello_timeout: Duration,
    /// Datagram receive buffer per connection, in bytes.
    pub datagram_buffer: usize,
    /// Largest control frame body accepted.
    pub max_control_body: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(6),
            keep_alive: Duration::from_secs(1),
            hello_timeout: Duration::from_secs(5),
            datagram_buffer: 4 << 20,
            max_control_body: railcast_protocol::control::DEFAULT_MAX_BODY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("QUIC crypto config: {0}")]
    Crypto(String),
    #[error("cannot start the QUIC endpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad QUIC transport setting: {0}")]
    Transport(String),
}

/// Build the QUIC endpoint on an already bound UDP socket.
pub fn endpoint(
    socket: std::net::UdpSocket,
    identity: &Identity,
    config: &IngestConfig,
) -> Result<quinn::Endpoint, IngestError> {
    crate::ask_udp_recv_buffer(&socket, "quic_addr");
    let crypto =
        QuicServerConfig::try_from(identity.server_config()?).map_err(|e| IngestError::Crypto(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport(config)?));
    let runtime = quinn::default_runtime().ok_or_else(|| IngestError::Transport("no async runtime".into()))?;
    Ok(quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, runtime)?)
}

/// Transport parameters shared by the server and the simulator: a 1,280-byte initial MTU so a
/// 1,176-byte video packet fits one datagram from the first packet on.
pub fn transport(config: &IngestConfig) -> Result<quinn::TransportConfig, IngestError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|e| IngestError::Transport(e.to_string()))?;
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(config.keep_alive))
        .initial_mtu(1280)
        .datagram_receive_buffer_size(Some(config.datagram_buffer))
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into());
    Ok(t)
}

/// Accept trains until `shutdown` turns true, then close every connection and wait for them.
pub async fn serve(
    endpoint: quinn::Endpoint,
    hub: Hub,
    config: IngestConfig,
    gate: Gate,
    shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let session = Connection::new(hub.clone(), config.clone(), gate.clone(), shutdown.clone());
                sessions.spawn(session.run(incoming));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = crate::stopped(&mut stop) => break,
        }
    }
    endpoint.set_server_config(None);
    while sessions.join_next().await.is_some() {}
    endpoint.close(close_code::SHUTDOWN.into(), b"server shutting down");
    endpoint.wait_idle().await;
}
