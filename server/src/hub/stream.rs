//! One train's stream: its cameras and audio sources, GOP caches, subscribers, pending commands
//! and live rates.
//!
//! Audio packets (Opus, docs/wire-format.md §2.7) take the same path as video: every one is a
//! one-chunk keyframe, so the drop policy needs nothing new. They are not GOP-cached: a late
//! joiner's audio starts with the next packet, 20 ms later, rather than with a stale one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use railcast_protocol::control::{AudioInfo, CameraInfo, Command};
use railcast_protocol::packet::VideoHeader;
use railcast_protocol::{CommandAck, ControlMessage, DecodeError, Hello, Telemetry, TrainId};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::subscriber::{Offer, Slot, SubscriberCounters, Subscription};
use super::{CommandError, HubConfig, Packet};
use crate::metrics::{self, METRICS};

/// Most commands one train may have in flight.
const MAX_PENDING_COMMANDS: usize = 256;
/// Capacity of a train's event channel (online/offline/telemetry) per receiver.
const EVENT_CAPACITY: usize = 64;

/// Something that happened to a train, for the sessions watching it.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    Online {
        cameras: Vec<CameraInfo>,
        audio: Vec<AudioInfo>,
    },
    Offline {
        reason: String,
    },
    Telemetry(Telemetry),
    /// Who controls the train changed (`hub::control`).
    Control {
        holder: Option<railcast_protocol::client::ControlHolder>,
        reason: String,
    },
}

/// Why a packet from a train was not relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error("camera {0} was not announced in the hello")]
    UnknownCamera(u16),
    /// An Opus packet on a camera's id, or video on an audio source's.
    #[error("{codec} packet on {track}, which the hello announced as another kind of track")]
    CodecMismatch { track: String, codec: &'static str },
    #[error("this connection was replaced by a newer one for the same train")]
    Replaced,
}

impl PublishError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(e) => e.label(),
            Self::UnknownCamera(_) => "unknown_camera",
            Self::CodecMismatch { .. } => "codec_mismatch",
            Self::Replaced => "replaced",
        }
    }
}

/// Frames and bytes per second over the last full one-second window.
#[derive(Debug)]
struct RateMeter {
    window_start: Instant,
    bytes: u64,
    frames: u64,
    bitrate_bps: f64,
    fps: f64,
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_secs(1);

    fn new(now: Instant) -> Self {
        Self { window_start: now, bytes: 0, frames: 0, bitrate_bps: 0.0, fps: 0.0 }
    }
    fn add(&mut self, now: Instant, bytes: usize, frame: bool) {
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= Self::WINDOW {
            let secs = elapsed.as_secs_f64();
            // A gap longer than two windows means the stream paused: rates restart from zero.
            let (b, f) = if elapsed >= 2 * Self::WINDOW { (0, 0) } else { (self.bytes, self.frames) };
            self.bitrate_bps = b as f64 * 8.0 / secs;
            self.fps = f as f64 / secs;
            self.window_start = now;
            self.bytes = 0;
            self.frames = 0;
        }
        self.bytes += bytes as u64;
        self.frames += u64::from(frame);
    }
    fn read(&self, now: Instant) -> (f64, f64) {
        if now.duration_since(self.window_start) > 2 * Self::WINDOW {
            (0.0, 0.0)
        } else {
            (self.bitrate_bps, self.fps)
        }
    }
}

/// Packets since the last keyframe of one camera, for subscribers that join mid-GOP.
#[derive(Debug, Default)]
struct Gop {
    packets: Vec<Packet>,
    bytes: usize,
    valid: bool,
}

impl Gop {
    fn push(&mut self, p: &Packet, cap: usize) {
        if p.header.starts_keyframe() {
            self.clear();
            self.valid = true;
        }
        if !self.valid {
            return;
        }
        if self.bytes + p.bytes.len() > cap {
            // Too long to cache: new subscribers wait for the next keyframe instead.
            self.clear();
            return;
        }
        self.bytes += p.bytes.len();
        self.packets.push(p.clone());
    }
    fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.valid = false;
    }
}

#[derive(Debug)]
struct Camera {
    info: CameraInfo,
    gop: Gop,
    meter: RateMeter,
    frames: u64,
    bytes: u64,
}

/// An audio source of the current hello, and what it sent.
#[derive(Debug)]
struct Audio {
    info: AudioInfo,
    packets: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Online {
    control: mpsc::Sender<ControlMessage>,
    replaced: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct State {
    generation: u64,
    online: Option<Online>,
    cameras: Vec<Camera>,
    audio: Vec<Audio>,
    software: Option<String>,
    connected_since: Option<SystemTime>,
    last_seen: Option<SystemTime>,
    offline_reason: String,
    subscribers: Vec<Slot>,
    pending: HashMap<u64, oneshot::Sender<Result<CommandAck, CommandError>>>,
    last_keyframe_request: Option<Instant>,
    malformed: BTreeMap<&'static str, u64>,
    /// The train's last `status` frame and when it came (cleared by a new connection's hello).
    sources: Option<(railcast_protocol::control::Status, Instant)>,
    /// How the train's latest connection reached the server (`quic`, `whip`).
    ingest: &'static str,
}

impl State {
    /// Empty every camera's GOP cache; it takes packets again from the next keyframe.
    fn clear_gops(&mut self) {
        for cam in &mut self.cameras {
            cam.gop.clear();
        }
    }
}

/// Totals since the stream was created.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_in: AtomicU64,
    pub packets_rejected: AtomicU64,
    pub connections: AtomicU64,
    /// Frames this train's subscribers did not get (queue full, waiting for a keyframe).
    pub frames_dropped: AtomicU64,
}

/// A point-in-time view of a stream, for the API.
#[derive(Debug, Clone)]
pub struct StreamSnapshot {
    pub train_id: TrainId,
    pub online: bool,
    pub cameras: Vec<CameraSnapshot>,
    pub software: Option<String>,
    pub connected_since: Option<SystemTime>,
    pub last_seen: Option<SystemTime>,
    pub offline_reason: Option<String>,
    pub bitrate_bps: f64,
    pub fps: f64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub frames_in: u64,
    /// Frames its subscribers did not get, since the stream was created.
    pub frames_dropped: u64,
    pub rejected: BTreeMap<String, u64>,
    pub subscribers: usize,
    pub connections: u64,
    /// How the train's latest connection reached the server: `quic` or `whip` (`None` before
    /// the first).
    pub ingest: Option<&'static str>,
    /// Who controls the train (`hub::control`).
    pub control: Option<railcast_protocol::client::ControlHolder>,
    /// The train's last word on its sources, and how long ago.
    pub sources: Vec<(railcast_protocol::control::SourceStatus, std::time::Duration)>,
}

#[derive(Debug, Clone)]
pub struct CameraSnapshot {
    pub info: CameraInfo,
    pub bitrate_bps: f64,
    pub fps: f64,
    pub frames: u64,
    pub bytes: u64,
}

/// One train's stream. Lives as long as the hub, across the train's reconnects, so subscribers
/// stay attached while the train is away and get video again when it returns.
#[derive(Debug)]
pub struct Stream {
    train_id: TrainId,
    config: HubConfig,
    state: Mutex<State>,
    pub(super) events: broadcast::Sender<TrainEvent>,
    pub counters: StreamCounters,
    /// The control lease (`hub::control`).
    pub(super) control: super::control::ControlSlot,
}

impl Stream {
    /// `control_changes`: notified at every change of the control lease.
    pub(super) fn new(train_id: TrainId, config: HubConfig, control_changes: Arc<tokio::sync::Notify>) -> Self {
        Self {
            train_id,
            config,
            state: Mutex::new(State {
                generation: 0,
                online: None,
                cameras: Vec::new(),
                audio: Vec::new(),
                software: None,
                connected_since: None,
                last_seen: None,
                offline_reason: String::new(),
                subscribers: Vec::new(),
                pending: HashMap::new(),
                last_keyframe_request: None,
                malformed: BTreeMap::new(),
                sources: None,
                ingest: "",
            }),
            events: broadcast::channel(EVENT_CAPACITY).0,
            counters: StreamCounters::default(),
            control: super::control::ControlSlot::new(control_changes),
        }
    }

    pub fn train_id(&self) -> &TrainId {
        &self.train_id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the stream, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_online(&self) -> bool {
        self.lock().online.is_some()
    }

    /// Whether the train is online through another node of a cluster (a mirror): its control
    /// lease is held on that node, never here.
    pub fn mirrored(&self) -> bool {
        self.connection().is_some_and(|(ingest, _)| ingest == crate::metrics::CLUSTER)
    }

    /// While the train is online: the ingest it came by and how many connections it has had
    /// (which numbers the current one). Cheap, unlike [`Stream::snapshot`].
    pub fn connection(&self) -> Option<(&'static str, u64)> {
        let st = self.lock();
        st.online.as_ref()?;
        let ingest = if st.ingest.is_empty() { crate::metrics::QUIC } else { st.ingest };
        Some((ingest, self.counters.connections.load(Ordering::Relaxed)))
    }

    pub fn cameras(&self) -> Vec<CameraInfo> {
        self.lock().cameras.iter().map(|c| c.info.clone()).collect()
    }

    /// The audio sources of the latest hello, in its order (kept while offline, as the cameras).
    pub fn audio(&self) -> Vec<AudioInfo> {
        self.lock().audio.iter().map(|a| a.info.clone()).collect()
    }

    /// Packets and bytes received from each audio source of the current hello.
    pub fn audio_counts(&self) -> Vec<(AudioInfo, u64, u64)> {
        self.lock().audio.iter().map(|a| (a.info.clone(), a.packets, a.bytes)).collect()
    }

    pub(super) fn go_online(
        &self,
        hello: Hello,
        control: mpsc::Sender<ControlMessage>,
        ingest: &'static str,
    ) -> (u64, oneshot::Receiver<()>) {
        let now = Instant::now();
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        if let Some(mut old) = st.online.take() {
            if let Some(replaced) = old.replaced.take() {
                let _ = replaced.send(());
            }
            let reason = "replaced by a new connection for the same train id".to_owned();
            self.emit(&st, TrainEvent::Offline { reason });
        }
        st.generation += 1;
        st.pending.clear();
        st.cameras = hello
            .cameras
            .iter()
            .map(|info| Camera {
                info: info.clone(),
                gop: Gop::default(),
                meter: RateMeter::new(now),
                frames: 0,
                bytes: 0,
            })
            .collect();
        st.audio = hello.audio.iter().map(|info| Audio { info: info.clone(), packets: 0, bytes: 0 }).collect();
        st.software = hello.software;
        st.sources = None;
        st.ingest = ingest;
        st.online = Some(Online { control, replaced: Some(tx) });
        st.connected_since = Some(SystemTime::now());
        st.offline_reason.clear();
        for slot in &mut st.subscribers {
            slot.wait_for_keyframe_all();
        }
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        METRICS.train_connections.inc();
        self.emit(&st, TrainEvent::Online { cameras: hello.cameras, audio: hello.audio });
        let generation = st.generation;
        drop(st);
        if ingest != crate::metrics::CLUSTER {
            self.control_end_remote(format!(
                "{} connected to this node; the lease held on its former node ended",
                self.train_id()
            ));
        }
        (generation, rx)
    }

    /// [`Stream::emit`] for the other parts of the hub.
    pub(super) fn emit_event(&self, event: TrainEvent) {
        let st = self.lock();
        self.emit(&st, event);
    }

    /// Send an event to every subscriber, and wake them: a subscription waits on its packet
    /// queue's waker only (see `super::queue`).
    fn emit(&self, st: &State, event: TrainEvent) {
        let _ = self.events.send(event);
        for slot in &st.subscribers {
            slot.notify();
        }
    }

    pub(super) fn set_offline_reason(&self, generation: u64, reason: String) {
        let mut st = self.lock();
        if st.generation == generation {
            st.offline_reason = reason;
        }
    }

    pub(super) fn forget_gops(&self, generation: u64) {
        let mut st = self.lock();
        if st.generation == generation {
            st.clear_gops();
        }
    }

    pub(super) fn go_offline(&self, generation: u64) {
        let mut st = self.lock();
        if st.generation != generation || st.online.is_none() {
            return; // replaced by a newer connection, which stays online
        }
        st.online = None;
        st.pending.clear(); // waiting callers see TrainLost
        st.last_seen = Some(SystemTime::now());
        st.clear_gops();
        if st.offline_reason.is_empty() {
            st.offline_reason = "connection closed".into();
        }
        let reason = st.offline_reason.clone();
        self.emit(&st, TrainEvent::Offline { reason });
        drop(st);
        self.control_forget_remote("the train went offline");
    }

    pub(super) fn publish(&self, generation: u64, bytes: Bytes) -> Result<(), PublishError> {
        let mut result = Ok(());
        self.publish_batch(generation, std::iter::once(bytes), |e| result = Err(e));
        result
    }

    /// Validate `datagrams` and fan out the valid ones, in order, under one hold of the stream's
    /// lock: each subscriber's queue is locked once for all of them and its session woken once
    /// (a frame's chunks, when the train's connection had them together). `rejected` is told
    /// about each invalid packet (counted, as by [`Self::reject`]) and each one of a replaced
    /// connection.
    pub(super) fn publish_batch(
        &self,
        generation: u64,
        datagrams: impl IntoIterator<Item = Bytes>,
        mut rejected: impl FnMut(PublishError),
    ) {
        let mut packets = Vec::new();
        let mut errors = Vec::new();
        for bytes in datagrams {
            match VideoHeader::parse(&bytes, self.config.max_payload) {
                Ok(header) => packets.push(Packet { bytes, header }),
                Err(e) => errors.push(PublishError::from(e)),
            }
        }
        let now = Instant::now();
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.generation != generation {
            drop(guard);
            packets.iter().for_each(|_| rejected(PublishError::Replaced));
        } else {
            packets.retain(|packet| {
                let header = &packet.header;
                let mismatch = |track: String| PublishError::CodecMismatch { track, codec: header.codec.name() };
                if let Some(cam) = st.cameras.iter_mut().find(|c| c.info.id == header.camera) {
                    if header.codec.is_audio() {
                        errors.push(mismatch(format!("camera {}", header.camera)));
                        return false;
                    }
                    cam.meter.add(now, packet.bytes.len(), header.starts_frame());
                    cam.gop.push(packet, self.config.gop_cache_bytes);
                    cam.bytes += packet.bytes.len() as u64;
                    cam.frames += u64::from(header.starts_frame());
                } else if let Some(audio) = st.audio.iter_mut().find(|a| a.info.id == header.camera) {
                    if !header.codec.is_audio() {
                        errors.push(mismatch(format!("audio source {}", header.camera)));
                        return false;
                    }
                    audio.packets += 1;
                    audio.bytes += packet.bytes.len() as u64;
                } else {
                    errors.push(PublishError::UnknownCamera(header.camera.0));
                    return false;
                }
                true
            });
            if !packets.is_empty() {
                let bytes: u64 = packets.iter().map(|p| p.bytes.len() as u64).sum();
                let frames = packets.iter().filter(|p| p.header.starts_frame()).count() as u64;
                self.counters.packets_in.fetch_add(packets.len() as u64, Ordering::Relaxed);
                self.counters.bytes_in.fetch_add(bytes, Ordering::Relaxed);
                self.counters.frames_in.fetch_add(frames, Ordering::Relaxed);
                let m = &*METRICS;
                let via = if st.ingest.is_empty() { metrics::QUIC } else { st.ingest };
                m.packets_in.with_label_values(&[via]).inc_by(packets.len() as u64);
                m.bytes_in.with_label_values(&[via]).inc_by(bytes);
                if frames > 0 {
                    m.frames_in.with_label_values(&[via]).inc_by(frames);
                }
                let train = self.origin();
                st.subscribers.retain_mut(|slot| slot.offer_batch(&packets, now, train, |_| {}) != Offer::Closed);
            }
            drop(guard);
        }
        for e in errors {
            rejected(self.reject(e));
        }
    }

    fn reject(&self, e: PublishError) -> PublishError {
        self.counters.packets_rejected.fetch_add(1, Ordering::Relaxed);
        METRICS.packets_rejected.with_label_values(&[e.label()]).inc();
        *self.lock().malformed.entry(e.label()).or_default() += 1;
        e
    }

    pub(super) fn subscribe(self: &Arc<Self>, id: u64, counters: Arc<SubscriberCounters>) -> Subscription {
        let (tx, rx) = super::queue::channel(self.config.subscriber_queue);
        let events = self.events.subscribe();
        let mut slot = Slot::new(id, tx, Arc::clone(&counters));
        let now = Instant::now();
        let mut guard = self.lock();
        let st = &mut *guard;
        for cam in &st.cameras {
            slot.offer_batch(&cam.gop.packets, now, self.origin(), |_| {});
        }
        st.subscribers.push(slot);
        if let Some(online) = &st.online {
            let due =
                st.last_keyframe_request.is_none_or(|t| now.duration_since(t) >= self.config.keyframe_request_interval);
            if due && online.control.try_send(super::keyframe_request()).is_ok() {
                st.last_keyframe_request = Some(now);
            }
        }
        drop(guard);
        Subscription::new(id, Arc::clone(self), rx, events, counters)
    }

    pub(super) fn request_keyframe(&self, camera: Option<railcast_protocol::CameraId>) -> bool {
        let st = self.lock();
        let Some(online) = &st.online else { return false };
        let request = railcast_protocol::control::KeyframeRequest { camera };
        online.control.try_send(ControlMessage::KeyframeRequest(request)).is_ok()
    }

    pub(super) fn unsubscribe(&self, id: u64) {
        self.lock().subscribers.retain(|s| s.id() != id);
    }

    pub(super) fn send_command(
        &self,
        command: Command,
        done: oneshot::Sender<Result<CommandAck, CommandError>>,
    ) -> Result<(), CommandError> {
        let mut st = self.lock();
        let Some(online) = &st.online else {
            return Err(CommandError::TrainOffline(self.train_id.clone()));
        };
        if st.pending.len() >= MAX_PENDING_COMMANDS {
            return Err(CommandError::TrainBusy(self.train_id.clone()));
        }
        let id = command.command_id;
        match online.control.try_send(ControlMessage::Command(command)) {
            Ok(()) => {
                st.pending.insert(id, done);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(CommandError::TrainBusy(self.train_id.clone())),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(CommandError::TrainOffline(self.train_id.clone())),
        }
    }

    pub(super) fn complete_command(&self, ack: CommandAck) {
        let command_id = ack.command_id;
        self.finish_command(command_id, Ok(ack));
    }

    /// A command that will get no ack, for `error` (a cluster's owner node said so).
    pub(super) fn fail_command(&self, command_id: u64, error: CommandError) {
        self.finish_command(command_id, Err(error));
    }

    fn finish_command(&self, command_id: u64, outcome: Result<CommandAck, CommandError>) {
        let done = self.lock().pending.remove(&command_id);
        match done {
            Some(done) => {
                let _ = done.send(outcome);
            }
            None => tracing::debug!(train = %self.train_id, command_id, "outcome of an unknown or expired command"),
        }
    }

    pub(super) fn forget_command(&self, command_id: u64) {
        self.lock().pending.remove(&command_id);
    }

    /// The train's `status` frame: kept for the train view until the next one.
    pub(super) fn status(&self, status: railcast_protocol::control::Status) {
        self.lock().sources = Some((status, Instant::now()));
    }

    pub(super) fn telemetry(&self, telemetry: Telemetry) {
        let st = self.lock();
        self.emit(&st, TrainEvent::Telemetry(telemetry));
    }

    fn origin(&self) -> super::subscriber::Origin<'_> {
        super::subscriber::Origin { id: &self.train_id, frames_dropped: &self.counters.frames_dropped }
    }

    pub fn snapshot(&self) -> StreamSnapshot {
        let now = Instant::now();
        let st = self.lock();
        let cameras: Vec<CameraSnapshot> = st
            .cameras
            .iter()
            .map(|c| {
                let (bitrate_bps, fps) = c.meter.read(now);
                CameraSnapshot { info: c.info.clone(), bitrate_bps, fps, frames: c.frames, bytes: c.bytes }
            })
            .collect();
        let online = st.online.is_some();
        StreamSnapshot {
            train_id: self.train_id.clone(),
            online,
            bitrate_bps: if online { cameras.iter().map(|c| c.bitrate_bps).sum() } else { 0.0 },
            fps: if online { cameras.iter().map(|c| c.fps).fold(0.0, f64::max) } else { 0.0 },
            cameras,
            software: st.software.clone(),
            connected_since: st.connected_since,
            last_seen: st.last_seen,
            offline_reason: (!online && !st.offline_reason.is_empty()).then(|| st.offline_reason.clone()),
            packets_in: self.counters.packets_in.load(Ordering::Relaxed),
            bytes_in: self.counters.bytes_in.load(Ordering::Relaxed),
            frames_in: self.counters.frames_in.load(Ordering::Relaxed),
            frames_dropped: self.counters.frames_dropped.load(Ordering::Relaxed),
            rejected: st.malformed.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            subscribers: st.subscribers.len(),
            connections: self.counters.connections.load(Ordering::Relaxed),
            control: self.control_holder(),
            sources: st.sources.as_ref().map_or_else(Vec::new, |(s, at)| {
                s.sources.iter().map(|src| (src.clone(), now.duration_since(*at))).collect()
            }),
            ingest: (!st.ingest.is_empty()).then_some(st.ingest),
        }
    }
}
