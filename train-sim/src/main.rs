//! `railcast-train-sim`: parse flags, start the trains, stop on SIGTERM/Ctrl-C or `--duration`.

use railcast_train_sim::{audio, connect, credentials, manifest, train, video};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use railcast_protocol::TrainId;

#[derive(Debug, Parser)]
#[command(name = "railcast-train-sim", version, about = "Simulated trains for railcast")]
struct Args {
    /// Server base URL (http:// or https://); the QUIC port is discovered from it (and, without
    /// --ca or --cert-sha256, the certificate's fingerprint: demo only, see docs/security.md).
    /// Several, comma-separated (the nodes of a cluster), for failover: a train tries them in
    /// order and, when one fails or its session is lost, the next one (round robin).
    #[arg(long, env = "RAILCAST_SERVER", default_value = "http://127.0.0.1:8080", value_name = "URL[,URL…]")]
    server: String,
    /// QUIC address (HOST:PORT) to use instead of discovery (needs --ca or --cert-sha256); several,
    /// comma-separated, for failover as with --server.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT…]")]
    quic: Option<String>,
    /// With several servers, which one each train tries first: `listed` (the first; the others
    /// are its standbys) or `spread` (one chosen by the train's id, the same at every start, so
    /// that a fleet given one list spreads over the nodes); failover goes on round the list.
    #[arg(long, default_value = "listed", value_name = "listed|spread")]
    server_order: railcast_uplink::ServerOrder,
    /// SHA-256 of the server's QUIC certificate to pin (colon-separated or plain hex); the
    /// fingerprint discovery returns is then ignored.
    #[arg(long, visible_alias = "fingerprint", env = "RAILCAST_CERT_SHA256", conflicts_with = "ca")]
    cert_sha256: Option<String>,
    /// Verify the server's certificates (QUIC, and HTTPS discovery) against a CA: a PEM file of
    /// CA certificates, or `system` for the operating system's trusted CAs.
    #[arg(long, env = "RAILCAST_CA")]
    ca: Option<String>,
    /// Name the server's certificate must carry, with --ca (default: the host of --quic, else
    /// of --server; with several servers, the host of the one being reached).
    #[arg(long, requires = "ca")]
    server_name: Option<String>,
    /// Number of trains.
    #[arg(long, default_value_t = 2)]
    trains: u16,
    /// Cameras per train.
    #[arg(long, default_value_t = 1)]
    cameras: u16,
    /// Train ids are PREFIX1, PREFIX2, …
    #[arg(long, default_value = "train-")]
    prefix: String,
    /// Number of the first train.
    #[arg(long, default_value_t = 1)]
    first: u32,
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 480)]
    height: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Target bitrate per camera, bits/s (suffixes k and M allowed: 800k, 4M).
    #[arg(long, default_value = "1M", value_parser = parse_rate)]
    bitrate: u32,
    /// Keyframe interval in frames (0: only the first frame and requested ones).
    #[arg(long, default_value_t = 30)]
    gop: u32,
    /// Largest video payload per packet, bytes.
    #[arg(long, default_value_t = railcast_protocol::DEFAULT_MAX_PAYLOAD)]
    max_payload: usize,
    /// Initial speed, km/h.
    #[arg(long, default_value_t = 60.0)]
    speed: f32,
    /// Cab microphone: `none` (no audio, as before audio existed) or `tone` (a two-note chime every
    /// 2 s, Opus 48 kHz mono, 20 ms packets: 50 packets/s, ≈ 32 kbit/s), audio source id 256.
    #[arg(long, value_enum, default_value_t = audio::AudioSource::None)]
    audio: audio::AudioSource,
    /// Write one JSON line per frame sent to this file.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Credentials file (TOML) with a `[trains]` table of train id → token, as the server's
    /// `auth_file` or its generated `credentials_out` (docs/security.md).
    #[arg(long, env = "RAILCAST_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Token for trains not listed in `--credentials`.
    #[arg(long, env = "RAILCAST_TRAIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Stop after this long (e.g. 30s); default: run until SIGTERM or Ctrl-C.
    #[arg(long, value_parser = humantime_parse)]
    duration: Option<Duration>,
}

fn parse_rate(s: &str) -> Result<u32, String> {
    let (num, mul) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1_000.0),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1_000_000.0),
            None => (s, 1.0),
        },
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a rate like 800k or 4M"))?;
    let bps = v * mul;
    if !(1.0..=f64::from(u32::MAX)).contains(&bps) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bps as u32)
}

fn humantime_parse(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// How the server's certificate is checked: --ca, --cert-sha256, or (demo) the fingerprint that
/// discovery returns.
fn trust(args: &Args) -> anyhow::Result<connect::Trust> {
    if args.quic.is_some() && args.ca.is_none() && args.cert_sha256.is_none() {
        anyhow::bail!("--quic needs --ca or --cert-sha256: without discovery nothing says which certificate to trust");
    }
    connect::choose_trust(connect::TrustOptions {
        server: &args.server,
        quic: args.quic.as_deref(),
        ca: args.ca.as_deref(),
        server_name: args.server_name.as_deref(),
        cert_sha256: args.cert_sha256.as_deref(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in files or `docker logs`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let video = video::VideoConfig {
        width: args.width,
        height: args.height,
        fps: args.fps,
        bitrate_bps: args.bitrate,
        gop: args.gop,
    };
    video.validate().context("video settings")?;
    if args.cameras == 0 || args.trains == 0 {
        anyhow::bail!("--trains and --cameras must be at least 1");
    }
    if !(1..=railcast_protocol::MAX_PAYLOAD_LIMIT).contains(&args.max_payload) {
        anyhow::bail!("--max-payload must be within 1..=65535");
    }
    let trust = trust(&args)?;
    let source = connect::source(&args.server, args.quic.as_deref())?;
    let manifest = match &args.manifest {
        Some(p) => {
            Some(Arc::new(manifest::Manifest::create(p).with_context(|| format!("cannot create {}", p.display()))?))
        }
        None => None,
    };
    let tokens = match &args.credentials {
        Some(p) => credentials::train_tokens(p)?,
        None => Default::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut trains = tokio::task::JoinSet::new();
    for n in 0..u32::from(args.trains) {
        let id = TrainId::new(format!("{}{}", args.prefix, args.first + n)).context("train id")?;
        let cfg = train::TrainConfig {
            id: id.clone(),
            cameras: args.cameras,
            video,
            max_payload: args.max_payload,
            idle_timeout: Duration::from_secs(6),
            initial_speed_kmh: args.speed,
            token: tokens.get(id.as_str()).cloned().or_else(|| args.token.clone()).map(railcast_protocol::Secret),
            trust: trust.clone(),
            audio: args.audio,
            server_order: args.server_order,
        };
        if cfg.token.is_none() {
            tracing::warn!(train = %cfg.id, "no token for this train (--credentials, --token): a server requiring one refuses it");
        }
        trains.spawn(train::run(cfg, source.clone(), manifest.clone(), stop_rx.clone()));
    }
    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = stop => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async { while trains.join_next().await.is_some() {} }).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("4M"), Ok(4_000_000));
        assert_eq!(parse_rate("800k"), Ok(800_000));
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert!(parse_rate("fast").is_err());
        assert_eq!(humantime_parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(humantime_parse("2m"), Ok(Duration::from_secs(120)));
    }
}
