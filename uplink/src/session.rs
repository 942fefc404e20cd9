//! A train's QUIC session to the server, kept up with reconnect and backoff: the hello, the
//! welcome, frames as datagrams, commands handed to the train and their acks, telemetry once a
//! second, keyframe requests (docs/wire-format.md). What the train *is* (a simulator, the agent in
//! front of real cameras) comes in through [`Train`]; its frames through a channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use railcast_protocol::control::{AudioInfo, CameraInfo, Command, ErrorMessage, Hello, Status, Telemetry};
use railcast_protocol::packet::{packetize, Codec, FrameMeta};
use railcast_protocol::{CameraId, CommandAck, ControlDecoder, ControlMessage, FrameSeq, Secret, TrainId};
use tokio::sync::{mpsc, watch};

use crate::connect::{self, Target, Trust};
use crate::manifest::{self, Manifest};

/// Microseconds since the Unix epoch on this machine's clock: the capture times of the wire
/// format (docs/wire-format.md §2.3; glass-to-glass needs the clocks in sync, NTP).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Resolves when `rx` turns true; keeps the watch guard out of the caller's future.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Where to connect.
#[derive(Debug, Clone)]
pub enum Source {
    /// Ask the server's HTTP API before each connection attempt: the QUIC port and, with
    /// [`Trust::Discovered`], the certificate's fingerprint.
    Discover(String),
    /// A fixed QUIC address.
    Fixed(std::net::SocketAddr),
    /// Several servers (relay nodes of a cluster), tried in turn: failover in this order, round
    /// robin ([`Rotation`]). [`connect::source`] builds it from a comma-separated list.
    Any(Vec<Server>),
}

/// One server of a [`Source::Any`] list.
#[derive(Debug, Clone)]
pub struct Server {
    /// As configured (the URL, or `HOST:PORT`): for logs, and its host is the name a CA-issued
    /// certificate must carry when none was configured.
    pub name: String,
    /// A [`Source::Discover`] or [`Source::Fixed`] (an `Any` inside is flattened).
    pub source: Source,
}

impl Source {
    /// The servers to try, in order, each with its name: one for `Discover` and `Fixed`.
    fn servers(&self) -> Vec<(String, Source)> {
        match self {
            Source::Discover(url) => vec![(url.clone(), self.clone())],
            Source::Fixed(addr) => vec![(addr.to_string(), self.clone())],
            Source::Any(list) => list
                .iter()
                .flat_map(|s| match &s.source {
                    Source::Any(_) => s.source.servers(),
                    one => vec![(s.name.clone(), one.clone())],
                })
                .collect(),
        }
    }
}

/// The shortest pause before an attempt, and the pause between the servers of one round.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause, after a round in which every server failed.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An attempt that lasted this long was a working session: the backoff starts again.
const STABLE: Duration = Duration::from_secs(10);

/// Which server to try next and how long to wait first (sans-IO: no clock, no randomness; the
/// caller adds jitter). Each attempt uses the current server; when it fails, or its session is
/// lost, the next one is current (round robin): a lost session tries the next server first, as
/// the one it lost is likely down. Between the servers of one round the pause is short
/// ([`BACKOFF_MIN`]); once every server of a round has failed, the pause is the exponential
/// backoff (200 ms, doubling to 5 s), which starts again after a session that lasted 10 s. With
/// one server, that is the backoff of a single server: 200 ms doubling to 5 s.
#[derive(Debug, Clone)]
pub struct Rotation {
    len: usize,
    current: usize,
    /// Attempts of this round that gave no lasting session.
    failed: usize,
    backoff: Duration,
}

impl Rotation {
    /// A rotation over `len` servers (at least one), starting at the first.
    pub fn new(len: usize) -> Rotation {
        Rotation::starting_at(len, 0)
    }

    /// A rotation over `len` servers (at least one), starting at `first` (modulo `len`).
    pub fn starting_at(len: usize, first: usize) -> Rotation {
        let len = len.max(1);
        Rotation { len, current: first % len, failed: 0, backoff: BACKOFF_MIN }
    }

    /// The index of the server to try now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The attempt on the current server ended (it failed, or its session was lost) after
    /// `lasted`: move to the next server, and return the pause before trying it.
    pub fn next(&mut self, lasted: Duration) -> Duration {
        if lasted > STABLE {
            self.backoff = BACKOFF_MIN;
            self.failed = 0;
        }
        self.current = (self.current + 1) % self.len;
        self.failed += 1;
        if self.failed < self.len {
            return BACKOFF_MIN;
        }
        self.failed = 0;
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        pause
    }
}

/// Which server of a list a train tries first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerOrder {
    /// The first of the list (a preferred node, the others its standbys).
    #[default]
    Listed,
    /// One chosen by the train's id (the same at every start), so that a fleet given one list
    /// spreads over its nodes; failover then goes on round the list from there.
    Spread,
}

impl std::str::FromStr for ServerOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "listed" => Ok(ServerOrder::Listed),
            "spread" => Ok(ServerOrder::Spread),
            other => Err(format!("{other:?}: the server order is \"listed\" or \"spread\"")),
        }
    }
}

impl ServerOrder {
    /// The index of the first server to try, of `len`, for train `id`.
    pub fn first(self, id: &TrainId, len: usize) -> usize {
        match self {
            ServerOrder::Listed => 0,
            // FNV-1a: stable across builds and platforms, unlike std's hasher.
            ServerOrder::Spread => {
                let hash = id
                    .as_str()
                    .bytes()
                    .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
                (hash % len.max(1) as u64) as usize
            }
        }
    }
}

/// How this train reaches the server.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub id: TrainId,
    /// Sent in the hello; the server checks it against the token configured for this train id.
    pub token: Option<Secret>,
    /// How the server's QUIC certificate is checked.
    pub trust: Trust,
    /// Largest datagram payload (the packet header included); the server's welcome may lower it.
    pub max_payload: usize,
    pub idle_timeout: Duration,
    /// The hello's `software`, e.g. `railcast-train-agent/0.1.0`.
    pub software: String,
    /// Which server of a list is tried first.
    pub server_order: ServerOrder,
}

/// One encoded video frame (an H.264 access unit, Annex B) or one Opus packet.
#[derive(Debug, Clone)]
pub struct Frame {
    pub codec: Codec,
    /// Camera id, or the audio source's id (one id space).
    pub camera: u16,
    pub seq: u32,
    pub capture_us: u64,
    pub data: Bytes,
    pub keyframe: bool,
}

/// A command's ack, computed by the train: at once (the simulator) or after a while (a hook
/// the agent runs). The session never waits for it: other commands, frames and telemetry go on.
pub type AckFuture = Pin<Box<dyn Future<Output = CommandAck> + Send>>;

/// What the session asks of the train it carries.
pub trait Train: Send + Sync + 'static {
    /// The hello's cameras and audio sources, read at every connection.
    fn hello(&self) -> (Vec<CameraInfo>, Vec<AudioInfo>);
    /// The session is up (frames are wanted: start every camera at a keyframe) or down.
    fn connected(&self, up: bool);
    /// The server asked for a keyframe (`keyframe_request`): one camera, or all.
    fn keyframe_requested(&self, camera: Option<CameraId>);
    /// Carry out a command; the future's ack goes back to the server.
    fn execute(&self, cmd: Command) -> AckFuture;
    /// Telemetry to send now (once a second), if any.
    fn telemetry(&self) -> Option<Telemetry>;
    /// How the train's sources are doing (sent once a second beside the telemetry), if it says.
    fn status(&self) -> Option<Status> {
        None
    }
}

enum End {
    Shutdown,
    Lost(String),
}

/// Keep a session to the server until `shutdown` turns true (or the frame channel closes),
/// reconnecting with exponential backoff (200 ms to 5 s, jittered); with several servers
/// ([`Source::Any`]), failing over from one to the next as [`Rotation`] says.
pub async fn run(
    cfg: UplinkConfig,
    source: Source,
    train: Arc<dyn Train>,
    mut frames: mpsc::Receiver<Frame>,
    manifest: Option<Arc<Manifest>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let servers = source.servers();
    if servers.is_empty() {
        tracing::error!(train = %cfg.id, "no server to connect to");
        return;
    }
    let several = servers.len() > 1;
    let mut rotation = Rotation::starting_at(servers.len(), cfg.server_order.first(&cfg.id, servers.len()));
    while !*shutdown.borrow() {
        let (name, source) = &servers[rotation.current()];
        if several {
            let (n, of) = (rotation.current() + 1, servers.len());
            tracing::info!(train = %cfg.id, server = %name, "trying server {n} of {of}");
        }
        let target = match source {
            Source::Fixed(addr) => Ok((*addr, None)),
            Source::Discover(url) => {
                let roots = match &cfg.trust {
                    Trust::Ca { roots, .. } => Some(Arc::clone(roots)),
                    _ => None,
                };
                connect::discover_with(url, roots).await.map(|t| (t.addr, Some(t))).map_err(anyhow::Error::from)
            }
            Source::Any(_) => Err(anyhow::anyhow!("a server list inside a server list")),
        };
        let started = Instant::now();
        let end = match target {
            Ok((addr, discovered)) => {
                // The name a CA-issued certificate must carry by default: the host as configured.
                let host = connect::host_of(name).unwrap_or_else(|| addr.ip().to_string());
                let endpoint = Endpoint { addr, host: &host, name, discovered: discovered.as_ref() };
                session(&cfg, endpoint, &mut frames, &train, manifest.as_deref(), &mut shutdown).await
            }
            Err(e) => Err(e),
        };
        train.connected(false);
        match end {
            Ok(End::Shutdown) => break,
            Ok(End::Lost(reason)) => tracing::warn!(train = %cfg.id, server = %name, "connection lost: {reason}"),
            Err(e) => tracing::warn!(train = %cfg.id, server = %name, "cannot connect: {e:#}"),
        }
        let pause = rotation.next(started.elapsed());
        let pause = pause + Duration::from_millis(rand::random::<u64>() % (pause.as_millis() as u64 / 4 + 1));
        if several {
            let next = &servers[rotation.current()].0;
            tracing::info!(train = %cfg.id, server = %next, "trying the next server in {pause:?}");
        } else {
            tracing::info!(train = %cfg.id, "reconnecting in {pause:?}");
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
}

/// The server one attempt reaches.
struct Endpoint<'a> {
    addr: std::net::SocketAddr,
    /// Its host as configured (the default certificate name with a CA).
    host: &'a str,
    /// As configured, for logs.
    name: &'a str,
    discovered: Option<&'a Target>,
}

async fn session(
    cfg: &UplinkConfig,
    server: Endpoint<'_>,
    frames: &mut mpsc::Receiver<Frame>,
    train: &Arc<dyn Train>,
    manifest: Option<&Manifest>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<End> {
    let addr = server.addr;
    let endpoint = connect::endpoint(addr)?;
    let (client, server_name) = cfg.trust.quic(server.discovered, cfg.idle_timeout, server.host)?;
    let connecting = endpoint.connect_with(client, addr, &server_name)?;
    let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| anyhow::anyhow!("QUIC handshake with {addr} timed out"))?
        .map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "QUIC handshake with {addr}: the server must present {}",
                cfg.trust.describe(server.host)
            ))
        })?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let (cameras, audio) = train.hello();
    let hello = ControlMessage::Hello(Hello {
        train_id: cfg.id.clone(),
        cameras,
        audio,
        software: Some(cfg.software.clone()),
        token: cfg.token.clone(),
    });
    send.write_all(&hello.to_bytes()).await?;
    let mut decoder = ControlDecoder::new(railcast_protocol::control::DEFAULT_MAX_BODY);
    let welcome = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv, &mut decoder))
        .await
        .map_err(|_| anyhow::anyhow!("no welcome within 5 s"))??;
    // Datagrams no larger than both sides allow (the server's limit is in its welcome).
    let max_payload = match welcome {
        Some(ControlMessage::Welcome(w)) => {
            let max_payload = cfg.max_payload.min(w.max_payload as usize);
            tracing::info!(train = %cfg.id, server = %addr, max_payload, via = %server.name, "connected");
            max_payload
        }
        Some(ControlMessage::Error(ErrorMessage { code, message })) => {
            anyhow::bail!("server refused: {code}: {message}")
        }
        other => anyhow::bail!("expected a welcome, got {other:?}"),
    };
    // Frames from before this session are stale.
    while frames.try_recv().is_ok() {}
    train.connected(true);

    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMessage>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = ctl_rx.recv().await {
            if send.write_all(&m.to_bytes()).await.is_err() {
                break;
            }
        }
        let _ = send.finish();
    });
    let (in_tx, mut incoming) = mpsc::channel::<anyhow::Result<Option<ControlMessage>>>(64);
    let reader = tokio::spawn(async move {
        loop {
            let item = read_frame(&mut recv, &mut decoder).await;
            let end = !matches!(item, Ok(Some(_)));
            if in_tx.send(item).await.is_err() || end {
                break;
            }
        }
    });
    let mut commands = tokio::task::JoinSet::new();
    let mut telemetry = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break Ok(End::Shutdown) };
                if let Err(e) = send_frame(&conn, cfg, max_payload, &frame, manifest).await {
                    break Ok(End::Lost(e.to_string()));
                }
            }
            msg = incoming.recv() => match msg {
                Some(Ok(Some(ControlMessage::Command(cmd)))) => {
                    let (ack, ctl) = (train.execute(cmd), ctl_tx.clone());
                    commands.spawn(async move {
                        let _ = ctl.send(ControlMessage::CommandAck(ack.await)).await;
                    });
                }
                Some(Ok(Some(ControlMessage::KeyframeRequest(req)))) => train.keyframe_requested(req.camera),
                Some(Ok(Some(ControlMessage::Error(ErrorMessage { code, message })))) => {
                    tracing::warn!(train = %cfg.id, %code, "server error: {message}");
                }
                Some(Ok(Some(other))) => tracing::debug!(train = %cfg.id, "ignoring {}", other.name()),
                Some(Ok(None)) | None => break Ok(End::Lost(close_reason(&conn))),
                Some(Err(e)) => break Ok(End::Lost(format!("{e}; {}", close_reason(&conn)))),
            },
            Some(_) = commands.join_next(), if !commands.is_empty() => {}
            _ = telemetry.tick() => {
                if let Some(t) = train.telemetry() {
                    let _ = ctl_tx.try_send(ControlMessage::Telemetry(t));
                }
                if let Some(s) = train.status() {
                    let _ = ctl_tx.try_send(ControlMessage::Status(s));
                }
            }
            e = conn.closed() => break Ok(End::Lost(e.to_string())),
            _ = stopped(shutdown) => {
                conn.close(0u32.into(), b"train shutting down");
                break Ok(End::Shutdown);
            }
        }
    };
    train.connected(false);
    commands.abort_all();
    reader.abort();
    writer.abort();
    conn.close(0u32.into(), b"");
    let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
    result
}

fn close_reason(conn: &quinn::Connection) -> String {
    conn.close_reason().map(|e| e.to_string()).unwrap_or_else(|| "control stream ended".into())
}

/// The next control frame from the server's stream; `None` when the stream ended.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut ControlDecoder,
) -> anyhow::Result<Option<ControlMessage>> {
    loop {
        if let Some(m) = decoder.next_frame()? {
            return Ok(Some(m));
        }
        let mut buf = [0u8; 4096];
        match recv.read(&mut buf).await? {
            Some(n) => decoder.push(&buf[..n]),
            None => return Ok(None),
        }
    }
}

async fn send_frame(
    conn: &quinn::Connection,
    cfg: &UplinkConfig,
    max_payload: usize,
    frame: &Frame,
    manifest: Option<&Manifest>,
) -> anyhow::Result<()> {
    let meta = FrameMeta {
        keyframe: frame.keyframe,
        codec: frame.codec,
        camera: CameraId(frame.camera),
        seq: FrameSeq(frame.seq),
        capture_us: frame.capture_us,
    };
    let packets: Vec<Bytes> = packetize(meta, &frame.data, max_payload)?;
    let chunks = packets.len();
    // Recorded before it is sent: a reader that reads the manifest and then what a client
    // received never meets a frame the manifest does not list yet.
    if let Some(m) = manifest {
        m.record(&manifest::Entry {
            train: cfg.id.as_str(),
            camera: frame.camera,
            seq: frame.seq,
            capture_us: frame.capture_us,
            size: frame.data.len(),
            keyframe: frame.keyframe,
            chunks,
            sha256: manifest::sha256_hex(&frame.data),
            codec: frame.codec.name(),
        });
    }
    for p in packets {
        conn.send_datagram_wait(p).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(200);
    const QUICK: Duration = Duration::from_millis(30);
    const LONG: Duration = Duration::from_secs(60);

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    /// One server: the backoff of a single server, as before lists existed.
    #[test]
    fn one_server_backs_off_as_before() {
        let mut r = Rotation::new(1);
        let pauses: Vec<Duration> = (0..7).map(|_| r.next(QUICK)).collect();
        assert_eq!(pauses, ms(&[200, 400, 800, 1600, 3200, 5000, 5000]));
        assert_eq!(r.current(), 0);
        // A session that lasted starts the backoff again.
        assert_eq!(r.next(LONG), SHORT);
        assert_eq!(r.next(QUICK), Duration::from_millis(400));
    }

    /// Every failure moves to the next server, round robin; the pause is short inside a round and
    /// the backoff (doubling) once all of a round failed.
    #[test]
    fn failures_go_round_robin() {
        let mut r = Rotation::new(3);
        let mut tried = vec![r.current()];
        let mut pauses = Vec::new();
        for _ in 0..9 {
            pauses.push(r.next(QUICK));
            tried.push(r.current());
        }
        assert_eq!(tried, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(pauses, ms(&[200, 200, 200, 200, 200, 400, 200, 200, 800]));
    }

    /// A lost session tries the next server first, after a short pause, and the backoff starts
    /// again; the server it lost comes last in the new round.
    #[test]
    fn a_lost_session_tries_the_next_server_first() {
        let mut r = Rotation::new(3);
        for _ in 0..6 {
            r.next(QUICK); // two failed rounds: the backoff is at 800 ms
        }
        assert_eq!(r.current(), 0);
        r.next(QUICK); // 0 fails
        assert_eq!(r.current(), 1);
        // 1 connects, runs a minute, is lost: on to 2 at once.
        assert_eq!(r.next(LONG), SHORT);
        assert_eq!(r.current(), 2);
        // 2 fails: 0 next, still within the round that began with losing 1.
        assert_eq!(r.next(QUICK), SHORT);
        assert_eq!(r.current(), 0);
        // 0 fails: every server of the round failed, the backoff (started again) follows; then 1.
        assert_eq!(r.next(QUICK), SHORT);
        assert_eq!(r.current(), 1);
        assert_eq!(r.next(QUICK), SHORT);
        assert_eq!(r.next(QUICK), SHORT);
        assert_eq!(r.next(QUICK), Duration::from_millis(400));
    }

    /// With two servers that each drop the session at once (flapping), the backoff still grows.
    #[test]
    fn flapping_servers_still_back_off() {
        let mut r = Rotation::new(2);
        let pauses: Vec<Duration> = (0..12).map(|_| r.next(Duration::from_secs(2))).collect();
        assert_eq!(pauses, ms(&[200, 200, 200, 400, 200, 800, 200, 1600, 200, 3200, 200, 5000]));
    }

    #[test]
    fn lists_are_flattened_in_order() {
        let fixed = |p: u16| Source::Fixed(std::net::SocketAddr::from(([127, 0, 0, 1], p)));
        let server = |name: &str, source| Server { name: name.into(), source };
        let inner = Source::Any(vec![server("b", Source::Discover("http://b".into())), server("c", fixed(3))]);
        let list = Source::Any(vec![server("a", fixed(1)), server("inner", inner)]);
        let names: Vec<String> = list.servers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let one: Vec<String> = fixed(4433).servers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(one, ["127.0.0.1:4433"]);
        assert_eq!(Rotation::new(0).next(QUICK), SHORT, "no server is treated as one");
    }

    /// `spread` starts each train at a server chosen by its id: the same at every start, and a
    /// fleet covers every node; `listed` starts at the first. Failover goes on round the list.
    #[test]
    fn spread_starts_trains_on_different_servers() {
        let id = |n: u32| TrainId::new(format!("train-{n}")).expect("id");
        let firsts: Vec<usize> = (1..=10).map(|n| ServerOrder::Spread.first(&id(n), 3)).collect();
        assert_eq!(firsts, [0, 1, 2, 1, 2, 0, 1, 0, 1, 2], "FNV-1a of the id, modulo 3");
        assert_eq!(ServerOrder::Spread.first(&id(7), 3), firsts[6], "the same at every start");
        assert!((1..=10).all(|n| ServerOrder::Listed.first(&id(n), 3) == 0));
        assert_eq!(ServerOrder::Spread.first(&id(1), 1), 0);
        let mut r = Rotation::starting_at(3, ServerOrder::Spread.first(&id(3), 3));
        let tried: Vec<usize> = (0..4)
            .map(|_| {
                let now = r.current();
                r.next(QUICK);
                now
            })
            .collect();
        assert_eq!(tried, [2, 0, 1, 2]);
        assert_eq!("spread".parse::<ServerOrder>(), Ok(ServerOrder::Spread));
        assert!("random".parse::<ServerOrder>().is_err());
    }
}
