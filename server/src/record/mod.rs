//! Recording trains' video and audio to fragmented MP4 files (docs/recording.md).
//!
//! A recorder is a hub subscriber like a transport's session: one task per recorded train
//! subscribes, reassembles frames ([`Assembler`]) and feeds each camera's and audio source's
//! [`segment::Segmenter`] (sans-IO, over [`fmp4`]). The file operations go over a bounded channel to one writer thread
//! ([`writer`]), so disk I/O never runs on the async runtime. The hub never waits for a recorder:
//! when one falls behind, its subscriber queue loses whole frames (the hub's policy), and when the
//! writer falls behind, its channel refuses the part. Either way the camera's segment ends where
//! the loss begins, the GOP is counted in `railcast_record_gops_lost_total`, and a new segment
//! starts at the next keyframe: a file never splices across a loss.
//!
//! A file that cannot be created or written (a full disk) ends the segment too; the next try waits
//! a second ([`RETRY_AFTER`]), so a full disk costs one attempt a second per track, and the live
//! relay never notices. [`Control`] starts and stops trains' recording at run time and tells how it
//! goes ([`control`]); [`retention`] deletes old segments.
//!
//! It uses the hub, the configuration and the metrics only (the `layering` test).

pub mod control;
pub mod fmp4;
pub mod library;
pub mod playback;
pub mod retention;
pub mod segment;
#[cfg(test)]
mod test_vectors;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use railcast_protocol::assembler::Assembler;
use railcast_protocol::{Codec, FrameSeq, TrainId, VideoPacket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::hub::{Hub, SubItem, SubscriberCounters, TrainEvent};
pub use control::{Control, TrainState};
use control::{Health, Shared};
use retention::Retention;
use segment::{FrameIn, Kind, Out, Segmenter};
use writer::Job;

/// File operations queued for the writer thread, all recorders together; beyond it parts are
/// refused (and their GOPs counted lost) rather than held in memory.
const WRITER_QUEUE: usize = 256;
/// How often the recorder of `record_trains = "*"` looks for trains it does not record yet.
const DISCOVERY_INTERVAL: Duration = Duration::from_millis(200);
/// After a file could not be created or written, a track's next segment waits this long (then
/// starts at the next keyframe): a full disk is tried once a second, not at every frame.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Segment ids, unique in the process (a writer job names its segment).
static SEGMENT_IDS: AtomicU64 = AtomicU64::new(1);

/// The recorder's metrics.
#[derive(Debug)]
pub struct RecordMetrics {
    /// `railcast_record_bytes_total`: bytes written to segment files.
    pub bytes: prometheus::IntCounter,
    /// `railcast_record_segments_total`: segment files created.
    pub segments: prometheus::IntCounter,
    /// `railcast_record_syncs_total`: segment files flushed to the disk (`fsync`): a new file with
    /// its directory, an open one every [`writer::SYNC_INTERVAL`], each at its end.
    pub syncs: prometheus::IntCounter,
    /// `railcast_record_gops_lost_total`: GOPs not recorded whole (the recorder fell behind, or
    /// frames were lost before it).
    pub gops_lost: prometheus::IntCounter,
    /// `railcast_record_errors_total{kind}`: `create`, `write`, `sync` (the file system),
    /// `queue_full` (the writer fell behind), `mux` (a keyframe without usable parameter sets).
    pub errors: prometheus::IntCounterVec,
    /// `railcast_record_failing`: tracks (cameras, audio sources) whose last file create or write
    /// failed.
    pub failing: prometheus::IntGauge,
    /// `railcast_record_deleted_total`: segment files deleted by retention.
    pub deleted: prometheus::IntCounter,
}

/// The `kind` label values of `railcast_record_errors_total`.
pub const ERROR_KINDS: &[&str] = &["create", "write", "sync", "queue_full", "mux"];

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
        syncs: plain(
            "railcast_record_syncs_total",
            "Recording segment files flushed to the disk (fsync): new files with their directory, open ones \
             every 5 s, each at its end.",
        ),
        gops_lost: plain(
            "railcast_record_gops_lost_total",
            "GOPs not recorded whole: frames lost before or in the recorder; the segment ended there.",
        ),
        errors: crate::metrics::counter(
            r,
            "railcast_record_errors_total",
            "Recording errors: create, write and sync (file system), queue_full (writer behind), mux.",
            &["kind"],
        ),
        failing: {
            let g = prometheus::IntGauge::new(
                "railcast_record_failing",
                "Recorded tracks (cameras, audio sources) whose last file create or write failed.",
            )
            .expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        },
        deleted: plain(
            "railcast_record_deleted_total",
            "Recording segment files deleted by retention (record_delete_after, record_max_bytes, record_max_total_bytes).",
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
    /// `record_delete_after` and `record_max_bytes`.
    pub retention: Retention,
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
        Some(Self {
            dir,
            trains,
            segment: config.record_segment_duration.0,
            part: config.record_part_duration.0,
            retention: Retention {
                delete_after: config.record_delete_after.0,
                max_bytes: config.record_max_bytes,
                max_total_bytes: config.record_max_total_bytes,
            },
        })
    }
}

/// The running recorders.
#[derive(Debug)]
pub struct Recorder {
    task: tokio::task::JoinHandle<()>,
    control: Control,
}

impl Recorder {
    /// Start recording; the recorders end when `shutdown` turns true.
    pub fn start(hub: Hub, settings: Settings, shutdown: watch::Receiver<bool>) -> Self {
        let _ = &*METRICS;
        tracing::info!(
            dir = %settings.dir.display(),
            trains = ?settings.trains,
            retention = ?settings.retention,
            "recording"
        );
        let (jobs, rx) = std::sync::mpsc::sync_channel(WRITER_QUEUE);
        let (dir, keep) = (settings.dir.clone(), settings.retention);
        let thread = std::thread::Builder::new()
            .name("record-writer".into())
            .spawn(move || writer::run(rx, dir, keep))
            .expect("spawn the recording writer thread");
        let shared = Arc::new(Shared::new(settings.dir.clone(), settings.trains.clone()));
        let control = Control { shared: Arc::clone(&shared) };
        let task = tokio::spawn(async move {
            supervise(hub, settings, shared, jobs, shutdown).await;
            // Every sender is gone: the writer finishes the jobs queued, then ends.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        });
        Self { task, control }
    }

    /// The run-time control: the admin toggle and each train's [`TrainState`].
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Wait until every part in progress is written and the files are closed.
    pub async fn closed(self) {
        let _ = self.task.await;
    }
}

/// A train's recorder task, and how to stop it.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Keep a recorder running for each train to be recorded: listed ones at once, with `*` each
/// train once it is online (and from then on), and the admin's toggles over both. A stopped
/// recorder finishes (its parts written) before the same train's next one starts. At shutdown,
/// wait for them all.
async fn supervise(
    hub: Hub,
    settings: Settings,
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    mut shutdown: watch::Receiver<bool>,
) {
    let settings = Arc::new(settings);
    let mut running: HashMap<TrainId, Running> = HashMap::new();
    let mut stopping: Vec<(TrainId, JoinHandle<()>)> = Vec::new();
    loop {
        stopping.retain(|(_, task)| !task.is_finished());
        let mut candidates: Vec<TrainId> = running.keys().cloned().collect();
        candidates.extend(shared.toggled_on());
        match &settings.trains {
            Trains::Only(list) => candidates.extend(list.iter().cloned()),
            Trains::All => {
                candidates.extend(hub.streams().iter().filter(|s| s.is_online()).map(|s| s.train_id().clone()));
            }
        }
        for train in candidates {
            let wanted = shared.toggle(&train).unwrap_or(true);
            match (wanted, running.contains_key(&train)) {
                (true, false) if !stopping.iter().any(|(t, _)| *t == train) => {
                    let (stop, stop_rx) = watch::channel(false);
                    let health = shared.health(&train);
                    let rec =
                        record_train(hub.clone(), train.clone(), Arc::clone(&settings), health, jobs.clone(), stop_rx);
                    running.insert(train, Running { stop, task: tokio::spawn(rec) });
                }
                (false, true) => {
                    let r = running.remove(&train).expect("running");
                    let _ = r.stop.send(true);
                    stopping.push((train, r.task));
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            () = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
            () = shared.wake.notified() => {}
        }
    }
    let mut tasks: Vec<_> = stopping.into_iter().map(|(_, task)| task).collect();
    for (_, r) in running.drain() {
        let _ = r.stop.send(true);
        tasks.push(r.task);
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// A camera or audio source being recorded.
#[derive(Debug)]
struct Camera {
    /// Its id in the train's track id space.
    track: u16,
    dir: PathBuf,
    segments: Segmenter,
    /// The id of the segment whose file the writer was last asked to create.
    segment: u64,
    last_seq: Option<FrameSeq>,
    /// No new segment before this (a file could not be created or written).
    retry_at: Option<Instant>,
    /// What [`Health::recording`] was last told.
    reported_open: bool,
}

/// Why a camera's segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Frames were lost: the GOP counts as lost.
    Loss,
    /// The train went offline or reconnected, the recording was turned off, or the server stops.
    Stop,
}

/// One train's recorder: subscribe, reassemble, segment, hand the parts to the writer; until
/// `stop` turns true (the toggle, or shutdown).
async fn record_train(
    hub: Hub,
    train: TrainId,
    settings: Arc<Settings>,
    health: Arc<Health>,
    jobs: SyncSender<Job>,
    mut stop: watch::Receiver<bool>,
) {
    if !library::recordable(&train) {
        // `.` and `..` are valid train ids, but as directory names they would leave `record_dir`.
        tracing::warn!(%train, "recording: this train id cannot name a directory; the train is not recorded");
        return;
    }
    let mut sub = hub.subscribe(&train, Arc::new(SubscriberCounters::default()));
    tracing::info!(%train, "recording train");
    let mut rec = TrainRecorder::new(train, settings, health, jobs);
    rec.announce(&sub.stream().audio());
    loop {
        let item = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            item = sub.next() => item,
        };
        match item {
            SubItem::Packet(p) => rec.packet(p),
            SubItem::Event(Ok(event @ (TrainEvent::Online { .. } | TrainEvent::Offline { .. }))) => {
                // The subscription yields events first: the packets of the session that ended may
                // still be queued. Record them, then end the segments; a new session numbers its
                // frames afresh and starts over at its next keyframe.
                rec.record_queued(&mut sub);
                rec.end_all(End::Stop);
                rec.assembler.reset();
                for camera in rec.cameras.values_mut() {
                    camera.last_seq = None;
                }
                if let TrainEvent::Online { audio, .. } = event {
                    rec.announce(&audio);
                }
            }
            SubItem::Event(_) => {}
        }
    }
    // Stop: what the hub already handed over is recorded too, into the open segments only: each
    // video track ends before its next keyframe and audio at once, so that no segment (no file)
    // begins after the stop.
    rec.stopping = Some(HashSet::new());
    rec.record_queued(&mut sub);
    rec.end_all(End::Stop);
    tracing::info!(train = %rec.train, "recording of train ends");
}

/// The state of one train's recorder.
#[derive(Debug)]
struct TrainRecorder {
    train: TrainId,
    settings: Arc<Settings>,
    health: Arc<Health>,
    jobs: SyncSender<Job>,
    assembler: Assembler,
    cameras: HashMap<u16, Camera>,
    /// Channels of each audio source of the latest hello.
    audio_channels: HashMap<u16, u8>,
    /// `Some` once the recording stops: the tracks that reached a frame that could begin a
    /// segment; neither it nor any later frame of theirs is recorded.
    stopping: Option<HashSet<u16>>,
}

impl TrainRecorder {
    fn new(train: TrainId, settings: Arc<Settings>, health: Arc<Health>, jobs: SyncSender<Job>) -> Self {
        let (assembler, cameras, audio_channels) = (Assembler::new(), HashMap::new(), HashMap::new());
        Self { train, settings, health, jobs, assembler, cameras, audio_channels, stopping: None }
    }

    /// A hello's audio sources: the channel count of each.
    fn announce(&mut self, audio: &[railcast_protocol::AudioInfo]) {
        self.audio_channels = audio.iter().map(|a| (a.id.0, a.channels)).collect();
    }

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
        // Every Opus frame, and a video keyframe, may begin a segment.
        if let Some(ended) = &mut self.stopping {
            if frame.keyframe || frame.codec == Codec::Opus || ended.contains(&frame.camera.0) {
                ended.insert(frame.camera.0);
                return;
            }
        }
        let kind = match frame.codec {
            Codec::H264AnnexB => Kind::Video,
            // Mono 48 kHz, as the simulator sends, if the hello did not say.
            Codec::Opus => Kind::Audio { channels: self.audio_channels.get(&frame.camera.0).copied().unwrap_or(1) },
        };
        let (settings, train, track) = (&self.settings, &self.train, frame.camera.0);
        let new = || {
            let name = match kind {
                Kind::Video => format!("camera-{track}"),
                Kind::Audio { .. } => format!("audio-{track}"),
            };
            Camera {
                track,
                dir: settings.dir.join(train.as_str()).join(name),
                segments: Segmenter::new(kind, settings.segment, settings.part),
                segment: 0,
                last_seq: None,
                retry_at: None,
                reported_open: false,
            }
        };
        let camera = self.cameras.entry(track).or_insert_with(new);
        if camera.segments.kind() != kind {
            // A new hello made this id another kind of track (or changed its channels); the old
            // one's segment ended with the old session.
            end(camera, End::Stop, &self.health, &self.jobs);
            *camera = new();
        }
        // A gap in a camera's frame numbers: the hub dropped frames for us (we fell behind, whole
        // frames up to a keyframe) or some never arrived whole.
        if camera.last_seq.is_some_and(|last| frame.seq != last.next()) {
            end(camera, End::Loss, &self.health, &self.jobs);
        }
        camera.last_seq = Some(frame.seq);
        // The writer could not create or write a file: that segment is over (its file ends at the
        // last part written), and the next one waits a second.
        let now = Instant::now();
        if let Some(failed) = self.health.take_failure(track) {
            if camera.segments.is_open() && failed == camera.segment {
                METRICS.gops_lost.inc();
                camera.segments.abandon();
            }
            camera.retry_at = Some(now + RETRY_AFTER);
        }
        if !camera.segments.is_open() && camera.retry_at.is_some_and(|at| now < at) {
            return;
        }
        let input = FrameIn { capture_us: frame.capture_us, keyframe: frame.keyframe, data: &frame.data };
        match camera.segments.push(input, capture_wall(frame.capture_us, SystemTime::now())) {
            Ok(outs) => send(camera, outs, &self.health, &self.jobs),
            Err(e) => {
                METRICS.errors.with_label_values(&["mux"]).inc();
                tracing::error!(%train, camera = track, error = %e, "recording: frame not muxed");
                end(camera, End::Loss, &self.health, &self.jobs);
            }
        }
    }

    fn end_all(&mut self, why: End) {
        for camera in self.cameras.values_mut() {
            end(camera, why, &self.health, &self.jobs);
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
fn end(camera: &mut Camera, why: End, health: &Arc<Health>, jobs: &SyncSender<Job>) {
    if why == End::Loss && camera.segments.is_open() {
        METRICS.gops_lost.inc();
    }
    match camera.segments.cut() {
        Ok(outs) => send(camera, outs, health, jobs),
        Err(e) => {
            METRICS.errors.with_label_values(&["mux"]).inc();
            tracing::error!(dir = %camera.dir.display(), error = %e, "recording: last part not muxed");
        }
    }
}

/// Queue `outs` for the writer. If it is behind, the part is lost: the segment ends at the last
/// part written and the next one starts at a keyframe.
fn send(camera: &mut Camera, outs: Vec<Out>, health: &Arc<Health>, jobs: &SyncSender<Job>) {
    queue(camera, outs, health, jobs);
    // Whether frames are being recorded, for the API's `active`: also between a segment's close
    // and its successor's file, which is created with the first part.
    let open = camera.segments.is_open();
    if open != camera.reported_open {
        camera.reported_open = open;
        health.recording(camera.track, open);
    }
}

fn queue(camera: &mut Camera, outs: Vec<Out>, health: &Arc<Health>, jobs: &SyncSender<Job>) {
    for out in outs {
        let closing = out == Out::Close;
        if matches!(out, Out::Create { .. }) {
            camera.segment = SEGMENT_IDS.fetch_add(1, Ordering::Relaxed);
        }
        let job = Job {
            dir: camera.dir.clone(),
            track: camera.track,
            segment: camera.segment,
            health: Arc::clone(health),
            out,
        };
        if let Err(e) = jobs.try_send(job) {
            if matches!(e, std::sync::mpsc::TrySendError::Full(_)) {
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
    use std::path::Path;
    use std::sync::mpsc::Receiver;

    const KEY: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60, 0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0, 0, 0,
        1, 0x65, 1, 2, 3,
    ];
    const DELTA: &[u8] = &[0, 0, 0, 1, 0x41, 9, 9];

    fn recorder(queue: usize) -> (TrainRecorder, Receiver<Job>) {
        let (jobs, rx) = std::sync::mpsc::sync_channel(queue);
        let settings = Settings {
            dir: PathBuf::from("rec"),
            trains: Trains::All,
            segment: Duration::from_secs(60),
            part: Duration::from_secs(1),
            retention: Retention::default(),
        };
        let train = TrainId::new("train-1").expect("id");
        (TrainRecorder::new(train, Arc::new(settings), Arc::default(), jobs), rx)
    }

    /// Frame `seq` of camera 0 at 10 fps, a keyframe every 5, as the hub hands it over.
    fn frame(rec: &mut TrainRecorder, seq: u32) {
        let keyframe = seq.is_multiple_of(5);
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
    fn jobs(rx: &mut Receiver<Job>) -> Vec<String> {
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

    /// Opus packet `seq` of audio source 256, 20 ms apart.
    fn opus(rec: &mut TrainRecorder, seq: u32) {
        let meta = FrameMeta {
            keyframe: true,
            codec: Codec::Opus,
            camera: CameraId(256),
            seq: FrameSeq(seq),
            capture_us: 1_000_000 + u64::from(seq) * 20_000,
        };
        for bytes in packetize(meta, &[0xf8, 0xff, 0xfe], 1200).expect("packets") {
            let header = VideoHeader::parse(&bytes, 1200).expect("header");
            rec.packet(crate::hub::Packet { bytes, header });
        }
    }

    #[test]
    fn audio_goes_to_an_opus_track_of_its_own_with_the_hellos_channels() {
        use mp4_atom::{Any, Decode};
        let (mut rec, rx) = recorder(64);
        rec.announce(&[railcast_protocol::AudioInfo {
            id: CameraId(256),
            codec: "opus".into(),
            sample_rate: 48_000,
            channels: 2,
            frame_ms: 20,
        }]);
        for seq in 0..60 {
            opus(&mut rec, seq);
            if seq % 10 == 0 {
                frame(&mut rec, seq / 10);
            }
        }
        // 60 and 61 never came: the segment ends at the gap.
        for seq in 60..70 {
            opus(&mut rec, seq + 2);
        }
        rec.end_all(End::Stop);
        let mut audio = Vec::new();
        while let Ok(job) = rx.try_recv() {
            if job.dir == Path::new("rec/train-1/audio-256") {
                audio.push(job.out);
            } else {
                assert_eq!(job.dir, Path::new("rec/train-1/camera-0"));
            }
        }
        let kinds: Vec<_> = audio
            .iter()
            .map(|o| match o {
                Out::Create { bytes, .. } => format!("C{}", samples(bytes)),
                Out::Append(bytes) => format!("A{}", samples(bytes)),
                Out::Close => "X".into(),
            })
            .collect();
        assert_eq!(kinds, ["C50", "A10", "X", "C10", "X"], "1 s parts; a gap ends the segment");
        let Out::Create { bytes, .. } = &audio[0] else { panic!("create") };
        let mut rest = bytes.as_slice();
        let Any::Ftyp(_) = Any::decode(&mut rest).expect("ftyp") else { panic!("ftyp") };
        let Any::Moov(moov) = Any::decode(&mut rest).expect("moov") else { panic!("moov") };
        let mp4_atom::Codec::Opus(o) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else { panic!("Opus") };
        assert_eq!(o.dops.output_channel_count, 2, "the hello's channel count");
    }

    #[test]
    fn a_file_the_writer_cannot_write_ends_the_segment_and_the_next_waits() {
        let (mut rec, mut rx) = recorder(64);
        for seq in 0..=10 {
            frame(&mut rec, seq);
        }
        assert_eq!(jobs(&mut rx), ["C10"]);
        let segment = rec.cameras[&0].segment;
        // The writer fails to write the first part (a full disk).
        assert!(rec.health.failed(0, segment, &std::io::Error::from_raw_os_error(28)));
        for seq in 11..=30 {
            frame(&mut rec, seq);
        }
        assert_eq!(jobs(&mut rx), Vec::<String>::new(), "abandoned, and no new file within a second");
        assert!(!rec.cameras[&0].segments.is_open());
        // A second later, the next keyframe opens a new segment.
        rec.cameras.get_mut(&0).expect("camera").retry_at = Some(Instant::now());
        for seq in 31..=40 {
            frame(&mut rec, seq);
        }
        rec.end_all(End::Stop);
        assert_eq!(jobs(&mut rx), ["C6", "X"], "frames 35..=40, from keyframe 35");
        assert_ne!(rec.cameras[&0].segment, segment);
    }
}
