//! `webrtc-setup`: time to open a WebRTC session, from the offer to both channels open, as the
//! client sees it, for each signaling flow (`--signaling`): the REST flow (the server offers:
//! offer request → both channels open) and JSON-RPC over `/rpc` (the client offers: offer sent →
//! both channels open). For each, a fresh server, first N sequential connections (each closed
//! before the next), then M at once. One train streams meanwhile, so the server is not idle.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Ctx, Signaling};
use crate::report::{ms, Outcome, Target};
use crate::server::{Api, Server};
use crate::stats::{quantile_sorted, Window};
use crate::train::{Train, TrainSpec};
use crate::{rpc_client, rtc_client};

#[derive(Debug, Serialize)]
pub struct SetupPhase {
    pub signaling: &'static str,
    pub phase: &'static str,
    pub attempts: usize,
    pub opened: usize,
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    /// Offer → the answer in hand and accepted: REST, the answer's POST acknowledged (two round
    /// trips); RPC, the `offer` call's result (one).
    pub signaled_p50_us: Option<u64>,
    pub signaled_p99_us: Option<u64>,
    /// RPC only: WebSocket connect started → both channels open (connect, announce, the peer and
    /// its ICE gathering before the offer, then the setup).
    pub total_p50_us: Option<u64>,
    pub total_p99_us: Option<u64>,
    pub errors: Vec<String>,
}

/// What one connection measured.
#[derive(Debug, Default, Clone, Copy)]
struct Timing {
    setup_us: u64,
    signaled_us: u64,
    total_us: Option<u64>,
}

impl SetupPhase {
    fn new(signaling: Signaling, phase: &'static str, attempts: usize, t: &[Timing], errors: Vec<String>) -> Self {
        let sorted = |f: &dyn Fn(&Timing) -> Option<u64>| {
            let mut v: Vec<u64> = t.iter().filter_map(f).collect();
            v.sort_unstable();
            v
        };
        let us = sorted(&|t| Some(t.setup_us));
        let signaled = sorted(&|t| Some(t.signaled_us));
        let total = sorted(&|t| t.total_us);
        Self {
            signaling: signaling.name(),
            phase,
            attempts,
            opened: us.len(),
            p50_us: quantile_sorted(&us, 0.5),
            p90_us: quantile_sorted(&us, 0.9),
            p99_us: quantile_sorted(&us, 0.99),
            max_us: us.last().copied(),
            signaled_p50_us: quantile_sorted(&signaled, 0.5),
            signaled_p99_us: quantile_sorted(&signaled, 0.99),
            total_p50_us: quantile_sorted(&total, 0.5),
            total_p99_us: quantile_sorted(&total, 0.99),
            errors,
        }
    }
}

/// An open connection of either flow.
enum Conn {
    Rest(rtc_client::RtcConn),
    Rpc(rpc_client::RpcConn),
}

impl Conn {
    async fn open(api: &Api, signaling: Signaling, i: usize, rc: &str) -> anyhow::Result<(Conn, Timing)> {
        match signaling {
            Signaling::Rest => {
                let c = rtc_client::connect(api, rc, TIMEOUT).await?;
                let t = Timing {
                    setup_us: c.setup.as_micros() as u64,
                    signaled_us: c.signaled.as_micros() as u64,
                    total_us: None,
                };
                Ok((Conn::Rest(c), t))
            }
            Signaling::Rpc => {
                let c = rpc_client::connect(api, &format!("bench-{i}"), rc, TIMEOUT).await?;
                let t = Timing {
                    setup_us: c.setup.as_micros() as u64,
                    signaled_us: c.answered.as_micros() as u64,
                    total_us: Some(c.total.as_micros() as u64),
                };
                Ok((Conn::Rpc(c), t))
            }
        }
    }

    async fn close(self, api: &Api) {
        match self {
            Conn::Rest(c) => c.close(api).await,
            Conn::Rpc(c) => c.close().await,
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

async fn phases(ctx: &Ctx, server: &Server, signaling: Signaling) -> anyhow::Result<Vec<SetupPhase>> {
    let tag = format!("[webrtc-setup {}]", signaling.name());
    let spec = TrainSpec::new("train-1".into(), 1, ctx.bitrate, ctx, server);
    let train = Train::start(&server.api.base, spec, Arc::new(Window::default())).await?;
    server.api.wait_train_online("train-1", Duration::from_secs(10)).await?;
    let (seq_n, conc_n) = (ctx.setup_sequential, ctx.setup_concurrent);
    let rcs = server.api.remote_controls(seq_n + conc_n, |_| Some("train-1".to_owned())).await?;
    let api = &server.api;

    // Warm-up (lazy statics, allocator pools) on both sides; not counted.
    if let Some(rc) = rcs.first() {
        if let Ok((c, _)) = Conn::open(api, signaling, 0, rc).await {
            c.close(api).await;
        }
    }

    eprintln!("{tag} {seq_n} sequential …");
    let (mut times, mut errors) = (Vec::new(), Vec::new());
    for (i, rc) in rcs[..seq_n].iter().enumerate() {
        match Conn::open(api, signaling, i + 1, rc).await {
            Ok((c, t)) => {
                times.push(t);
                c.close(api).await;
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let sequential = SetupPhase::new(signaling, "sequential", seq_n, &times, errors);
    let _ = api.wait_no_sessions(Duration::from_secs(10)).await;

    eprintln!("{tag} {conc_n} concurrent …");
    let opening = rcs[seq_n..].iter().enumerate().map(|(i, rc)| Conn::open(api, signaling, seq_n + 1 + i, rc));
    let results = futures_util::future::join_all(opening).await;
    let (mut times, mut errors, mut open) = (Vec::new(), Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok((c, t)) => {
                times.push(t);
                open.push(c);
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    futures_util::future::join_all(open.into_iter().map(|c| c.close(api))).await;
    let concurrent = SetupPhase::new(signaling, "concurrent", conc_n, &times, errors);
    if let Err(e) = train.stop().await {
        eprintln!("{tag} train: {e:#}");
    }
    Ok(vec![sequential, concurrent])
}

/// Both phases of one signaling flow, on a fresh server.
async fn flow(ctx: &Ctx, signaling: Signaling) -> anyhow::Result<Vec<SetupPhase>> {
    let server = Server::start(&ctx.server, &format!("webrtc-setup-{}", signaling.name())).await?;
    let result = phases(ctx, &server, signaling).await;
    server.stop().await;
    result
}

pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(vec![
        "signaling",
        "phase",
        "opened",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "signaled p50 ms",
        "from connect p50 ms",
    ]);
    let mut phases = Vec::new();
    for &signaling in &ctx.setup_signaling {
        match flow(ctx, signaling).await {
            Ok(p) => phases.extend(p),
            Err(e) => out.fail(format!("{}: {e:#}", signaling.name())),
        }
    }
    for p in &phases {
        out.table.rows.push(vec![
            p.signaling.into(),
            p.phase.into(),
            format!("{}/{}", p.opened, p.attempts),
            ms(p.p50_us),
            ms(p.p90_us),
            ms(p.p99_us),
            ms(p.max_us),
            ms(p.signaled_p50_us),
            ms(p.total_p50_us),
        ]);
        if p.opened == 0 && p.attempts > 0 {
            out.fail(format!("{} {}: no connection opened", p.signaling, p.phase));
        }
        for e in p.errors.iter().take(3) {
            out.errors.push(format!("{} {}: {e}", p.signaling, p.phase));
        }
        out.step(p);
    }
    for p in &phases {
        let what = format!("{}, {}", p.signaling, p.phase);
        out.targets.push(Target::new(
            format!("setup p50 ({what})"),
            "≤ 25 ms",
            format!("{} ms", ms(p.p50_us)),
            p.p50_us.map(|v| v <= 25_000),
        ));
        out.targets.push(Target::new(
            format!("setup p99 ({what})"),
            "≤ 60 ms",
            format!("{} ms", ms(p.p99_us)),
            p.p99_us.map(|v| v <= 60_000),
        ));
        out.targets.push(Target::new(
            format!("setup success ({what})"),
            "100 %",
            format!("{}/{}", p.opened, p.attempts),
            Some(p.opened == p.attempts),
        ));
    }
    out
}
