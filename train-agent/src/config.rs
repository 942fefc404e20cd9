//! The agent's configuration file (TOML; `docs/train-agent.md`, `deploy/train-agent.example.toml`):
//! the train, the server, the cameras and where commands and telemetry go.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every camera id, and the audio ids after them, fit the wire format's u16; more than this many
/// cameras is a configuration mistake.
pub const MAX_CAMERAS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid agent configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The train's id, as the server knows it (its credentials).
    pub train_id: String,
    pub server: ServerConfig,
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    /// Audio sources (the cab microphone …): Ogg Opus on a pipe.
    #[serde(default, rename = "audio")]
    pub audio: Vec<AudioConfig>,
    #[serde(default)]
    pub commands: CommandsConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The server's HTTP(S) API, for discovery of the QUIC port (and, with `trust = "discovered"`,
    /// of the certificate fingerprint): `https://railcast.example:8443`. Several, comma-separated
    /// (`"https://a.example:8443,https://b.example:8443"`, a cluster's nodes): failover in order.
    pub url: String,
    /// The QUIC address instead of discovery (`HOST:PORT`, or several comma-separated); needs
    /// `ca` or `cert_sha256`.
    pub quic: Option<String>,
    /// The train's token: inline, or (better) in a file readable only by the agent.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that issued the server's certificate, or `"system"` for the operating
    /// system's roots.
    pub ca: Option<String>,
    /// The server certificate's SHA-256 fingerprint (`AB:CD:…`).
    pub cert_sha256: Option<String>,
    /// Trust the fingerprint that discovery returns (trust on first use): demos only.
    #[serde(default)]
    pub trust_discovered: bool,
    /// Largest datagram payload, header included.
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// With several servers, which one is tried first: `"listed"` (the first; the others are
    /// its standbys) or `"spread"` (one chosen by the train id, the same at every start, so that
    /// a fleet given one list spreads over the nodes).
    #[serde(default)]
    pub server_order: railcast_uplink::ServerOrder,
}

fn default_max_payload() -> usize {
    1200
}

/// (No `deny_unknown_fields` here: serde cannot have it beside `flatten`; the source's own
/// table refuses unknown keys, which are left to it.)
#[derive(Debug, Clone, Deserialize)]
pub struct CameraConfig {
    /// The camera's id on the wire (0, 1, …); unique per train.
    pub id: u16,
    /// A name for logs and the operator (e.g. "front").
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub source: SourceConfig,
    /// The picture size to announce until the stream's SPS says (it wins once seen).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Nominal frame rate for the hello (default: measured, else 30).
    pub fps: Option<u32>,
}

impl CameraConfig {
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("camera {} ({n})", self.id),
            None => format!("camera {}", self.id),
        }
    }
}

/// An audio source: Ogg Opus (`ffmpeg … -c:a libopus -f ogg`) on a pipe.
#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    /// Its id on the wire: one id space with the cameras (the simulator's microphone is 256).
    pub id: u16,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub source: SourceConfig,
    /// 1 or 2, as the encoder writes.
    #[serde(default = "default_channels")]
    pub channels: u8,
    /// The Opus packets' duration (10, 20, 40 or 60 ms; ffmpeg's libopus default is 20).
    #[serde(default = "default_frame_ms")]
    pub frame_ms: u32,
}

fn default_channels() -> u8 {
    1
}
fn default_frame_ms() -> u32 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// An H.264 Annex B byte stream: `-` (standard input), a named pipe (reopened when its writer
    /// goes away) or a file (read once).
    Pipe { path: String },
    /// An IP camera's RTSP stream (H.264).
    Rtsp {
        url: String,
        username: Option<String>,
        password: Option<String>,
        password_file: Option<PathBuf>,
        /// `tcp` (RTP interleaved in the RTSP connection; the default) or `udp`.
        #[serde(default)]
        transport: RtspTransport,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// The executable run for each command (docs/train-agent.md, "The command hook").
    pub hook: Option<PathBuf>,
    /// A hook still running after this long is killed and the command acked as failed.
    #[serde(default = "default_hook_timeout_ms")]
    pub timeout_ms: u64,
    /// Hooks running at once; a command beyond them is refused at once ("busy").
    #[serde(default = "default_hook_concurrency")]
    pub max_running: usize,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self { hook: None, timeout_ms: default_hook_timeout_ms(), max_running: default_hook_concurrency() }
    }
}

fn default_hook_timeout_ms() -> u64 {
    2000
}
fn default_hook_concurrency() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// A JSON file the train's systems keep up to date (`speed_kmh`, `odometer_m`, `horn`,
    /// `operator_lost`); read once a second.
    pub file: Option<PathBuf>,
    /// A file not rewritten for this long is stale: no telemetry is sent from it.
    #[serde(default = "default_stale_ms")]
    pub stale_after_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { file: None, stale_after_ms: default_stale_ms() }
    }
}

fn default_stale_ms() -> u64 {
    3000
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let cfg: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if railcast_protocol::TrainId::new(self.train_id.clone()).is_err() {
            return invalid(format!("train_id {:?} is not a valid train id", self.train_id));
        }
        if self.cameras.is_empty() {
            return invalid("no [[camera]]: the agent needs at least one".into());
        }
        if self.cameras.len() > MAX_CAMERAS {
            return invalid(format!("{} cameras; at most {MAX_CAMERAS}", self.cameras.len()));
        }
        let mut ids: Vec<u16> = self.cameras.iter().map(|c| c.id).chain(self.audio.iter().map(|a| a.id)).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return invalid(format!("camera and audio ids must be unique: {ids:?}"));
        }
        let stdin = |s: &SourceConfig| matches!(s, SourceConfig::Pipe { path } if path == "-");
        if self
            .cameras
            .iter()
            .map(|c| &c.source)
            .chain(self.audio.iter().map(|a| &a.source))
            .filter(|s| stdin(s))
            .count()
            > 1
        {
            return invalid("only one camera or audio source can read standard input".into());
        }
        if self.audio.len() > railcast_protocol::control::MAX_AUDIO_SOURCES {
            return invalid(format!(
                "{} audio sources; at most {}",
                self.audio.len(),
                railcast_protocol::control::MAX_AUDIO_SOURCES
            ));
        }
        for a in &self.audio {
            if !matches!(a.source, SourceConfig::Pipe { .. }) {
                return invalid(format!("audio {}: only source = \"pipe\" (Ogg Opus) is supported", a.id));
            }
            if !(1..=2).contains(&a.channels) || !railcast_protocol::control::AUDIO_FRAME_MS.contains(&a.frame_ms) {
                return invalid(format!("audio {}: channels must be 1 or 2, frame_ms 10, 20, 40 or 60", a.id));
            }
        }
        for c in &self.cameras {
            if let SourceConfig::Rtsp { url, .. } = &c.source {
                if !url.starts_with("rtsp://") {
                    return invalid(format!("{}: {url:?} is not an rtsp:// URL", c.label()));
                }
            }
        }
        // Server lists: no empty entry (`a,,b`), no empty list; the rest is checked at start.
        for (key, list) in [("url", Some(&self.server.url)), ("quic", self.server.quic.as_ref())] {
            if let Some(Err(e)) = list.map(|l| railcast_uplink::connect::server_list(l)) {
                return invalid(format!("[server] {key}: {e}"));
            }
        }
        if self.server.token.is_some() && self.server.token_file.is_some() {
            return invalid("give the token or the token_file, not both".into());
        }
        if self.commands.timeout_ms == 0 || self.commands.max_running == 0 {
            return invalid("commands.timeout_ms and commands.max_running must be above 0".into());
        }
        Ok(())
    }

    pub fn hook_timeout(&self) -> Duration {
        Duration::from_millis(self.commands.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let text = include_str!("../../deploy/train-agent.example.toml");
        let cfg = parse(text).expect("the example parses");
        assert_eq!(cfg.cameras.len(), 2);
        assert!(matches!(cfg.cameras[0].source, SourceConfig::Rtsp { transport: RtspTransport::Tcp, .. }));
        assert!(matches!(&cfg.cameras[1].source, SourceConfig::Pipe { path } if path.starts_with('/')));
        assert_eq!((cfg.audio.len(), cfg.audio[0].id, cfg.audio[0].frame_ms), (1, 256, 20));
    }

    #[test]
    fn mistakes_are_named() {
        let base = "train_id = \"train-1\"\n[server]\nurl = \"http://127.0.0.1:8080\"\n";
        let minimal = format!("{base}[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n");
        let cfg = parse(&minimal).expect("the least configuration: defaults for the rest");
        assert_eq!((cfg.commands.timeout_ms, cfg.commands.max_running, cfg.telemetry.stale_after_ms), (2000, 4, 3000));
        let err = parse(base).expect_err("no camera");
        assert!(err.contains("at least one"), "{err}");
        let two_stdin = format!("{base}[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n[[camera]]\nid = 1\nsource = \"pipe\"\npath = \"-\"\n");
        assert!(parse(&two_stdin).expect_err("two stdin").contains("standard input"));
        let clash = format!("{base}[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n[[audio]]\nid = 0\nsource = \"pipe\"\npath = \"/a\"\n");
        assert!(parse(&clash).expect_err("clash").contains("unique"));
        let dup = format!("{base}[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"/p\"\n");
        assert!(parse(&dup).expect_err("dup").contains("unique"));
        let typo = format!("{base}[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\nfsp = 3\n");
        assert!(parse(&typo).expect_err("typo").contains("fsp"));
        let http = format!("{base}[[camera]]\nid = 0\nsource = \"rtsp\"\nurl = \"http://cam\"\n");
        assert!(parse(&http).expect_err("not rtsp").contains("rtsp://"));
    }

    #[test]
    fn server_lists() {
        let with = |server: &str| {
            format!("train_id = \"train-1\"\n[server]\n{server}\n[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n")
        };
        let cfg = parse(&with("url = \"http://10.0.0.1:8080, http://10.0.0.2:8080\"")).expect("a list");
        assert_eq!(cfg.server.url, "http://10.0.0.1:8080, http://10.0.0.2:8080");
        assert_eq!(cfg.server.server_order, railcast_uplink::ServerOrder::Listed);
        let spread = parse(&with("url = \"http://a:1,http://b:1\"\nserver_order = \"spread\"")).expect("spread");
        assert_eq!(spread.server.server_order, railcast_uplink::ServerOrder::Spread);
        assert!(parse(&with("url = \"http://a:1\"\nserver_order = \"random\"")).is_err());
        parse(&with("url = \"http://x\"\nquic = \"10.0.0.1:4433,10.0.0.2:4433\"")).expect("a QUIC list");
        let hole = parse(&with("url = \"http://10.0.0.1:8080,,http://10.0.0.2:8080\"")).expect_err("a hole");
        assert!(hole.contains("[server] url") && hole.contains("empty entry"), "{hole}");
        let empty = parse(&with("url = \"http://x\"\nquic = \" \"")).expect_err("empty");
        assert!(empty.contains("[server] quic") && empty.contains("empty"), "{empty}");
    }
}
