//! `ws-floor`: what this machine's kernel and the tool's own readers cost on the `ws-fanout`
//! path, with no railcast code in it.
//!
//! It has `ws-fanout`'s shape: one train's frames, of the same size and cadence and packetized by
//! the same code, leave the load CPU; a relay pinned to the server CPU writes each frame to N
//! WebSocket clients with one write per client; the clients are the same `ws_raw` readers with
//! the same counters, window and histogram. The relay is the least a relay can be: this binary
//! re-executed as `--floor-relay`, blocking std code with one thread that receives a frame as one
//! UDP datagram (already framed as WebSocket binary messages, one per packet) and copies those
//! bytes to every client in turn. No QUIC, no TLS, no parsing, no queues, no async runtime.
//! Whatever latency it shows is the floor under any relay on this host: the ws-fanout figure
//! minus this one is what railcast itself adds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use futures_util::stream::{self, StreamExt};
use railcast_protocol::packet::{packetize, Codec, FrameMeta};
use railcast_protocol::{CameraId, FrameSeq};
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use crate::cli::Ctx;
use crate::procstat::{CpuMeter, Pid};
use crate::report::{ms, pct, Latency, Outcome, Target};
use crate::stats::{now_us, FrameCounter, Window};
use crate::train::stopped;
use crate::ws_raw;

/// The largest UDP datagram the train sends; a bigger frame goes as several, split between
/// packets.
const MAX_DATAGRAM: usize = 65_000;

#[derive(Debug, Serialize)]
pub struct FloorStep {
    pub clients: usize,
    pub connected: usize,
    pub warm: usize,
    pub bitrate_bps: u64,
    pub fps: u32,
    pub window_s: f64,
    pub frames_sent: u64,
    pub frames_expected: u64,
    pub frames_delivered: u64,
    pub delivered_fraction: Option<f64>,
    pub packets_received: u64,
    pub delivered_mbit_s: f64,
    pub latency: Latency,
    pub relay_cpu_pct: f64,
    pub load_cpu_pct: f64,
    pub client_errors: usize,
    pub first_client_error: Option<String>,
}

const HEADERS: &[&str] =
    &["clients", "conn", "warm", "Mbit/s out", "delivered", "p50 ms", "p99 ms", "max ms", "relay CPU%", "load CPU%"];

/// `ws-floor` at every `ws-fanout` client count.
pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(HEADERS.to_vec());
    let mut at50 = None;
    for &n in &ctx.ws_clients {
        eprintln!("[ws-floor] {n} clients …");
        match step(ctx, n).await {
            Ok(s) => {
                eprintln!(
                    "[ws-floor] {n} clients: delivered {}, p99 {} ms, relay CPU {:.0}%, load CPU {:.0}%",
                    pct(s.delivered_fraction),
                    ms(s.latency.p99_us),
                    s.relay_cpu_pct,
                    s.load_cpu_pct
                );
                if s.frames_delivered == 0 {
                    out.fail(format!("{n} clients: no frame delivered"));
                } else if s.connected < n {
                    out.fail(format!("{n} clients: only {} connected", s.connected));
                }
                if n == 50 {
                    at50 = s.latency.p99_us;
                }
                out.table.rows.push(vec![
                    s.clients.to_string(),
                    s.connected.to_string(),
                    s.warm.to_string(),
                    format!("{:.0}", s.delivered_mbit_s),
                    pct(s.delivered_fraction),
                    ms(s.latency.p50_us),
                    ms(s.latency.p99_us),
                    ms(s.latency.max_us),
                    format!("{:.0}", s.relay_cpu_pct),
                    format!("{:.0}", s.load_cpu_pct),
                ]);
                out.step(&s);
            }
            Err(e) => out.fail(format!("{n} clients: {e:#}")),
        }
    }
    if ctx.ws_clients.contains(&50) {
        out.targets.push(Target::new(
            "floor: p99 at 50 clients with no railcast code",
            "none (reference for ws-fanout's ≤ 1 ms)",
            format!("{} ms", ms(at50)),
            None,
        ));
    }
    out
}

async fn step(ctx: &Ctx, n: usize) -> anyhow::Result<FloorStep> {
    let relay = Relay::start(ctx.server.cpu.as_deref()).await?;
    let window = Arc::new(Window::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let warm = Arc::new(AtomicUsize::new(0));
    let url = format!("ws://127.0.0.1:{}/floor", relay.tcp_port);
    let connecting = stream::iter(0..n)
        .map(|_| {
            let (window, warm, stop_rx, url) = (Arc::clone(&window), Arc::clone(&warm), stop_rx.clone(), url.clone());
            async move {
                let ws = ws_raw::connect(&url).await?;
                Ok::<_, anyhow::Error>(tokio::spawn(ws_raw::run(ws, window, warm, stop_rx)))
            }
        })
        .buffer_unordered(ctx.ws_connect_concurrency)
        .collect::<Vec<_>>()
        .await;
    let mut errors = Vec::new();
    let mut clients = Vec::new();
    for c in connecting {
        match c {
            Ok(j) => clients.push(j),
            Err(e) => errors.push(format!("connect: {e:#}")),
        }
    }
    let connected = clients.len();
    // The relay writes to the clients it has accepted; wait until it has them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.accepted() < connected as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sent = Arc::new(AtomicU64::new(0));
    let train =
        tokio::spawn(train(ctx.bitrate, ctx.fps, relay.udp_port, Arc::clone(&window), Arc::clone(&sent), stop_rx));
    let deadline = Instant::now() + Duration::from_secs(15);
    while warm.load(Ordering::Relaxed) < connected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warm_n = warm.load(Ordering::Relaxed);
    tokio::time::sleep(ctx.settle).await;

    let (relay_cpu, load_cpu) = (CpuMeter::start(Pid::Other(relay.pid)), CpuMeter::start(Pid::Myself));
    window.open(ctx.duration.as_micros() as u64);
    tokio::time::sleep(ctx.duration).await;
    let (relay_cpu_pct, load_cpu_pct) = (relay_cpu.percent(), load_cpu.percent());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), train).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => errors.push(format!("train: {e:#}")),
        Ok(Err(e)) => errors.push(format!("train task: {e}")),
        Err(_) => errors.push("train did not stop".into()),
    }
    let mut total = FrameCounter::default();
    for j in clients {
        match tokio::time::timeout(Duration::from_secs(10), j).await {
            Ok(Ok(r)) => {
                total.merge(&r.counter);
                if let Some(e) = r.error {
                    errors.push(e);
                }
            }
            Ok(Err(e)) => errors.push(format!("client task: {e}")),
            Err(_) => errors.push("client did not stop".into()),
        }
    }
    relay.stop().await;
    let frames_sent = sent.load(Ordering::Relaxed);
    let expected = frames_sent * n as u64;
    let window_s = ctx.duration.as_secs_f64();
    Ok(FloorStep {
        clients: n,
        connected,
        warm: warm_n,
        bitrate_bps: ctx.bitrate,
        fps: ctx.fps,
        window_s,
        frames_sent,
        frames_expected: expected,
        frames_delivered: total.frames,
        delivered_fraction: (expected > 0).then(|| total.frames as f64 / expected as f64),
        packets_received: total.packets,
        delivered_mbit_s: total.bytes as f64 * 8.0 / window_s / 1e6,
        latency: Latency::from(&total.latency),
        relay_cpu_pct,
        load_cpu_pct,
        client_errors: errors.len(),
        first_client_error: errors.into_iter().next(),
    })
}

/// Frames of `bitrate / fps / 8` bytes every 1/fps, packetized as the real train does, each
/// packet framed as a WebSocket binary message, sent as one datagram per frame (a few for frames
/// over [`MAX_DATAGRAM`]). `capture_us` is taken just before the first send.
async fn train(
    bitrate: u64,
    fps: u32,
    port: u16,
    window: Arc<Window>,
    sent: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    udp.connect(("127.0.0.1", port)).await?;
    let payload = vec![0x5au8; crate::train::frame_bytes(bitrate, fps)];
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    let mut seq = FrameSeq(0);
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => return Ok(()),
            _ = tick.tick() => {}
        }
        let capture_us = now_us();
        let meta = FrameMeta { keyframe: true, codec: Codec::H264AnnexB, camera: CameraId(0), seq, capture_us };
        let packets = packetize(meta, &payload, railcast_protocol::DEFAULT_MAX_PAYLOAD).context("packetize")?;
        datagrams.clear();
        let mut d = Vec::with_capacity(MAX_DATAGRAM);
        for p in &packets {
            let len = u16::try_from(p.len()).map_err(|_| anyhow!("packet over 64 KiB"))?;
            let header: &[u8] = if len < 126 { &[0x82, len as u8] } else { &[0x82, 126, (len >> 8) as u8, len as u8] };
            if d.len() + header.len() + p.len() > MAX_DATAGRAM {
                datagrams.push(std::mem::replace(&mut d, Vec::with_capacity(MAX_DATAGRAM)));
            }
            d.extend_from_slice(header);
            d.extend_from_slice(p);
        }
        datagrams.push(d);
        for d in &datagrams {
            udp.send(d).await.context("send to the relay")?;
        }
        if window.contains(capture_us) {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        seq = seq.next();
    }
}

/// The relay child process.
struct Relay {
    child: tokio::process::Child,
    pid: u32,
    udp_port: u16,
    tcp_port: u16,
    /// Clients the relay has accepted (it prints a line for each).
    accepted: Arc<AtomicU64>,
}

impl Relay {
    /// Start `<this executable> --floor-relay`, pinned to `cpu` with `taskset -c`, with the
    /// descriptor limit raised like the server's; read its ports.
    async fn start(cpu: Option<&str>) -> anyhow::Result<Relay> {
        let exe = std::env::current_exe().context("this executable")?;
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#).arg("sh");
        if let Some(cpu) = cpu {
            cmd.args(["taskset", "-c", cpu]);
        }
        cmd.arg(exe)
            .arg("--floor-relay")
            // Not pinned to the load CPU by the re-exec in `cli`.
            .env("RAILCAST_BENCH_REEXEC", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("start the floor relay")?;
        let pid = child.id().ok_or_else(|| anyhow!("floor relay exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no relay stdout"))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| anyhow!("the floor relay did not report its ports"))??
            .ok_or_else(|| anyhow!("the floor relay ended before reporting its ports"))?;
        let mut ports = first.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(udp_port)), Some(Ok(tcp_port))) = (ports.next(), ports.next()) else {
            return Err(anyhow!("floor relay: unexpected first line {first:?}"));
        };
        // Then one line per accepted client.
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok(Some(_)) = lines.next_line().await {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Relay { child, pid, udp_port, tcp_port, accepted })
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Closing its stdin ends the relay; kill it if it lingers.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// `railcast-bench --floor-relay`: the relay process. Prints `UDP_PORT TCP_PORT`, then a line
/// per client whose WebSocket handshake it completed; ends when its stdin closes.
pub fn relay_main() -> ExitCode {
    match relay() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("railcast-bench --floor-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn relay() -> std::io::Result<()> {
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{} {}", udp.local_addr()?.port(), listener.local_addr()?.port());
    std::io::stdout().flush()?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let clients: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepted = Arc::clone(&clients);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Ok(s) = handshake(stream) {
                accepted.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                println!("accepted");
                let _ = std::io::stdout().flush();
            }
        }
    });
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = udp.recv(&mut buf)?;
        let mut clients = clients.lock().unwrap_or_else(|e| e.into_inner());
        // One write per client, in turn; a client that fails is dropped.
        clients.retain_mut(|c| c.write_all(&buf[..n]).is_ok());
    }
}

/// Answer a WebSocket opening handshake (RFC 6455 §4.2); the stream is ready for frames after.
fn handshake(stream: TcpStream) -> std::io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut key = None;
    let mut read = 0;
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take(8 * 1024).read_line(&mut line)?;
        read += n;
        if n == 0 || read > 16 * 1024 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no end of the HTTP request"));
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(value.trim().to_owned());
            }
        }
    }
    let key = key.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut stream = reader.into_inner();
    stream.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    stream.set_read_timeout(None)?;
    Ok(stream)
}
