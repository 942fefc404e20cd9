//! A synthetic train: the simulator's pinned QUIC client (`railcast_train_sim::connect`), the
//! hello/welcome exchange of docs/wire-format.md §3.1, then frames of random bytes shaped as H.264
//! NAL units ([`synthetic_access_unit`]), sized for the bitrate, packetized with
//! `railcast_protocol::packet::packetize`. `capture_us` is the wall clock
//! when the frame is handed to QUIC, so client latency is the relay's (plus loopback and QUIC).
//! Keyframe requests and commands are answered like a real train.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use railcast_protocol::control::{CameraInfo, ControlMessage, Hello, Telemetry, DEFAULT_MAX_BODY};
use railcast_protocol::packet::{packetize, Codec, FrameMeta};
use railcast_protocol::{CameraId, CommandAck, ControlDecoder, FrameSeq, TrainId};
use railcast_train_sim::connect;
use railcast_train_sim::train::read_frame;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::stats::{now_us, Window};

#[derive(Debug, Clone)]
pub struct TrainSpec {
    pub id: String,
    pub cameras: u16,
    /// Whole train, split evenly over its cameras.
    pub bitrate_bps: u64,
    pub fps: u32,
    /// A keyframe every `gop` frames (and after a keyframe request).
    pub gop: u32,
    /// Sent in the hello (the server's generated token for this id).
    pub token: Option<String>,
}

impl TrainSpec {
    /// Train `id` with `cameras` at `bitrate_bps` (whole train), the run's fps and GOP, and the
    /// token the server generated for that id.
    pub fn new(
        id: String,
        cameras: u16,
        bitrate_bps: u64,
        ctx: &crate::cli::Ctx,
        server: &crate::server::Server,
    ) -> Self {
        let token = server.train_token(&id);
        Self { id, cameras, bitrate_bps, fps: ctx.fps, gop: ctx.gop, token }
    }

    /// Bytes of one encoded frame of one camera.
    pub fn frame_bytes(&self) -> usize {
        frame_bytes(self.bitrate_bps / u64::from(self.cameras.max(1)), self.fps)
    }
}

/// Bytes of one frame of a camera sending `bitrate_bps` at `fps` (at least one).
pub fn frame_bytes(bitrate_bps: u64, fps: u32) -> usize {
    ((bitrate_bps / 8) / u64::from(fps.max(1))).max(1) as usize
}

/// What a train sent.
#[derive(Debug, Default)]
pub struct TrainStats {
    pub frames: AtomicU64,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Frames (all cameras) captured inside the measurement window.
    pub window_frames: AtomicU64,
    /// Packets and packet bytes of those frames.
    pub window_packets: AtomicU64,
    pub window_bytes: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub commands: AtomicU64,
}

#[derive(Debug)]
pub struct Train {
    pub spec: TrainSpec,
    pub stats: Arc<TrainStats>,
    stop: watch::Sender<bool>,
    /// While true, the send loop skips its ticks (no frame, no frame number used).
    paused: Arc<AtomicBool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Train {
    /// Connect (discovery, QUIC, hello → welcome), then send video in a task until stopped.
    pub async fn start(http_base: &str, spec: TrainSpec, window: Arc<Window>) -> anyhow::Result<Train> {
        let target = connect::discover(http_base).await?;
        let endpoint = connect::endpoint(target.addr)?;
        let cfg = connect::client_config(target.sha256, Duration::from_secs(10))?;
        let conn = tokio::time::timeout(Duration::from_secs(5), endpoint.connect_with(cfg, target.addr, "localhost")?)
            .await
            .map_err(|_| anyhow!("QUIC handshake timed out"))??;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = ControlMessage::Hello(Hello {
            train_id: TrainId::new(spec.id.clone()).map_err(|e| anyhow!("train id {}: {e}", spec.id))?,
            cameras: (0..spec.cameras)
                .map(|id| CameraInfo {
                    id: CameraId(id),
                    codec: "h264".into(),
                    width: 1280,
                    height: 720,
                    fps: spec.fps,
                })
                .collect(),
            audio: Vec::new(),
            software: Some(concat!("railcast-bench/", env!("CARGO_PKG_VERSION")).into()),
            token: spec.token.clone().map(railcast_protocol::Secret),
        });
        send.write_all(&hello.to_bytes()).await?;
        let mut decoder = ControlDecoder::new(DEFAULT_MAX_BODY);
        let welcome = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv, &mut decoder))
            .await
            .map_err(|_| anyhow!("no welcome within 5 s"))??;
        let max_payload = match welcome {
            Some(ControlMessage::Welcome(w)) => {
                (w.max_payload as usize).clamp(1, railcast_protocol::DEFAULT_MAX_PAYLOAD)
            }
            other => bail!("expected a welcome, got {other:?}"),
        };

        let stats = Arc::new(TrainStats::default());
        let force = Arc::new(AtomicBool::new(true));
        let (stop, stop_rx) = watch::channel(false);
        let paused = Arc::new(AtomicBool::new(false));

        // Control stream: a writer fed by a channel, a reader answering commands and keyframe
        // requests.
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMessage>(64);
        tokio::spawn(async move {
            while let Some(m) = ctl_rx.recv().await {
                if send.write_all(&m.to_bytes()).await.is_err() {
                    break;
                }
            }
            let _ = send.finish();
        });
        {
            let (force, stats, ctl_tx) = (Arc::clone(&force), Arc::clone(&stats), ctl_tx.clone());
            tokio::spawn(async move {
                while let Ok(Some(m)) = read_frame(&mut recv, &mut decoder).await {
                    match m {
                        ControlMessage::KeyframeRequest(_) => {
                            stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                            force.store(true, Ordering::Relaxed);
                        }
                        ControlMessage::Command(c) => {
                            stats.commands.fetch_add(1, Ordering::Relaxed);
                            let ack = CommandAck { command_id: c.command_id, ok: true, message: "bench".into() };
                            let _ = ctl_tx.try_send(ControlMessage::CommandAck(ack));
                        }
                        _ => {}
                    }
                }
            });
        }

        let task = tokio::spawn(send_loop(
            conn,
            endpoint,
            spec.clone(),
            max_payload,
            Arc::clone(&stats),
            force,
            Arc::clone(&paused),
            window,
            ctl_tx,
            stop_rx,
        ));
        Ok(Train { spec, stats, stop, paused, task })
    }

    /// Stop sending frames but keep the connection (telemetry and control go on), so that what
    /// was sent can be compared with what the server counted once the frames in flight landed.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    /// Stop sending and close the connection; the error that ended the train early, if any.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(anyhow!("train task: {e}")),
            Err(_) => Err(anyhow!("train did not stop within 5 s")),
        }
    }
}

/// Resolves when `rx` turns true (or its sender is gone); keeps the watch guard out of the
/// caller's future.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[allow(clippy::too_many_arguments)]
async fn send_loop(
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    spec: TrainSpec,
    max_payload: usize,
    stats: Arc<TrainStats>,
    force: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    window: Arc<Window>,
    ctl: mpsc::Sender<ControlMessage>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let size = spec.frame_bytes();
    let (key_payload, delta_payload) = (synthetic_access_unit(size, true), synthetic_access_unit(size, false));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(spec.fps.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut telemetry = tokio::time::interval(Duration::from_secs(1));
    let mut frame_no: u64 = 0;
    let mut seq = FrameSeq(0);
    let result = loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break Ok(()),
            e = conn.closed() => break Err(anyhow!("connection closed: {e}")),
            _ = telemetry.tick() => {
                let t = Telemetry { timestamp_us: now_us(), speed_kmh: 80.0, odometer_m: 0.0, horn: false, operator_lost: false };
                let _ = ctl.try_send(ControlMessage::Telemetry(t));
            }
            _ = tick.tick() => {
                if paused.load(Ordering::Relaxed) {
                    continue;
                }
                let keyframe = frame_no.is_multiple_of(u64::from(spec.gop.max(1))) || force.swap(false, Ordering::Relaxed);
                let payload = if keyframe { &key_payload } else { &delta_payload };
                if let Err(e) = send_frame(&conn, &spec, payload, max_payload, keyframe, seq, &stats, &window).await {
                    break Err(e);
                }
                frame_no += 1;
                seq = seq.next();
            }
        }
    };
    conn.close(0u32.into(), b"bench done");
    let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
    result
}

/// A real SPS and PPS (libx264, 320×240, High profile, as in the server's recorder tests), with
/// their start codes. The recorder parses the SPS for the picture size of its `avcC`.
const PARAMETER_SETS: &[u8] = &[
    0, 0, 0, 1, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
    0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60, 0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
];

/// `size` bytes shaped like an H.264 Annex B access unit: a keyframe is a real SPS and PPS
/// ([`PARAMETER_SETS`]) and an IDR slice of random bytes, a delta frame one non-IDR slice of random
/// bytes. Relays that look inside (WHEP's media tracks check for parameter sets before an IDR, RTP
/// packetization splits at NAL units, the recorder builds its `avcC` from the SPS and PPS) then
/// handle every frame as they would a camera's; a decoder would still refuse the slices. No byte
/// of a slice is zero, so no start code appears inside one.
fn synthetic_access_unit(size: usize, keyframe: bool) -> Vec<u8> {
    let mut rng = rand::rng();
    let mut out = Vec::with_capacity(size.max(64));
    let mut nal = |out: &mut Vec<u8>, header: u8, len: usize| {
        out.extend_from_slice(&[0, 0, 0, 1, header]);
        out.extend((0..len).map(|_| rng.random_range(1..=255u8)));
    };
    if keyframe {
        out.extend_from_slice(PARAMETER_SETS);
        let used = out.len() + 5;
        nal(&mut out, 0x65, size.saturating_sub(used).max(1)); // IDR slice
    } else {
        nal(&mut out, 0x41, size.saturating_sub(5).max(1)); // non-IDR slice
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn send_frame(
    conn: &quinn::Connection,
    spec: &TrainSpec,
    payload: &[u8],
    max_payload: usize,
    keyframe: bool,
    seq: FrameSeq,
    stats: &TrainStats,
    window: &Window,
) -> anyhow::Result<()> {
    for cam in 0..spec.cameras {
        let capture_us = now_us();
        let meta = FrameMeta { keyframe, codec: Codec::H264AnnexB, camera: CameraId(cam), seq, capture_us };
        let packets: Vec<Bytes> = packetize(meta, payload, max_payload).context("packetize")?;
        let n = packets.len() as u64;
        let mut bytes = 0;
        for p in packets {
            bytes += p.len() as u64;
            stats.bytes.fetch_add(p.len() as u64, Ordering::Relaxed);
            conn.send_datagram_wait(p).await.context("send datagram")?;
        }
        stats.packets.fetch_add(n, Ordering::Relaxed);
        stats.frames.fetch_add(1, Ordering::Relaxed);
        if window.contains(capture_us) {
            stats.window_frames.fetch_add(1, Ordering::Relaxed);
            stats.window_packets.fetch_add(n, Ordering::Relaxed);
            stats.window_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    Ok(())
}
