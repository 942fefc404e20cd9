//! `webrtc-setup`: time to open a WebRTC session, from the offer request to both channels open,
//! as the client sees it. First N sequential connections (each closed before the next), then M
//! at once. One train streams meanwhile, so the server is not idle.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::Ctx;
use crate::report::{ms, Outcome, Target};
use crate::rtc_client;
use crate::server::Server;
use crate::stats::{quantile_sorted, Window};
use crate::train::{Train, TrainSpec};

#[derive(Debug, Serialize)]
pub struct SetupPhase {
    pub phase: &'static str,
    pub attempts: usize,
    pub opened: usize,
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    pub errors: Vec<String>,
}

impl SetupPhase {
    fn new(phase: &'static str, attempts: usize, mut us: Vec<u64>, errors: Vec<String>) -> Self {
        us.sort_unstable();
        Self {
            phase,
            attempts,
            opened: us.len(),
            p50_us: quantile_sorted(&us, 0.5),
            p90_us: quantile_sorted(&us, 0.9),
            p99_us: quantile_sorted(&us, 0.99),
            max_us: us.last().copied(),
            errors,
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

async fn phases(ctx: &Ctx, server: &Server) -> anyhow::Result<Vec<SetupPhase>> {
    let spec = TrainSpec::new("train-1".into(), 1, ctx.bitrate, ctx, server);
    let train = Train::start(&server.api.base, spec, Arc::new(Window::default())).await?;
    server.api.wait_train_online("train-1", Duration::from_secs(10)).await?;
    let (seq_n, conc_n) = (ctx.setup_sequential, ctx.setup_concurrent);
    let rcs = server.api.remote_controls(seq_n + conc_n, |_| Some("train-1".to_owned())).await?;

    // Warm-up (lazy statics, allocator pools) on both sides; not counted.
    if let Ok(c) = rtc_client::connect(&server.api, &rcs[0], TIMEOUT).await {
        c.close(&server.api).await;
    }

    eprintln!("[webrtc-setup] {seq_n} sequential …");
    let (mut times, mut errors) = (Vec::new(), Vec::new());
    for rc in &rcs[..seq_n] {
        match rtc_client::connect(&server.api, rc, TIMEOUT).await {
            Ok(c) => {
                times.push(c.setup.as_micros() as u64);
                c.close(&server.api).await;
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let sequential = SetupPhase::new("sequential", seq_n, times, errors);
    let _ = server.api.wait_no_sessions(Duration::from_secs(10)).await;

    eprintln!("[webrtc-setup] {conc_n} concurrent …");
    let results =
        futures_util::future::join_all(rcs[seq_n..].iter().map(|rc| rtc_client::connect(&server.api, rc, TIMEOUT)))
            .await;
    let (mut times, mut errors, mut open) = (Vec::new(), Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(c) => {
                times.push(c.setup.as_micros() as u64);
                open.push(c);
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    futures_util::future::join_all(open.into_iter().map(|c| c.close(&server.api))).await;
    let concurrent = SetupPhase::new("concurrent", conc_n, times, errors);
    if let Err(e) = train.stop().await {
        eprintln!("[webrtc-setup] train: {e:#}");
    }
    Ok(vec![sequential, concurrent])
}

pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(vec!["phase", "opened", "p50 ms", "p90 ms", "p99 ms", "max ms"]);
    let server = match Server::start(&ctx.server, "webrtc-setup").await {
        Ok(s) => s,
        Err(e) => {
            out.fail(format!("{e:#}"));
            return out;
        }
    };
    let result = phases(ctx, &server).await;
    server.stop().await;
    let phases = match result {
        Ok(p) => p,
        Err(e) => {
            out.fail(format!("{e:#}"));
            return out;
        }
    };
    for p in &phases {
        out.table.rows.push(vec![
            p.phase.into(),
            format!("{}/{}", p.opened, p.attempts),
            ms(p.p50_us),
            ms(p.p90_us),
            ms(p.p99_us),
            ms(p.max_us),
        ]);
        if p.opened == 0 && p.attempts > 0 {
            out.fail(format!("{}: no connection opened", p.phase));
        }
        for e in p.errors.iter().take(3) {
            out.errors.push(format!("{}: {e}", p.phase));
        }
        out.step(p);
    }
    for p in &phases {
        out.targets.push(Target::new(
            format!("setup p50 ({})", p.phase),
            "≤ 25 ms",
            format!("{} ms", ms(p.p50_us)),
            p.p50_us.map(|v| v <= 25_000),
        ));
        out.targets.push(Target::new(
            format!("setup p99 ({})", p.phase),
            "≤ 60 ms",
            format!("{} ms", ms(p.p99_us)),
            p.p99_us.map(|v| v <= 60_000),
        ));
        out.targets.push(Target::new(
            format!("setup success ({})", p.phase),
            "100 %",
            format!("{}/{}", p.opened, p.attempts),
            Some(p.opened == p.attempts),
        ));
    }
    out
}
