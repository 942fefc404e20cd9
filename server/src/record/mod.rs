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
pub mod library;
pub mod playback;
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
                rec.record_queued(&mut sub);
                rec.end_all(End::Stop);
                rec.assembler.reset();
                for camera in rec.cameras.values_mut() {
                    camera.last_seq = None;
                }
            }
            SubItem::Event(_) => {}
        }
    }
    // Shutdown: what the hub already handed over is recorded too.
    rec.record_queued(&mut sub);
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
    /// Record the packets waiting in `sub`'s queue.
    fn record_queued(&mut self, sub: &mut crate::hub::Subscription) {
        let mut queued = Vec::new();
        sub.drain_packets(&mut queued, usize::MAX);
        for p in queued {
            self.packet(p);
        }
    }

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
        match camera.segments.push(input, capture_wall(frame.capture_us, SystemTime::now())) {
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

/// How far a train's capture time may be from the server's clock and still be taken as the
/// frame's wall-clock time.
const CAPTURE_TRUSTED: Duration = Duration::from_secs(5);

/// The wall-clock time of a frame captured at `capture_us` (the train's clock, UNIX µs) and
/// received `now`: its capture time, which stays right for frames handed over late (the hub's
/// cached GOP at the start of a recording comes in one burst), unless the train's clock is more
/// than [`CAPTURE_TRUSTED`] off, when the time it was received is the better guess.
fn capture_wall(capture_us: u64, now: SystemTime) -> SystemTime {
    let capture = std::time::UNIX_EPOCH + Duration::from_micros(capture_us);
    let off = now.duration_since(capture).unwrap_or_else(|e| e.duration());
    if off <= CAPTURE_TRUSTED {
        capture
    } else {
        now
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

#[cfg(test)]
mod tests {
    //! The recorder's loss handling, without a hub or a disk: packets in, writer jobs out.
    use super::*;
    use railcast_protocol::packet::{packetize, FrameMeta, VideoHeader};
    use railcast_protocol::CameraId;

    const KEY: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60, 0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0, 0, 0,
        1, 0x65, 1, 2, 3,
    ];
    const DELTA: &[u8] = &[0, 0, 0, 1, 0x41, 9, 9];

    fn recorder(queue: usize) -> (TrainRecorder, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(queue);
        let settings = Settings {
            dir: PathBuf::from("rec"),
            trains: Trains::All,
            segment: Duration::from_secs(60),
            part: Duration::from_secs(1),
        };
        let train = TrainId::new("train-1").expect("id");
        (
            TrainRecorder {
                train,
                settings: Arc::new(settings),
                jobs,
                assembler: Assembler::new(),
                cameras: HashMap::new(),
            },
            rx,
        )
    }

    /// Frame `seq` of camera 0 at 10 fps, a keyframe every 5, as the hub hands it over.
    fn frame(rec: &mut TrainRecorder, seq: u32) {
        let keyframe = seq % 5 == 0;
        let meta = FrameMeta {
            keyframe,
            codec: Codec::H264AnnexB,
            camera: CameraId(0),
            seq: FrameSeq(seq),
            capture_us: 1_000_000 + u64::from(seq) * 100_000,
        };
        for bytes in packetize(meta, if keyframe { KEY } else { DELTA }, 1200).expect("packets") {
            let header = VideoHeader::parse(&bytes, 1200).expect("header");
            rec.packet(crate::hub::Packet { bytes, header });
        }
    }

    /// The jobs queued so far: `C`reate (with its sample count), `A`ppend, `X` close.
    fn jobs(rx: &mut mpsc::Receiver<Job>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(job) = rx.try_recv() {
            out.push(match job.out {
                Out::Create { bytes, .. } => format!("C{}", samples(&bytes)),
                Out::Append(bytes) => format!("A{}", samples(&bytes)),
                Out::Close => "X".into(),
            });
        }
        out
    }

    fn samples(mut bytes: &[u8]) -> usize {
        use mp4_atom::{Any, Decode};
        let mut n = 0;
        while !bytes.is_empty() {
            if let Any::Moof(moof) = Any::decode(&mut bytes).expect("box") {
                n += moof.traf[0].trun[0].samples.len();
            }
        }
        n
    }

    #[test]
    fn a_gap_ends_the_segment_and_the_next_starts_at_a_keyframe() {
        let (mut rec, mut rx) = recorder(64);
        let lost = METRICS.gops_lost.get();
        for seq in 0..8 {
            frame(&mut rec, seq);
        }
        // 8 and 9 never came (the hub dropped them: whole frames up to the next keyframe).
        for seq in 10..13 {
            frame(&mut rec, seq);
        }
        assert_eq!(jobs(&mut rx), ["C8", "X"], "frames 0..8 end at the gap, in a file of their own");
        assert!(METRICS.gops_lost.get() > lost, "the broken GOP is counted");
        rec.end_all(End::Stop);
        assert_eq!(jobs(&mut rx), ["C3", "X"], "the next segment starts at keyframe 10");
    }

    #[test]
    fn a_part_the_writer_cannot_take_ends_the_segment() {
        let (mut rec, mut rx) = recorder(1);
        let full = METRICS.errors.with_label_values(&["queue_full"]).get();
        // Frames 0..=10: the part of frames 0..10 is complete at frame 10 (1 s) and queued.
        for seq in 0..=10 {
            frame(&mut rec, seq);
        }
        // The writer takes nothing now: the part of 10..20, complete at frame 20, is refused and
        // the segment abandoned with frame 20 in it; nothing is recorded up to keyframe 25.
        for seq in 11..=26 {
            frame(&mut rec, seq);
        }
        assert!(METRICS.errors.with_label_values(&["queue_full"]).get() > full);
        assert_eq!(jobs(&mut rx), ["C10"]);
        rec.end_all(End::Stop);
        assert_eq!(jobs(&mut rx), ["C2"], "a new segment from keyframe 25 (its close found the queue full)");
    }
}
