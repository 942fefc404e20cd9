//! Server configuration: defaults → `RAILCAST_*` environment → command-line flags, validated
//! before any port is bound. `docs/configuration.md` lists every setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// A setting with a bad value: names the setting and the reason.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { setting, reason: reason.into() }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "railcast-server",
    version,
    about = "railcast relay: trains in over QUIC, remote controls out over WebSocket"
)]
pub struct Config {
    /// HTTP listen address (API, WebSocket). Port 0 picks a free port.
    #[arg(long, env = "RAILCAST_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// QUIC (UDP) listen address for trains. Port 0 picks a free port.
    #[arg(long, env = "RAILCAST_QUIC_ADDR", default_value = "127.0.0.1:4433")]
    pub quic_addr: SocketAddr,
    /// PEM certificate chain for QUIC; without it a self-signed certificate is generated.
    #[arg(long, env = "RAILCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `--tls-cert`.
    #[arg(long, env = "RAILCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Names (DNS or IP) of the generated self-signed certificate, comma-separated.
    #[arg(long, env = "RAILCAST_TLS_NAMES", value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub tls_names: Vec<String>,
    /// Largest video payload per packet accepted from trains, bytes (1..=65535).
    #[arg(long, env = "RAILCAST_MAX_PAYLOAD", default_value_t = railcast_protocol::DEFAULT_MAX_PAYLOAD)]
    pub max_payload: usize,
    /// Packets queued per subscriber before it starts losing frames (16..=65536).
    #[arg(long, env = "RAILCAST_SUBSCRIBER_QUEUE", default_value_t = 1024)]
    pub subscriber_queue: usize,
    /// Bytes of the current GOP cached per camera for late joiners (0 disables the cache).
    #[arg(long, env = "RAILCAST_GOP_CACHE_BYTES", default_value_t = 4 << 20)]
    pub gop_cache_bytes: usize,
    /// How long a command waits for the train's ack.
    #[arg(long, env = "RAILCAST_COMMAND_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5s")]
    pub command_timeout: Duration,
    /// A train connection silent for this long is closed.
    #[arg(long, env = "RAILCAST_QUIC_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "6s")]
    pub quic_idle_timeout: Duration,
    /// QUIC keep-alive interval; must be below the idle timeout.
    #[arg(long, env = "RAILCAST_QUIC_KEEP_ALIVE", value_parser = humantime::parse_duration, default_value = "1s")]
    pub quic_keep_alive: Duration,
    /// Kernel send buffer of each HTTP/WebSocket connection, bytes (0 keeps the OS default).
    /// Small keeps latency low: a slow client's backlog stays in the hub, where whole frames drop.
    #[arg(long, env = "RAILCAST_WS_SEND_BUFFER", default_value_t = 256 * 1024)]
    pub ws_send_buffer: usize,
    /// Largest WebSocket message read from a client, bytes.
    #[arg(long, env = "RAILCAST_WS_MAX_MESSAGE", default_value_t = 64 * 1024)]
    pub ws_max_message: usize,
    /// Time allowed for a graceful shutdown before the process exits anyway.
    #[arg(long, env = "RAILCAST_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "5s")]
    pub shutdown_grace: Duration,
}

impl Config {
    /// The defaults, as if no flag and no environment variable were given.
    pub fn defaults() -> Self {
        Self::parse_from(["railcast-server"])
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
        if self.gop_cache_bytes > 1 << 30 {
            return Err(invalid("gop_cache_bytes", "must be at most 1 GiB"));
        }
        if self.command_timeout.is_zero() || self.command_timeout > Duration::from_secs(300) {
            return Err(invalid("command_timeout", "must be within 1ms..=300s"));
        }
        if self.quic_idle_timeout < Duration::from_millis(100) {
            return Err(invalid("quic_idle_timeout", "must be at least 100ms"));
        }
        if self.quic_keep_alive.is_zero() || self.quic_keep_alive >= self.quic_idle_timeout {
            return Err(invalid("quic_keep_alive", "must be above zero and below quic_idle_timeout"));
        }
        if self.ws_max_message < railcast_protocol::client::MAX_CLIENT_MESSAGE {
            return Err(invalid(
                "ws_max_message",
                format!("must be at least {}", railcast_protocol::client::MAX_CLIENT_MESSAGE),
            ));
        }
        if self.shutdown_grace > Duration::from_secs(300) {
            return Err(invalid("shutdown_grace", "must be at most 300s"));
        }
        if self.tls_cert.is_none() && self.tls_names.iter().all(|n| n.trim().is_empty()) {
            return Err(invalid("tls_names", "needs at least one name for the self-signed certificate"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::defaults().validate().expect("defaults");
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: Vec<(&[&str], &str)> = vec![
            (&["--max-payload", "0"], "max_payload"),
            (&["--max-payload", "70000"], "max_payload"),
            (&["--subscriber-queue", "2"], "subscriber_queue"),
            (&["--command-timeout", "0s"], "command_timeout"),
            (&["--quic-keep-alive", "10s"], "quic_keep_alive"),
            (&["--ws-max-message", "10"], "ws_max_message"),
        ];
        for (args, setting) in cases {
            let cfg = Config::parse_from(std::iter::once("railcast-server").chain(args.iter().copied()));
            let err = cfg.validate().expect_err(setting);
            assert_eq!(err.setting, setting);
            assert!(err.to_string().contains(setting), "{err}");
        }
    }
}
