//! One simulated train: camera threads that render and encode, optionally a microphone thread
//! (`--audio tone`, Opus), and a task that keeps a QUIC session to the server, reconnecting with
//! backoff.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use railcast_protocol::control::{AudioInfo, CameraInfo, Command, ErrorMessage, Hello, Telemetry};
use railcast_protocol::packet::{packetize, Codec, FrameMeta};
use railcast_protocol::{Action, CameraId, CommandAck, ControlDecoder, ControlMessage, FrameSeq, Secret, TrainId};
use tokio::sync::{mpsc, watch};

use crate::audio::{self, AudioSource, Microphone};
use crate::connect::{self, Target, Trust};
use crate::manifest::{self, Manifest};
use crate::video::{Camera, VideoConfig};

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
    /// Ask the server's HTTP API (`--server`) before each connection attempt: the QUIC port and,
    /// with [`Trust::Discovered`], the certificate's fingerprint.
    Discover(String),
    /// Given on the command line (`--quic`).
    Fixed(std::net::SocketAddr),
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub id: TrainId,
    pub cameras: u16,
    pub video: VideoConfig,
    pub max_payload: usize,
    pub idle_timeout: Duration,
    pub initial_speed_kmh: f32,
    /// Sent in the hello; the server checks it against the token configured for this train id.
    pub token: Option<Secret>,
    /// How the server's QUIC certificate is checked.
    pub trust: Trust,
    /// The cab microphone (`--audio`): none, or the chime as audio source [`audio::AUDIO_ID`].
    pub audio: AudioSource,
}

impl TrainConfig {
    /// The audio sources the hello announces (docs/wire-format.md §3): none without `--audio`.
    pub fn audio_sources(&self) -> Vec<AudioInfo> {
        match self.audio {
            AudioSource::None => Vec::new(),
            AudioSource::Tone => vec![AudioInfo {
                id: CameraId(audio::AUDIO_ID),
                codec: "opus".into(),
                sample_rate: audio::SAMPLE_RATE,
                channels: 1,
                frame_ms: audio::FRAME_MS,
            }],
        }
    }
}

/// One encoded frame from a camera thread, or one Opus packet from the microphone thread.
#[derive(Debug)]
struct Frame {
    codec: Codec,
    /// Camera id, or the audio source's id (one id space).
    camera: u16,
    seq: u32,
    capture_us: u64,
    data: Vec<u8>,
    keyframe: bool,
}

/// State shared by the camera threads and the session task.
#[derive(Debug)]
struct Shared {
    speed_bits: AtomicU32,
    force_keyframe: Vec<AtomicBool>,
    connected: AtomicBool,
    stop: AtomicBool,
    horn_until: Mutex<Option<Instant>>,
}

impl Shared {
    fn speed(&self) -> f32 {
        f32::from_bits(self.speed_bits.load(Ordering::Relaxed))
    }
    fn force_all(&self) {
        for f in &self.force_keyframe {
            f.store(true, Ordering::Relaxed);
        }
    }
    fn horn(&self) -> bool {
        self.horn_until.lock().ok().and_then(|h| *h).is_some_and(|t| Instant::now() < t)
    }
}

enum End {
    Shutdown,
    Lost(String),
}

/// Run one train until `shutdown` turns true.
pub async fn run(
    cfg: TrainConfig,
    source: Source,
    manifest: Option<Arc<Manifest>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        speed_bits: AtomicU32::new(cfg.initial_speed_kmh.to_bits()),
        force_keyframe: (0..cfg.cameras).map(|_| AtomicBool::new(true)).collect(),
        connected: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        horn_until: Mutex::new(None),
    });
    // Room for the cameras' frames and for the microphone's 50 packets a second.
    let (tx, mut frames) = mpsc::channel::<Frame>(16);
    let mut threads = Vec::new();
    for cam in 0..cfg.cameras {
        let label = format!("{} cam {cam}", cfg.id);
        let camera = match Camera::new(&label, cfg.video) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(train = %cfg.id, "camera {cam}: {e}");
                return;
            }
        };
        let (shared, tx, fps) = (Arc::clone(&shared), tx.clone(), cfg.video.fps);
        let spawned = std::thread::Builder::new()
            .name(format!("cam-{}-{cam}", cfg.id))
            .spawn(move || camera_loop(camera, cam, fps, shared, tx));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!("cannot start camera thread: {e}"),
        }
    }
    if cfg.audio == AudioSource::Tone {
        let mic = match Microphone::new(cfg.max_payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(train = %cfg.id, "microphone: {e}");
                return;
            }
        };
        let (shared, tx) = (Arc::clone(&shared), tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("mic-{}", cfg.id))
            .spawn(move || microphone_loop(mic, audio::AUDIO_ID, shared, tx));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!("cannot start the microphone thread: {e}"),
        }
    }
    drop(tx);

    let mut backoff = Duration::from_millis(200);
    let mut odometer_m = 0.0f64;
    while !*shutdown.borrow() {
        let target = match &source {
            Source::Fixed(addr) => Ok((*addr, None)),
            Source::Discover(url) => {
                let roots = match &cfg.trust {
                    Trust::Ca { roots, .. } => Some(Arc::clone(roots)),
                    _ => None,
                };
                connect::discover_with(url, roots).await.map(|t| (t.addr, Some(t))).map_err(anyhow::Error::from)
            }
        };
        let started = Instant::now();
        let end = match target {
            Ok((addr, discovered)) => {
                session(
                    &cfg,
                    addr,
                    discovered.as_ref(),
                    &mut frames,
                    &shared,
                    manifest.as_deref(),
                    &mut shutdown,
                    &mut odometer_m,
                )
                .await
            }
            Err(e) => Err(e),
        };
        shared.connected.store(false, Ordering::Relaxed);
        match end {
            Ok(End::Shutdown) => break,
            Ok(End::Lost(reason)) => tracing::warn!(train = %cfg.id, "connection lost: {reason}"),
            Err(e) => tracing::warn!(train = %cfg.id, "cannot connect: {e:#}"),
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(200);
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 4 + 1));
        tracing::info!(train = %cfg.id, "reconnecting in {:?}", backoff + jitter);
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = stopped(&mut shutdown) => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    shared.stop.store(true, Ordering::Relaxed);
    drop(frames);
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}

/// Render and encode at the configured rate while connected. Never bursts to catch up.
fn camera_loop(mut camera: Camera, cam: u16, fps: u32, shared: Arc<Shared>, tx: mpsc::Sender<Frame>) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(fps.max(1)));
    let mut next = Instant::now();
    let mut frame_no: u64 = 0;
    let mut seq = FrameSeq(0);
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        } else if now - next > interval {
            next = now; // fell behind: skip ahead instead of bursting
        }
        next += interval;
        if !shared.connected.load(Ordering::Relaxed) {
            shared.force_keyframe[usize::from(cam)].store(true, Ordering::Relaxed);
            continue;
        }
        let force = shared.force_keyframe[usize::from(cam)].swap(false, Ordering::Relaxed);
        let capture_us = now_us();
        let encoded = match camera.encode_next(frame_no, capture_us, shared.speed(), force) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("camera {cam}: {e}");
                continue;
            }
        };
        frame_no += 1;
        let frame = Frame {
            codec: Codec::H264AnnexB,
            camera: cam,
            seq: seq.0,
            capture_us,
            data: encoded.data,
            keyframe: encoded.keyframe,
        };
        seq = seq.next();
        match tx.try_send(frame) {
            Ok(()) => {}
            // The network side is behind: this frame is lost, so the next one must be a keyframe.
            Err(mpsc::error::TrySendError::Full(_)) => {
                shared.force_keyframe[usize::from(cam)].store(true, Ordering::Relaxed)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// One Opus packet every 20 ms while connected (docs/wire-format.md §2.7). Capture times are on
/// the wall clock that stamps the video, exactly 20 ms apart within a run of packets, and always
/// increasing: a run starts at the first packet after a (re)connection, and again when the wall
/// clock gets more than two packets ahead of the run (the thread was late, or the clock was
/// stepped forward). A run ahead of the wall clock (packets sent back to back to catch up after a
/// short stall, or a clock stepped back) goes on: starting again there would go back in time.
fn microphone_loop(mut mic: Microphone, id: u16, shared: Arc<Shared>, tx: mpsc::Sender<Frame>) {
    let interval = Duration::from_millis(u64::from(audio::FRAME_MS));
    let step_us = u64::from(audio::FRAME_MS) * 1000;
    let mut next = Instant::now();
    let mut seq = FrameSeq(0);
    // Capture time of the run's first packet, and packets since.
    let mut run: Option<(u64, u64)> = None;
    let mut dropped = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        } else if now - next > interval * 5 {
            next = now; // fell far behind: skip ahead instead of bursting
            run = None;
        }
        next += interval;
        if !shared.connected.load(Ordering::Relaxed) {
            run = None;
            continue;
        }
        let wall = now_us();
        let (start, k) = match run {
            Some((start, k)) if wall.saturating_sub(start + k * step_us) <= 2 * step_us => (start, k),
            _ => (wall, 0),
        };
        run = Some((start, k + 1));
        let data = match mic.next_packet() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("microphone: {e}");
                continue;
            }
        };
        let frame =
            Frame { codec: Codec::Opus, camera: id, seq: seq.0, capture_us: start + k * step_us, data, keyframe: true };
        seq = seq.next();
        match tx.try_send(frame) {
            Ok(()) => {}
            // The network side is behind: this packet is lost (the next one decodes on its own).
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "audio packets dropped: the sending side is behind");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &TrainConfig,
    addr: std::net::SocketAddr,
    discovered: Option<&Target>,
    frames: &mut mpsc::Receiver<Frame>,
    shared: &Shared,
    manifest: Option<&Manifest>,
    shutdown: &mut watch::Receiver<bool>,
    odometer_m: &mut f64,
) -> anyhow::Result<End> {
    let endpoint = connect::endpoint(addr)?;
    let (client, server_name) = cfg.trust.quic(discovered, cfg.idle_timeout)?;
    let connecting = endpoint.connect_with(client, addr, &server_name)?;
    let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| anyhow::anyhow!("QUIC handshake timed out"))?
        .map_err(|e| {
            anyhow::Error::from(e)
                .context(format!("QUIC handshake with {addr}: the server must present {}", cfg.trust.describe()))
        })?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ControlMessage::Hello(Hello {
        train_id: cfg.id.clone(),
        cameras: (0..cfg.cameras)
            .map(|id| CameraInfo {
                id: CameraId(id),
                codec: "h264".into(),
                width: cfg.video.width,
                height: cfg.video.height,
                fps: cfg.video.fps,
            })
            .collect(),
        audio: cfg.audio_sources(),
        software: Some(concat!("railcast-train-sim/", env!("CARGO_PKG_VERSION")).into()),
        token: cfg.token.clone(),
    });
    send.write_all(&hello.to_bytes()).await?;
    let mut decoder = ControlDecoder::new(railcast_protocol::control::DEFAULT_MAX_BODY);
    let welcome = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv, &mut decoder))
        .await
        .map_err(|_| anyhow::anyhow!("no welcome within 5 s"))??;
    match welcome {
        Some(ControlMessage::Welcome(w)) => {
            tracing::info!(train = %cfg.id, server = %addr, max_payload = w.max_payload, "connected");
        }
        Some(ControlMessage::Error(ErrorMessage { code, message })) => {
            anyhow::bail!("server refused: {code}: {message}")
        }
        other => anyhow::bail!("expected a welcome, got {other:?}"),
    }
    // Frames encoded before this session are stale.
    while frames.try_recv().is_ok() {}
    shared.force_all();
    shared.connected.store(true, Ordering::Relaxed);

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
    let mut telemetry = tokio::time::interval(Duration::from_secs(1));
    let mut last_tick = Instant::now();
    let result = loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break Ok(End::Shutdown) };
                if let Err(e) = send_frame(&conn, cfg, &frame, manifest).await {
                    break Ok(End::Lost(e.to_string()));
                }
            }
            msg = incoming.recv() => match msg {
                Some(Ok(Some(ControlMessage::Command(cmd)))) => {
                    let ack = execute(cfg, shared, cmd);
                    let _ = ctl_tx.send(ControlMessage::CommandAck(ack)).await;
                }
                Some(Ok(Some(ControlMessage::KeyframeRequest(req)))) => match req.camera {
                    Some(CameraId(c)) => if let Some(f) = shared.force_keyframe.get(usize::from(c)) { f.store(true, Ordering::Relaxed) },
                    None => shared.force_all(),
                },
                Some(Ok(Some(ControlMessage::Error(ErrorMessage { code, message })))) => {
                    tracing::warn!(train = %cfg.id, %code, "server error: {message}");
                }
                Some(Ok(Some(other))) => tracing::debug!(train = %cfg.id, "ignoring {}", other.name()),
                Some(Ok(None)) | None => break Ok(End::Lost(close_reason(&conn))),
                Some(Err(e)) => break Ok(End::Lost(format!("{e}; {}", close_reason(&conn)))),
            },
            _ = telemetry.tick() => {
                let now = Instant::now();
                *odometer_m += f64::from(shared.speed()) / 3.6 * now.duration_since(last_tick).as_secs_f64();
                last_tick = now;
                let t = Telemetry { timestamp_us: now_us(), speed_kmh: shared.speed(), odometer_m: *odometer_m, horn: shared.horn() };
                let _ = ctl_tx.try_send(ControlMessage::Telemetry(t));
            }
            e = conn.closed() => break Ok(End::Lost(e.to_string())),
            _ = stopped(shutdown) => {
                conn.close(0u32.into(), b"train shutting down");
                break Ok(End::Shutdown);
            }
        }
    };
    shared.connected.store(false, Ordering::Relaxed);
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
    cfg: &TrainConfig,
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
    let packets: Vec<Bytes> = packetize(meta, &frame.data, cfg.max_payload)?;
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

fn execute(cfg: &TrainConfig, shared: &Shared, cmd: Command) -> CommandAck {
    let Command { command_id, command } = cmd;
    let (ok, message) = match command {
        Action::RequestKeyframe { camera: None } => {
            shared.force_all();
            (true, "keyframe requested on every camera".to_owned())
        }
        Action::RequestKeyframe { camera: Some(CameraId(c)) } => match shared.force_keyframe.get(usize::from(c)) {
            Some(f) => {
                f.store(true, Ordering::Relaxed);
                (true, format!("keyframe requested on camera {c}"))
            }
            None => (false, format!("no camera {c}")),
        },
        Action::SetSpeed { kmh } => {
            shared.speed_bits.store(kmh.to_bits(), Ordering::Relaxed);
            (true, format!("speed set to {kmh} km/h"))
        }
        Action::Horn { duration_ms } => {
            if let Ok(mut h) = shared.horn_until.lock() {
                *h = Some(Instant::now() + Duration::from_millis(u64::from(duration_ms)));
            }
            (true, format!("horn for {duration_ms} ms"))
        }
    };
    tracing::info!(train = %cfg.id, command_id, ok, "command: {message}");
    CommandAck { command_id, ok, message }
}
