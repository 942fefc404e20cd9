//! `railcast-train-agent`: one real train's cameras and systems to railcast (docs/train-agent.md).
//! Reads the configuration, starts a reader per camera, and keeps the QUIC session to the server
//! (`railcast-uplink`, as the simulator does) until SIGTERM or Ctrl-C.

mod agent;
mod camera;
mod config;
mod hook;
mod ogg;
mod pipe;
mod rtsp;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use railcast_protocol::{Secret, TrainId};
use railcast_uplink::{connect, manifest::Manifest, UplinkConfig};

use crate::camera::{Camera, Output};
use crate::config::{Config, SourceConfig};

#[derive(Debug, Parser)]
#[command(name = "railcast-train-agent", version, about = "A real train's cameras and systems to railcast")]
struct Args {
    /// The configuration file (TOML; see deploy/train-agent.example.toml).
    #[arg(long, short)]
    config: PathBuf,
    /// Append one JSON line per frame sent (train, camera, seq, SHA-256, …) to this file.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// How long to wait for every camera's first SPS (its picture size) before connecting; a
    /// camera still silent then is announced with its configured size.
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    hello_wait: u64,
}

/// Frames waiting for the network: a few per camera.
const QUEUE: usize = 64;

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
    let cfg = Config::load(&args.config)?;
    let id = TrainId::new(cfg.train_id.clone()).context("train_id")?;
    let s = &cfg.server;
    let trust = connect::choose_trust(connect::TrustOptions {
        server: &s.url,
        quic: s.quic.as_deref(),
        ca: s.ca.as_deref(),
        server_name: None,
        cert_sha256: s.cert_sha256.as_deref(),
    })?;
    if matches!(trust, connect::Trust::Discovered) && !s.trust_discovered {
        anyhow::bail!(
            "the server's certificate is not pinned: set [server] ca (a PEM file or \"system\") or cert_sha256, or \
             trust_discovered = true for a demo (docs/security.md)"
        );
    }
    let source = connect::source(&s.url, s.quic.as_deref())?;
    let token = match (&s.token, &s.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("token_file {}", f.display()))?.trim().to_owned())
        }
        (None, None) => None,
    };
    if token.is_none() {
        tracing::warn!(train = %id, "no token ([server] token or token_file): a server requiring one refuses this train");
    }
    let manifest = match &args.manifest {
        Some(p) => Some(Arc::new(Manifest::create(p).with_context(|| format!("cannot create {}", p.display()))?)),
        None => None,
    };

    let connected = Arc::new(AtomicBool::new(false));
    let (tx, frames) = tokio::sync::mpsc::channel(QUEUE);
    let out = Output { tx, connected: Arc::clone(&connected) };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut cameras = Vec::new();
    let mut sources = tokio::task::JoinSet::new();
    for c in &cfg.cameras {
        match &c.source {
            SourceConfig::Pipe { path } => {
                let cam = Camera::new(c, "pipe");
                pipe::spawn(path.clone(), Arc::clone(&cam), out.clone())
                    .with_context(|| format!("{}: cannot start its reader", c.label()))?;
                cameras.push(cam);
            }
            SourceConfig::Rtsp { .. } => {
                let cam = Camera::new(c, "rtsp");
                let source = rtsp::RtspSource::from_config(&c.source)?;
                sources.spawn(rtsp::run(source, Arc::clone(&cam), out.clone(), stop_rx.clone()));
                cameras.push(cam);
            }
        }
    }
    for a in &cfg.audio {
        let SourceConfig::Pipe { path } = &a.source else { continue };
        let source = Camera::new_audio(a);
        pipe::spawn_audio(path.clone(), Arc::clone(&source), out.clone())
            .with_context(|| format!("audio {}: cannot start its reader", a.id))?;
        cameras.push(source);
    }
    drop(out);
    // The hello announces picture sizes: wait a little for the streams without a configured one
    // to say theirs.
    let deadline = Instant::now() + Duration::from_secs(args.hello_wait);
    while Instant::now() < deadline && cameras.iter().any(|c| c.audio_info().is_none() && !c.has_size()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in cameras.iter().filter(|c| c.audio_info().is_none() && !c.has_size()) {
        tracing::warn!(camera = c.id, "{}: no SPS within {} s; announcing {:?}", c.label, args.hello_wait, c.info());
    }

    let hook = cfg
        .commands
        .hook
        .clone()
        .map(|path| hook::Hook::new(path, cfg.train_id.clone(), cfg.hook_timeout(), cfg.commands.max_running));
    if hook.is_none() {
        tracing::warn!("no command hook ([commands] hook): every command is refused, operator_lost included");
    }
    let agent = Arc::new(agent::Agent::new(
        cameras,
        hook,
        cfg.telemetry.file.clone(),
        Duration::from_millis(cfg.telemetry.stale_after_ms),
        connected,
    ));
    let uplink = UplinkConfig {
        id,
        token: token.map(Secret),
        trust,
        max_payload: s.max_payload,
        idle_timeout: Duration::from_secs(6),
        software: concat!("railcast-train-agent/", env!("CARGO_PKG_VERSION")).into(),
        server_order: s.server_order,
    };
    let session = tokio::spawn(railcast_uplink::run(uplink, source, agent, frames, manifest, stop_rx));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), session).await;
    sources.abort_all();
    // Pipe readers may sit in a blocking read: the process exits without them.
    std::process::exit(0);
}
