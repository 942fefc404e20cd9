//! `memory`: server RSS per idle client. A fresh server per transport, no train; the remote
//! controls (unmapped) are created before the baseline so that only the sessions are counted.
//! RSS is sampled at each client count and the slope fitted by least squares.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::watch;

use crate::cli::Ctx;
use crate::fanout::Transport;
use crate::report::{Outcome, Target};
use crate::rtc_client::{self, RtcConn};
use crate::server::Server;
use crate::ws_client;

#[derive(Debug, Serialize)]
pub struct MemoryRun {
    pub transport: Transport,
    /// (clients, server RSS kB)
    pub samples: Vec<(usize, u64)>,
    pub kb_per_client: Option<f64>,
}

/// Least-squares slope of y over x.
fn slope(points: &[(usize, u64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 as f64 - mx) * (p.1 as f64 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Median of a few RSS readings, once the server has settled.
async fn settled_rss(server: &Server) -> u64 {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(server.rss_kb());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

async fn measure(ctx: &Ctx, server: &Server, transport: Transport) -> anyhow::Result<MemoryRun> {
    let levels = &ctx.idle_clients;
    let max = levels.iter().copied().max().unwrap_or(0);
    let rcs = server.api.remote_controls(max, |_| None).await?;
    // Warm-up: one session of the transport, opened and closed, so that lazily built state is
    // not charged to the first level.
    match transport {
        Transport::WebTransport | Transport::Whep | Transport::Mqtt => {
            anyhow::bail!("memory covers WebSocket and WebRTC data channels")
        }
        Transport::WebSocket => {
            if let Some(rc) = rcs.first() {
                let mut ws = ws_client::connect(&server.ws_url(rc)).await?;
                ws_client::wait_welcome(&mut ws, false).await?;
                ws_client::close(ws).await;
            }
        }
        Transport::WebRtc => {
            if let Some(rc) = rcs.first() {
                rtc_client::connect(&server.api, rc, Duration::from_secs(10)).await?.close(&server.api).await;
            }
        }
    }
    server.api.wait_no_sessions(Duration::from_secs(10)).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut ws_tasks = Vec::new();
    let mut peers: Vec<RtcConn> = Vec::new();
    let mut samples = Vec::new();
    let mut open = 0usize;
    for &level in levels {
        let batch = &rcs[open..level];
        match transport {
            Transport::WebTransport | Transport::Whep | Transport::Mqtt => {
                anyhow::bail!("memory covers WebSocket and WebRTC data channels")
            }
            Transport::WebSocket => {
                let conns: Vec<anyhow::Result<ws_client::Ws>> = stream::iter(batch)
                    .map(|rc| async move {
                        let mut ws = ws_client::connect(&server.ws_url(rc)).await?;
                        ws_client::wait_welcome(&mut ws, false).await?;
                        Ok(ws)
                    })
                    .buffer_unordered(ctx.ws_connect_concurrency)
                    .collect()
                    .await;
                for ws in conns {
                    let warm = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                    let window = std::sync::Arc::new(crate::stats::Window::default());
                    ws_tasks.push(tokio::spawn(ws_client::run(ws?, window, warm, stop_rx.clone())));
                }
            }
            Transport::WebRtc => {
                let conns: Vec<anyhow::Result<RtcConn>> = stream::iter(batch)
                    .map(|rc| rtc_client::connect(&server.api, rc, Duration::from_secs(20)))
                    .buffer_unordered(ctx.rtc_connect_concurrency)
                    .collect()
                    .await;
                for c in conns {
                    let c = c?;
                    c.spawn_drain();
                    peers.push(c);
                }
            }
        }
        open = level;
        let rss = settled_rss(server).await;
        eprintln!("[memory] {transport:?}: {level} idle clients, server RSS {rss} kB");
        samples.push((level, rss));
    }
    let _ = stop_tx.send(true);
    for t in ws_tasks {
        let _ = t.await;
    }
    stream::iter(peers)
        .for_each_concurrent(32, |c| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.pc.close()).await;
        })
        .await;
    let kb_per_client = slope(&samples);
    Ok(MemoryRun { transport, samples, kb_per_client })
}

pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(vec!["transport", "idle clients → server RSS kB", "KB per client"]);
    for (transport, target_kb, label) in
        [(Transport::WebSocket, 16.0, "idle WebSocket client"), (Transport::WebRtc, 128.0, "idle WebRTC peer")]
    {
        let name = match transport {
            Transport::WebSocket => "memory-ws",
            Transport::WebRtc => "memory-dc",
            Transport::WebTransport => "memory-wt",
            Transport::Whep => "memory-whep",
            Transport::Mqtt => "memory-mqtt",
        };
        let server = match Server::start(&ctx.server, name).await {
            Ok(s) => s,
            Err(e) => {
                out.fail(format!("{e:#}"));
                continue;
            }
        };
        let r = measure(ctx, &server, transport).await;
        server.stop().await;
        match r {
            Ok(m) => {
                out.table.rows.push(vec![
                    label.into(),
                    m.samples.iter().map(|(n, kb)| format!("{n}→{kb}")).collect::<Vec<_>>().join(", "),
                    m.kb_per_client.map(|k| format!("{k:.1}")).unwrap_or_else(|| "-".into()),
                ]);
                out.targets.push(Target::new(
                    format!("RSS per {label}"),
                    format!("≤ {target_kb:.0} KB"),
                    m.kb_per_client.map(|k| format!("{k:.1} KB")).unwrap_or_else(|| "-".into()),
                    m.kb_per_client.map(|k| k <= target_kb),
                ));
                if m.kb_per_client.is_none() {
                    out.fail(format!("{label}: fewer than two client counts, no slope"));
                }
                out.step(&m);
            }
            Err(e) => out.fail(format!("{label}: {e:#}")),
        }
    }
    out
}
