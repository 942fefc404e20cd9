//! WebTransport transport: HTTP/3 WebTransport sessions on their own UDP port
//! (`https://HOST:PORT/wt?remote_control_id=ID&access_token=TOKEN`), over web-transport-quinn on
//! the quinn already used for trains.
//!
//! The client opens one bidirectional stream and writes its first message on it; events,
//! commands and acks go both ways there as NDJSON (the same JSON messages as on WebSocket). Video
//! goes as QUIC datagrams, one wire packet each; a packet larger than the session's datagram size
//! goes alone on a unidirectional stream (docs/wire-format.md §4).
//!
//! [`Server`] binds the endpoint and accepts: it checks each CONNECT request as `GET /ws` checks
//! an upgrade ([`connect`]) and runs one [`Session`] task per session. [`cert`] holds the
//! certificates: generated ones are rotated without touching open sessions, and their hashes are
//! published at `GET /api/webtransport` for browsers' `serverCertificateHashes`.

pub mod cert;
mod connect;
mod framing;
mod session;
mod woken;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;

use crate::config::{invalid, Config, ConfigError};
use crate::core::Core;
use crate::http::{ApiError, Caller, ErrorBody};

pub use cert::{CertError, Certificates};
pub use session::{close_code, Session};

/// The transport's name in the API and metric labels.
pub const NAME: &str = "webtransport";

/// The session path.
pub const PATH: &str = "/wt";

/// Shortest certificate rotation accepted (tests rotate every few seconds).
const MIN_ROTATION: Duration = Duration::from_secs(1);

/// A session idle this long (no packet from the client, keep-alives included) is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// The server's keep-alive interval.
const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// QUIC handshake plus HTTP/3 SETTINGS and CONNECT must complete within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connection attempts are refused.
const MAX_HANDSHAKES: usize = 256;

/// WebTransport settings (`webtransport_*` in the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: WebTransport is disabled.
    pub addr: Option<SocketAddr>,
    /// How often a generated certificate is replaced by the next.
    pub cert_rotation: Duration,
    /// Datagram send buffer per session, bytes.
    pub send_buffer: usize,
}

impl Settings {
    /// The `webtransport_*` settings, validated.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let addr = match config.webtransport_addr.trim() {
            "" => None,
            a => Some(a.parse::<SocketAddr>().map_err(|e| {
                invalid("webtransport_addr", format!("must be IP:PORT or empty (disabled), got {a:?}: {e}"))
            })?),
        };
        let rotation = config.webtransport_cert_rotation.0;
        if !(MIN_ROTATION..=cert::VALIDITY).contains(&rotation) {
            return Err(invalid(
                "webtransport_cert_rotation",
                format!("must be within 1s..=10days, got {}", config.webtransport_cert_rotation),
            ));
        }
        if !(16 * 1024..=64 << 20).contains(&config.webtransport_send_buffer) {
            return Err(invalid(
                "webtransport_send_buffer",
                format!("must be within 16 KiB..=64 MiB, got {}", config.webtransport_send_buffer),
            ));
        }
        Ok(Self { addr, cert_rotation: rotation, send_buffer: config.webtransport_send_buffer })
    }

    /// The QUIC transport parameters of every session.
    fn transport(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok())
            .keep_alive_interval(Some(KEEP_ALIVE))
            // A 1,176-byte video packet fits one datagram from the first packet on (as for trains).
            .initial_mtu(1280)
            .datagram_send_buffer_size(self.send_buffer)
            // Clients send no datagrams that matter; a little room keeps datagrams negotiated.
            .datagram_receive_buffer_size(Some(64 * 1024))
            // The CONNECT stream and the client's one stream, a little spare; HTTP/3's control
            // and QPACK streams.
            .max_concurrent_bidi_streams(4u32.into())
            .max_concurrent_uni_streams(8u32.into())
            // Client messages are small: 64 KiB lines at most.
            .stream_receive_window((256u32 * 1024).into())
            .receive_window((512u32 * 1024).into())
            .send_window(4 << 20);
        t
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebTransportError {
    #[error("cannot bind WebTransport {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// The bound endpoint.
#[derive(Debug)]
struct Bound {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    transport: Arc<quinn::TransportConfig>,
    certs: Certificates,
}

/// Accepts WebTransport sessions; publishes its port and certificate hashes.
#[derive(Debug)]
pub struct Server {
    /// `None` when disabled.
    bound: Option<Bound>,
    /// Video datagrams framed once for all sessions.
    framing: framing::Framing,
}

impl Server {
    /// Bind the endpoint (unless disabled). `configured`: the certificate from `tls_cert`/`tls_key`,
    /// presented as is; without it certificates for `names` are generated and rotated.
    pub fn bind(
        settings: Settings,
        names: &[String],
        configured: Option<&crate::tls::Identity>,
    ) -> Result<Arc<Self>, WebTransportError> {
        crate::sessions::Registry::declare_transport(NAME);
        let Some(addr) = settings.addr else { return Ok(Arc::new(Self { bound: None, framing: Default::default() })) };
        let certs = match configured {
            Some(identity) => Certificates::configured(identity),
            None => Certificates::generated(names, settings.cert_rotation)?,
        };
        let transport = Arc::new(settings.transport());
        let config = certs.current().server_config(Arc::clone(&transport))?;
        let bind_err = |source| WebTransportError::Bind { addr, source };
        let udp = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        // Every client's acknowledgements wait in this one kernel buffer during a fan-out.
        crate::ask_udp_recv_buffer(&udp, "webtransport_addr");
        let addr = udp.local_addr().map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_err(std::io::Error::other("no async runtime for the WebTransport endpoint")))?;
        let endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(config), udp, runtime).map_err(bind_err)?;
        Ok(Arc::new(Self { bound: Some(Bound { endpoint, addr, transport, certs }), framing: Default::default() }))
    }

    /// The bound UDP address; `None` when disabled.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.as_ref().map(|b| b.addr)
    }

    /// Routes to nest under `/api`: `GET /api/webtransport`.
    pub fn api_routes(self: &Arc<Self>) -> Router<Core> {
        Router::new().route("/webtransport", get(info)).layer(Extension(Arc::clone(self)))
    }

    /// Accept sessions and rotate certificates until shutdown; then refuse new connections and
    /// wait until the open ones have said goodbye and closed.
    pub async fn serve(self: Arc<Self>, core: Core) {
        let Some(bound) = &self.bound else { return };
        let mut stop = core.shutdown.clone();
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let rotation = bound.certs.rotation();
        let mut rotate = tokio::time::interval_at(
            tokio::time::Instant::now() + rotation.unwrap_or(Duration::from_secs(3600)),
            rotation.unwrap_or(Duration::from_secs(3600)),
        );
        rotate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                incoming = bound.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                        tracing::warn!(peer = %incoming.remote_address(), "too many WebTransport handshakes at once; refused");
                        incoming.refuse();
                        continue;
                    };
                    let (core, server) = (core.clone(), Arc::clone(&self));
                    tokio::spawn(async move {
                        let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect::accept(&core, incoming)).await;
                        drop(permit);
                        match accepted {
                            Ok(Some(session)) => session.run(&server.framing).await,
                            Ok(None) => {}
                            Err(_) => tracing::debug!("webtransport handshake timed out"),
                        }
                    });
                }
                _ = rotate.tick(), if rotation.is_some() => self.rotate(bound),
                _ = crate::stopped(&mut stop) => break,
            }
        }
        // New connections are refused; open sessions end on the shutdown signal themselves.
        bound.endpoint.set_server_config(None);
        bound.endpoint.wait_idle().await;
    }

    /// Serve the next certificate to new connections; open sessions keep theirs.
    fn rotate(&self, bound: &Bound) {
        let current = match bound.certs.rotate() {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("webtransport certificate not rotated, the current one stays: {e}");
                return;
            }
        };
        match current.server_config(Arc::clone(&bound.transport)) {
            Ok(config) => {
                bound.endpoint.set_server_config(Some(config));
                tracing::info!(sha256 = %current.sha256, "webtransport certificate rotated");
            }
            Err(e) => tracing::error!("webtransport certificate not rotated: {e}"),
        }
    }
}

/// This transport's fragment of the OpenAPI contract.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(info), components(schemas(WebTransportInfo)))]
pub struct ApiDoc;

/// Where and how to open a WebTransport session.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WebTransportInfo {
    /// UDP port of the HTTP/3 endpoint, on the host the console was loaded from.
    pub port: u16,
    /// Session path: `https://HOST:PORT/wt?remote_control_id=ID&access_token=TOKEN`.
    #[schema(example = "/wt")]
    pub path: String,
    /// SHA-256 of the certificate served now (DER, lower-case hex), then of the next one (served
    /// after the next rotation), for `serverCertificateHashes`. Empty with a configured
    /// (CA-issued) certificate: then omit `serverCertificateHashes`.
    pub certificate_hashes: Vec<String>,
    /// Whether the certificate is generated by the server (then pin the hashes).
    pub self_signed: bool,
    /// RFC 3339 end of the current certificate's validity.
    pub expires_at: Option<String>,
}

/// The WebTransport endpoint: port, path and certificate hashes for the console. Any role.
#[utoipa::path(operation_id = "webtransport_info", get, path = "/api/webtransport", tag = "transports",
    responses((status = 200, body = WebTransportInfo), (status = 401, body = ErrorBody),
        (status = 404, description = "WebTransport is disabled (`webtransport_disabled`)", body = ErrorBody)))]
async fn info(
    _caller: Caller,
    State(_core): State<Core>,
    Extension(server): Extension<Arc<Server>>,
) -> Result<Json<WebTransportInfo>, ApiError> {
    let Some(bound) = &server.bound else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "webtransport_disabled",
            "WebTransport is disabled on this server (webtransport_addr is empty)",
        ));
    };
    Ok(Json(WebTransportInfo {
        port: bound.addr.port(),
        path: PATH.into(),
        certificate_hashes: bound.certs.hashes(),
        self_signed: bound.certs.self_signed(),
        expires_at: bound.certs.current().not_after.map(crate::http::rfc3339),
    }))
}
