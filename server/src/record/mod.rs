//! Recording trains' video to fragmented MP4 files (docs/recording.md).
//!
//! A recorder is a hub subscriber like a transport's session: one task per recorded train
//! subscribes, reassembles frames ([`Assembler`]) and feeds each camera's [`segment::Segmenter`]
//! (sans-IO, over [`fmp4`]). The file operations go over a bounded channel to one writer thread
//! ([`writer`]), so disk I/O never runs on the async runtime. The hub never waits for a recorder:
//! when one falls behind, its subscriber queue loses whole frames (the hub's policy), and when the
//! writer falls behind, its channel refuses the part. Either way the camera's segment ends where
//! the loss begins, the GOP is counted in `railcast_record_gops_lost_total`, and a new segment
//! starts at the next keyframe: a file never splices across a loss.
//!
//! It uses the hub, the configuration and the metrics only (the `layering` test).

pub mod fmp4;
pub mod segment;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use railcast_protocol::assembler::Assembler;
use railcast_protocol::{Codec, FrameSeq, TrainId, VideoPacket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::hub::{Hub, SubItem, SubscriberCounters, TrainEvent};
use segment::{FrameIn, Out, Segmenter};
use writer::Job;

/// File operations queued for the writer thread, all recorders together; beyond it parts are
/// refused (and their GOPs counted lost) rather than held in memory.
const WRITER_QUEUE: usize = 256;
/// How often the recorder of `record_trains = "*"` looks for trains it does not record yet.
const DISCOVERY_INTERVAL: Duration = Duration::from_millis(200);

/// The recorder's metrics.
#[derive(Debug)]
pub struct RecordMetrics {
    /// `railcast_record_bytes_total`: bytes written to segment files.
    pub bytes: prometheus::IntCounter,
    /// `railcast_record_segments_total`: segment files created.
    pub segments: prometheus::IntCounter,
    /// `railcast_record_gops_lost_total`: GOPs not recorded whole (the recorder fell behind, or
    /// frames were lost before it).
    pub gops_lost: prometheus::IntCounter,
    /// `railcast_record_errors_total{kind}`: `create`, `write` (the file system), `queue_full`
    /// (the writer fell behind), `mux` (a keyframe without usable parameter sets).
    pub errors: prometheus::IntCounterVec,
}

/// The `kind` label values of `railcast_record_errors_total`.
pub const ERROR_KINDS: &[&str] = &["create", "write", "queue_full", "mux"];

pub static METRICS: LazyLock<RecordMetrics> = LazyLock::new(|| {
    let r = crate::metrics::METRICS.registry();
    let plain = |name: &str, help: &str| {
        let c = prometheus::IntCounter::new(name, help).expect("valid metric");
        r.register(Box::new(c.clone())).expect("unique metric");
        c
    };
    let m = RecordMetrics {
        bytes: plain("railcast_record_bytes_total", "Bytes written to recording segment files."),
        segments: plain("railcast_record_segments_total", "Recording segment files created."),
        gops_lost: plain(
            "railcast_record_gops_lost_total",
            "GOPs not recorded whole: frames lost before or in the recorder; the segment ended there.",
        ),
        errors: crate::metrics::counter(
            r,
            "railcast_record_errors_total",
            "Recording errors: create and write (file system), queue_full (writer behind), mux.",
            &["kind"],
        ),
    };
    for kind in ERROR_KINDS {
        let _ = m.errors.with_label_values(&[kind]);
    }
    m
});

/// Which trains are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trains {
    /// Every train that comes online.
    All,
    Only(Vec<TrainId>),
}

/// The recording settings, validated ([`Config::validate`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub trains: Trains,
    pub segment: Duration,
    pub part: Duration,
}

impl Settings {
    /// `None` when recording is off (`record_dir` empty).
    pub fn from_config(config: &Config) -> Option<Self> {
        let dir = Config::path(&config.record_dir)?.to_path_buf();
        let trains = if config.record_trains.0.iter().any(|t| t == "*") {
            Trains::All
        } else {
            Trains::Only(config.record_trains.0.iter().filter_map(|t| TrainId::new(t.as_str()).ok()).collect())
        };
        Some(Self { dir, trains, segment: config.record_segment_duration.0, part: config.record_part_duration.0 })
    }
}

/// The running recorders.
#[derive(Debug)]
pub struct Recorder {
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Start recording; the recorders end when `shutdown` turns true.
    pub fn start(hub: Hub, settings: Settings, shutdown: watch::Receiver<bool>) -> Self {
        let _ = &*METRICS;
        tracing::info!(dir = %settings.dir.display(), trains = ?settings.trains, "recording");
        let (jobs, rx) = mpsc::channel(WRITER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("record-writer".into())
            .spawn(move || writer::run(rx))
            .expect("spawn the recording writer thread");
        let task = tokio::spawn(async move {
            supervise(hub, settings, jobs, shutdown).await;
            // Every sender is gone: the writer finishes the jobs queued, then ends.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        });
        Self { task }
    }

    /// Wait until every part in progress is written and the files are closed.
    pub async fn closed(self) {
        let _ = self.task.await;
    }
}

/// Start a recorder per train (at once for listed trains, as they appear for `*`); at shutdown,
/// wait for them all.
async fn supervise(hub: Hub, settings: Settings, jobs: mpsc::Sender<Job>, mut shutdown: watch::Receiver<bool>) {
    let settings = Arc::new(settings);
    let mut recorders = JoinSet::new();
    let mut recorded: HashSet<TrainId> = HashSet::new();
    let stop = shutdown.clone();
    let mut start = |train: TrainId, recorders: &mut JoinSet<()>| {
        if recorded.insert(train.clone()) {
            let task = record_train(hub.clone(), train, Arc::clone(&settings), jobs.clone(), stop.clone());
            recorders.spawn(task);
        }
    };
    match settings.trains.clone() {
        Trains::Only(trains) => {
            for train in trains {
                start(train, &mut recorders);
            }
            let _ = shutdown.wait_for(|s| *s).await;
        }
        Trains::All => loop {
            for stream in hub.streams() {
                if stream.is_online() {
                    start(stream.train_id().clone(), &mut recorders);
                }
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                () = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
            }
        },
    }
    while recorders.join_next().await.is_some() {}
}

/// A camera being recorded.
#[derive(Debug)]
struct Camera {
    dir: PathBuf,
    segments: Segmenter,
    last_seq: Option<FrameSeq>,
}

/// Why a camera's segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Frames were lost: the GOP counts as lost.
    Loss,
    /// The train went offline or reconnected, or the server stops.
    Stop,
}

/// One train's recorder: subscribe, reassemble, segment, hand the parts to the writer.
async fn record_train(
    hub: Hub,
    train: TrainId,
    settings: Arc<Settings>,
    jobs: mpsc::Sender<Job>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sub = hub.subscribe(&train, Arc::new(SubscriberCounters::default()));
    tracing::info!(%train, "recording train");
    let mut rec = TrainRecorder { train, settings, jobs, assembler: Assembler::new(), cameras: HashMap::new() };
    let mut queued = Vec::new();
    loop {
        let item = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            item = sub.next() => item,
        };
        match item {
            SubItem::Packet(p) => rec.packet(p),
            SubItem::Event(Ok(TrainEvent::Online { .. } | TrainEvent::Offline { .. })) => {
                // The subscription yields events first: the packets of the session that ended may
                // still be queued. Record them, then end the segments; a new session numbers its
                // frames afresh and starts over at its next keyframe.
                sub.drain_packets(&mut queued, usize::MAX);
                for p in queued.drain(..) {
                    rec.packet(p);
                }
                rec.end_all(End::Stop);
                rec.assembler.reset();
                for camera in rec.cameras.values_mut() {
                    camera.last_seq = None;
                }
            }
            SubItem::Event(_) => {}
        }
    }
    rec.end_all(End::Stop);
    tracing::info!(train = %rec.train, "recording of train ends");
}

/// The state of one train's recorder.
#[derive(Debug)]
struct TrainRecorder {
    train: TrainId,
    settings: Arc<Settings>,
    jobs: mpsc::Sender<Job>,
    assembler: Assembler,
    cameras: HashMap<u16, Camera>,
}

impl TrainRecorder {
    fn packet(&mut self, p: crate::hub::Packet) {
        let Some(frame) = self.assembler.push(&VideoPacket { header: p.header, bytes: p.bytes }) else { return };
        if frame.codec != Codec::H264AnnexB {
            return;
        }
        let (settings, train) = (&self.settings, &self.train);
        let camera = self.cameras.entry(frame.camera.0).or_insert_with(|| Camera {
            dir: settings.dir.join(train.as_str()).join(format!("camera-{}", frame.camera.0)),
            segments: Segmenter::new(settings.segment, settings.part),
            last_seq: None,
        });
        // A gap in a camera's frame numbers: the hub dropped frames for us (we fell behind, whole
        // frames up to a keyframe) or some never arrived whole.
        if camera.last_seq.is_some_and(|last| frame.seq != last.next()) {
            end(camera, End::Loss, &self.jobs);
        }
        camera.last_seq = Some(frame.seq);
        let input = FrameIn { capture_us: frame.capture_us, keyframe: frame.keyframe, data: &frame.data };
        match camera.segments.push(input, SystemTime::now()) {
            Ok(outs) => send(camera, outs, &self.jobs),
            Err(e) => {
                METRICS.errors.with_label_values(&["mux"]).inc();
                tracing::error!(%train, camera = frame.camera.0, error = %e, "recording: frame not muxed");
                end(camera, End::Loss, &self.jobs);
            }
        }
    }

    fn end_all(&mut self, why: End) {
        for camera in self.cameras.values_mut() {
            end(camera, why, &self.jobs);
        }
    }
}

/// End `camera`'s segment: its part in progress goes to the writer, then the file is closed.
fn end(camera: &mut Camera, why: End, jobs: &mpsc::Sender<Job>) {
    if why == End::Loss && camera.segments.is_open() {
        METRICS.gops_lost.inc();
    }
    match camera.segments.cut() {
        Ok(outs) => send(camera, outs, jobs),
        Err(e) => {
            METRICS.errors.with_label_values(&["mux"]).inc();
            tracing::error!(dir = %camera.dir.display(), error = %e, "recording: last part not muxed");
        }
    }
}

/// Queue `outs` for the writer. If it is behind, the part is lost: the segment ends at the last
/// part written and the next one starts at a keyframe.
fn send(camera: &mut Camera, outs: Vec<Out>, jobs: &mpsc::Sender<Job>) {
    for out in outs {
        let closing = out == Out::Close;
        if let Err(e) = jobs.try_send(Job { dir: camera.dir.clone(), out }) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                METRICS.errors.with_label_values(&["queue_full"]).inc();
                tracing::warn!(dir = %camera.dir.display(), "recording: the writer is behind; a part is lost");
            }
            if !closing {
                METRICS.gops_lost.inc();
                camera.segments.abandon();
            }
            return;
        }
    }
}
