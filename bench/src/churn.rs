//! `churn`: N connect/disconnect cycles per transport against a server with one streaming train;
//! server RSS, tasks (`railcast_tokio_alive_tasks`), threads and descriptors before and after.
//! A cycle opens a session for one remote control mapped to the train, waits for the welcome
//! (and, on WebSocket, the first video packet), and closes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::Ctx;
use crate::fanout::Transport;
use crate::procstat;
use crate::report::{ms, Outcome, Target};
use crate::rtc_client;
use crate::server::Server;
use crate::stats::{quantile_sorted, Window};
use crate::train::{Train, TrainSpec};
use crate::ws_client;

#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Usage {
    pub rss_kb: u64,
    pub tasks: Option<f64>,
    pub threads: u64,
    pub fds: u64,
}

#[derive(Debug, Serialize)]
pub struct ChurnRun {
    pub transport: Transport,
    pub cycles: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub cycle_p50_us: Option<u64>,
    pub cycle_p99_us: Option<u64>,
    pub before: Usage,
    pub after: Usage,
    pub rss_change_pct: f64,
    pub wall_s: f64,
}

async fn usage(server: &Server) -> Usage {
    let tasks = server.api.metrics().await.ok().and_then(|m| m.sum("railcast_tokio_alive_tasks"));
    Usage {
        rss_kb: server.rss_kb(),
        tasks,
        threads: procstat::status_field(server.pid(), "Threads").unwrap_or(0),
        fds: procstat::fds(server.pid()),
    }
}

async fn cycle(server: &Server, transport: Transport, rc: &str) -> anyhow::Result<()> {
    match transport {
        Transport::WebTransport | Transport::Whep | Transport::Mqtt => {
            anyhow::bail!("churn covers WebSocket and WebRTC data channels")
        }
        Transport::WebSocket => {
            let mut ws = ws_client::connect(&server.ws_url(rc)).await?;
            ws_client::wait_welcome(&mut ws, true).await?;
            ws_client::close(ws).await;
        }
        Transport::WebRtc => {
            let c = rtc_client::connect(&server.api, rc, Duration::from_secs(10)).await?;
            c.spawn_drain_video();
            let r = c.wait_welcome(Duration::from_secs(5)).await;
            c.close(&server.api).await;
            r?;
        }
    }
    Ok(())
}

async fn settle(server: &Server) -> anyhow::Result<()> {
    server.api.wait_no_sessions(Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

async fn churn(ctx: &Ctx, server: &Server, transport: Transport) -> anyhow::Result<ChurnRun> {
    let spec = TrainSpec::new("train-1".into(), 1, ctx.bitrate, ctx, server);
    let train = Train::start(&server.api.base, spec, Arc::new(Window::default())).await?;
    server.api.wait_train_online("train-1", Duration::from_secs(10)).await?;
    let rc = server.api.remote_control("churn", Some("train-1")).await?;
    for _ in 0..ctx.churn_warmup {
        cycle(server, transport, &rc).await?;
    }
    settle(server).await?;
    let before = usage(server).await;
    let started = Instant::now();
    let (mut times, mut failed, mut first_error) = (Vec::new(), 0, None);
    for i in 0..ctx.churn_cycles {
        let t = Instant::now();
        match cycle(server, transport, &rc).await {
            Ok(()) => times.push(t.elapsed().as_micros() as u64),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("cycle {i}: {e:#}"));
            }
        }
        if (i + 1) % 250 == 0 {
            eprintln!("[churn] {transport:?}: {} cycles", i + 1);
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    settle(server).await?;
    let after = usage(server).await;
    let _ = train.stop().await;
    times.sort_unstable();
    Ok(ChurnRun {
        transport,
        cycles: ctx.churn_cycles,
        failed,
        first_error,
        cycle_p50_us: quantile_sorted(&times, 0.5),
        cycle_p99_us: quantile_sorted(&times, 0.99),
        before,
        after,
        rss_change_pct: (after.rss_kb as f64 - before.rss_kb as f64) / (before.rss_kb.max(1) as f64) * 100.0,
        wall_s,
    })
}

pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(vec![
        "transport",
        "cycles",
        "failed",
        "cycle p50 ms",
        "cycle p99 ms",
        "RSS kB before→after",
        "RSS Δ",
        "tasks",
        "threads",
        "fds",
    ]);
    for transport in [Transport::WebSocket, Transport::WebRtc] {
        let name = match transport {
            Transport::WebSocket => "churn-ws",
            Transport::WebRtc => "churn-dc",
            Transport::WebTransport => "churn-wt",
            Transport::Whep => "churn-whep",
            Transport::Mqtt => "churn-mqtt",
        };
        eprintln!("[churn] {transport:?}: {} cycles …", ctx.churn_cycles);
        let server = match Server::start(&ctx.server, name).await {
            Ok(s) => s,
            Err(e) => {
                out.fail(format!("{e:#}"));
                continue;
            }
        };
        let r = churn(ctx, &server, transport).await;
        server.stop().await;
        match r {
            Ok(c) => {
                let opt = |v: Option<f64>| v.map(|t| format!("{t:.0}")).unwrap_or_else(|| "?".into());
                out.table.rows.push(vec![
                    format!("{transport:?}"),
                    c.cycles.to_string(),
                    c.failed.to_string(),
                    ms(c.cycle_p50_us),
                    ms(c.cycle_p99_us),
                    format!("{}→{}", c.before.rss_kb, c.after.rss_kb),
                    format!("{:+.1}%", c.rss_change_pct),
                    format!("{}→{}", opt(c.before.tasks), opt(c.after.tasks)),
                    format!("{}→{}", c.before.threads, c.after.threads),
                    format!("{}→{}", c.before.fds, c.after.fds),
                ]);
                out.targets.push(Target::new(
                    format!("{transport:?} churn: RSS after vs before"),
                    "within 5 %",
                    format!("{:+.1} %", c.rss_change_pct),
                    Some(c.rss_change_pct.abs() <= 5.0),
                ));
                out.targets.push(Target::new(
                    format!("{transport:?} churn: tasks after vs before"),
                    "back to baseline (no target in the issue; for reference)",
                    format!("{}→{}", opt(c.before.tasks), opt(c.after.tasks)),
                    c.before.tasks.zip(c.after.tasks).map(|(b, a)| a <= b + 2.0),
                ));
                if c.failed == c.cycles {
                    out.fail(format!(
                        "{transport:?}: every cycle failed: {}",
                        c.first_error.clone().unwrap_or_default()
                    ));
                } else if let Some(e) = &c.first_error {
                    out.errors.push(format!("{transport:?}: {} of {} cycles failed; first: {e}", c.failed, c.cycles));
                }
                out.step(&c);
            }
            Err(e) => out.fail(format!("{transport:?}: {e:#}")),
        }
    }
    out
}
