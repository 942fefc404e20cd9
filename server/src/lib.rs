//! railcast server: brings live camera video from trains to remote operators, and their
//! commands back.
//!
//! # Layout
//! - [`config`]: typed, validated configuration.
//! - [`hub`]: transport-agnostic fan-out (streams, subscribers, drop policy, GOP cache, commands).
//! - [`ingest`]: QUIC sessions of trains; publishes into the hub.
//! - [`ws`], [`webrtc`]: the transports (WebSocket; WebRTC data channels with REST signaling),
//!   one module each, same shape; they subscribe to the hub through [`dispatch`].
//! - [`dispatch`]: what every transport does for a remote control (follow the mapping, answer
//!   client messages).
//! - [`remote`]: remote controls and their train mapping. [`session`]: live transport sessions.
//! - [`api`]: HTTP routes, JSON shapes, `ApiError`, the OpenAPI contract.
//! - [`metrics`]: Prometheus counters, gauges and the relay-latency histogram.
//! - [`tls`]: the QUIC certificate.
//! - [`auth`]: trains' tokens, clients' bearer tokens and roles. [`limits`]: resource limits.
//!
//! Dependencies point inwards: transports and ingest depend on `hub`; `hub` depends on no transport.
//! [`Server::bind`] binds every listener; [`Server::run`] serves until a shutdown future resolves.

pub mod api;
pub mod auth;
pub mod config;
pub mod dispatch;
pub mod hub;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod remote;
pub mod session;
pub mod state;
pub mod tls;
pub mod webrtc;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::serve::ListenerExt;
use tokio::sync::watch;

pub use config::Config;

/// Resolves once `rx` reads `true` (or its sender is gone). Keeps the watch guard out of callers'
/// futures, which must stay `Send`.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
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
    State(#[from] remote::StateError),
}

/// A server with its listeners bound, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    config: Config,
    http: tokio::net::TcpListener,
    http_addr: SocketAddr,
    quic: quinn::Endpoint,
    quic_addr: SocketAddr,
    identity: tls::Identity,
    auth: Arc<auth::Auth>,
    generated: Option<auth::CredentialsFile>,
    remotes: Arc<remote::RemoteControls>,
}

impl Server {
    /// Validate the configuration, load or generate the credentials and the certificate, read the
    /// state file, bind HTTP and QUIC.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        config.validate()?;
        let (auth, generated) = auth::Auth::load(Config::path(&config.auth_file), config.demo_trains)?;
        if let (Some(file), Some(out)) = (&generated, Config::path(&config.credentials_out)) {
            auth::write(out, file)?;
        }
        let remotes = remote::RemoteControls::open(config.max_remote_controls, Config::path(&config.state_file))?;
        let identity = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => tls::Identity::from_files(cert, key)?,
            _ => tls::Identity::self_signed(&config.tls_names)?,
        };
        let bind_err = |what, addr| move |source| ServerError::Bind { what, addr, source };
        let http = tokio::net::TcpListener::bind(config.http_addr).await.map_err(bind_err("HTTP", config.http_addr))?;
        let http_addr = http.local_addr().map_err(bind_err("HTTP", config.http_addr))?;
        let udp = std::net::UdpSocket::bind(config.quic_addr).map_err(bind_err("QUIC", config.quic_addr))?;
        let quic_addr = udp.local_addr().map_err(bind_err("QUIC", config.quic_addr))?;
        let quic = ingest::endpoint(udp, &identity, &ingest_config(&config))?;
        Ok(Self {
            config,
            http,
            http_addr,
            quic,
            quic_addr,
            identity,
            auth: Arc::new(auth),
            generated,
            remotes: Arc::new(remotes),
        })
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
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }
    pub fn fingerprint(&self) -> String {
        self.identity.fingerprint()
    }

    /// Serve until `shutdown` resolves, then stop accepting, tell clients and trains, and wait
    /// for sessions to end, at most `shutdown_grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Server { config, http, http_addr, quic, quic_addr, identity, auth, generated: _, remotes } = self;
        let limits = config.limits();
        let (stop_tx, stop_rx) = watch::channel(false);
        let hub = hub::Hub::new(hub::HubConfig {
            subscriber_queue: config.subscriber_queue,
            gop_cache_bytes: config.gop_cache_bytes,
            max_payload: config.max_payload,
            command_timeout: config.command_timeout.0,
            ..hub::HubConfig::default()
        });
        let state = state::AppState {
            hub: hub.clone(),
            remotes,
            sessions: Arc::new(session::Sessions::default()),
            info: Arc::new(state::ServerInfo {
                started_at: SystemTime::now(),
                http_addr,
                quic_addr,
                cert_sha256: identity.fingerprint(),
                cert_pem: identity.pem.clone(),
                self_signed: identity.self_signed,
            }),
            ws: ws::WsConfig {
                max_message: config.ws_max_message,
                write_timeout: config.ws_write_timeout.0,
                ..ws::WsConfig::default()
            },
            webrtc: Arc::new(webrtc::Signaling::new(config.webrtc()?)),
            auth: Arc::clone(&auth),
            client_addresses: limits::PerAddress::new(limits.max_connections_per_address, "client sessions"),
            limits: limits.clone(),
            shutdown: stop_rx.clone(),
        };
        tokio::spawn(dispatch::watch_credentials(Arc::clone(&state.auth), Arc::clone(&state.remotes)));
        let (send_buffer, unsent_limit) = (config.ws_send_buffer, config.ws_unsent_limit);
        let listener = http.tap_io(move |tcp| {
            let _ = tcp.set_nodelay(true);
            let sock = socket2::SockRef::from(&*tcp);
            if send_buffer > 0 {
                let _ = sock.set_send_buffer_size(send_buffer);
            }
            if unsent_limit > 0 {
                let _ = sock.set_tcp_notsent_lowat(u32::try_from(unsent_limit).unwrap_or(u32::MAX));
            }
        });
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
        let app = api::router(state, web_root.as_deref(), config.max_body)
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut http_stop = stop_rx.clone();
        let http_task = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stopped(&mut http_stop).await }).await
        });
        let gate = ingest::Gate {
            auth,
            max_trains: limits.max_trains,
            addresses: limits::PerAddress::new(limits.max_connections_per_address, "train connections"),
        };
        let quic_task = tokio::spawn(ingest::serve(quic, hub, ingest_config(&config), gate, stop_rx));
        tracing::info!(%http_addr, %quic_addr, "railcast server running");

        shutdown.await;
        tracing::info!(grace = %config.shutdown_grace, "shutting down");
        let _ = stop_tx.send(true);
        let finish = async {
            let http = http_task.await;
            let _ = quic_task.await;
            http
        };
        match tokio::time::timeout(config.shutdown_grace.0, finish).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(ServerError::Http(e)),
            Ok(Err(join)) => Err(ServerError::Http(std::io::Error::other(join))),
            Err(_) => {
                tracing::warn!("grace period over; exiting with sessions still open");
                Ok(())
            }
        }
    }
}

fn ingest_config(config: &Config) -> ingest::IngestConfig {
    ingest::IngestConfig {
        idle_timeout: config.quic_idle_timeout.0,
        keep_alive: config.quic_keep_alive.0,
        ..ingest::IngestConfig::default()
    }
}
