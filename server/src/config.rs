//! Server configuration: defaults → optional TOML file (`--config`) → `RAILCAST_*` environment →
//! command-line flags, validated before any port is bound. `docs/configuration.md` lists every
//! setting; each one is declared once, in the `settings!` table below, which generates the
//! command line, the file schema and the typed [`Config`].
//!
//! This module validates the shared settings; each transport parses and validates its own
//! (`ws_*`, `webrtc_*`) into its own settings type, and `lib.rs` runs them all
//! ([`crate::Settings::from_config`]). It imports no transport.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// A setting with a bad value: names the setting and the reason.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

/// A [`ConfigError`] for `setting`.
pub fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { setting, reason: reason.into() }
}

/// `scheme://user:password@host` with the password replaced by `***` (for printing).
pub fn redact_password(url: &str) -> String {
    if url.contains(',') {
        // A list of servers (`cluster_nats_url`).
        return url.split(',').map(redact_password).collect::<Vec<_>>().join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A duration written with a unit (`250ms`, `5s`, `1m`) on the command line, in the environment
/// and in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Dur)
    }
}
impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}
impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like \"5s\": {e}")))
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// A comma-separated list on the command line and in the environment (`a,b`), an array in the
/// file (`["a", "b"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct List(pub Vec<String>);

impl FromStr for List {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(List(s.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect()))
    }
}

/// One setting as `--help`, `--check-config` and `railcast.example.toml` describe it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The file key; the flag is the same with `-` for `_`.
    pub key: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The `--help` section (and the example file's).
    pub heading: &'static str,
    /// The doc comment, one entry per source line.
    pub doc: &'static [&'static str],
    /// The Rust type, as written in the table.
    pub ty: &'static str,
}

impl Setting {
    /// `--key-name`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }

    /// A boolean: a switch on the command line (`--access-log`), `true`/`false` elsewhere.
    pub fn is_switch(&self) -> bool {
        self.ty == "bool"
    }

    /// Printed only redacted ([`SECRETS`]).
    pub fn is_secret(&self) -> bool {
        SECRETS.contains(&self.key)
    }
}

/// Settings never printed as they are: `--check-config` comments them out (the password of
/// `mqtt_url` and `cluster_nats_url` only is replaced), and `--help` hides their environment values.
pub const SECRETS: &[&str] = &["webrtc_turn_credential", "webrtc_turn_secret", "mqtt_url", "cluster_nats_url"];

macro_rules! settings {
    ($( $heading:literal { $( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, $env:literal; )* } )*) => {
        /// The command line. Every setting is optional here: unset ones come from the environment
        /// (clap reads `RAILCAST_*`), then the file, then the defaults. Parse it with
        /// [`Cli::from_env`] or [`Cli::try_from_args`], which add the defaults to `--help`, make
        /// booleans switches and name the variable of a bad environment value.
        #[derive(Debug, Clone, Default, Parser)]
        #[command(name = "railcast-server", version, about = "railcast relay: trains in over QUIC, remote controls out over WebSocket, WebRTC, WebTransport and MQTT")]
        pub struct Cli {
            #[command(subcommand)]
            pub command: Option<Command>,
            /// TOML file with settings (keys as in docs/configuration.md and
            /// railcast.example.toml); the environment and flags override it.
            #[arg(long, env = "RAILCAST_CONFIG")]
            pub config: Option<PathBuf>,
            /// Print the effective configuration as TOML (readable with --config; secrets
            /// commented out) and exit.
            #[arg(long)]
            pub check_config: bool,
            $($( $(#[doc = $doc])* #[arg(long, env = $env, help_heading = $heading)] pub $name: Option<$ty>, )*)*
        }

        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileConfig {
            $($( $name: Option<$ty>, )*)*
        }

        /// The effective configuration.
        #[derive(Debug, Clone, Serialize)]
        pub struct Config {
            $($( $(#[doc = $doc])* pub $name: $ty, )*)*
        }

        impl Config {
            /// The built-in defaults.
            pub fn defaults() -> Self {
                Self { $($( $name: $default, )*)* }
            }

            fn apply_file(&mut self, f: FileConfig) {
                $($( if let Some(v) = f.$name { self.$name = v; } )*)*
            }

            fn apply_cli(&mut self, c: &Cli) {
                $($( if let Some(v) = &c.$name { self.$name = v.clone(); } )*)*
            }
        }

        impl Cli {
            /// Forget what clap filled in itself (an absent switch reads `false`), so that it
            /// does not hide the file's value.
            fn forget_defaults(&mut self, m: &clap::ArgMatches) {
                $($(
                    if m.value_source(stringify!($name)) == Some(clap::parser::ValueSource::DefaultValue) {
                        self.$name = None;
                    }
                )*)*
            }
        }

        /// Every setting, in `--help` order.
        pub const TABLE: &[Setting] = &[
            $($( Setting { key: stringify!($name), env: $env, heading: $heading, doc: &[$($doc),*], ty: stringify!($ty) }, )*)*
        ];

        /// Every setting: (file key, environment variable).
        pub const SETTINGS: &[(&str, &str)] = &[
            $($( (stringify!($name), $env), )*)*
        ];
    };
}

settings! {
    "Listeners" {
        /// HTTP listen address (API, WebSocket, console). Port 0 picks a free port.
        http_addr: SocketAddr = addr("127.0.0.1:8080"), "RAILCAST_HTTP_ADDR";
        /// QUIC (UDP) listen address for trains. Port 0 picks a free port.
        quic_addr: SocketAddr = addr("127.0.0.1:4433"), "RAILCAST_QUIC_ADDR";
        /// Directory of the built web console (`npm run build` in web-client), served at `/`; when it
        /// has no index.html, `/` serves a small status page instead. Relative to the working directory.
        web_root: String = String::from("web-client/dist"), "RAILCAST_WEB_ROOT";
        /// Time allowed for a graceful shutdown before the process exits anyway.
        shutdown_grace: Dur = Dur(Duration::from_secs(5)), "RAILCAST_SHUTDOWN_GRACE";
    }
    "TLS" {
        /// PEM certificate chain for QUIC (trains and WebTransport); empty: a self-signed certificate
        /// is generated for tls_names.
        tls_cert: String = String::new(), "RAILCAST_TLS_CERT";
        /// PEM private key matching tls_cert.
        tls_key: String = String::new(), "RAILCAST_TLS_KEY";
        /// Names (DNS or IP) of the generated self-signed QUIC certificate (comma-separated on the
        /// command line and in the environment, an array in the file).
        tls_names: List = List(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]), "RAILCAST_TLS_NAMES";
        /// PEM certificate chain (end-entity first) for the HTTP listener: set with http_tls_key, the
        /// API, the WebSocket transport and the console are served over HTTPS only (ALPN http/1.1),
        /// and both files are re-read on SIGHUP. Empty: plain HTTP, which browsers treat as a secure
        /// context (needed for WebCodecs) only on localhost (docs/security.md). Separate from the
        /// QUIC certificate (tls_cert).
        http_tls_cert: String = String::new(), "RAILCAST_HTTP_TLS_CERT";
        /// PEM private key matching http_tls_cert.
        http_tls_key: String = String::new(), "RAILCAST_HTTP_TLS_KEY";
    }
    "Trains (QUIC)" {
        /// Largest video payload per packet accepted from trains, bytes (1..=65535).
        max_payload: usize = railcast_protocol::DEFAULT_MAX_PAYLOAD, "RAILCAST_MAX_PAYLOAD";
        /// How long a command waits for the train's ack.
        command_timeout: Dur = Dur(Duration::from_secs(5)), "RAILCAST_COMMAND_TIMEOUT";
        /// A train connection silent for this long is closed.
        quic_idle_timeout: Dur = Dur(Duration::from_secs(6)), "RAILCAST_QUIC_IDLE_TIMEOUT";
        /// QUIC keep-alive interval; must be below the idle timeout.
        quic_keep_alive: Dur = Dur(Duration::from_secs(1)), "RAILCAST_QUIC_KEEP_ALIVE";
    }
    "Fan-out" {
        /// Packets queued per subscriber before it starts losing frames (16..=65536).
        subscriber_queue: usize = 1024, "RAILCAST_SUBSCRIBER_QUEUE";
        /// Bytes of the current GOP cached per camera for late joiners (0 disables the cache).
        gop_cache_bytes: usize = 4 << 20, "RAILCAST_GOP_CACHE_BYTES";
        /// Task polls between two looks at the sockets and timers (tokio's event_interval,
        /// 1..=65536; tokio's own default is 61). Higher lets a frame's fan-out to every client
        /// finish before the acknowledgements that arrived meanwhile are read.
        event_interval: usize = 4096, "RAILCAST_EVENT_INTERVAL";
    }
    "Limits" {
        /// Trains known at once (online or not); a hello from a new train id beyond it is refused.
        max_trains: usize = 1_000, "RAILCAST_MAX_TRAINS";
        /// Remote controls defined at once; creating more is refused with 429.
        max_remote_controls: usize = 10_000, "RAILCAST_MAX_REMOTE_CONTROLS";
        /// WebRTC sessions alive at once; more offers are refused with 429. Memory per idle session:
        /// docs/benchmarks.md, "Current figures".
        max_webrtc_sessions: usize = 1_000, "RAILCAST_MAX_WEBRTC_SESSIONS";
        /// Client sessions (WebSocket + WebRTC) from one IP address at once, and, separately, train
        /// connections from one address; more are refused (429, or an error frame for trains).
        max_connections_per_address: usize = 2_048, "RAILCAST_MAX_CONNECTIONS_PER_ADDRESS";
        /// HTTP connections open at once from one IP address (a WebSocket's stops counting once
        /// upgraded: its session counts in max_connections_per_address); more get 429 and are closed.
        max_http_connections_per_address: usize = 1_024, "RAILCAST_MAX_HTTP_CONNECTIONS_PER_ADDRESS";
        /// Largest HTTP request body, bytes; larger ones get 413.
        max_body: usize = 64 * 1024, "RAILCAST_MAX_BODY";
        /// An HTTP request's header must arrive whole within this (also the longest an idle
        /// kept-alive connection waits for its next request); then the connection is closed.
        http_header_timeout: Dur = Dur(Duration::from_secs(10)), "RAILCAST_HTTP_HEADER_TIMEOUT";
        /// An HTTP request's body must arrive whole within this, counted from its header; then the
        /// request gets 408 and the connection is closed.
        http_body_timeout: Dur = Dur(Duration::from_secs(10)), "RAILCAST_HTTP_BODY_TIMEOUT";
        /// Commands per second one client session may send, sustained; beyond it commands are
        /// refused (`command_error` code `rate_limited`).
        command_rate: f64 = 20.0, "RAILCAST_COMMAND_RATE";
        /// Commands one client session may send in a burst.
        command_burst: u32 = 40, "RAILCAST_COMMAND_BURST";
    }
    "WebSocket" {
        /// Kernel send buffer of each HTTP/WebSocket connection, bytes (0 keeps the OS default).
        /// Small keeps latency low: a slow client's backlog stays in the hub, where whole frames drop.
        ws_send_buffer: usize = 256 * 1024, "RAILCAST_WS_SEND_BUFFER";
        /// Unsent bytes a WebSocket connection's socket may hold (TCP_NOTSENT_LOWAT; 0: no limit).
        /// Events and command acks share the stream with video: on a slow link they wait behind
        /// what is unsent, so this keeps the backlog in the hub instead, and an ack goes out next.
        ws_unsent_limit: usize = 16 * 1024, "RAILCAST_WS_UNSENT_LIMIT";
        /// Largest WebSocket message read from a client, bytes.
        ws_max_message: usize = 64 * 1024, "RAILCAST_WS_MAX_MESSAGE";
        /// A WebSocket client whose socket takes no write for this long (it stopped reading, or its
        /// host vanished without closing) is disconnected; meanwhile the hub drops its frames.
        ws_write_timeout: Dur = Dur(Duration::from_secs(30)), "RAILCAST_WS_WRITE_TIMEOUT";
    }
    "WebRTC" {
        /// IP address of WebRTC's UDP socket (the shared one, or each session's with
        /// webrtc_udp_ports); 0.0.0.0 or :: with the shared port needs webrtc_advertised_ip.
        webrtc_bind_ip: std::net::IpAddr = std::net::IpAddr::from([127, 0, 0, 1]), "RAILCAST_WEBRTC_BIND_IP";
        /// IP address announced in the server's candidates instead of the bound one (behind NAT);
        /// empty: the bound address.
        webrtc_advertised_ip: String = String::new(), "RAILCAST_WEBRTC_ADVERTISED_IP";
        /// The one UDP port every WebRTC session shares (sessions are told apart by their ICE
        /// username fragment), on webrtc_bind_ip; 0: a free port the OS picks, printed at start-up
        /// (`listening webrtc-udp ADDR`). Deployments behind a firewall set a fixed one (compose:
        /// 8189) and open it alone. Not with webrtc_udp_ports.
        webrtc_udp_port: u16 = 0, "RAILCAST_WEBRTC_UDP_PORT";
        /// Instead of the shared port: a UDP port per WebRTC session from this range, `LOW-HIGH`
        /// (as before the shared port existed); empty (the default): the shared port.
        webrtc_udp_ports: String = String::new(), "RAILCAST_WEBRTC_UDP_PORTS";
        /// STUN/TURN server URLs, comma-separated (`stun:host:3478,turn:host:3478?transport=udp`).
        webrtc_ice_servers: String = String::new(), "RAILCAST_WEBRTC_ICE_SERVERS";
        /// Username for the TURN servers.
        webrtc_turn_username: String = String::new(), "RAILCAST_WEBRTC_TURN_USERNAME";
        /// Credential for the TURN servers.
        webrtc_turn_credential: String = String::new(), "RAILCAST_WEBRTC_TURN_CREDENTIAL";
        /// Shared secret of the TURN servers for time-limited credentials (TURN REST API, coturn's
        /// `use-auth-secret` with `static-auth-secret`): each session gets the username
        /// `EXPIRY:SESSION_ID` and the credential base64(HMAC-SHA1(secret, username)), for itself
        /// and its client. Instead of webrtc_turn_username and webrtc_turn_credential. Empty: the static ones.
        webrtc_turn_secret: String = String::new(), "RAILCAST_WEBRTC_TURN_SECRET";
        /// How long credentials generated from webrtc_turn_secret stay valid (1m..=7d). A TURN
        /// server may end a relay once its credentials have expired (not measured here), so keep
        /// it above the longest relayed session; the TURN REST draft recommends a day.
        webrtc_turn_credential_ttl: Dur = Dur(Duration::from_secs(24 * 3600)), "RAILCAST_WEBRTC_TURN_CREDENTIAL_TTL";
        /// Gather and use only TURN relay candidates (ICE transport policy `relay`): every session's
        /// traffic goes through the TURN server and the server's own addresses stay private. Needs a
        /// `turn:` URL in webrtc_ice_servers.
        webrtc_relay_only: bool = false, "RAILCAST_WEBRTC_RELAY_ONLY";
        /// A WebRTC session not open this long after its offer is closed and forgotten.
        webrtc_connect_timeout: Dur = Dur(Duration::from_secs(15)), "RAILCAST_WEBRTC_CONNECT_TIMEOUT";
        /// Send buffer limit per data channel, bytes; beyond it the peer loses whole frames.
        webrtc_send_buffer: usize = 256 * 1024, "RAILCAST_WEBRTC_SEND_BUFFER";
        /// Size budget of each outbound SCTP packet on the data channels, bytes (0 or 576..=2000):
        /// one packet is one DTLS record in one UDP datagram. 0: webrtc-rs's default, 1191, which
        /// fits a 1,280-byte path MTU even through TURN over IPv6. Raise it only where every path to
        /// the clients carries larger datagrams (loopback, a LAN with jumbo frames); above the path
        /// MTU the kernel fragments each datagram, and a path that drops fragments loses the session.
        /// 2000 is the ceiling because Chromium refuses DTLS packets over 2,048 bytes (measured: at
        /// 4096 every session failed as its first video arrived).
        webrtc_sctp_mtu: u32 = 0, "RAILCAST_WEBRTC_SCTP_MTU";
        /// Largest message on a `video` data channel, bytes (docs/wire-format.md §2.6): packets
        /// queued for a peer are packed whole into messages up to this size, never held back to fill
        /// one; capped by the peer's SDP max-message-size. Below one packet's size: one packet per
        /// message.
        webrtc_video_message: usize = 64 * 1024, "RAILCAST_WEBRTC_VIDEO_MESSAGE";
    }
    "WebTransport" {
        /// HTTP/3 WebTransport (UDP) listen address for remote controls, separate from the trains'
        /// QUIC port. Port 0 picks a free port; empty disables WebTransport.
        webtransport_addr: String = String::from("127.0.0.1:4434"), "RAILCAST_WEBTRANSPORT_ADDR";
        /// Without tls_cert, how often the generated WebTransport certificate is replaced by the next
        /// one (1s..=10d). Each is valid from 1 h before it is served to 10 days after, which
        /// browsers' serverCertificateHashes accept; open sessions are untouched.
        webtransport_cert_rotation: Dur = Dur(Duration::from_secs(5 * 24 * 3600)), "RAILCAST_WEBTRANSPORT_CERT_ROTATION";
        /// Unsent video datagrams a WebTransport session may hold, bytes (quinn's datagram send
        /// buffer); while it is full the session takes no packets and the hub drops whole frames.
        webtransport_send_buffer: usize = 256 * 1024, "RAILCAST_WEBTRANSPORT_SEND_BUFFER";
    }
    "MQTT" {
        /// The MQTT broker the MQTT transport and MQTT signaling go through:
        /// `mqtt://USER:PASSWORD@HOST:PORT` (mosquitto 2.0 with the dynamic-security plugin; USER a
        /// dynsec admin: deploy/mosquitto/). Empty: MQTT is off. Prefer RAILCAST_MQTT_URL for the
        /// password.
        mqtt_url: String = String::new(), "RAILCAST_MQTT_URL";
        /// The same broker's MQTT-over-WebSocket URL as browsers reach it (`ws://` or `wss://`),
        /// handed to consoles. Empty: consoles are not offered MQTT.
        mqtt_browser_url: String = String::new(), "RAILCAST_MQTT_BROWSER_URL";
        /// Largest MQTT video message, bytes (1200..=65536): packets are packed whole as on a data
        /// channel; a larger packet travels alone. mosquitto's WebSocket listener crawls on messages
        /// above about 4 KB (docs/benchmarks.md), hence the default.
        mqtt_video_message: usize = 4000, "RAILCAST_MQTT_VIDEO_MESSAGE";
        /// MQTT credentials whose client sent no first message within this are deleted.
        mqtt_claim_timeout: Dur = Dur(Duration::from_secs(30)), "RAILCAST_MQTT_CLAIM_TIMEOUT";
        /// An MQTT session whose client sends nothing for this long is ended (consoles ping every second).
        mqtt_idle_timeout: Dur = Dur(Duration::from_secs(30)), "RAILCAST_MQTT_IDLE_TIMEOUT";
        /// MQTT sessions (credentials handed out) at once; more are refused with 429.
        mqtt_max_sessions: usize = 1_000, "RAILCAST_MQTT_MAX_SESSIONS";
    }
    "Credentials & state" {
        /// Credentials file (TOML, docs/security.md): client tokens with roles, one token per train
        /// id. Re-read on SIGHUP. Empty: demo credentials are generated at start-up and printed.
        auth_file: String = String::new(), "RAILCAST_AUTH_FILE";
        /// Where to write the generated demo credentials (same format, mode 0600), for the
        /// simulator's `--credentials`. Empty: they are only printed.
        credentials_out: String = String::new(), "RAILCAST_CREDENTIALS_OUT";
        /// Without an auth_file, trains `train-1` … `train-N` get a generated token.
        demo_trains: usize = 64, "RAILCAST_DEMO_TRAINS";
        /// JSON file keeping remote controls, their mappings and revoked tokens across restarts.
        /// Empty: kept in memory only.
        state_file: String = String::new(), "RAILCAST_STATE_FILE";
    }
    "Audit & control" {
        /// Commands (but `request_keyframe`) need the train's control lease (`take_control`) even
        /// when nobody holds it. Off: a free train takes commands from any operator; once someone
        /// holds the lease, everyone else's are refused with `not_in_control` either way.
        control_required: bool = false, "RAILCAST_CONTROL_REQUIRED";
        /// The holder of a train's control lease must send something (its pings) at least this
        /// often; after this much silence the lease ends and the train gets `operator_lost`.
        control_heartbeat_timeout: Dur = Dur(Duration::from_secs(1)), "RAILCAST_CONTROL_HEARTBEAT_TIMEOUT";
        /// The command audit (JSON lines, appended, never rewritten; docs/security.md, "Command
        /// audit"): every command any client sends, accepted or refused. Empty: the latest 10,000
        /// are kept in memory only (lost at a restart).
        audit_file: String = String::new(), "RAILCAST_AUDIT_FILE";
        /// The audit file is rotated (to `FILE.1`, `FILE.2`, …) when it would grow past this many bytes.
        audit_max_bytes: u64 = 64 << 20, "RAILCAST_AUDIT_MAX_BYTES";
        /// Rotated audit files kept beside the current one; older ones are deleted.
        audit_keep: usize = 10, "RAILCAST_AUDIT_KEEP";
    }
    "Logs & metrics" {
        /// Log line format on stderr: `text` (human-readable; colours only when stderr is a
        /// terminal) or `json` (one JSON object per line, for log shippers). The level filter is
        /// `RUST_LOG` (default `info`).
        log_format: String = String::from("text"), "RAILCAST_LOG_FORMAT";
        /// Log every HTTP request at info (target `railcast::access`): method, path (tokens
        /// redacted), status, duration and principal.
        access_log: bool = false, "RAILCAST_ACCESS_LOG";
        /// Serve `/metrics` on this address of its own (plain HTTP, nothing else there) instead of
        /// the HTTP listener, as media servers do. Empty: `/metrics` is on the HTTP listener.
        metrics_addr: String = String::new(), "RAILCAST_METRICS_ADDR";
    }
    "Recording" {
        /// Directory recordings are written to, as fragmented MP4 (docs/recording.md):
        /// `DIR/<train>/camera-<N>/<UTC start>.mp4`. Empty: recording is off.
        record_dir: String = String::new(), "RAILCAST_RECORD_DIR";
        /// Trains recorded (when record_dir is set): train ids (comma-separated on the command line
        /// and in the environment, an array in the file), or `*` for every train that connects.
        record_trains: List = List(vec!["*".into()]), "RAILCAST_RECORD_TRAINS";
        /// A recording starts a new file at the first keyframe after this much video (1s..=1h).
        record_segment_duration: Dur = Dur(Duration::from_secs(60)), "RAILCAST_RECORD_SEGMENT_DURATION";
        /// Video per fragment (moof + mdat), written to disk whole (100ms..=10s): a crash loses at
        /// most the fragment being built. At most record_segment_duration.
        record_part_duration: Dur = Dur(Duration::from_secs(1)), "RAILCAST_RECORD_PART_DURATION";
        /// Delete a recorded segment file this long after its last write (checked every 10 s and
        /// as segments close; the file being written never is). 0s: keep (at least 1s otherwise).
        record_delete_after: Dur = Dur(Duration::ZERO), "RAILCAST_RECORD_DELETE_AFTER";
        /// Most bytes of recordings kept per train (all its cameras and audio sources): beyond
        /// it the oldest closed segment files are deleted. 0: no limit (at least 65536 otherwise).
        record_max_bytes: u64 = 0, "RAILCAST_RECORD_MAX_BYTES";
        /// Most bytes of recordings kept in record_dir for all trains together: beyond it the
        /// oldest closed segment files of any train are deleted. 0: no limit (at least 65536
        /// otherwise).
        record_max_total_bytes: u64 = 0, "RAILCAST_RECORD_MAX_TOTAL_BYTES";
    }
    "Cluster" {
        /// NATS server through which several relays act as one service (docs/cluster.md):
        /// `nats://HOST:PORT`, or several servers of one NATS cluster separated by commas (the
        /// client moves to another when one fails). A train on any node is watched and commanded
        /// from every node. Empty: this node stands alone (no NATS connection, nothing changes).
        cluster_nats_url: String = String::new(), "RAILCAST_CLUSTER_NATS_URL";
        /// This node's name in the cluster (letters, digits, `.`, `_`, `-`; at most 64). Empty: the
        /// host name and a random suffix, printed at start.
        cluster_node_id: String = String::new(), "RAILCAST_CLUSTER_NODE_ID";
        /// Copies JetStream keeps of the cluster's shared state (remote controls, revocations,
        /// train ownership): 1 for a single NATS server, 3 for a cluster of three or more (the
        /// state survives losing one). Used when the buckets are first made.
        cluster_kv_replicas: usize = 1, "RAILCAST_CLUSTER_KV_REPLICAS";
    }
}

impl Config {
    /// Layer the file named by `cli.config` (if any) and the command line over the defaults, then
    /// validate.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut config = Self::defaults();
        if let Some(path) = &cli.config {
            config.apply_file(read_file(path)?);
        }
        config.apply_cli(cli);
        config.validate()?;
        Ok(config)
    }

    /// Parse arguments as `main` does (the environment included) and load.
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_from_args(args).map_err(|e| match e {
            ArgsError::Clap(e) => invalid("command line", e.to_string()),
            ArgsError::Setting(e) => e,
        })?;
        Self::load(&cli)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=railcast_protocol::MAX_PAYLOAD_LIMIT).contains(&self.max_payload) {
            return Err(invalid("max_payload", format!("must be within 1..=65535, got {}", self.max_payload)));
        }
        if !(16..=65_536).contains(&self.subscriber_queue) {
            return Err(invalid(
                "subscriber_queue",
                format!("must be within 16..=65536, got {}", self.subscriber_queue),
            ));
        }
        if !(1..=65_536).contains(&self.event_interval) {
            return Err(invalid("event_interval", format!("must be within 1..=65536, got {}", self.event_interval)));
        }
        if !(Duration::from_millis(200)..=Duration::from_secs(60)).contains(&self.control_heartbeat_timeout.0) {
            return Err(invalid(
                "control_heartbeat_timeout",
                format!("must be within 200ms..=60s, got {}", self.control_heartbeat_timeout),
            ));
        }
        if self.audit_max_bytes < 4096 {
            return Err(invalid("audit_max_bytes", format!("must be at least 4096, got {}", self.audit_max_bytes)));
        }
        if !(1..=1000).contains(&self.audit_keep) {
            return Err(invalid("audit_keep", format!("must be within 1..=1000, got {}", self.audit_keep)));
        }
        if self.gop_cache_bytes > 1 << 30 {
            return Err(invalid("gop_cache_bytes", "must be at most 1 GiB"));
        }
        if self.command_timeout.0.is_zero() || self.command_timeout.0 > Duration::from_secs(300) {
            return Err(invalid("command_timeout", format!("must be within 1ms..=300s, got {}", self.command_timeout)));
        }
        if self.quic_idle_timeout.0 < Duration::from_millis(100) {
            return Err(invalid(
                "quic_idle_timeout",
                format!("must be at least 100ms, got {}", self.quic_idle_timeout),
            ));
        }
        if self.quic_keep_alive.0.is_zero() || self.quic_keep_alive.0 >= self.quic_idle_timeout.0 {
            return Err(invalid("quic_keep_alive", "must be above zero and below quic_idle_timeout"));
        }
        if self.shutdown_grace.0 > Duration::from_secs(300) {
            return Err(invalid("shutdown_grace", "must be at most 300s"));
        }
        for (setting, v) in [
            ("max_trains", self.max_trains),
            ("max_remote_controls", self.max_remote_controls),
            ("max_webrtc_sessions", self.max_webrtc_sessions),
            ("max_connections_per_address", self.max_connections_per_address),
            ("max_http_connections_per_address", self.max_http_connections_per_address),
        ] {
            if v == 0 {
                return Err(invalid(setting, "must be at least 1"));
            }
        }
        for (setting, d) in
            [("http_header_timeout", self.http_header_timeout), ("http_body_timeout", self.http_body_timeout)]
        {
            if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&d.0) {
                return Err(invalid(setting, format!("must be within 100ms..=300s, got {d}")));
            }
        }
        if !(4 * 1024..=16 << 20).contains(&self.max_body) {
            return Err(invalid("max_body", format!("must be within 4 KiB..=16 MiB, got {}", self.max_body)));
        }
        if !(self.command_rate > 0.0 && self.command_rate <= 10_000.0) {
            return Err(invalid(
                "command_rate",
                format!("must be within (0, 10000] per second, got {}", self.command_rate),
            ));
        }
        if self.command_burst == 0 {
            return Err(invalid("command_burst", "must be at least 1"));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid("log_format", format!("must be `text` or `json`, got {:?}", self.log_format)));
        }
        if !self.metrics_addr.trim().is_empty() && self.metrics_addr.trim().parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "metrics_addr",
                format!("must be an address like 127.0.0.1:9090, got {:?}", self.metrics_addr),
            ));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600)).contains(&self.webrtc_turn_credential_ttl.0)
        {
            return Err(invalid(
                "webrtc_turn_credential_ttl",
                format!("must be within 1m..=7d, got {}", self.webrtc_turn_credential_ttl),
            ));
        }
        self.validate_recording()?;
        self.validate_cluster()?;
        if self.demo_trains > 100_000 {
            return Err(invalid("demo_trains", "must be at most 100000"));
        }
        match (Self::path(&self.http_tls_cert), Self::path(&self.http_tls_key)) {
            (Some(_), None) => return Err(invalid("http_tls_key", "is required with http_tls_cert")),
            (None, Some(_)) => return Err(invalid("http_tls_cert", "is required with http_tls_key")),
            _ => {}
        }
        match (Self::path(&self.tls_cert), Self::path(&self.tls_key)) {
            (Some(_), None) => return Err(invalid("tls_key", "is required with tls_cert")),
            (None, Some(_)) => return Err(invalid("tls_cert", "is required with tls_key")),
            (None, None) if self.tls_names.0.iter().all(|n| n.trim().is_empty()) => {
                return Err(invalid("tls_names", "needs at least one name for the self-signed certificate"))
            }
            _ => {}
        }
        Ok(())
    }
}

impl Config {
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let urls = self.cluster_nats_url.trim();
        if !urls.is_empty() {
            for url in urls.split(',').map(str::trim) {
                let scheme_ok = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
                if !scheme_ok || url.parse::<async_nats::ServerAddr>().is_err() {
                    return Err(invalid(
                        "cluster_nats_url",
                        format!(
                            "must be NATS URLs like nats://127.0.0.1:4222 (several: separated by commas), got {:?}",
                            crate::config::redact_password(url)
                        ),
                    ));
                }
            }
        }
        if !(1..=5).contains(&self.cluster_kv_replicas) {
            return Err(invalid(
                "cluster_kv_replicas",
                format!("must be 1 to 5 (JetStream's limit), got {}", self.cluster_kv_replicas),
            ));
        }
        let id = &self.cluster_node_id;
        if !id.is_empty() && (id.len() > 64 || railcast_protocol::ids::validate_id(id).is_err()) {
            return Err(invalid(
                "cluster_node_id",
                format!("must be 1..=64 letters, digits, `.`, `_` or `-`, got {id:?}"),
            ));
        }
        Ok(())
    }

    fn validate_recording(&self) -> Result<(), ConfigError> {
        let (segment, part) = (self.record_segment_duration.0, self.record_part_duration.0);
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&segment) {
            return Err(invalid(
                "record_segment_duration",
                format!("must be within 1s..=1h, got {}", self.record_segment_duration),
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(10)).contains(&part) || part > segment {
            return Err(invalid(
                "record_part_duration",
                format!(
                    "must be within 100ms..=10s and at most record_segment_duration, got {}",
                    self.record_part_duration
                ),
            ));
        }
        let trains = &self.record_trains.0;
        if trains.is_empty() {
            return Err(invalid("record_trains", "needs `*` or at least one train id"));
        }
        if trains.len() > 1 && trains.iter().any(|t| t == "*") {
            return Err(invalid("record_trains", "`*` stands alone"));
        }
        for t in trains.iter().filter(|t| *t != "*") {
            if let Err(e) = railcast_protocol::TrainId::new(t.as_str()) {
                return Err(invalid("record_trains", format!("{t:?} is not a train id: {e}")));
            }
        }
        let delete_after = self.record_delete_after.0;
        if !delete_after.is_zero() && delete_after < Duration::from_secs(1) {
            return Err(invalid(
                "record_delete_after",
                format!("must be 0s (keep) or at least 1s, got {}", self.record_delete_after),
            ));
        }
        for (name, value) in
            [("record_max_bytes", self.record_max_bytes), ("record_max_total_bytes", self.record_max_total_bytes)]
        {
            if value != 0 && value < 65_536 {
                return Err(invalid(name, format!("must be 0 (no limit) or at least 65536, got {value}")));
            }
        }
        Ok(())
    }

    /// The limits, as the server applies them.
    pub fn limits(&self) -> crate::limits::LimitConfig {
        crate::limits::LimitConfig {
            max_trains: self.max_trains,
            max_remote_controls: self.max_remote_controls,
            max_webrtc_sessions: self.max_webrtc_sessions,
            max_connections_per_address: self.max_connections_per_address,
            command_rate: self.command_rate,
            command_burst: self.command_burst,
            control_required: self.control_required,
            control_heartbeat_timeout: self.control_heartbeat_timeout.0,
            ..crate::limits::LimitConfig::default()
        }
    }

    /// A path setting: `None` when empty.
    pub fn path(value: &str) -> Option<&Path> {
        (!value.trim().is_empty()).then(|| Path::new(value))
    }
}

/// A subcommand instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Exit 0 if the server's `GET /healthz` answers 200, else 1 (a HEALTHCHECK without curl).
    ///
    /// Reads the same configuration as the server (flags before `healthcheck`, environment,
    /// file) and connects to the HTTP listener over loopback, with TLS (not verified) when
    /// http_tls_cert is set; the reason for a failure goes to stderr, on one line.
    Healthcheck(HealthcheckArgs),
}

/// `railcast-server healthcheck` options.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The path to ask for (`/readyz`: ready for traffic).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// Give up (exit 1) after this long.
    #[arg(long, default_value = "3s")]
    pub timeout: Dur,
}

/// Why the command line was not parsed.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A bad flag, `--help` or `--version`: clap prints and exits ([`clap::Error::exit`]).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// A bad `RAILCAST_*` value: names the variable, not the flag.
    #[error(transparent)]
    Setting(#[from] ConfigError),
}

impl Cli {
    /// The command line as `--help` shows it: each setting with its default, booleans as
    /// switches, secrets' environment values hidden.
    pub fn command() -> clap::Command {
        let defaults = Config::defaults().to_table();
        let mut cmd = <Self as clap::CommandFactory>::command();
        for s in TABLE {
            let shown = defaults.get(s.key).map_or_else(|| "none".to_owned(), help_value);
            cmd = cmd.mut_arg(s.key, |mut a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a = a.help(format!("{help} [default: {shown}]"));
                if let Some(long) = a.get_long_help().map(ToString::to_string) {
                    a = a.long_help(format!("{long}\n\n[default: {shown}]"));
                }
                if s.is_switch() {
                    a = a.action(clap::ArgAction::SetTrue);
                }
                a.hide_env_values(s.is_secret())
            });
        }
        cmd
    }

    /// Parse `args` (the environment included).
    pub fn try_from_args<I, T>(args: I) -> Result<Self, ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let matches = Self::command()
            .try_get_matches_from(&args)
            .map_err(|e| env_error(&e, &args).unwrap_or(ArgsError::Clap(e)))?;
        let mut cli = <Self as clap::FromArgMatches>::from_arg_matches(&matches)?;
        cli.forget_defaults(&matches);
        Ok(cli)
    }

    /// The process's command line; `--help` and `--version` print and exit 0, a bad flag or
    /// environment value prints and exits 2 (naming the variable for the latter), or 1 under
    /// `healthcheck`: Docker reserves a HEALTHCHECK's exit code 2, and 1 means unhealthy.
    pub fn from_env() -> Self {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let code = if args.iter().skip(1).any(|a| a == "healthcheck") { 1 } else { 2 };
        match Self::try_from_args(&args) {
            Ok(cli) => cli,
            Err(ArgsError::Clap(e)) if !e.use_stderr() => e.exit(),
            Err(ArgsError::Clap(e)) => {
                let _ = e.print();
                std::process::exit(code)
            }
            Err(ArgsError::Setting(e)) => {
                eprintln!("railcast-server: {e}");
                std::process::exit(code)
            }
        }
    }
}

/// A value as `--help` shows it: as typed on the command line.
fn help_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if s.is_empty() => "\"\"".to_owned(),
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(help_value).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// When clap refused a value that came from a `RAILCAST_*` variable (its flag is not among
/// `args`), the same refusal naming the variable.
fn env_error(e: &clap::Error, args: &[std::ffi::OsString]) -> Option<ArgsError> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let setting = TABLE.iter().find(|s| {
        let flag = s.flag();
        arg == &flag || arg.starts_with(&format!("{flag} ")) || arg.starts_with(&format!("{flag}="))
    })?;
    let flag = setting.flag();
    let on_command_line =
        args.iter().filter_map(|a| a.to_str()).any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let value = std::env::var(setting.env).ok()?;
    if on_command_line {
        return None;
    }
    let why = match (std::error::Error::source(e), e.get(ContextKind::ValidValue)) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) => format!("expected one of {}", valid.join(", ")),
        _ => "not a valid value".to_owned(),
    };
    Some(ArgsError::Setting(invalid(setting.key, format!("{}={value:?}: {why}", setting.env))))
}

impl Config {
    /// Every setting's value as TOML.
    fn to_table(&self) -> toml::Table {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        }
    }

    /// The configuration as a TOML file `--config` reads back (what `--check-config` prints):
    /// grouped as `--help` is; secrets commented out, the password in `mqtt_url` replaced, each
    /// with a note to supply it through its environment variable.
    pub fn to_toml(&self) -> String {
        let values = self.to_table();
        let mut out = String::from(
            "# railcast-server --check-config: the effective configuration, readable with --config.\n\
             # Secrets are commented out or redacted: supply them through their environment variables.\n",
        );
        let mut heading = "";
        for s in TABLE {
            if s.heading != heading {
                heading = s.heading;
                out.push_str(&format!("\n# {heading}\n"));
            }
            let Some(v) = values.get(s.key) else { continue };
            let line = format!("{} = {v}", s.key);
            match s.key {
                _ if !s.is_secret() => out.push_str(&format!("{line}\n")),
                "mqtt_url" | "cluster_nats_url" => {
                    let url = if s.key == "mqtt_url" { &self.mqtt_url } else { &self.cluster_nats_url };
                    if redact_password(url) == *url {
                        out.push_str(&format!("{line}\n"));
                    } else {
                        out.push_str(&format!(
                            "# {} = {}  (password redacted: set {})\n",
                            s.key,
                            toml::Value::String(redact_password(url)),
                            s.env
                        ));
                    }
                }
                _ if v.as_str() == Some("") => out.push_str(&format!("{line}\n")),
                _ => out.push_str(&format!("# {} = \"***\"  (redacted: set {})\n", s.key, s.env)),
            }
        }
        out
    }
}

/// `railcast.example.toml`: every setting commented out with its default, under its doc comment,
/// its environment variable and its flag. A test regenerates it and compares.
pub fn example_toml() -> String {
    let defaults = Config::defaults().to_table();
    let mut out = String::from(
        "# railcast.example.toml: every setting of railcast-server, with its default.\n\
         #\n\
         # Uncomment and edit what you need, then: railcast-server --config railcast.example.toml\n\
         # (or RAILCAST_CONFIG=…). The environment (RAILCAST_*) overrides this file, and flags\n\
         # override both. `railcast-server --check-config` prints the effective configuration in\n\
         # this format; docs/configuration.md explains each setting.\n\
         #\n\
         # Generated from the settings! table in server/src/config.rs; to update it:\n\
         # RAILCAST_BLESS=1 cargo test -p railcast-server --test api example_config\n",
    );
    let mut heading = "";
    for s in TABLE {
        if s.heading != heading {
            heading = s.heading;
            out.push_str(&format!("\n# ━━ {heading} ━━\n"));
        }
        out.push('\n');
        for line in s.doc {
            out.push_str(&format!("#{}\n", line.trim_end()));
        }
        out.push_str(&format!("# Environment: {}; flag: {}\n", s.env, s.flag()));
        if let Some(v) = defaults.get(s.key) {
            out.push_str(&format!("#{} = {v}\n", s.key));
        }
    }
    out
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| file_error(path, &text, &e))
}

/// A file error that names the file, line and column, the setting on that line when it is a
/// known one, and the nearest known key for an unknown one.
fn file_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |span| span.start.min(text.len()));
    let line = text[..at].matches('\n').count() + 1;
    let column = text[..at].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let key = line_key(text, at);
    let setting = key.and_then(|k| TABLE.iter().map(|s| s.key).find(|s| *s == k));
    let message = e.message();
    let reason = match message.strip_prefix("unknown field `").and_then(|m| m.split_once('`')) {
        Some((unknown, _)) => match nearest_key(unknown) {
            Some(near) => format!("unknown setting `{unknown}`; did you mean `{near}`?"),
            None => format!("unknown setting `{unknown}` (docs/configuration.md lists them)"),
        },
        None => message.to_owned(),
    };
    invalid(setting.unwrap_or("config"), format!("{}:{line}:{column}: {reason}", path.display()))
}

/// The known key closest to `unknown` by edit distance, when it is close enough to be a typo.
fn nearest_key(unknown: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .map(|s| (edit_distance(unknown, s.key), s.key))
        .filter(|(d, key)| *d <= (key.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, key)| key)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The key of the `key = value` line containing byte `at`.
fn line_key(text: &str, at: usize) -> Option<&str> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    line.split_once('=').map(|(k, _)| k.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(redact_password("mqtt://railcast:s3cret@10.0.0.1:1883"), "mqtt://railcast:***@10.0.0.1:1883");
        assert_eq!(redact_password("mqtt://a:b:c@h"), "mqtt://a:***@h");
        assert_eq!(redact_password("mqtt://h:1883"), "mqtt://h:1883");
        assert_eq!(redact_password(""), "");
        assert_eq!(redact_password("nats://a:b@h1:4222,nats://h2:4222"), "nats://a:***@h1:4222,nats://h2:4222");
    }

    #[test]
    fn cluster_settings_accept_nats_urls() {
        let c = Config::from_args([
            "railcast-server",
            "--cluster-nats-url",
            "nats://10.0.0.5:4222",
            "--cluster-node-id",
            "a-1",
        ])
        .expect("valid");
        assert_eq!((c.cluster_nats_url.as_str(), c.cluster_node_id.as_str()), ("nats://10.0.0.5:4222", "a-1"));
        let c = Config::from_args(["railcast-server", "--cluster-nats-url", "nats://u:s3cret@h:4222"]).expect("valid");
        assert!(!c.to_toml().contains("s3cret"), "the password is not printed");
        let c = Config::from_args(["railcast-server", "--cluster-nats-url", "nats://127.0.0.1:1, nats://[::1]:2"])
            .expect("a list");
        assert_eq!(c.cluster_nats_url, "nats://127.0.0.1:1, nats://[::1]:2");
        for bad in ["nats://h:1,", "nats://h:1,http://h:2"] {
            let e = Config::from_args(["railcast-server", "--cluster-nats-url", bad]).expect_err(bad);
            assert!(e.to_string().contains("cluster_nats_url"), "{e}");
        }
        let e = Config::from_args(["railcast-server", "--cluster-kv-replicas", "0"]).expect_err("0");
        assert!(e.to_string().contains("cluster_kv_replicas"), "{e}");
    }

    #[test]
    fn defaults_are_valid() {
        Config::defaults().validate().expect("defaults");
    }

    #[test]
    fn each_bad_flag_names_its_setting() {
        let cases: Vec<(&[&str], &str)> = vec![
            (&["--max-payload", "0"], "max_payload"),
            (&["--audit-max-bytes", "10"], "audit_max_bytes"),
            (&["--audit-keep", "0"], "audit_keep"),
            (&["--control-heartbeat-timeout", "10ms"], "control_heartbeat_timeout"),
            (&["--max-payload", "70000"], "max_payload"),
            (&["--subscriber-queue", "2"], "subscriber_queue"),
            (&["--event-interval", "0"], "event_interval"),
            (&["--gop-cache-bytes", "2000000000"], "gop_cache_bytes"),
            (&["--command-timeout", "0s"], "command_timeout"),
            (&["--quic-idle-timeout", "10ms"], "quic_idle_timeout"),
            (&["--quic-keep-alive", "10s"], "quic_keep_alive"),
            (&["--shutdown-grace", "1h"], "shutdown_grace"),
            (&["--tls-cert", "/x.pem"], "tls_key"),
            (&["--tls-key", "/x.pem"], "tls_cert"),
            (&["--tls-names", ""], "tls_names"),
            (&["--http-tls-cert", "/x.pem"], "http_tls_key"),
            (&["--http-tls-key", "/x.pem"], "http_tls_cert"),
            (&["--max-trains", "0"], "max_trains"),
            (&["--max-remote-controls", "0"], "max_remote_controls"),
            (&["--max-webrtc-sessions", "0"], "max_webrtc_sessions"),
            (&["--max-connections-per-address", "0"], "max_connections_per_address"),
            (&["--max-http-connections-per-address", "0"], "max_http_connections_per_address"),
            (&["--max-body", "10"], "max_body"),
            (&["--http-header-timeout", "10ms"], "http_header_timeout"),
            (&["--http-body-timeout", "301s"], "http_body_timeout"),
            (&["--command-rate", "0"], "command_rate"),
            (&["--command-burst", "0"], "command_burst"),
            (&["--log-format", "xml"], "log_format"),
            (&["--metrics-addr", "localhost"], "metrics_addr"),
            (&["--webrtc-turn-credential-ttl", "10s"], "webrtc_turn_credential_ttl"),
            (&["--webrtc-turn-credential-ttl", "8days"], "webrtc_turn_credential_ttl"),
            (&["--record-segment-duration", "500ms"], "record_segment_duration"),
            (&["--record-segment-duration", "2h"], "record_segment_duration"),
            (&["--record-part-duration", "10ms"], "record_part_duration"),
            (&["--record-segment-duration", "2s", "--record-part-duration", "3s"], "record_part_duration"),
            (&["--record-trains", ""], "record_trains"),
            (&["--record-trains", "*,train-1"], "record_trains"),
            (&["--record-trains", "train 1"], "record_trains"),
            (&["--record-delete-after", "10ms"], "record_delete_after"),
            (&["--record-max-bytes", "1000"], "record_max_bytes"),
            (&["--record-max-total-bytes", "1000"], "record_max_total_bytes"),
            (&["--cluster-nats-url", "http://127.0.0.1:4222"], "cluster_nats_url"),
            (&["--cluster-nats-url", "127.0.0.1"], "cluster_nats_url"),
            (&["--cluster-node-id", "node a"], "cluster_node_id"),
        ];
        for (args, setting) in cases {
            let err =
                Config::from_args(std::iter::once("railcast-server").chain(args.iter().copied())).expect_err(setting);
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().contains(setting), "{err}");
        }
    }

    #[test]
    fn booleans_are_switches_that_leave_the_file_alone() {
        let c = Config::from_args(["railcast-server", "--access-log", "--control-required"]).expect("switches");
        assert!(c.access_log && c.control_required && !c.webrtc_relay_only);
        let err = Config::from_args(["railcast-server", "--access-log", "true"]).expect_err("a switch takes no value");
        assert!(err.reason.contains("true"), "{err}");
        let dir = std::env::temp_dir().join(format!("railcast-switch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("a.toml");
        std::fs::write(&file, "access_log = true\n").expect("write");
        let c = Config::from_args(["railcast-server", "--config", file.to_str().expect("utf8")]).expect("load");
        assert!(c.access_log, "an absent switch does not override the file");
    }

    #[test]
    fn help_shows_every_default_under_headings() {
        let help = Cli::command().render_long_help().to_string();
        for s in TABLE {
            let flag = s.flag();
            let at = help.find(&format!("{flag} ")).or_else(|| help.find(&format!("{flag}\n"))).expect(s.key);
            let entry = &help[at..];
            let next = entry[2..].find("\n      --").map_or(entry.len(), |i| i + 2);
            assert!(entry[..next].contains("[default: "), "{flag} shows no default:\n{}", &entry[..next]);
        }
        for heading in ["Listeners:", "TLS:", "Limits:", "WebRTC:", "MQTT:", "Logs & metrics:"] {
            assert!(help.contains(heading), "no {heading} heading");
        }
        assert!(help.contains("--access-log\n"), "a switch shows no value name");
    }

    #[test]
    fn check_config_output_reads_back() {
        let mut c = Config::defaults();
        c.max_payload = 900;
        c.webrtc_ice_servers = "turn:127.0.0.1:3478".into();
        c.webrtc_turn_username = "u".into();
        c.webrtc_turn_credential = "hunter2".into();
        c.mqtt_url = "mqtt://admin:s3cret@127.0.0.1:1883".into();
        let text = c.to_toml();
        assert!(!text.contains("hunter2") && !text.contains("s3cret"), "{text}");
        let dir = std::env::temp_dir().join(format!("railcast-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("shown.toml");
        std::fs::write(&file, &text).expect("write");
        let f = file.to_str().expect("utf8");
        let back = Config::from_args(["railcast-server", "--config", f, "--webrtc-turn-credential", "hunter2"])
            .expect("reads back");
        assert_eq!((back.max_payload, back.webrtc_turn_credential.as_str()), (900, "hunter2"));
        assert_eq!(back.mqtt_url, "", "the redacted URL is commented out");
        assert_eq!(back.to_toml(), Config { mqtt_url: String::new(), ..c }.to_toml());
    }

    #[test]
    fn typos_get_the_nearest_key() {
        assert_eq!(nearest_key("max_payloads"), Some("max_payload"));
        assert_eq!(nearest_key("http_adr"), Some("http_addr"));
        assert_eq!(nearest_key("colour"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unparsable_flag_is_refused() {
        let err = Config::from_args(["railcast-server", "--command-timeout", "soon"]).expect_err("bad duration");
        assert!(err.reason.contains("--command-timeout"), "{err}");
    }

    #[test]
    fn file_layers_under_flags() {
        let dir = std::env::temp_dir().join(format!("railcast-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("a.toml");
        std::fs::write(&file, "max_payload = 1000\nsubscriber_queue = 64\ncommand_timeout = \"2s\"\n").expect("write");
        let f = file.to_str().expect("utf8");
        let c = Config::from_args(["railcast-server", "--config", f]).expect("load");
        assert_eq!((c.max_payload, c.subscriber_queue, c.command_timeout.0), (1000, 64, Duration::from_secs(2)));
        let c = Config::from_args(["railcast-server", "--config", f, "--max-payload", "800"]).expect("load");
        assert_eq!((c.max_payload, c.subscriber_queue), (800, 64));

        std::fs::write(&file, "colour = \"red\"\n").expect("write");
        let err = Config::from_args(["railcast-server", "--config", f]).expect_err("unknown key");
        assert!(err.to_string().contains("colour"), "{err}");
        assert_eq!(err.setting, "config", "{err}");
        std::fs::write(&file, "# railcast\nmax_payload = 1000\n  max_payloads = 10\n").expect("write");
        let err = Config::from_args(["railcast-server", "--config", f]).expect_err("typo");
        assert!(err.reason.contains(&format!("{f}:3:3: unknown setting `max_payloads`")), "{err}");
        assert!(err.reason.ends_with("did you mean `max_payload`?"), "{err}");
        std::fs::write(&file, "max_payload = \"big\"\n").expect("write");
        let err = Config::from_args(["railcast-server", "--config", f]).expect_err("bad type");
        assert_eq!(err.setting, "max_payload", "{err}");
        std::fs::write(&file, "max_payload = 0\n").expect("write");
        let err = Config::from_args(["railcast-server", "--config", f]).expect_err("bad value");
        assert_eq!(err.setting, "max_payload", "{err}");
        std::fs::write(&file, "quic_idle_timeout = \"later\"\n").expect("write");
        let err = Config::from_args(["railcast-server", "--config", f]).expect_err("bad duration");
        assert_eq!(err.setting, "quic_idle_timeout", "{err}");
        let err =
            Config::from_args(["railcast-server", "--config", "/nonexistent/railcast.toml"]).expect_err("missing");
        assert!(err.reason.contains("cannot read"), "{err}");
    }
}
