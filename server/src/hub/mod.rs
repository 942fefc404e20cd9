//! Transport-agnostic fan-out: one [`Stream`] per train, any number of subscribers.
//!
//! The ingest side holds a [`Publisher`] per connected train and calls [`Publisher::publish_batch`]
//! with the video packets it received together ([`Publisher::publish`] for one). Transports hold a
//! [`Subscription`] and drain its bounded queue. The publisher never waits: offering packets to a
//! subscriber is a `try_send` each under one lock of its queue, and a subscriber whose queue is
//! full loses whole frames until the next keyframe ([`subscriber`] has the drop policy).
//!
//! A [`Packet`] is the train's bytes ([`bytes::Bytes`]: every subscriber gets the same allocation,
//! nothing is copied) with its header, parsed once as it arrives: queues, the GOP cache and the
//! transports' metrics read the parsed header instead of parsing again.
//!
//! Commands go the other way: [`Hub::command`] hands a command to the train's control task and
//! waits for its ack. The hub never depends on a transport; transports depend on the hub.

mod control;
mod queue;
mod stream;
mod subscriber;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use railcast_protocol::control::{Command, KeyframeRequest};
use railcast_protocol::{Action, CommandAck, ControlMessage, Hello, TrainId, VideoHeader};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::METRICS;

#[cfg(test)]
pub(crate) use control::test_holder;
pub use control::{Held, Taken};
pub use stream::{PublishError, Stream, StreamSnapshot, TrainEvent};
pub use subscriber::{SubItem, SubscriberCounters, Subscription};

/// A video packet as the hub fans it out.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The packet exactly as the train sent it (header included), shared by every subscriber.
    pub bytes: Bytes,
    /// Its header, validated and parsed once on arrival.
    pub header: VideoHeader,
}

impl Packet {
    /// What the metrics need of it once it is handed to a client.
    pub fn sent(&self) -> crate::metrics::Sent {
        crate::metrics::Sent {
            len: self.bytes.len(),
            starts_frame: self.header.starts_frame(),
            capture_us: self.header.capture_us,
        }
    }
}

impl AsRef<[u8]> for Packet {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Hub tuning, from the server configuration.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Capacity of each subscriber's queue, in packets.
    pub subscriber_queue: usize,
    /// Largest GOP kept per camera for late joiners, in bytes; a longer GOP is not cached.
    pub gop_cache_bytes: usize,
    /// Largest video payload accepted from a train.
    pub max_payload: usize,
    /// How long a command waits for the train's ack.
    pub command_timeout: Duration,
    /// Minimum time between two keyframe requests sent to one train on behalf of new subscribers.
    pub keyframe_request_interval: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            subscriber_queue: 1024,
            gop_cache_bytes: 4 << 20,
            max_payload: railcast_protocol::DEFAULT_MAX_PAYLOAD,
            command_timeout: Duration::from_secs(5),
            keyframe_request_interval: Duration::from_millis(250),
        }
    }
}

/// Why a command did not get an ack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("train {0} is not known")]
    UnknownTrain(TrainId),
    #[error("train {0} is offline")]
    TrainOffline(TrainId),
    #[error("train {0} went offline before answering")]
    TrainLost(TrainId),
    #[error("train {0} has too many commands in flight")]
    TrainBusy(TrainId),
    #[error("train {train} did not answer within {timeout:?}")]
    Timeout { train: TrainId, timeout: Duration },
    /// A cluster's owner node refused a command from another node's session: someone holds
    /// the train's control lease there (or nobody does and it is required). Its explanation.
    #[error("{0}")]
    NotInControl(String),
}

impl CommandError {
    /// Stable code for JSON errors and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTrain(_) => "train_not_found",
            Self::TrainOffline(_) => "train_offline",
            Self::TrainLost(_) => "train_lost",
            Self::TrainBusy(_) => "train_busy",
            Self::Timeout { .. } => "command_timeout",
            Self::NotInControl(_) => "not_in_control",
        }
    }

    /// The error another node reported by its [`CommandError::code`] and `message` (a
    /// cluster's owner), for `train`; `None` for a code that is not one of them.
    pub fn from_code(code: &str, message: &str, train: &TrainId, timeout: Duration) -> Option<Self> {
        let train = train.clone();
        Some(match code {
            // The owner does not know the train (any more): offline, as seen from here.
            "train_not_found" | "train_offline" => Self::TrainOffline(train),
            "train_lost" => Self::TrainLost(train),
            "train_busy" => Self::TrainBusy(train),
            "command_timeout" => Self::Timeout { train, timeout },
            "not_in_control" => Self::NotInControl(message.to_owned()),
            _ => return None,
        })
    }
}

/// A train's answer to a command.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub command_id: u64,
    pub ack: CommandAck,
    /// Hub → train → hub.
    pub rtt: Duration,
}

/// The hub. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HubConfig,
    streams: DashMap<TrainId, Arc<Stream>>,
    next_command_id: AtomicU64,
    next_subscriber_id: AtomicU64,
    /// Notified when any train's control lease changes (a cluster's owner announces it).
    control_changes: Arc<tokio::sync::Notify>,
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        // The reasons a train's packet is refused that are not the decoder's own exist from the
        // start, at 0 (railcast_packets_rejected_total).
        for e in [
            PublishError::UnknownCamera(0),
            PublishError::CodecMismatch { track: String::new(), codec: "" },
            PublishError::Replaced,
        ] {
            let _ = crate::metrics::METRICS.packets_rejected.with_label_values(&[e.label()]);
        }
        Self {
            inner: Arc::new(Inner {
                config,
                streams: DashMap::new(),
                next_command_id: AtomicU64::new(1),
                next_subscriber_id: AtomicU64::new(1),
                control_changes: Arc::default(),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The stream of `train`, if that train has ever connected.
    pub fn stream(&self, train: &TrainId) -> Option<Arc<Stream>> {
        self.inner.streams.get(train).map(|s| Arc::clone(s.value()))
    }

    /// Every known train, sorted by id.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        let mut all: Vec<_> = self.inner.streams.iter().map(|s| Arc::clone(s.value())).collect();
        all.sort_by(|a, b| a.train_id().cmp(b.train_id()));
        all
    }

    /// A train said hello. If a session for the same id is still online it is replaced (newest
    /// wins: a train that reconnects before the server noticed its old connection died must not be
    /// locked out); the old session's [`Publisher::replaced`] fires.
    pub fn connect_train(&self, hello: Hello, control: mpsc::Sender<ControlMessage>) -> Publisher {
        self.connect_train_via(hello, control, crate::metrics::QUIC)
    }

    /// [`Hub::connect_train`] for a train that came by another ingest than QUIC: `ingest` names
    /// it in the API and the metrics (`whip`). The `control` queue carries the same messages:
    /// commands, and keyframe requests (which a WHIP session turns into RTCP PLI).
    pub fn connect_train_via(
        &self,
        hello: Hello,
        control: mpsc::Sender<ControlMessage>,
        ingest: &'static str,
    ) -> Publisher {
        let stream = self.stream_or_register(&hello.train_id);
        let (generation, replaced) = stream.go_online(hello, control, ingest);
        Publisher { stream, generation, replaced: Some(replaced) }
    }

    /// The stream of `train`, registered (offline) if it is not known yet.
    fn stream_or_register(&self, train: &TrainId) -> Arc<Stream> {
        let entry = self.inner.streams.entry(train.clone());
        Arc::clone(
            entry
                .or_insert_with(|| {
                    Arc::new(Stream::new(
                        train.clone(),
                        self.inner.config.clone(),
                        Arc::clone(&self.inner.control_changes),
                    ))
                })
                .value(),
        )
    }

    /// Trains known (online or not).
    pub fn train_count(&self) -> usize {
        self.inner.streams.len()
    }

    /// Subscribe to `train`'s video and events. The subscriber first receives the cached GOP of
    /// each camera (fast first frame) and a keyframe request is sent to the train. A train not
    /// seen yet (mapped before it connects, or after a restart) is registered offline, and the
    /// subscription starts when it says hello.
    pub fn subscribe(&self, train: &TrainId, counters: Arc<SubscriberCounters>) -> Subscription {
        let stream = self.stream_or_register(train);
        let id = self.inner.next_subscriber_id.fetch_add(1, Ordering::Relaxed);
        stream.subscribe(id, counters)
    }

    /// Ask `train` for a keyframe on `camera` (`None`: every camera) without waiting for an answer:
    /// a decoder's recovery request (a WebRTC client's RTCP PLI or FIR). The caller rate-limits.
    /// False when the train is unknown, offline, or its control queue is full.
    pub fn request_keyframe(&self, train: &TrainId, camera: Option<railcast_protocol::CameraId>) -> bool {
        self.stream(train).is_some_and(|s| s.request_keyframe(camera))
    }

    /// Wait until a train's control lease changes (or has changed since the last wait): one
    /// waiter, a cluster's owner, which then announces the leases at once.
    pub async fn control_changed(&self) {
        self.inner.control_changes.notified().await;
    }

    /// Send `action` to `train` and wait for its ack.
    pub async fn command(&self, train: &TrainId, action: Action) -> Result<CommandOutcome, CommandError> {
        let stream = self.stream(train).ok_or_else(|| CommandError::UnknownTrain(train.clone()))?;
        let command_id = self.inner.next_command_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let m = &*METRICS;
        if let Err(e) = stream.send_command(Command { command_id, command: action }, tx) {
            m.commands_failed.with_label_values(&[e.code()]).inc();
            return Err(e);
        }
        m.commands_sent.inc();
        let started = Instant::now();
        let timeout = self.inner.config.command_timeout;
        let result = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(ack))) => Ok(CommandOutcome { command_id, ack, rtt: started.elapsed() }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(CommandError::TrainLost(train.clone())),
            Err(_) => {
                stream.forget_command(command_id);
                Err(CommandError::Timeout { train: train.clone(), timeout })
            }
        };
        match &result {
            Ok(out) => {
                m.commands_acked.with_label_values(&[if out.ack.ok { "ok" } else { "error" }]).inc();
                m.command_rtt.observe(out.rtt.as_secs_f64());
            }
            Err(e) => m.commands_failed.with_label_values(&[e.code()]).inc(),
        }
        result
    }
}

/// The ingest side of one connected train. Dropping it takes the train offline.
#[derive(Debug)]
pub struct Publisher {
    stream: Arc<Stream>,
    generation: u64,
    replaced: Option<oneshot::Receiver<()>>,
}

impl Publisher {
    pub fn train_id(&self) -> &TrainId {
        self.stream.train_id()
    }

    /// Validate and fan out one video packet. Invalid packets are counted and returned as errors;
    /// the caller drops them and carries on.
    pub fn publish(&self, packet: Bytes) -> Result<(), PublishError> {
        self.stream.publish(self.generation, packet)
    }

    /// [`Self::publish`] for packets that arrived together (a frame's datagrams): each is
    /// validated and relayed as if published alone, but every subscriber's queue is locked and its
    /// session woken once for all of them. `rejected` is told about each invalid one.
    pub fn publish_batch(&self, packets: impl IntoIterator<Item = Bytes>, rejected: impl FnMut(PublishError)) {
        self.stream.publish_batch(self.generation, packets, rejected);
    }

    pub fn ack(&self, ack: CommandAck) {
        self.stream.complete_command(ack);
    }

    /// A cluster's mirror: the control lease the train's owner node announced (see
    /// [`Stream::control_mirror`]).
    pub fn mirror_control(&self, holder: Option<railcast_protocol::client::ControlHolder>, reason: &str, here: &str) {
        self.stream.control_mirror(holder, reason, here);
    }

    /// Complete a command with an error instead of an ack (a cluster's owner node answered for
    /// the train with one).
    pub fn fail_command(&self, command_id: u64, error: CommandError) {
        self.stream.fail_command(command_id, error);
    }

    pub fn telemetry(&self, telemetry: railcast_protocol::Telemetry) {
        self.stream.telemetry(telemetry);
    }

    /// The train's report on its sources (`status`).
    pub fn status(&self, status: railcast_protocol::control::Status) {
        self.stream.status(status);
    }

    /// Resolves when a newer connection took over this train id.
    pub async fn replaced(&mut self) {
        match self.replaced.as_mut() {
            Some(rx) => {
                let _ = rx.await;
                self.replaced = None;
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Drop the cached GOPs: the packets that follow are not their continuation (a cluster's
    /// mirror stopped receiving the train's media), so a subscriber joining before the next
    /// keyframe gets nothing old.
    pub fn forget_gops(&self) {
        self.stream.forget_gops(self.generation);
    }

    /// Record why the train is going offline (shown to subscribers).
    pub fn set_offline_reason(&self, reason: impl Into<String>) {
        self.stream.set_offline_reason(self.generation, reason.into());
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stream.go_offline(self.generation);
    }
}

/// Ask every camera of a train for a keyframe (used by new subscribers and after drops).
pub(crate) fn keyframe_request() -> ControlMessage {
    ControlMessage::KeyframeRequest(KeyframeRequest { camera: None })
}

#[cfg(test)]
mod tests {
    use railcast_protocol::packet::{packetize, Codec, FrameMeta};
    use railcast_protocol::{AudioInfo, CameraId, CameraInfo, FrameSeq};

    use super::*;

    fn hello(train: &TrainId, cameras: &[u16]) -> Hello {
        Hello {
            train_id: train.clone(),
            cameras: cameras
                .iter()
                .map(|&id| CameraInfo { id: CameraId(id), codec: "h264".into(), width: 64, height: 48, fps: 30 })
                .collect(),
            audio: Vec::new(),
            software: None,
            token: None,
        }
    }

    fn ids(stream: &Stream) -> Vec<u16> {
        stream.cameras().iter().map(|c| c.id.0).collect()
    }

    /// A command completed with an error (a cluster's owner answered for the train) gives the
    /// caller that error; every code maps back to itself.
    #[tokio::test]
    async fn a_command_can_fail_with_an_error_instead_of_an_ack() {
        let hub = Hub::new(HubConfig::default());
        let train = TrainId::new("train-1").expect("id");
        let (tx, mut rx) = mpsc::channel(4);
        let publisher = hub.connect_train(hello(&train, &[0]), tx);
        let waiting = tokio::spawn({
            let hub = hub.clone();
            let train = train.clone();
            async move { hub.command(&train, Action::Horn { duration_ms: 10 }).await }
        });
        let Some(ControlMessage::Command(c)) = rx.recv().await else { panic!("a command") };
        publisher.fail_command(c.command_id, CommandError::TrainBusy(train.clone()));
        let result = waiting.await.expect("task");
        assert_eq!(result.map(|o| o.command_id), Err(CommandError::TrainBusy(train.clone())));
        let timeout = Duration::from_secs(5);
        for e in [
            CommandError::TrainOffline(train.clone()),
            CommandError::TrainLost(train.clone()),
            CommandError::TrainBusy(train.clone()),
            CommandError::Timeout { train: train.clone(), timeout },
            CommandError::NotInControl("op (operator) controls train-1".into()),
        ] {
            assert_eq!(CommandError::from_code(e.code(), &e.to_string(), &train, timeout), Some(e));
        }
        assert_eq!(
            CommandError::from_code("train_not_found", "", &train, timeout),
            Some(CommandError::TrainOffline(train.clone()))
        );
        assert_eq!(CommandError::from_code("bad_request", "", &train, timeout), None);
    }

    /// What `mapped_train_changed` and `train_online` say about cameras (docs/wire-format.md §4):
    /// none before the first hello, then the latest hello's in its order, kept while offline.
    #[test]
    fn cameras_are_the_latest_hellos_in_its_order() {
        let hub = Hub::new(HubConfig::default());
        let train = TrainId::new("train-1").expect("id");
        let sub = hub.subscribe(&train, Arc::new(SubscriberCounters::default()));
        assert_eq!(ids(sub.stream()), Vec::<u16>::new(), "mapped before the train ever connected");
        let (control, _rx) = mpsc::channel(8);
        let publisher = hub.connect_train(hello(&train, &[2, 0, 1]), control.clone());
        assert_eq!(ids(sub.stream()), [2, 0, 1], "the hello's order, not sorted");
        drop(publisher);
        assert!(!sub.stream().is_online());
        assert_eq!(ids(sub.stream()), [2, 0, 1], "the last known cameras while offline");
        let _publisher = hub.connect_train(hello(&train, &[7]), control);
        assert_eq!(ids(sub.stream()), [7], "a reconnection's hello replaces them");
    }

    /// A subscriber to a train, then the train connected with these cameras and microphones.
    /// The third element is the train's control channel (keyframe requests, commands).
    fn subscribed_then_connected(
        cameras: &[u16],
        audio: &[AudioInfo],
    ) -> (Subscription, Publisher, mpsc::Receiver<ControlMessage>) {
        let hub = Hub::new(HubConfig::default());
        let train = TrainId::new("train-a").expect("id");
        let sub = hub.subscribe(&train, Arc::new(SubscriberCounters::default()));
        let (control, rx) = mpsc::channel(8);
        let mut h = hello(&train, cameras);
        h.audio.extend_from_slice(audio);
        (sub, hub.connect_train(h, control), rx)
    }

    fn packet(codec: Codec, track: u16, seq: u32) -> Bytes {
        let meta = FrameMeta { keyframe: true, codec, camera: CameraId(track), seq: FrameSeq(seq), capture_us: 1 };
        packetize(meta, &[0xf8, 0xff, 0xfe], 1150).expect("packetize").remove(0)
    }

    /// Audio (docs/wire-format.md §2.7): relayed like video to a subscriber, counted per source;
    /// a packet whose codec is not its track's kind, or whose id was not announced, is refused.
    #[test]
    fn audio_is_relayed_and_checked_against_the_hello() {
        let mic = AudioInfo { id: CameraId(256), codec: "opus".into(), sample_rate: 48_000, channels: 1, frame_ms: 20 };
        let (mut sub, publisher, _control) = subscribed_then_connected(&[0], std::slice::from_ref(&mic));
        assert_eq!(sub.stream().audio(), vec![mic]);
        for seq in 0..5 {
            publisher.publish(packet(Codec::Opus, 256, seq)).expect("audio relayed");
        }
        let refused = |p: Bytes| publisher.publish(p).expect_err("refused").label();
        assert_eq!(refused(packet(Codec::Opus, 0, 9)), "codec_mismatch", "Opus on a camera's id");
        assert_eq!(refused(packet(Codec::H264AnnexB, 256, 9)), "codec_mismatch", "H.264 on the microphone's id");
        assert_eq!(refused(packet(Codec::Opus, 257, 9)), "unknown_camera", "an id the hello did not announce");
        let mut got = Vec::new();
        sub.drain_packets(&mut got, 100);
        let seqs: Vec<u32> = got.iter().map(|p| p.header.seq.0).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4], "every audio packet is a keyframe: none waits");
        assert!(got.iter().all(|p| p.header.codec == Codec::Opus && p.header.camera == CameraId(256)));
        let counts = sub.stream().audio_counts();
        assert_eq!((counts[0].1, counts[0].2), (5, 5 * 29));
        assert_eq!(sub.stream().snapshot().rejected.get("codec_mismatch"), Some(&2));
    }

    /// Datagrams read together (docs/architecture.md, the hub): each is checked and relayed as if
    /// published alone, in order; the invalid ones are reported, counted and left out.
    #[test]
    fn a_batch_is_published_as_its_packets_would_be_alone() {
        let (mut sub, publisher, _control) = subscribed_then_connected(&[0, 1], &[]);
        let batch = [
            packet(Codec::H264AnnexB, 0, 1),
            Bytes::from_static(b"not a packet"),
            packet(Codec::H264AnnexB, 1, 1),
            packet(Codec::H264AnnexB, 5, 1),
            packet(Codec::Opus, 0, 2),
            packet(Codec::H264AnnexB, 0, 2),
        ];
        let mut refused = Vec::new();
        publisher.publish_batch(batch, |e| refused.push(e.label()));
        refused.sort_unstable();
        assert_eq!(refused, ["bad_magic", "codec_mismatch", "unknown_camera"]);
        let mut got = Vec::new();
        sub.drain_packets(&mut got, 100);
        let got: Vec<(u16, u32)> = got.iter().map(|p| (p.header.camera.0, p.header.seq.0)).collect();
        assert_eq!(got, [(0, 1), (1, 1), (0, 2)], "the valid ones, in order");
        let snapshot = sub.stream().snapshot();
        assert_eq!(snapshot.rejected.values().sum::<u64>(), 3);
        assert_eq!(snapshot.packets_in, 3);
    }
}

#[cfg(test)]
mod metric_labels {
    use super::*;

    #[test]
    fn every_command_failure_has_its_series() {
        let t = TrainId::new("t").expect("id");
        let all = [
            CommandError::UnknownTrain(t.clone()),
            CommandError::TrainOffline(t.clone()),
            CommandError::TrainLost(t.clone()),
            CommandError::TrainBusy(t.clone()),
            CommandError::Timeout { train: t, timeout: Duration::from_secs(1) },
            CommandError::NotInControl("someone controls t".into()),
        ];
        let codes: Vec<_> = all.iter().map(CommandError::code).collect();
        assert_eq!(codes, crate::metrics::COMMAND_FAILURE_REASONS);
    }
}
