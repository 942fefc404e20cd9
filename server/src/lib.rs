//! railcast server: brings live camera video from trains to remote operators, and their
//! commands back.
//!
//! # Layout
//! This file is the composition root: the only module that names every transport and signaling
//! front-end. It builds their settings, merges their routes and OpenAPI fragments, and runs them.
//! - [`core`]: the shared state (hub, remote controls, sessions, credentials, limits, shutdown);
//!   it names no transport.
//! - [`hub`]: transport-agnostic fan-out (streams, subscribers, drop policy, GOP cache, commands).
//! - [`ingest`]: trains' connections, QUIC and WHIP ([`ingest::whip`]: WebRTC peers built with
//!   [`transport::webrtc`]'s negotiation); publishes into the hub.
//! - [`relay`]: what every transport does for a client (follow the mapping, welcome, parse →
//!   admit → answer a command, the end of a session).
//! - [`transport`]: one folder per transport, each a `Server` that accepts and a `Session` with
//!   `run`: [`transport::ws`] (WebSocket), [`transport::webrtc`] (data channels and, for WHEP,
//!   RTP media tracks; peer registry, negotiation in both directions), [`transport::webtransport`] (HTTP/3 WebTransport on its own
//!   UDP port; generated certificates and their rotation), [`transport::mqtt`] (through a
//!   broker: one connection, per-session credentials and ACLs in mosquitto's dynamic security).
//! - [`signaling`]: front-ends over the WebRTC peer registry: [`signaling::rest`] (server offers),
//!   [`signaling::whep`] (WHEP: the client offers, media tracks), [`signaling::whip`] (WHIP: a
//!   train offers its media, over [`ingest::whip`]), [`signaling::jsonrpc`]
//!   (JSON-RPC 2.0 over WebSocket, `GET /rpc`: peers, the relay one of them), [`signaling::mqtt`] (the client
//!   offers on MQTT topics, through the MQTT transport's broker connection and session grants).
//! - [`record`]: recording trains' video to fragmented MP4 files, a hub subscriber per train.
//! - [`cluster`]: several nodes as one service over NATS (`cluster_nats_url`): a train's owner
//!   publishes its media while another node watches it; that node mirrors it into its own hub.
//! - [`api`]: the REST API over [`core`] only; [`http`]: the one error shape and the `Caller`
//!   extractors (a leaf).
//! - Leaves: [`config`] (layered, validated settings), [`logging`] (formats; secrets redacted),
//!   [`ice`] (STUN/TURN servers and the credentials each session is handed, static or
//!   time-limited), [`healthcheck`] (the `healthcheck` subcommand's client), [`metrics`]
//!   (Prometheus), [`audit`] (every
//!   command, appended to a rotated JSON-lines file), [`auth`]
//!   (tokens and roles), [`limits`], [`remote`] (remote controls and their mapping),
//!   [`sessions`] (the registry of live client sessions), [`tls`] (the QUIC certificate and the
//!   HTTP listener's, when it speaks HTTPS).
//!
//! Dependencies point one way: signaling → transport → relay → hub → protocol. `core`, `hub`,
//! `relay`, `api`, `http`, `config`, `metrics` and the other leaves import no transport and no
//! signaling front-end; a transport imports no other transport (the `layering` test checks it).
//! Adding a transport: docs/architecture.md.
//!
//! [`Server::bind`] binds every listener; [`Server::run`] serves until a shutdown future resolves.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod core;
pub mod healthcheck;
pub mod http;
pub mod hub;
pub mod ice;
pub mod ingest;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod record;
pub mod relay;
pub mod remote;
pub mod sessions;
pub mod state_file;
pub mod tls;

#[cfg(test)]
mod layering;

/// The transports to clients, one folder each.
pub mod transport {
    pub mod mqtt;
    pub mod webrtc;
    pub mod webtransport;
    pub mod ws;
}

/// Signaling front-ends over [`transport::webrtc::Server`], one file or folder each. Each turns
/// one style of signaling into calls on the peer registry (offer, answer, candidates, end).
pub mod signaling {
    pub mod jsonrpc;
    pub mod mqtt;
    pub mod rest;
    pub mod whep;
    pub mod whip;
}

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use utoipa::OpenApi;

pub use config::Config;
use transport::{mqtt, webrtc, webtransport, ws};

/// Every part's settings, validated: the shared ones in [`Config`], and each transport's own.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ws: ws::Settings,
    pub webrtc: webrtc::Settings,
    pub webtransport: webtransport::Settings,
    pub mqtt: mqtt::Settings,
}

impl Settings {
    /// Validate `config` whole, the transports' settings included.
    pub fn from_config(config: &Config) -> Result<Self, config::ConfigError> {
        config.validate()?;
        Ok(Self {
            ws: ws::Settings::from_config(config)?,
            webrtc: webrtc::Settings::from_config(config)?,
            webtransport: webtransport::Settings::from_config(config)?,
            mqtt: mqtt::Settings::from_config(config)?,
        })
        .map(|mut s: Self| {
            // MQTT signaling hands clients the WebRTC transport's ICE servers.
            s.mqtt.ice_servers = s.webrtc.ice_servers.clone();
            s
        })
    }
}

/// The whole contract: the REST API's fragment, then each transport's and front-end's.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api::ApiDoc::openapi();
    doc.merge(api::recordings::ApiDoc::openapi());
    doc.merge(ws::ApiDoc::openapi());
    doc.merge(signaling::rest::ApiDoc::openapi());
    doc.merge(signaling::whep::ApiDoc::openapi());
    doc.merge(signaling::whip::ApiDoc::openapi());
    doc.merge(signaling::jsonrpc::ApiDoc::openapi());
    doc.merge(webtransport::ApiDoc::openapi());
    doc.merge(mqtt::ApiDoc::openapi());
    doc
}

/// The contract as served at `/api/openapi.json` and committed as `openapi/openapi.json`.
pub fn openapi_json() -> String {
    openapi().to_pretty_json().unwrap_or_default() + "\n"
}

/// The servers whose routes [`router`] merges.
struct Fronts<'a> {
    ws: &'a Arc<ws::Server>,
    webrtc: &'a Arc<webrtc::Server>,
    whip: &'a Arc<ingest::whip::Server>,
    webtransport: &'a Arc<webtransport::Server>,
    mqtt: &'a Arc<mqtt::Server>,
}

/// The whole HTTP surface. `web_root`: the built console, served for every path not routed here.
/// `access_log`: log every request ([`http::access_log`]); `metrics_here`: serve `/metrics` (off
/// when it has a listener of its own).
fn router(core: core::Core, fronts: Fronts<'_>, web_root: Option<&std::path::Path>, options: RouterOptions) -> Router {
    let Fronts { ws, webrtc, whip, webtransport, mqtt } = fronts;
    let contract = openapi_json();
    let rest = api::routes()
        .merge(api::recordings::routes(options.playback.clone()))
        .merge(signaling::rest::routes(webrtc))
        .merge(signaling::whep::routes(webrtc))
        .merge(signaling::whip::routes(whip))
        .merge(webtransport.api_routes())
        .merge(mqtt.api_routes())
        .route(
            "/openapi.json",
            get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], contract) }),
        )
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed);
    let router = Router::new()
        .nest("/api", rest)
        .merge(api::ops_routes(options.metrics_here))
        .merge(ws.routes())
        .merge(signaling::jsonrpc::JsonRpc::new(webrtc).routes())
        // The UI reads the contract from /api/openapi.json (served above), so it registers no route of its own.
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/api/openapi.json")))
        .method_not_allowed_fallback(http::method_not_allowed);
    let router = match web_root {
        // Revalidate on every load (ServeDir answers If-Modified-Since): a rebuilt console is
        // picked up without a hard reload.
        Some(root) => router.fallback_service(tower_http::set_header::SetResponseHeader::if_not_present(
            tower_http::services::ServeDir::new(root)
                .not_found_service(axum::handler::HandlerWithoutStateExt::into_service(http::not_found)),
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-cache"),
        )),
        None => router.route("/", get(api::status_page)).fallback(http::not_found),
    };
    let router = router.layer(axum::extract::DefaultBodyLimit::max(options.max_body));
    let router = if options.access_log {
        router.layer(axum::middleware::from_fn_with_state(core.clone(), http::access_log))
    } else {
        router
    };
    router.with_state(core)
}

/// How [`router`] is built.
struct RouterOptions {
    max_body: usize,
    access_log: bool,
    metrics_here: bool,
    /// The recordings, when recording is on.
    playback: Option<Arc<api::recordings::Playback>>,
}

/// Resolves once `rx` reads `true` (or its sender is gone). Keeps the watch guard out of callers'
/// futures, which must stay `Send`.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Kernel receive buffer asked for each UDP socket the server reads (trains' QUIC, WebTransport,
/// WebRTC): every peer's datagrams wait in that one buffer while the runtime is busy, and the
/// default (208 KiB here) overflowed at 500 WebTransport clients, whose acknowledgements wait out
/// a frame's fan-out (docs/benchmarks-history.md, sessions 14 and 29). Linux caps it at
/// `net.core.rmem_max`; pages are used only while datagrams wait.
pub const UDP_RECV_BUFFER: usize = 4 << 20;

/// Ask for [`UDP_RECV_BUFFER`] on `socket`; when refused, say so in the log (`what`: its setting)
/// and keep the default.
pub fn ask_udp_recv_buffer<'s>(socket: impl Into<socket2::SockRef<'s>>, what: &str) {
    if let Err(e) = socket.into().set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::debug!("{what}: receive buffer left at the default: {e}");
    }
}

/// Microseconds since the UNIX epoch on this host's clock.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot bind {what} {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("credentials: {0}")]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    State(#[from] state_file::StateError),
    #[error(transparent)]
    WebTransport(#[from] webtransport::WebTransportError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

/// A server with its listeners bound, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    config: Config,
    settings: Settings,
    http: tokio::net::TcpListener,
    http_addr: SocketAddr,
    quic: quinn::Endpoint,
    quic_addr: SocketAddr,
    identity: tls::Identity,
    http_tls: Option<Arc<tls::HttpTls>>,
    webtransport: Arc<webtransport::Server>,
    auth: Arc<auth::Auth>,
    generated: Option<auth::CredentialsFile>,
    remotes: Arc<remote::RemoteControls>,
    /// `/metrics` on its own address (`metrics_addr`).
    metrics: Option<(tokio::net::TcpListener, SocketAddr)>,
}

impl Server {
    /// Validate the configuration, load or generate the credentials and the certificate, read the
    /// state file, bind HTTP and QUIC.
    pub async fn bind(mut config: Config) -> Result<Self, ServerError> {
        let mut settings = Settings::from_config(&config)?;
        if !config.cluster_nats_url.trim().is_empty() && config.cluster_node_id.is_empty() {
            // Chosen once, so that the banner and the cluster say the same.
            config.cluster_node_id = cluster::default_node_id();
        }
        let (auth, generated) = auth::Auth::load(Config::path(&config.auth_file), config.demo_trains)?;
        if let (Some(file), Some(out)) = (&generated, Config::path(&config.credentials_out)) {
            auth::write(out, file)?;
        }
        let state_file = Config::path(&config.state_file).map(state_file::StateFile::open).transpose()?;
        if let Some(file) = &state_file {
            auth.keep_revocations(file)?;
        }
        let remotes = remote::RemoteControls::open(config.max_remote_controls, state_file.as_ref())?;
        let identity = match (Config::path(&config.tls_cert), Config::path(&config.tls_key)) {
            (Some(cert), Some(key)) => tls::Identity::from_files(cert, key)?,
            _ => tls::Identity::self_signed(&config.tls_names.0)?,
        };
        let http_tls = match (Config::path(&config.http_tls_cert), Config::path(&config.http_tls_key)) {
            (Some(cert), Some(key)) => Some(Arc::new(
                tls::HttpTls::load(cert, key).map_err(|e| config::invalid("http_tls_cert", e.to_string()))?,
            )),
            _ => None,
        };
        let bind_err = |what, addr| move |source| ServerError::Bind { what, addr, source };
        let http = tokio::net::TcpListener::bind(config.http_addr).await.map_err(bind_err("HTTP", config.http_addr))?;
        let http_addr = http.local_addr().map_err(bind_err("HTTP", config.http_addr))?;
        let udp = std::net::UdpSocket::bind(config.quic_addr).map_err(bind_err("QUIC", config.quic_addr))?;
        let quic_addr = udp.local_addr().map_err(bind_err("QUIC", config.quic_addr))?;
        let quic = ingest::endpoint(udp, &identity, &ingest_config(&config))?;
        let configured = (!identity.self_signed).then_some(&identity);
        let webtransport = webtransport::Server::bind(settings.webtransport.clone(), &config.tls_names.0, configured)?;
        let metrics = match config.metrics_addr.trim() {
            "" => None,
            addr => {
                let addr: SocketAddr = addr.parse().map_err(|_| config::invalid("metrics_addr", "not an address"))?;
                let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind_err("metrics", addr))?;
                let bound = listener.local_addr().map_err(bind_err("metrics", addr))?;
                Some((listener, bound))
            }
        };
        let webrtc_udp = SocketAddr::new(settings.webrtc.bind_ip, settings.webrtc.udp_port);
        settings.webrtc.bind_udp().map_err(bind_err("WebRTC UDP", webrtc_udp))?;
        Ok(Self {
            config,
            settings,
            http,
            http_addr,
            quic,
            quic_addr,
            identity,
            http_tls,
            webtransport,
            auth: Arc::new(auth),
            generated,
            remotes: Arc::new(remotes),
            metrics,
        })
    }

    /// This node's id in the cluster, when `cluster_nats_url` is set.
    pub fn cluster_node(&self) -> Option<&str> {
        (!self.config.cluster_nats_url.trim().is_empty()).then_some(self.config.cluster_node_id.as_str())
    }

    /// Where `/metrics` is served when it has an address of its own (`metrics_addr`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The credentials in force (`main` reloads them on SIGHUP).
    pub fn auth(&self) -> Arc<auth::Auth> {
        Arc::clone(&self.auth)
    }

    /// The demo credentials generated at start-up, when there was no `auth_file`.
    pub fn generated_credentials(&self) -> Option<&auth::CredentialsFile> {
        self.generated.as_ref()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }
    /// The HTTP listener's certificate when it speaks HTTPS (`main` reloads it on SIGHUP).
    pub fn http_tls(&self) -> Option<Arc<tls::HttpTls>> {
        self.http_tls.clone()
    }
    /// `https` with `http_tls_cert`, else `http`.
    pub fn http_scheme(&self) -> &'static str {
        if self.http_tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }
    /// The WebTransport endpoint's UDP address; `None` when disabled.
    pub fn webtransport_addr(&self) -> Option<SocketAddr> {
        self.webtransport.local_addr()
    }
    pub fn fingerprint(&self) -> String {
        self.identity.fingerprint()
    }
    /// The UDP address every WebRTC session shares; `None` with a port range (webrtc_udp_ports).
    pub fn webrtc_udp_addr(&self) -> Option<SocketAddr> {
        self.settings.webrtc.udp_mux.as_ref().map(|mux| mux.local_addr())
    }

    /// Serve until `shutdown` resolves, then stop accepting, tell clients and trains, and wait
    /// for sessions to end, at most `shutdown_grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Server {
            config,
            settings,
            http,
            http_addr,
            quic,
            quic_addr,
            identity,
            http_tls,
            webtransport,
            auth,
            generated: _,
            remotes,
            metrics,
        } = self;
        let metrics_listener = metrics.map(|(listener, _)| listener);
        let limits = config.limits();
        let audit = match Config::path(&config.audit_file) {
            Some(path) => audit::Audit::open(path, config.audit_max_bytes, config.audit_keep)?,
            None => audit::Audit::memory(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let hub = hub::Hub::new(hub::HubConfig {
            subscriber_queue: config.subscriber_queue,
            gop_cache_bytes: config.gop_cache_bytes,
            max_payload: config.max_payload,
            command_timeout: config.command_timeout.0,
            ..hub::HubConfig::default()
        });
        let cluster = cluster::Settings::from_config(&config).map(|s| {
            audit.set_node(&s.node);
            let shared = cluster::Shared {
                remotes: Arc::clone(&remotes),
                auth: Arc::clone(&auth),
                audit: audit_answerer(Arc::clone(&audit), s.node.clone()),
            };
            cluster::Cluster::start(hub.clone(), shared, s, stop_rx.clone())
        });
        let core = core::Core {
            hub: hub.clone(),
            remotes,
            sessions: Arc::new(sessions::Registry::default()),
            info: Arc::new(core::ServerInfo {
                started_at: SystemTime::now(),
                http_addr,
                quic_addr,
                cert_sha256: identity.fingerprint(),
                cert_pem: identity.pem.clone(),
                self_signed: identity.self_signed,
            }),
            auth: Arc::clone(&auth),
            client_addresses: limits::PerAddress::new(
                limits.max_connections_per_address,
                "client sessions",
                limits::Limit::ConnectionsPerAddress,
                "max_connections_per_address",
            ),
            limits: limits.clone(),
            audit,
            shutdown: stop_rx.clone(),
            cluster: cluster.as_ref().map(cluster::Cluster::status),
        };
        let _gauges = core.gauges();
        tokio::spawn(relay::watch_credentials(Arc::clone(&core.auth), Arc::clone(&core.remotes)));
        tokio::spawn(relay::watch_control(core.clone()));
        let ws = ws::Server::new(settings.ws.clone());
        let webrtc = webrtc::Server::new(settings.webrtc.clone());
        let web_root = std::path::PathBuf::from(&config.web_root);
        let web_root = if web_root.join("index.html").is_file() {
            tracing::info!(web_root = %web_root.display(), "serving the web console");
            Some(web_root)
        } else {
            tracing::warn!(
                web_root = %web_root.display(),
                "no web console there (build it: cd web-client && npm ci && npm run build); serving the status page at /"
            );
            None
        };
        let sessions = Arc::clone(&core.sessions);
        let webtransport_task = tokio::spawn(Arc::clone(&webtransport).serve(core.clone()));
        let mqtt = mqtt::Server::new(settings.mqtt.clone());
        // Its route must be registered before the broker connection runs (subscribed at connect).
        signaling::mqtt::spawn(&core, &mqtt, &webrtc);
        let mqtt_task = tokio::spawn(Arc::clone(&mqtt).serve(core.clone()));
        let whip = ingest::whip::Server::new(
            settings.webrtc.clone(),
            hub.clone(),
            Arc::clone(&auth),
            limits.max_trains,
            stop_rx.clone(),
        );
        let fronts = Fronts { ws: &ws, webrtc: &webrtc, whip: &whip, webtransport: &webtransport, mqtt: &mqtt };
        // The recorders start before the router, which hands their control to the playback API.
        let recorder =
            record::Settings::from_config(&config).map(|s| record::Recorder::start(hub.clone(), s, stop_rx.clone()));
        let options = RouterOptions {
            max_body: config.max_body,
            access_log: config.access_log,
            metrics_here: metrics_listener.is_none(),
            playback: recorder.as_ref().map(|r| {
                let control = r.control();
                Arc::new(api::recordings::Playback {
                    library: record::library::Library::new(control.dir().to_owned()),
                    control,
                })
            }),
        };
        let app = router(core, fronts, web_root.as_deref(), options);
        let serve = http::ServeSettings {
            header_timeout: config.http_header_timeout.0,
            body_timeout: config.http_body_timeout.0,
            max_body: config.max_body,
            max_per_address: config.max_http_connections_per_address,
            tls: http_tls,
        };
        if serve.tls.is_none() && !http_addr.ip().is_loopback() {
            tracing::warn!(
                %http_addr,
                "plain HTTP on a non-loopback address: browsers decode video (WebCodecs) only in a secure context, \
                 so a console opened from another host shows no video; set http_tls_cert/http_tls_key or put a \
                 TLS reverse proxy in front (docs/security.md)"
            );
        }
        let tune = settings.ws.clone();
        let metrics_task = metrics_listener.map(|listener| {
            let guards = http::ServeSettings { tls: None, ..serve.clone() };
            tokio::spawn(http::serve(listener, api::metrics_router(), guards, |_| {}, stop_rx.clone()))
        });
        let http_task = tokio::spawn(http::serve(http, app, serve, move |tcp| tune.tune(tcp), stop_rx.clone()));
        let gate = ingest::Gate {
            auth,
            max_trains: limits.max_trains,
            addresses: limits::PerAddress::new(
                limits.max_connections_per_address,
                "train connections",
                limits::Limit::ConnectionsPerAddress,
                "max_connections_per_address",
            ),
        };
        let quic_task = tokio::spawn(ingest::serve(quic, hub, ingest_config(&config), gate, stop_rx));
        tracing::info!(%http_addr, %quic_addr, "railcast server running");

        shutdown.await;
        tracing::info!(grace = %config.shutdown_grace, "shutting down");
        let _ = stop_tx.send(true);
        // Done when requests in flight are answered, trains told, and every client session has
        // said its goodbye (sessions run on their own tasks: the process must not end under them).
        let finish = async {
            let metrics = async {
                if let Some(task) = metrics_task {
                    let _ = task.await;
                }
            };
            // Recorders write their parts in progress and close their files.
            let recordings = async {
                if let Some(recorder) = recorder {
                    recorder.closed().await;
                }
            };
            // Mirrored trains go offline here; owners stop publishing.
            let cluster = async {
                if let Some(cluster) = cluster {
                    cluster.closed().await;
                }
            };
            let (http, _, _, _, (), (), (), (), ()) = tokio::join!(
                http_task,
                quic_task,
                webtransport_task,
                mqtt_task,
                sessions.wait_empty(),
                whip.closed(),
                metrics,
                recordings,
                cluster
            );
            http
        };
        match tokio::time::timeout(config.shutdown_grace.0, finish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(join)) => Err(ServerError::Http(std::io::Error::other(join))),
            Err(_) => {
                tracing::warn!("grace period over; exiting with sessions still open");
                Ok(())
            }
        }
    }
}

/// How this node answers another node's cluster-wide audit query: its part, read off the
/// runtime's threads (the files are blocking I/O).
fn audit_answerer(audit: Arc<audit::Audit>, node: String) -> cluster::ask::Answerer {
    Arc::new(move |body: bytes::Bytes| {
        let (audit, node) = (Arc::clone(&audit), node.clone());
        Box::pin(async move {
            let request: audit::ClusterRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    cluster::rejected("audit", cluster::wire::AUDIT, &e);
                    return None;
                }
            };
            let part = tokio::task::spawn_blocking(move || audit.part(&node, &request)).await.ok()?;
            Some(bytes::Bytes::from(part.to_json_within(audit::MAX_PART_BYTES)))
        })
    })
}

fn ingest_config(config: &Config) -> ingest::IngestConfig {
    ingest::IngestConfig {
        idle_timeout: config.quic_idle_timeout.0,
        keep_alive: config.quic_keep_alive.0,
        ..ingest::IngestConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_sockets_get_the_large_receive_buffer() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = socket2::SockRef::from(&socket).recv_buffer_size().expect("SO_RCVBUF");
        ask_udp_recv_buffer(&socket, "test");
        let after = socket2::SockRef::from(&socket).recv_buffer_size().expect("SO_RCVBUF");
        // Linux doubles what is asked, up to twice net.core.rmem_max.
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|m| m.trim().parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        assert!(after >= UDP_RECV_BUFFER.min(max), "{before} -> {after} (rmem_max {max})");
    }

    #[test]
    fn each_bad_transport_setting_names_itself() {
        let cases: Vec<(&[&str], &str)> = vec![
            (&["--ws-max-message", "10"], "ws_max_message"),
            (&["--ws-write-timeout", "10ms"], "ws_write_timeout"),
            (&["--webrtc-udp-ports", "9-1"], "webrtc_udp_ports"),
            (&["--webrtc-udp-ports", "50000"], "webrtc_udp_ports"),
            (&["--webrtc-udp-port", "8189", "--webrtc-udp-ports", "50000-50099"], "webrtc_udp_port"),
            (&["--webrtc-bind-ip", "0.0.0.0"], "webrtc_advertised_ip"),
            (&["--webrtc-advertised-ip", "here"], "webrtc_advertised_ip"),
            (&["--webrtc-ice-servers", "http://x"], "webrtc_ice_servers"),
            (&["--webrtc-ice-servers", "turn:x:3478"], "webrtc_turn_username"),
            (&["--webrtc-send-buffer", "10"], "webrtc_send_buffer"),
            (&["--webrtc-sctp-mtu", "575"], "webrtc_sctp_mtu"),
            (&["--webrtc-sctp-mtu", "2001"], "webrtc_sctp_mtu"),
            (&["--webrtc-video-message", "0"], "webrtc_video_message"),
            (&["--webrtc-video-message", "65537"], "webrtc_video_message"),
            (&["--webrtc-connect-timeout", "10ms"], "webrtc_connect_timeout"),
            (&["--webtransport-addr", "here"], "webtransport_addr"),
            (&["--webtransport-cert-rotation", "500ms"], "webtransport_cert_rotation"),
            (&["--webtransport-cert-rotation", "11days"], "webtransport_cert_rotation"),
            (&["--webtransport-send-buffer", "1000"], "webtransport_send_buffer"),
            (&["--mqtt-url", "http://x"], "mqtt_url"),
            (&["--mqtt-url", "mqtt://h:port"], "mqtt_url"),
            (&["--mqtt-browser-url", "mqtt://x"], "mqtt_browser_url"),
            (&["--mqtt-video-message", "100"], "mqtt_video_message"),
            (&["--mqtt-claim-timeout", "0s"], "mqtt_claim_timeout"),
            (&["--mqtt-idle-timeout", "1s"], "mqtt_idle_timeout"),
            (&["--mqtt-max-sessions", "0"], "mqtt_max_sessions"),
        ];
        for (args, setting) in cases {
            let config = Config::from_args(std::iter::once("railcast-server").chain(args.iter().copied()))
                .expect("the shared settings are valid");
            let err = Settings::from_config(&config).expect_err(setting);
            assert_eq!(err.setting, setting, "{err}");
        }
        Settings::from_config(&Config::defaults()).expect("the defaults are valid");
    }
}
