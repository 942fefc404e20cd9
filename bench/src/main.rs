//! `railcast-bench`: load and benchmark tool for railcast. See docs/benchmarks.md.
//!
//! - [`cli`]: flags, scenario sizes (full and `--smoke`), pinning by re-exec.
//! - [`server`]: the real server as a child process, and its HTTP API.
//! - [`train`]: a synthetic QUIC train sending random frames sized for a bitrate.
//! - [`ws_client`], [`rtc_client`], [`wt_client`], [`whep_client`], [`mqtt_client`]: remote
//!   controls that read only packet headers (WHEP: RTP headers); `mqtt_client` also starts
//!   mosquitto for `mqtt-fanout`. [`rpc_client`]: a webrtc-rs peer that offers over JSON-RPC on
//!   `/rpc`, for `webrtc-setup`. [`stamped_udp`]: the WebTransport clients' UDP socket, which
//!   keeps the kernel's receive time. [`wt_fleet`]: `wt-fanout`'s WebTransport clients, every
//!   one's quinn-proto connection driven by one thread (`wt_client`, on quinn's tasks, with
//!   `--wt-client-tasks`). [`whep_fleet`]: `whep-fanout`'s viewers, webrtc-rs's sans-IO peer
//!   connections driven by one thread the same way (`whep_client`, async, with
//!   `--whep-client-tasks` or `--whep-player-interceptors`).
//! - [`stats`]: measurement window, latency histogram, whole-frame counting.
//! - [`procstat`]: CPU, RSS and machine figures from `/proc`.
//! - [`fanout`], [`floor`], [`dc_chromium`], [`cluster`], [`setup`], [`memory`], [`churn`],
//!   [`soak`], [`record`]: the scenarios; `cluster` runs `ws-fanout`'s step with the train on one
//!   relay node and the clients on another (through a nats-server it starts); `floor` is `ws-fanout` with railcast replaced by a relay that only copies bytes;
//!   `dc_chromium` drives Debian's Chromium (node + playwright-core, web-client/e2e/dc-throughput.mjs)
//!   as the one peer of a train sent faster than 400 Mbit/s.
//! - [`report`]: JSON lines and tables with the targets.

mod churn;
mod cli;
mod cluster;
mod dc_chromium;
mod fanout;
mod fleet;
mod floor;
mod hostprobe;
mod memory;
mod mqtt_client;
mod procstat;
mod record;
mod report;
mod rpc_client;
mod rtc_client;
mod server;
mod setup;
mod soak;
mod stamped_udp;
mod stats;
mod train;
mod whep_client;
mod whep_fleet;
mod ws_client;
mod ws_raw;
mod wt_client;
mod wt_fleet;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Ctx, Opts, BY_NAME_ONLY, SCENARIOS};
use crate::fanout::Transport;
use crate::report::{Env, Outcome, ScenarioReport};
use crate::server::ServerOpts;

fn main() -> ExitCode {
    let opts = Opts::parse();
    if opts.floor_relay {
        return floor::relay_main();
    }
    cli::reexec_if_needed(opts.load_cpu.as_deref());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("railcast-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("railcast-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn git_rev() -> Option<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out =
        std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Run the chosen scenarios; true when every one ran.
async fn run(opts: Opts) -> anyhow::Result<bool> {
    let bin = server::find_server_bin(opts.server_bin.as_deref())?;
    let log_dir = opts
        .log_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("railcast-bench-{}", std::process::id())));
    let server_opts = ServerOpts {
        bin: bin.clone(),
        cpu: opts.server_cpu.clone(),
        args: opts.server_arg.clone(),
        log_filter: opts.server_log.clone(),
        log_dir: log_dir.clone(),
    };
    let ctx = Ctx::new(&opts, server_opts);
    let env = Env {
        machine: procstat::Machine::read(),
        host_probe: hostprobe::HostProbe::take(if opts.smoke { 2_000 } else { 20_000 }),
        git: git_rev(),
        profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        server_bin: bin.display().to_string(),
        server_cpu: opts.server_cpu.clone(),
        load_cpu: opts.load_cpu.clone(),
        smoke: opts.smoke,
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let all = opts.scenarios.is_empty() || opts.scenarios.iter().any(|s| s == "all");
    let mut chosen: Vec<&str> = SCENARIOS
        .iter()
        .chain(BY_NAME_ONLY)
        .copied()
        .filter(|s| (all && SCENARIOS.contains(s)) || opts.scenarios.iter().any(|o| o == s))
        .collect();
    chosen.dedup();
    if !opts.json_only {
        eprint!("{}", report::render_env(&env));
        eprintln!("server logs in {}", log_dir.display());
    }

    let mut reports = Vec::new();
    for name in chosen {
        let started = Instant::now();
        let scenario = async {
            match name {
                "ws-fanout" => fanout::fanout(&ctx, Transport::WebSocket).await,
                "ws-floor" => floor::run(&ctx).await,
                "dc-fanout" => fanout::fanout(&ctx, Transport::WebRtc).await,
                "wt-fanout" => fanout::fanout(&ctx, Transport::WebTransport).await,
                "whep-fanout" => fanout::fanout(&ctx, Transport::Whep).await,
                "mqtt-fanout" => fanout::fanout(&ctx, Transport::Mqtt).await,
                "dc-chromium" => dc_chromium::run(&ctx).await,
                "many-trains" => fanout::many_trains(&ctx).await,
                "cluster" => cluster::run(&ctx).await,
                "webrtc-setup" => setup::run(&ctx).await,
                "memory" => memory::run(&ctx).await,
                "soak" => soak::run(&ctx).await,
                "record" => record::run(&ctx).await,
                _ => churn::run(&ctx).await,
            }
        };
        // Every scenario is bounded in time, whatever happens inside it.
        let budget = if name == "soak" {
            ctx.soak_duration + Duration::from_secs(5 * 60)
        } else if opts.smoke {
            Duration::from_secs(40)
        } else {
            Duration::from_secs(30 * 60)
        };
        let outcome: Outcome = match tokio::time::timeout(budget, scenario).await {
            Ok(o) => o,
            Err(_) => {
                let mut o = Outcome::new(Vec::new());
                o.fail(format!("did not finish within {budget:?}"));
                o
            }
        };
        let mut targets = outcome.targets;
        if opts.smoke {
            // Tiny sizes say nothing about the targets.
            for t in &mut targets {
                t.pass = None;
            }
        }
        let r = ScenarioReport {
            scenario: name.to_owned(),
            ok: outcome.ok,
            errors: outcome.errors,
            wall_s: started.elapsed().as_secs_f64(),
            env: env.clone(),
            steps: outcome.steps,
            targets,
            table: outcome.table,
        };
        println!("{}", serde_json::to_string(&r)?);
        reports.push(r);
    }
    if !opts.json_only {
        let mut text = report::render_env(&env);
        for r in &reports {
            text.push_str(&report::render(r));
        }
        println!("{text}");
    }
    Ok(reports.iter().all(|r| r.ok))
}
