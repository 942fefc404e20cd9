//! One simulated train: camera threads that render and encode, optionally a microphone thread
//! (`--audio tone`, Opus), and the train's behaviour (speed, horn, the safe state after
//! `operator_lost`) behind the shared QUIC session of [`railcast_uplink::session`].

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use railcast_protocol::control::{AudioInfo, CameraInfo, Command, Telemetry};
use railcast_protocol::packet::Codec;
use railcast_protocol::{Action, CameraId, CommandAck, FrameSeq, Secret, TrainId};
use railcast_uplink::session::{AckFuture, Frame, Train, UplinkConfig};
use tokio::sync::{mpsc, watch};

use crate::audio::{self, AudioSource, Microphone};
use crate::connect::Trust;
use crate::manifest::Manifest;
use crate::video::{Camera, VideoConfig};

pub use railcast_uplink::session::{now_us, read_frame, Source};

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
    /// Which of several servers is tried first (`--server-order`).
    pub server_order: railcast_uplink::ServerOrder,
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

/// State shared by the camera threads and the session task.
#[derive(Debug)]
struct Shared {
    speed_bits: AtomicU32,
    force_keyframe: Vec<AtomicBool>,
    connected: AtomicBool,
    stop: AtomicBool,
    horn_until: Mutex<Option<Instant>>,
    /// `operator_lost` put the train in its safe state (stopped) until the next `set_speed`.
    operator_lost: AtomicBool,
    /// Metres travelled, and when it was last advanced.
    odometer: Mutex<(f64, Instant)>,
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

/// Run one train until `shutdown` turns true.
pub async fn run(cfg: TrainConfig, source: Source, manifest: Option<Arc<Manifest>>, shutdown: watch::Receiver<bool>) {
    let shared = Arc::new(Shared {
        speed_bits: AtomicU32::new(cfg.initial_speed_kmh.to_bits()),
        force_keyframe: (0..cfg.cameras).map(|_| AtomicBool::new(true)).collect(),
        connected: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        horn_until: Mutex::new(None),
        operator_lost: AtomicBool::new(false),
        odometer: Mutex::new((0.0, Instant::now())),
    });
    // Room for the cameras' frames and for the microphone's 50 packets a second.
    let (tx, frames) = mpsc::channel::<Frame>(16);
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

    let uplink = UplinkConfig {
        id: cfg.id.clone(),
        token: cfg.token.clone(),
        trust: cfg.trust.clone(),
        max_payload: cfg.max_payload,
        idle_timeout: cfg.idle_timeout,
        software: concat!("railcast-train-sim/", env!("CARGO_PKG_VERSION")).into(),
        server_order: cfg.server_order,
    };
    let train = Arc::new(SimTrain { cfg, shared: Arc::clone(&shared) });
    railcast_uplink::run(uplink, source, train, frames, manifest, shutdown).await;
    shared.stop.store(true, Ordering::Relaxed);
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
            data: Bytes::from(encoded.data),
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
        let frame = Frame {
            codec: Codec::Opus,
            camera: id,
            seq: seq.0,
            capture_us: start + k * step_us,
            data: Bytes::from(data),
            keyframe: true,
        };
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

/// The simulated train behind the session: its cameras and microphone as announced, its
/// speed, horn and safe state, its telemetry.
struct SimTrain {
    cfg: TrainConfig,
    shared: Arc<Shared>,
}

impl Train for SimTrain {
    fn hello(&self) -> (Vec<CameraInfo>, Vec<AudioInfo>) {
        let v = &self.cfg.video;
        let cameras = (0..self.cfg.cameras)
            .map(|id| CameraInfo {
                id: CameraId(id),
                codec: "h264".into(),
                width: v.width,
                height: v.height,
                fps: v.fps,
            })
            .collect();
        (cameras, self.cfg.audio_sources())
    }

    fn connected(&self, up: bool) {
        if up {
            self.shared.force_all();
        }
        self.shared.connected.store(up, Ordering::Relaxed);
    }

    fn keyframe_requested(&self, camera: Option<CameraId>) {
        match camera {
            Some(CameraId(c)) => {
                if let Some(f) = self.shared.force_keyframe.get(usize::from(c)) {
                    f.store(true, Ordering::Relaxed)
                }
            }
            None => self.shared.force_all(),
        }
    }

    fn execute(&self, cmd: Command) -> AckFuture {
        let ack = execute(&self.cfg, &self.shared, cmd);
        Box::pin(async move { ack })
    }

    fn telemetry(&self) -> Option<Telemetry> {
        let now = Instant::now();
        let odometer_m = match self.shared.odometer.lock() {
            Ok(mut o) => {
                o.0 += f64::from(self.shared.speed()) / 3.6 * now.duration_since(o.1).as_secs_f64();
                o.1 = now;
                o.0
            }
            Err(_) => return None,
        };
        Some(Telemetry {
            timestamp_us: now_us(),
            speed_kmh: self.shared.speed(),
            odometer_m,
            horn: self.shared.horn(),
            operator_lost: self.shared.operator_lost.load(Ordering::Relaxed),
        })
    }
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
            shared.operator_lost.store(false, Ordering::Relaxed);
            (true, format!("speed set to {kmh} km/h"))
        }
        Action::OperatorLost { operator, reason } => {
            // The safe state: stop at once (a real train would brake as its rules say), and
            // stay stopped until an operator sets a speed again.
            shared.speed_bits.store(0f32.to_bits(), Ordering::Relaxed);
            shared.operator_lost.store(true, Ordering::Relaxed);
            tracing::warn!(train = %cfg.id, operator, "operator lost ({reason}): braking to 0 km/h");
            (true, format!("operator {operator} lost ({reason}): braking to 0 km/h"))
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
