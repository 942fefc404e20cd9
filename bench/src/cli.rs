//! Command line, the sizes of every scenario (full or `--smoke`), and pinning/limits by re-exec.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::server::ServerOpts;

pub const SCENARIOS: &[&str] = &[
    "ws-fanout",
    "ws-floor",
    "dc-fanout",
    "wt-fanout",
    "whep-fanout",
    "mqtt-fanout",
    "dc-chromium",
    "many-trains",
    "cluster",
    "webrtc-setup",
    "memory",
    "churn",
    "record",
];
/// Run only when named with `--scenario` (not part of `all`, nor of `--smoke`).
pub const BY_NAME_ONLY: &[&str] = &["soak"];

/// Load and benchmark tool for railcast: starts the real railcast-server on loopback, drives it
/// with synthetic trains (QUIC) and WebSocket/WebRTC remote controls, and prints one JSON object
/// per scenario plus a table with the targets.
#[derive(Debug, Parser)]
#[command(name = "railcast-bench", version)]
pub struct Opts {
    /// Scenario to run (repeatable): ws-fanout, ws-floor, dc-fanout, wt-fanout, whep-fanout, mqtt-fanout, dc-chromium,
    /// many-trains, cluster, webrtc-setup, memory, churn, record, all, soak. Default: all. `soak` is not part of
    /// `all` and runs only when named.
    #[arg(long = "scenario", value_parser = clap::builder::PossibleValuesParser::new(
        ["ws-fanout", "ws-floor", "dc-fanout", "wt-fanout", "whep-fanout", "mqtt-fanout", "dc-chromium", "many-trains", "cluster", "webrtc-setup", "memory", "churn", "record", "all", "soak"]))]
    pub scenarios: Vec<String>,
    /// Client counts for both fan-out scenarios, e.g. 1,50,200 (overrides --ws-clients and
    /// --dc-clients).
    #[arg(long, value_delimiter = ',')]
    pub clients: Option<Vec<usize>>,
    /// WebSocket client counts for ws-fanout and ws-floor [default: 1,50,200,500,1000].
    #[arg(long, value_delimiter = ',')]
    pub ws_clients: Option<Vec<usize>>,
    /// WebRTC peer counts for dc-fanout [default: 1,10,50,100,200,300].
    #[arg(long, value_delimiter = ',')]
    pub dc_clients: Option<Vec<usize>>,
    /// WebTransport client counts for wt-fanout [default: 1,50,200,500].
    #[arg(long, value_delimiter = ',')]
    pub wt_clients: Option<Vec<usize>>,
    /// WHEP viewer counts for whep-fanout [default: 1,50,200,500].
    #[arg(long, value_delimiter = ',')]
    pub whep_clients: Option<Vec<usize>>,
    /// whep-fanout: give each viewer a player's interceptors (NACK generator and responder, sender
    /// and receiver reports). Without (the default) a viewer never asks for a retransmission, so
    /// a lost packet stays lost, and the tool's one core, which runs every viewer, is not the limit.
    #[arg(long)]
    pub whep_player_interceptors: bool,
    /// wt-fanout: run each WebTransport client on quinn's own tasks (web-transport-quinn's
    /// client) instead of the one thread that drives every client's quinn-proto connection. For
    /// comparison: the server's work is the same, the tool's is larger, so the read figure is later.
    #[arg(long)]
    pub wt_client_tasks: bool,
    /// whep-fanout: run each viewer as webrtc-rs's async peer connection (its own driver task)
    /// instead of the one thread that drives every viewer's sans-IO connection. For comparison;
    /// implied by --whep-player-interceptors.
    #[arg(long)]
    pub whep_client_tasks: bool,
    /// MQTT subscriber counts for mqtt-fanout [default: 1,10,50,100,200; --smoke: 2].
    #[arg(long, value_delimiter = ',')]
    pub mqtt_clients: Option<Vec<usize>>,
    /// mqtt-fanout: pin mosquitto to these CPUs (taskset -a -p -c list) [default: --server-cpu's,
    /// so that server and broker share the relay's core and the load keeps its own; `none`: not
    /// pinned].
    #[arg(long)]
    pub broker_cpu: Option<String>,
    /// mqtt-fanout: the server's --mqtt-video-message, largest video message in bytes
    /// (1200..=65536).
    #[arg(long, default_value_t = 4000)]
    pub mqtt_video_message: usize,
    /// mqtt-fanout: a line appended to mosquitto's configuration (repeatable), e.g.
    /// --broker-conf='set_tcp_nodelay true'. The shipped deploy/mosquitto/mosquitto.conf otherwise.
    #[arg(long)]
    pub broker_conf: Vec<String>,
    /// cluster: WebSocket client counts; each is run on a single node, then on node B of a
    /// two-node cluster whose node A has the train [default: 50,200; --smoke: 2].
    #[arg(long, value_delimiter = ',')]
    pub cluster_clients: Option<Vec<usize>>,
    /// Idle client counts at which memory samples RSS [default: 0,100,200].
    #[arg(long, value_delimiter = ',')]
    pub idle_clients: Option<Vec<usize>>,
    /// many-trains: trains, cameras per train, clients per train [default: 20,2,2].
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub many_trains: Option<Vec<usize>>,
    /// webrtc-setup: sequential connections, then concurrent ones [default: 100,20].
    #[arg(long, value_delimiter = ',')]
    pub setup: Option<Vec<usize>>,
    /// webrtc-setup: the signaling flows measured, each on its own server: `rest` (the server
    /// offers, REST calls) and `rpc` (the client offers over JSON-RPC on /rpc).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "rest,rpc")]
    pub signaling: Vec<Signaling>,
    /// record: the numbers of recorded streams (cameras) the ramp tries, in order; it stops at the
    /// first with a loss or a saturated server core [default: 10,20,30,40,50,60,80,100,128;
    /// --smoke: 2].
    #[arg(long, value_delimiter = ',')]
    pub record_streams: Option<Vec<usize>>,
    /// record: cameras per train (the streams are split over trains of this many cameras).
    #[arg(long, default_value_t = 2)]
    pub record_cameras: u16,
    /// record: bitrate of each stream (camera), bit/s; k and M suffixes allowed.
    #[arg(long, default_value = "4M", value_parser = parse_rate)]
    pub record_bitrate: u64,
    /// record: where each step's server records to (a fresh directory per step, deleted after
    /// it); it should be on a disk, not a tmpfs [default: the log directory].
    #[arg(long)]
    pub record_scratch: Option<PathBuf>,
    /// churn: connect/disconnect cycles per transport [default: 1000].
    #[arg(long)]
    pub churn_cycles: Option<usize>,
    /// soak: how long the trains stream to the clients (e.g. 30s, 10m).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub soak_duration: Duration,
    /// soak: time between samples (shortened so that a run has at least 6).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub soak_interval: Duration,
    /// soak: bitrate of each of its 5 trains, bit/s; k and M suffixes allowed.
    #[arg(long, default_value = "1M", value_parser = parse_rate)]
    pub soak_bitrate: u64,
    /// dc-chromium: bitrate of its one train, bit/s; k and M suffixes allowed [default: 800M;
    /// --smoke: 4M].
    #[arg(long, value_parser = parse_rate)]
    pub dc_chromium_bitrate: Option<u64>,
    /// dc-chromium: frames per second of its train [default: 200; --smoke: 30].
    #[arg(long)]
    pub dc_chromium_fps: Option<u32>,
    /// dc-chromium: the web-client directory holding e2e/dc-throughput.mjs and node_modules
    /// [default: found from the source tree, the executable's directories or the current one].
    #[arg(long)]
    pub web_client: Option<PathBuf>,
    /// dc-chromium: pin node and Chromium to these CPUs (taskset -c list) [default: the tool's].
    #[arg(long)]
    pub browser_cpu: Option<String>,
    /// Measurement time of each fan-out step [default: 10s], and of dc-chromium [default: 5s]
    /// (--smoke: 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Bitrate of each train (split over its cameras), bit/s; k and M suffixes allowed.
    #[arg(long, default_value = "4M", value_parser = parse_rate)]
    pub bitrate: u64,
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// A keyframe every this many frames.
    #[arg(long, default_value_t = 30)]
    pub gop: u32,
    /// Every scenario at tiny sizes, about 1–3 s each (CI). No timing assertions; exits non-zero
    /// when a scenario fails to run (e.g. no frame delivered).
    #[arg(long)]
    pub smoke: bool,
    /// Print only the JSON lines, no table.
    #[arg(long)]
    pub json_only: bool,
    /// The server binary [default: railcast-server next to this executable].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Pin the server to these CPUs (taskset -c list).
    #[arg(long)]
    pub server_cpu: Option<String>,
    /// Pin this tool to these CPUs (re-executes itself under taskset).
    #[arg(long)]
    pub load_cpu: Option<String>,
    /// Extra argument for the server (repeatable), e.g. --server-arg=--subscriber-queue=4096.
    #[arg(long, allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
    /// RUST_LOG for the server.
    #[arg(long, default_value = "warn")]
    pub server_log: String,
    /// Directory for server logs [default: a new directory under the system temp dir].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// WebRTC peers opened at once while building a fan-out.
    #[arg(long, default_value_t = 8)]
    pub rtc_connect_concurrency: usize,
    /// WebSocket clients opened at once while building a fan-out.
    #[arg(long, default_value_t = 32)]
    pub ws_connect_concurrency: usize,
    /// Internal: run as ws-floor's relay (see bench/src/floor.rs).
    #[arg(long, hide = true)]
    pub floor_relay: bool,
}

/// A WebRTC signaling flow `webrtc-setup` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Signaling {
    /// `POST /api/webrtc/offer`, `…/answer`, `…/ice-candidate`: the server offers.
    Rest,
    /// JSON-RPC 2.0 on `GET /rpc`: the client announces, then offers to the peer `relay`.
    Rpc,
}

impl Signaling {
    pub fn name(self) -> &'static str {
        match self {
            Signaling::Rest => "rest",
            Signaling::Rpc => "rpc",
        }
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000.0),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad rate {s:?}: expected e.g. 4M, 500k, 4000000"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("rate must be positive: {s}"));
    }
    Ok((v * mult) as u64)
}

/// Everything a scenario needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub server: ServerOpts,
    pub duration: Duration,
    pub bitrate: u64,
    pub fps: u32,
    pub gop: u32,
    pub ws_clients: Vec<usize>,
    pub dc_clients: Vec<usize>,
    pub wt_clients: Vec<usize>,
    pub whep_clients: Vec<usize>,
    /// whep-fanout: the viewers run a player's interceptors (`--whep-player-interceptors`).
    pub whep_player_interceptors: bool,
    /// wt-fanout: quinn's tasks per client (`--wt-client-tasks`) instead of the one-thread fleet.
    pub wt_client_tasks: bool,
    /// whep-fanout: webrtc-rs's async peers (`--whep-client-tasks`) instead of the fleet.
    pub whep_client_tasks: bool,
    pub mqtt_clients: Vec<usize>,
    /// cluster: client counts.
    pub cluster_clients: Vec<usize>,
    /// mqtt-fanout: mosquitto's CPUs (`None`: not pinned).
    pub broker_cpu: Option<String>,
    pub mqtt_video_message: usize,
    /// mqtt-fanout: lines appended to mosquitto's configuration.
    pub broker_conf: Vec<String>,
    pub idle_clients: Vec<usize>,
    /// trains, cameras per train, clients per train
    pub many_trains: (usize, u16, usize),
    pub setup_sequential: usize,
    pub setup_concurrent: usize,
    /// webrtc-setup: the flows, in order, without repeats.
    pub setup_signaling: Vec<Signaling>,
    pub churn_cycles: usize,
    pub churn_warmup: usize,
    /// record: stream counts of the ramp, cameras per train, bitrate per stream, scratch
    /// directory, and the time between the first segment files and the window.
    pub record_streams: Vec<usize>,
    pub record_cameras: u16,
    pub record_bitrate: u64,
    pub record_scratch: Option<PathBuf>,
    pub record_warmup: Duration,
    pub rtc_connect_concurrency: usize,
    pub ws_connect_concurrency: usize,
    /// Pause after a fan-out is built, before the window opens (GOP bursts, keyframe requests).
    pub settle: Duration,
    pub soak_duration: Duration,
    pub soak_interval: Duration,
    pub soak_bitrate: u64,
    pub smoke: bool,
    pub dc_chromium_bitrate: u64,
    pub dc_chromium_fps: u32,
    pub dc_chromium_window: Duration,
    pub web_client: Option<PathBuf>,
    pub browser_cpu: Option<String>,
}

impl Ctx {
    pub fn new(o: &Opts, server: ServerOpts) -> Self {
        let smoke = o.smoke;
        let pick = |given: &Option<Vec<usize>>, full: &[usize], tiny: &[usize]| -> Vec<usize> {
            given.clone().or_else(|| o.clients.clone()).unwrap_or_else(|| if smoke { tiny } else { full }.to_vec())
        };
        let ws_clients = pick(&o.ws_clients, &[1, 50, 200, 500, 1000], &[1, 4]);
        let dc_clients = pick(&o.dc_clients, &[1, 10, 50, 100, 200, 300], &[1, 2]);
        let wt_clients = pick(&o.wt_clients, &[1, 50, 200, 500], &[1, 4]);
        let whep_clients = pick(&o.whep_clients, &[1, 50, 200, 500], &[1, 2]);
        let mqtt_clients = pick(&o.mqtt_clients, &[1, 10, 50, 100, 200], &[2]);
        let cluster_clients = pick(&o.cluster_clients, &[50, 200], &[2]);
        let broker_cpu = match o.broker_cpu.as_deref() {
            Some("none") => None,
            Some(cpu) => Some(cpu.to_owned()),
            None => o.server_cpu.clone(),
        };
        let mut idle_clients =
            o.idle_clients.clone().unwrap_or_else(|| if smoke { vec![0, 5, 10] } else { vec![0, 100, 200] });
        idle_clients.sort_unstable();
        idle_clients.dedup();
        let mt = o.many_trains.clone().unwrap_or_else(|| if smoke { vec![2, 2, 1] } else { vec![20, 2, 2] });
        let many_trains = (
            mt.first().copied().unwrap_or(20).max(1),
            mt.get(1).copied().unwrap_or(2).clamp(1, 16) as u16,
            mt.get(2).copied().unwrap_or(2).max(1),
        );
        let mut setup_signaling = Vec::new();
        for s in &o.signaling {
            if !setup_signaling.contains(s) {
                setup_signaling.push(*s);
            }
        }
        let setup = o.setup.clone().unwrap_or_else(|| if smoke { vec![3, 2] } else { vec![100, 20] });
        Self {
            server,
            duration: o.duration.unwrap_or(if smoke { Duration::from_secs(1) } else { Duration::from_secs(10) }),
            bitrate: o.bitrate,
            fps: o.fps.max(1),
            gop: o.gop.max(1),
            ws_clients,
            dc_clients,
            wt_clients,
            whep_clients,
            whep_player_interceptors: o.whep_player_interceptors,
            wt_client_tasks: o.wt_client_tasks,
            whep_client_tasks: o.whep_client_tasks,
            mqtt_clients,
            cluster_clients,
            broker_cpu,
            mqtt_video_message: o.mqtt_video_message,
            broker_conf: o.broker_conf.clone(),
            idle_clients,
            many_trains,
            setup_sequential: setup.first().copied().unwrap_or(100),
            setup_concurrent: setup.get(1).copied().unwrap_or(20),
            setup_signaling,
            churn_cycles: o.churn_cycles.unwrap_or(if smoke { 20 } else { 1000 }),
            churn_warmup: if smoke { 3 } else { 30 },
            record_streams: o.record_streams.clone().unwrap_or_else(|| {
                if smoke {
                    vec![2]
                } else {
                    vec![10, 20, 30, 40, 50, 60, 80, 100, 128]
                }
            }),
            record_cameras: o.record_cameras.clamp(1, 16),
            record_bitrate: o.record_bitrate,
            record_scratch: o.record_scratch.clone(),
            record_warmup: if smoke { Duration::from_millis(300) } else { Duration::from_secs(2) },
            rtc_connect_concurrency: o.rtc_connect_concurrency.max(1),
            ws_connect_concurrency: o.ws_connect_concurrency.max(1),
            settle: if smoke { Duration::from_millis(300) } else { Duration::from_secs(1) },
            soak_duration: o.soak_duration.max(Duration::from_secs(1)),
            soak_interval: o.soak_interval.max(Duration::from_millis(100)),
            soak_bitrate: o.soak_bitrate,
            smoke,
            dc_chromium_bitrate: o.dc_chromium_bitrate.unwrap_or(if smoke { 4_000_000 } else { 800_000_000 }),
            dc_chromium_fps: o.dc_chromium_fps.unwrap_or(if smoke { 30 } else { 200 }).max(1),
            dc_chromium_window: o.duration.unwrap_or(if smoke {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            }),
            web_client: o.web_client.clone(),
            browser_cpu: o.browser_cpu.clone(),
        }
    }
}

/// Re-execute under `taskset -c LOAD_CPU` and with the descriptor limit raised to the hard
/// limit, once (marked by an environment variable). Returns only when no re-exec is needed or it
/// failed.
pub fn reexec_if_needed(load_cpu: Option<&str>) {
    use std::os::unix::process::CommandExt;
    const MARK: &str = "RAILCAST_BENCH_REEXEC";
    if std::env::var_os(MARK).is_some() {
        return;
    }
    let low_nofile = crate::procstat::nofile_limits().is_some_and(|(soft, hard)| soft < 65_536 && hard > soft);
    if load_cpu.is_none() && !low_nofile {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#).arg("sh");
    if let Some(cpu) = load_cpu {
        cmd.args(["taskset", "-c", cpu]);
    }
    cmd.arg(exe).args(std::env::args_os().skip(1)).env(MARK, "1");
    let err = cmd.exec();
    eprintln!("railcast-bench: cannot re-execute for pinning/limits ({err}); going on as is");
}
