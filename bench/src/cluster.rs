//! `cluster` (issue 25, docs/cluster.md): what the NATS hop adds when viewers watch a train that
//! another relay node owns.
//!
//! For each client count N, two steps of one synthetic train (the run's bitrate, one camera):
//! - **single**: `ws-fanout`'s step as it is: one server without a cluster, the train and N
//!   WebSocket clients on it;
//! - **cluster**: a nats-server (JetStream on) started here, node A (the train's, the *owner*)
//!   and node B (the *mirror*), both with `--cluster-nats-url`; the train connects to A, the N
//!   clients watch it on B, which lists it with ingest `cluster` and gets its packets through NATS.
//!
//! Both steps measure the same window (capture → client latency, whole frames delivered, CPU
//! from `/proc`). The cost compared is the serving node's CPU per Gbit delivered to its clients
//! (single: the one server; cluster: B), so that the machine's two cores need not run out to show
//! whether capacity grows with nodes; A's CPU (ingest and publishing to NATS, no viewers) and
//! nats-server's are reported beside it, and the whole cluster's CPU per Gbit too.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::cli::Ctx;
use crate::fanout::{self, FanoutStep, Nodes, Transport};
use crate::report::{ms, pct, Outcome, Target};
use crate::server::Server;

/// The targets: latency added by the hop, and the serving node's cost against a single
/// node's.
const P50_ADDED_US: i64 = 1_000;
const P99_ADDED_US: i64 = 3_000;
const CPU_RATIO: f64 = 1.25;

/// Where a nats-server is: `$RAILCAST_VENV/bin`, then `~/.cache/railcast-venv/bin` (the newer
/// one scripts/setup.sh installs), then Debian's.
pub fn nats_binary() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("RAILCAST_VENV") {
        candidates.push(PathBuf::from(venv).join("bin/nats-server"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/railcast-venv/bin/nats-server"));
    }
    candidates.extend(["/usr/sbin/nats-server", "/usr/bin/nats-server"].map(PathBuf::from));
    candidates.into_iter().find(|p| p.is_file())
}

/// A nats-server on a free loopback port, JetStream on with its store under the log directory;
/// pinned like the servers (`--server-cpu`) so the relay's core carries the whole cluster.
struct Nats {
    child: Child,
    pid: u32,
    port: u16,
    store: PathBuf,
    log: PathBuf,
}

impl Nats {
    async fn start(bin: &Path, dir: &Path, label: &str, cpu: Option<&str>) -> anyhow::Result<Nats> {
        std::fs::create_dir_all(dir).ok();
        let port = testkit::mqtt::free_port();
        let log = dir.join(format!("nats-{label}.log"));
        let store = dir.join(format!("nats-{label}-store"));
        let _ = std::fs::remove_dir_all(&store);
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let out = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawn {}", bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("nats-server exited at once"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let exited = child.try_wait()?.is_some();
            if exited || tokio::time::Instant::now() > deadline {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = child.start_kill();
                bail!(
                    "nats-server ({}) did not listen on 127.0.0.1:{port}{}; log {}:\n{tail}",
                    bin.display(),
                    if exited { ", it exited" } else { " within 10 s" },
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Nats { child, pid, port, store, log })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// One client count: the single-node step, the cluster step, and the comparison.
#[derive(Debug, Serialize)]
pub struct ClusterStep {
    pub clients: usize,
    pub nats_server: String,
    pub single: FanoutStep,
    pub cluster: FanoutStep,
    /// Client latency, cluster (viewers on B) − single node, µs.
    pub p50_added_us: Option<i64>,
    pub p99_added_us: Option<i64>,
    /// CPU seconds per Gbit delivered to the clients: the single server's, node B's, and the
    /// whole cluster's (A + B + nats-server).
    pub single_cpu_s_per_gbit: Option<f64>,
    pub serving_cpu_s_per_gbit: Option<f64>,
    pub cluster_total_cpu_s_per_gbit: Option<f64>,
    /// `serving_cpu_s_per_gbit ÷ single_cpu_s_per_gbit`.
    pub serving_cpu_ratio: Option<f64>,
    /// Over the cluster step's window, % of one core: node A (ingest and publishing to NATS; no
    /// viewers of its own) and nats-server.
    pub owner_cpu_pct: Option<f64>,
    pub nats_cpu_pct: Option<f64>,
}

/// CPU seconds per Gbit delivered: (% of one core ÷ 100) ÷ (Gbit/s).
fn cpu_s_per_gbit(cpu_pct: f64, s: &FanoutStep) -> Option<f64> {
    (s.delivered_mbit_s > 0.0).then(|| cpu_pct / 100.0 / (s.delivered_mbit_s / 1000.0))
}

fn other(s: &FanoutStep, name: &str) -> Option<f64> {
    s.others_cpu_pct.iter().find(|o| o.name == name).map(|o| o.cpu_pct)
}

fn added(a: Option<u64>, b: Option<u64>) -> Option<i64> {
    Some(b? as i64 - a? as i64)
}

fn signed_ms(us: Option<i64>) -> String {
    us.map(|u| format!("{:+.2}", u as f64 / 1000.0)).unwrap_or_else(|| "-".into())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

pub const HEADERS: &[&str] = &[
    "path",
    "clients",
    "conn",
    "warm",
    "Mbit/s out",
    "delivered",
    "missing",
    "srv drops",
    "p50 ms",
    "p99 ms",
    "max ms",
    "serving CPU%",
    "CPU-s/Gbit",
    "owner CPU%",
    "nats CPU%",
    "all CPU-s/Gbit",
    "load CPU%",
];

fn row(path: &str, s: &FanoutStep, owner: Option<f64>, nats: Option<f64>, all: Option<f64>) -> Vec<String> {
    vec![
        path.to_owned(),
        s.clients.to_string(),
        s.connected.to_string(),
        s.warm.to_string(),
        format!("{:.0}", s.delivered_mbit_s),
        pct(s.delivered_fraction),
        s.frames_missing.to_string(),
        s.server_frames_dropped.map(|d| format!("{d:.0}")).unwrap_or_else(|| "-".into()),
        ms(s.latency.p50_us),
        ms(s.latency.p99_us),
        ms(s.latency.max_us),
        format!("{:.1}", s.server_cpu_pct),
        opt(cpu_s_per_gbit(s.server_cpu_pct, s), 3),
        opt(owner, 1),
        opt(nats, 1),
        opt(all, 3),
        format!("{:.0}", s.load_cpu_pct),
    ]
}

/// The cluster step: nats-server, nodes A and B, the train on A, the clients on B.
async fn cluster_step(ctx: &Ctx, nats_bin: &Path, n: usize) -> anyhow::Result<FanoutStep> {
    let label = format!("cluster-{n}");
    let nats = Nats::start(nats_bin, &ctx.server.log_dir, &label, ctx.server.cpu.as_deref()).await?;
    let node = |id: &str| {
        let mut o = ctx.server.clone();
        o.args.extend(["--cluster-nats-url".to_owned(), nats.url(), "--cluster-node-id".to_owned(), id.to_owned()]);
        o
    };
    let a = match Server::start(&node("node-a"), &format!("{label}-a")).await {
        Ok(a) => a,
        Err(e) => {
            nats.stop().await;
            return Err(e);
        }
    };
    let b = match Server::start(&node("node-b"), &format!("{label}-b")).await {
        Ok(b) => b,
        Err(e) => {
            a.stop().await;
            nats.stop().await;
            return Err(e);
        }
    };
    let nodes = Nodes { ingest: &a, serve: &b, others: vec![("owner", a.pid), ("nats", nats.pid)] };
    let result = fanout::run_step(ctx, &nodes, None, Transport::WebSocket, 1, 1, n).await;
    let result = result.map_err(|e| anyhow!("{e:#} (nats-server log {})", nats.log.display()));
    b.stop().await;
    a.stop().await;
    nats.stop().await;
    result
}

/// `cluster`: for each client count, the single-node step, then the cluster step.
pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(HEADERS.to_vec());
    let Some(nats_bin) = nats_binary() else {
        out.fail(
            "cluster needs nats-server ($RAILCAST_VENV/bin, ~/.cache/railcast-venv/bin, /usr/sbin or /usr/bin): \
             run scripts/setup.sh or apt-get install nats-server",
        );
        return out;
    };
    let version = std::process::Command::new(&nats_bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let nats_server = format!("{} ({version})", nats_bin.display());
    eprintln!("[cluster] nats-server {nats_server}");
    let mut steps = Vec::new();
    for &n in &ctx.cluster_clients {
        eprintln!("[cluster] {n} clients: single node …");
        let single = match fanout::step(ctx, Transport::WebSocket, 1, 1, n, &format!("cluster-single-{n}")).await {
            Ok(s) => s,
            Err(e) => {
                out.fail(format!("{n} clients, single node: {e:#}"));
                continue;
            }
        };
        fanout::check(&mut out, &single);
        eprintln!("[cluster] {n} clients: train on node A, clients on node B …");
        let cluster = match cluster_step(ctx, &nats_bin, n).await {
            Ok(s) => s,
            Err(e) => {
                out.fail(format!("{n} clients, cluster: {e:#}"));
                continue;
            }
        };
        fanout::check(&mut out, &cluster);
        let (owner, nats) = (other(&cluster, "owner"), other(&cluster, "nats"));
        let single_cpu = cpu_s_per_gbit(single.server_cpu_pct, &single);
        let serving_cpu = cpu_s_per_gbit(cluster.server_cpu_pct, &cluster);
        let total = cpu_s_per_gbit(cluster.server_cpu_pct + owner.unwrap_or(0.0) + nats.unwrap_or(0.0), &cluster);
        let s = ClusterStep {
            clients: n,
            nats_server: nats_server.clone(),
            p50_added_us: added(single.latency.p50_us, cluster.latency.p50_us),
            p99_added_us: added(single.latency.p99_us, cluster.latency.p99_us),
            single_cpu_s_per_gbit: single_cpu,
            serving_cpu_s_per_gbit: serving_cpu,
            cluster_total_cpu_s_per_gbit: total,
            serving_cpu_ratio: single_cpu.zip(serving_cpu).filter(|(s, _)| *s > 0.0).map(|(s, c)| c / s),
            owner_cpu_pct: owner,
            nats_cpu_pct: nats,
            single,
            cluster,
        };
        eprintln!(
            "[cluster] {n} clients: delivered {} / {}, p50 {} / {} ms ({} ms), p99 {} / {} ms ({} ms), \
             serving CPU {} / {} CPU-s/Gbit (×{}), owner {}%, nats {}%",
            pct(s.single.delivered_fraction),
            pct(s.cluster.delivered_fraction),
            ms(s.single.latency.p50_us),
            ms(s.cluster.latency.p50_us),
            signed_ms(s.p50_added_us),
            ms(s.single.latency.p99_us),
            ms(s.cluster.latency.p99_us),
            signed_ms(s.p99_added_us),
            opt(single_cpu, 3),
            opt(serving_cpu, 3),
            opt(s.serving_cpu_ratio, 2),
            opt(owner, 1),
            opt(nats, 1),
        );
        out.table.rows.push(row("single node", &s.single, None, None, single_cpu));
        out.table.rows.push(row("cluster: on B", &s.cluster, owner, nats, total));
        out.step(&s);
        steps.push(s);
    }
    let mbit = ctx.bitrate as f64 / 1e6;
    for s in &steps {
        let n = s.clients;
        let latencies = [
            ("p50", "≤ +1 ms", s.p50_added_us, s.single.latency.p50_us, s.cluster.latency.p50_us, P50_ADDED_US),
            ("p99", "≤ +3 ms", s.p99_added_us, s.single.latency.p99_us, s.cluster.latency.p99_us, P99_ADDED_US),
        ];
        for (what, target, added, single, cluster, max) in latencies {
            out.targets.push(Target::new(
                format!("latency added by the NATS hop, {what} ({n} clients)"),
                format!("{target} over a single node"),
                format!("{} ms ({} → {} ms)", signed_ms(added), ms(single), ms(cluster)),
                added.map(|d| d <= max),
            ));
        }
        out.targets.push(Target::new(
            format!("CPU per Gbit/s on the viewers' node, against a single node ({n} clients)"),
            "≤ 1.25×",
            format!(
                "×{} ({} against {} CPU-s/Gbit at {mbit} Mbit/s; whole cluster {})",
                opt(s.serving_cpu_ratio, 2),
                opt(s.serving_cpu_s_per_gbit, 3),
                opt(s.single_cpu_s_per_gbit, 3),
                opt(s.cluster_total_cpu_s_per_gbit, 3),
            ),
            s.serving_cpu_ratio.map(|r| r <= CPU_RATIO),
        ));
    }
    out
}
