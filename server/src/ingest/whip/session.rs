//! One WHIP publication's task: it owns the peer once the answer is out, and is to a WHIP train
//! what `ingest::Connection` is to a QUIC one.
//!
//! - **Tracks.** A reader task per remote track stamps each RTP packet with the server's clock
//!   and hands it to this task (a bounded queue; the reader waits, the peer's driver buffers).
//!   A packet goes to the camera whose offer section announced its SSRC, else whose `msid`
//!   names its track, else to the first camera (or the audio) not yet fed.
//! - **Frames.** Each camera's [`Reorder`] puts its RTP packets back in sequence order (waiting
//!   at most [`super::reorder::HOLD`] for a missing one), then its [`Depacketizer`] turns them
//!   into access units; each becomes railcast
//!   packets ([`railcast_protocol::packet::packetize`]: codec H.264 Annex B, the camera's own frame
//!   sequence, capture time = the server's clock at the frame's first packet) published to the hub
//!   like a QUIC train's datagrams. An Opus packet is one audio packet (id [`super::AUDIO_ID`]).
//! - **Online.** The hub hears of the train (its hello) once every camera has sent a keyframe: its
//!   SPS gives the picture size. Until then a PLI goes to each camera every [`PLI_INTERVAL`], and
//!   each camera's frames since its latest keyframe are kept (at most 4 MiB) and published first. A camera still without a
//!   keyframe [`ONLINE_WAIT`] after the first one is left out of the announcement (a stalled
//!   track never keeps the others offline); its frames are dropped until the publisher reconnects.
//! - **Keyframes.** The hub's keyframe requests (a late joiner, a WHEP viewer's PLI, the
//!   `request_keyframe` command) and a camera that dropped a frame become an RTCP PLI to the
//!   publisher, at most one per camera per [`PLI_INTERVAL`].
//! - **Commands.** `request_keyframe` is answered by the server: a PLI to the camera (or every
//!   camera), acked at once. The hub's other commands go to the publisher's `command` data channel as JSON
//!   (`ControlMessage::to_json`); its `command_ack`, `telemetry` and `error` come back the same
//!   way. A command while no channel is open is acked `ok: false` at once.
//! - **End.** DELETE, the peer failing, closing or staying `disconnected` for
//!   [`DISCONNECTED_GRACE`], a newer connection for the train id, the
//!   train's token revoked by a credentials reload, or the server shutting down: the train goes
//!   offline with that reason and the peer is closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railcast_protocol::control::{Command, ErrorMessage, Hello};
use railcast_protocol::packet::{packetize, Codec, FrameMeta};
use railcast_protocol::{Action, AudioInfo, CameraId, CameraInfo, CommandAck, ControlMessage, FrameSeq};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::RTCPeerConnectionState;

use super::depacketize::{Depacketizer, Rtp};
use super::offer::Layout;
use super::reorder::Reorder;
use super::{Publication, Server, AUDIO_ID, NAME};
use crate::hub::Publisher;
use crate::transport::webrtc::negotiate::{RemoteChannels, RemoteTracks};
use crate::transport::webrtc::peers::is_finished;

/// At most one PLI per camera this often (the hub asks for keyframes at most every 250 ms).
pub const PLI_INTERVAL: Duration = Duration::from_millis(250);
/// How often packets waiting for a missing one are looked at (only while some wait).
const REORDER_TICK: Duration = Duration::from_millis(10);
/// Capacity of the queue from the track readers to the task, in RTP packets.
const MEDIA_QUEUE: usize = 2048;
/// Capacity of the hub's control queue for this train.
const CONTROL_QUEUE: usize = 256;
/// Largest access unit taken (a bigger one is dropped as incomplete): 4 MiB.
const MAX_FRAME: usize = 4 << 20;
/// How often the drop counters are logged while they grow.
const LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How long a peer connection may stay `disconnected` before the train is taken offline: with
/// webrtc-rs' 5 s without ICE traffic before it says so, a publisher that vanished is offline
/// about 7 s later (a QUIC train: its 6 s idle timeout). A link that recovers within it is kept.
pub const DISCONNECTED_GRACE: Duration = Duration::from_secs(2);
/// How long the train waits, after the first keyframe of any camera, for the others' before it
/// goes online without them.
pub const ONLINE_WAIT: Duration = Duration::from_secs(3);
/// Most bytes of frames kept per camera until the train is online (the hub's GOP cache default).
const MAX_PENDING: usize = 4 << 20;
/// Nominal frame rate announced when the offer has no `a=framerate`.
const DEFAULT_FPS: u32 = 30;

/// What the track readers and the channel pump send to the task.
enum Media {
    Rtp { track: usize, packet: rtc::rtp::Packet, at_us: u64 },
    Track { track: usize, handle: Arc<dyn TrackRemote>, kind: RtpCodecKind, track_id: String },
    Channel(ChannelEvent),
}

enum ChannelEvent {
    Open(Arc<dyn DataChannel>),
    /// The channel carried a message (sent before the text itself).
    Message(Arc<dyn DataChannel>),
    Text(String),
    Binary,
    Closed,
}

/// Where a remote track's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Camera(usize),
    Audio,
    Nowhere,
}

struct Camera {
    /// RTP packets back in sequence order (and when each arrived), for the depacketizer.
    reorder: Reorder<(rtc::rtp::Packet, u64)>,
    depacketizer: Depacketizer,
    track: Option<Arc<dyn TrackRemote>>,
    ssrc: Option<u32>,
    seq: u32,
    last_pli: Option<Instant>,
    /// The frames since this camera's latest keyframe, kept until the train is online (then
    /// published first, so a viewer's decoder gets a whole GOP, never a keyframe and a gap).
    pending: Vec<super::AccessUnit>,
    pending_bytes: usize,
    fps: u32,
    reported: super::Counters,
    /// In the train's announcement.
    announced: bool,
    /// Whole frames of a camera left out of the announcement.
    unannounced_frames: u64,
    /// Frames handed to the hub.
    relayed: u64,
    /// What the metrics have of the counters above.
    metered: super::Counters,
    relayed_metered: u64,
    unannounced_metered: u64,
    /// What the metrics have of `reorder`'s counters (reordered, gaps).
    reorder_metered: (u64, u64),
}

pub(super) struct Session {
    server: Arc<Server>,
    publication: Arc<Publication>,
    layout: Layout,
    tracks: RemoteTracks,
    channels: RemoteChannels,
}

/// The audio track's RTP on its way in: reordered like video, then relayed strictly in sequence
/// order (a packet behind the last one relayed, or a duplicate, is dropped: an Opus decoder plays
/// packets in the order they come).
#[derive(Debug, Default)]
struct AudioIn {
    reorder: Reorder<(rtc::rtp::Packet, u64)>,
    /// The sequence number of the last packet relayed.
    last: Option<u16>,
    late: u64,
    /// What the metrics have of `reorder`'s counters and `late`.
    metered: (u64, u64, u64),
}

impl AudioIn {
    /// Whether a packet released by the reorder buffer goes on: not behind or equal to the last.
    fn admit(&mut self, seq: u16) -> bool {
        if self.last.is_some_and(|last| seq.wrapping_sub(last).wrapping_sub(1) >= 0x8000) {
            self.late += 1;
            return false;
        }
        self.last = Some(seq);
        true
    }
}

/// The task's state besides its inputs.
struct State {
    cameras: Vec<Camera>,
    audio_seq: u32,
    audio_packets: u64,
    /// The audio track's RTP, put back in order like a camera's.
    audio_in: AudioIn,
    routes: HashMap<usize, Route>,
    handles: HashMap<usize, (Arc<dyn TrackRemote>, RtpCodecKind, String)>,
    command: Option<Arc<dyn DataChannel>>,
    publisher: Option<Publisher>,
    control_tx: mpsc::Sender<ControlMessage>,
    max_payload: usize,
    last_log: Instant,
    /// When the first camera's first keyframe arrived (the [`ONLINE_WAIT`] starts).
    first_keyframe_at: Option<Instant>,
}

impl Session {
    pub(super) fn new(
        server: Arc<Server>,
        publication: Arc<Publication>,
        layout: Layout,
        tracks: RemoteTracks,
        channels: RemoteChannels,
    ) -> Self {
        Self { server, publication, layout, tracks, channels }
    }

    pub(super) async fn run(mut self) {
        let p = Arc::clone(&self.publication);
        let reason = self.serve().await;
        tracing::info!(session = %p.id, train = %p.train, "WHIP publication ended: {reason}");
        p.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = p.pc.close().await;
        self.server.remove(&p.id);
    }

    /// Runs the publication; returns why it ended.
    async fn serve(&mut self) -> String {
        let p = Arc::clone(&self.publication);
        let (media_tx, mut media) = mpsc::channel::<Media>(MEDIA_QUEUE);
        let (control_tx, mut control) = mpsc::channel(CONTROL_QUEUE);
        let mut st = State {
            cameras: self
                .layout
                .cameras
                .iter()
                .map(|c| Camera {
                    reorder: Reorder::default(),
                    depacketizer: Depacketizer::new(MAX_FRAME),
                    track: None,
                    ssrc: None,
                    seq: 0,
                    last_pli: None,
                    pending: Vec::new(),
                    pending_bytes: 0,
                    fps: c.framerate.filter(|f| (1..=240).contains(f)).unwrap_or(DEFAULT_FPS),
                    reported: super::Counters::default(),
                    announced: false,
                    unannounced_frames: 0,
                    relayed: 0,
                    metered: super::Counters::default(),
                    relayed_metered: 0,
                    unannounced_metered: 0,
                    reorder_metered: (0, 0),
                })
                .collect(),
            audio_seq: 0,
            audio_packets: 0,
            audio_in: AudioIn::default(),
            routes: HashMap::new(),
            handles: HashMap::new(),
            command: None,
            publisher: None,
            control_tx,
            max_payload: self.server.hub.config().max_payload,
            last_log: Instant::now(),
            first_keyframe_at: None,
        };
        let mut readers = Vec::new();
        let mut connection = p.state.connection.subscribe();
        let mut shutdown = self.server.shutdown.clone();
        let mut credentials = self.server.auth.changes();
        let mut reloads_open = true;
        let connect_deadline = tokio::time::Instant::now() + self.server.settings.connect_timeout;
        let mut connected = false;
        // Set while the peer connection is `disconnected` (no ICE traffic for webrtc-rs' 5 s).
        let mut lost_at: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(PLI_INTERVAL);
        // While a camera's packets wait for a missing one: give up gaps after `reorder::HOLD`.
        let mut reorder_tick = tokio::time::interval(REORDER_TICK);
        reorder_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_track = 0usize;
        let reason = loop {
            tokio::select! {
                _ = p.stop.notified() => {
                    break super::lock(&p.end).clone().unwrap_or_else(|| "the publication was closed".into());
                }
                _ = crate::stopped(&mut shutdown) => break "server shutting down".to_owned(),
                changed = connection.changed() => {
                    if changed.is_err() {
                        break "the peer connection is gone".to_owned();
                    }
                    let state = *connection.borrow_and_update();
                    if state == RTCPeerConnectionState::Connected {
                        connected = true;
                        tracing::debug!(session = %p.id, ms = p.created.elapsed().as_millis() as u64, "WHIP peer connected");
                    }
                    if is_finished(state) {
                        break format!("the peer connection is {state}");
                    }
                    lost_at = (state == RTCPeerConnectionState::Disconnected)
                        .then(|| lost_at.unwrap_or_else(|| tokio::time::Instant::now() + DISCONNECTED_GRACE));
                }
                _ = sleep_until(lost_at) => {
                    // webrtc-rs calls a peer `failed` only 25 s later; a train is gone sooner.
                    break format!("the peer connection is disconnected (no ICE traffic for 5 s, then {DISCONNECTED_GRACE:?})");
                }
                _ = tokio::time::sleep_until(connect_deadline), if !connected => {
                    break format!("the peer did not connect within {:?}", self.server.settings.connect_timeout);
                }
                reloaded = credentials.changed(), if reloads_open => {
                    if reloaded.is_err() {
                        reloads_open = false;
                    } else if let Err(reason) = self.server.auth.train(&p.train, Some(&p.token)) {
                        tracing::warn!(train = %p.train, "credentials reloaded, ending the WHIP publication: {reason}");
                        break format!("token no longer in force: {reason}");
                    }
                }
                Some(track) = self.tracks.recv() => {
                    readers.push(tokio::spawn(read_track(next_track, track, media_tx.clone())));
                    next_track += 1;
                }
                Some(dc) = self.channels.recv() => {
                    readers.push(tokio::spawn(pump(dc, media_tx.clone())));
                }
                Some(m) = media.recv() => self.media(&mut st, m).await,
                Some(msg) = control.recv() => self.control(&mut st, msg).await,
                _ = replaced(&mut st.publisher) => break "replaced by a newer connection for the same train id".to_owned(),
                _ = tick.tick() => self.tick(&mut st),
                _ = reorder_tick.tick(), if st.cameras.iter().any(|c| c.reorder.holding()) || st.audio_in.reorder.holding() => {
                    let now = Instant::now();
                    for i in 0..st.cameras.len() {
                        let mut ready = Vec::new();
                        st.cameras[i].reorder.expire(now, &mut ready);
                        for (packet, at_us) in ready {
                            self.video(&mut st, i, &packet, at_us);
                        }
                    }
                    let mut ready = Vec::new();
                    st.audio_in.reorder.expire(now, &mut ready);
                    for (packet, at_us) in ready {
                        self.audio(&mut st, &packet, at_us);
                    }
                }
            }
        };
        for r in readers {
            r.abort();
        }
        meter(&mut st);
        if let Some(publisher) = st.publisher.take() {
            publisher.set_offline_reason(reason.clone());
            drop(publisher);
        }
        let lost: Vec<String> = st
            .cameras
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let n = c.depacketizer.counters;
                format!(
                    "camera {i}: {} frames, {} incomplete, {} held back, {} late, {} unannounced; \
                     {} packets put back in order, {} gaps given up",
                    n.frames,
                    n.incomplete,
                    n.held_back,
                    n.late,
                    c.unannounced_frames,
                    c.reorder.reordered,
                    c.reorder.gaps
                )
            })
            .collect();
        let a = &st.audio_in;
        tracing::info!(session = %p.id, train = %p.train, audio = st.audio_packets, audio_reordered = a.reorder.reordered,
            audio_gaps = a.reorder.gaps, audio_late = a.late, "WHIP frames: {}", lost.join("; "));
        reason
    }

    async fn media(&self, st: &mut State, m: Media) {
        match m {
            Media::Track { track, handle, kind, track_id } => {
                st.handles.insert(track, (handle, kind, track_id));
            }
            Media::Rtp { track, packet, at_us } => {
                let route = match st.routes.get(&track) {
                    Some(r) => *r,
                    None => {
                        let r = self.route(st, track, packet.header.ssrc);
                        st.routes.insert(track, r);
                        if let (Route::Camera(i), Some((handle, _, _))) = (r, st.handles.get(&track)) {
                            st.cameras[i].track = Some(Arc::clone(handle));
                            st.cameras[i].ssrc = Some(packet.header.ssrc);
                        }
                        tracing::debug!(session = %self.publication.id, track, ?r, ssrc = packet.header.ssrc, "WHIP track routed");
                        r
                    }
                };
                match route {
                    Route::Camera(i) => {
                        let mut ready = Vec::new();
                        let seq = packet.header.sequence_number;
                        st.cameras[i].reorder.push(seq, (packet, at_us), Instant::now(), &mut ready);
                        for (packet, at_us) in ready {
                            self.video(st, i, &packet, at_us);
                        }
                    }
                    Route::Audio => {
                        let mut ready = Vec::new();
                        let seq = packet.header.sequence_number;
                        st.audio_in.reorder.push(seq, (packet, at_us), Instant::now(), &mut ready);
                        for (packet, at_us) in ready {
                            self.audio(st, &packet, at_us);
                        }
                    }
                    Route::Nowhere => {}
                }
            }
            Media::Channel(ChannelEvent::Open(dc)) => {
                tracing::debug!(session = %self.publication.id, "WHIP command channel open");
                st.command = Some(dc);
            }
            Media::Channel(ChannelEvent::Text(text)) => self.channel_text(st, &text).await,
            Media::Channel(ChannelEvent::Message(dc)) => {
                // A channel already open when it was announced may never say OnOpen.
                st.command.get_or_insert(dc);
            }
            Media::Channel(ChannelEvent::Binary) => {
                let error =
                    ErrorMessage { code: "bad_message".into(), message: "send control messages as JSON text".into() };
                reply(st, &ControlMessage::Error(error)).await;
            }
            Media::Channel(ChannelEvent::Closed) => {
                tracing::debug!(session = %self.publication.id, "WHIP command channel closed");
                st.command = None;
            }
        }
    }

    /// The camera (or audio) a new track's packets go to.
    fn route(&self, st: &State, track: usize, ssrc: u32) -> Route {
        let taken: Vec<Route> = st.routes.values().copied().collect();
        let (kind, track_id) = match st.handles.get(&track) {
            Some((_, kind, id)) => (Some(*kind), Some(id.as_str())),
            None => (None, None),
        };
        let layout = &self.layout;
        if let Some(i) = layout.cameras.iter().position(|c| c.ssrcs.contains(&ssrc)) {
            return Route::Camera(i);
        }
        if layout.audio.as_ref().is_some_and(|a| a.ssrcs.contains(&ssrc)) {
            return Route::Audio;
        }
        if let Some(id) = track_id.filter(|id| !id.is_empty()) {
            if let Some(i) = layout.cameras.iter().position(|c| c.track_id.as_deref() == Some(id)) {
                return Route::Camera(i);
            }
            if layout.audio.as_ref().is_some_and(|a| a.track_id.as_deref() == Some(id)) {
                return Route::Audio;
            }
        }
        match kind {
            Some(RtpCodecKind::Audio) if layout.audio.is_some() && !taken.contains(&Route::Audio) => Route::Audio,
            Some(RtpCodecKind::Audio) => Route::Nowhere,
            _ => (0..layout.cameras.len()).map(Route::Camera).find(|r| !taken.contains(r)).unwrap_or(Route::Nowhere),
        }
    }

    fn video(&self, st: &mut State, i: usize, packet: &rtc::rtp::Packet, at_us: u64) {
        let rtp = Rtp {
            sequence: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            payload: &packet.payload,
        };
        let Some(au) = st.cameras[i].depacketizer.push(rtp, at_us) else {
            if st.cameras[i].depacketizer.needs_keyframe() {
                pli(&mut st.cameras[i]);
            }
            return;
        };
        if st.publisher.is_none() {
            let cam = &mut st.cameras[i];
            if au.keyframe {
                cam.pending.clear();
                cam.pending_bytes = 0;
                st.first_keyframe_at.get_or_insert_with(Instant::now);
            }
            if au.keyframe || !cam.pending.is_empty() {
                cam.pending_bytes += au.data.len();
                cam.pending.push(au);
                if cam.pending_bytes > MAX_PENDING {
                    // A GOP too long to keep: wait for (and ask for) the next keyframe.
                    cam.pending.clear();
                    cam.pending_bytes = 0;
                    force_pli(cam);
                }
            }
            if st.cameras.iter().all(|c| !c.pending.is_empty()) {
                self.go_online(st);
            }
            return;
        }
        if !st.cameras[i].announced {
            // Left out of the announcement (no keyframe within ONLINE_WAIT): its frames have no
            // camera to go to until the publisher connects again.
            st.cameras[i].unannounced_frames += 1;
            return;
        }
        publish_frame(st, i, &au.data, au.keyframe, au.first_at, &self.publication.id);
    }

    fn audio(&self, st: &mut State, packet: &rtc::rtp::Packet, at_us: u64) {
        if !st.audio_in.admit(packet.header.sequence_number) {
            return;
        }
        let Some(publisher) = &st.publisher else { return };
        if packet.payload.is_empty() {
            return;
        }
        let meta = FrameMeta {
            keyframe: true,
            codec: Codec::Opus,
            camera: CameraId(AUDIO_ID),
            seq: FrameSeq(st.audio_seq),
            capture_us: at_us,
        };
        st.audio_seq = st.audio_seq.wrapping_add(1);
        st.audio_packets += 1;
        match packetize(meta, &packet.payload, st.max_payload) {
            Ok(packets) => {
                for p in packets {
                    let _ = publisher.publish(p);
                }
            }
            Err(e) => tracing::debug!(session = %self.publication.id, "Opus packet not relayed: {e}"),
        }
    }

    /// Every camera has sent a keyframe: say hello to the hub, then publish those keyframes.
    fn go_online(&self, st: &mut State) {
        let p = &self.publication;
        // Every camera with a keyframe (all of them, unless ONLINE_WAIT ran out); the ids stay
        // the m-line indices, so a camera left out leaves a gap.
        let cameras: Vec<CameraInfo> = st
            .cameras
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.pending.is_empty())
            .map(|(i, c)| {
                let (width, height) = c.depacketizer.dimensions().unwrap_or((0, 0));
                CameraInfo { id: CameraId(i as u16), codec: "h264".into(), width, height, fps: c.fps }
            })
            .collect();
        let missing: Vec<usize> = (0..st.cameras.len()).filter(|i| st.cameras[*i].pending.is_empty()).collect();
        if !missing.is_empty() {
            tracing::warn!(session = %p.id, train = %p.train, ?missing,
                "WHIP cameras sent no keyframe within {ONLINE_WAIT:?}: announced without them");
        }
        let audio = self
            .layout
            .audio
            .iter()
            .map(|a| AudioInfo {
                id: CameraId(AUDIO_ID),
                codec: "opus".into(),
                sample_rate: railcast_protocol::control::AUDIO_SAMPLE_RATE,
                channels: if a.stereo { 2 } else { 1 },
                frame_ms: a.ptime.filter(|t| railcast_protocol::control::AUDIO_FRAME_MS.contains(t)).unwrap_or(20),
            })
            .collect();
        let hello = Hello {
            train_id: p.train.clone(),
            cameras,
            audio,
            software: Some(format!("WHIP publisher ({})", p.id)),
            token: None,
        };
        if let Err(e) = hello.validate() {
            // A picture size outside 1…8192 (an SPS that says 0 or too much): keep waiting for a
            // better keyframe rather than announce nonsense.
            tracing::warn!(session = %p.id, train = %p.train, "WHIP train not announced: {e}");
            for c in &mut st.cameras {
                c.pending.clear();
                c.pending_bytes = 0;
            }
            return;
        }
        tracing::info!(session = %p.id, train = %p.train, cameras = ?hello.cameras.iter().map(|c| (c.width, c.height)).collect::<Vec<_>>(),
            audio = !hello.audio.is_empty(), ms = p.created.elapsed().as_millis() as u64, "WHIP train online");
        st.publisher = Some(self.server.hub.connect_train_via(hello, st.control_tx.clone(), NAME));
        for cam in &mut st.cameras {
            cam.announced = !cam.pending.is_empty();
        }
        for i in 0..st.cameras.len() {
            let pending = std::mem::take(&mut st.cameras[i].pending);
            st.cameras[i].pending_bytes = 0;
            for au in pending {
                publish_frame(st, i, &au.data, au.keyframe, au.first_at, &p.id);
            }
        }
    }

    /// A message from the hub for the train.
    async fn control(&self, st: &mut State, msg: ControlMessage) {
        match msg {
            ControlMessage::KeyframeRequest(r) => {
                for (i, cam) in st.cameras.iter_mut().enumerate() {
                    if r.camera.is_none_or(|c| usize::from(c.0) == i) {
                        pli(cam);
                    }
                }
            }
            ControlMessage::Command(Command { command_id, command: Action::RequestKeyframe { camera } }) => {
                // A WebRTC encoder's way to a keyframe is RTCP PLI, which every publisher
                // implements: the server answers for the train.
                let n = st.cameras.len();
                let ack = match camera.map(|c| usize::from(c.0)) {
                    Some(i) if i >= n => CommandAck {
                        command_id,
                        ok: false,
                        message: format!("camera {i} does not exist (this train has {n})"),
                    },
                    Some(i) => {
                        force_pli(&mut st.cameras[i]);
                        CommandAck { command_id, ok: true, message: format!("RTCP PLI sent for camera {i}") }
                    }
                    None => {
                        st.cameras.iter_mut().for_each(force_pli);
                        CommandAck { command_id, ok: true, message: "RTCP PLI sent for every camera".into() }
                    }
                };
                if let Some(publisher) = &st.publisher {
                    publisher.ack(ack);
                }
            }
            ControlMessage::Command(cmd) => {
                let id = cmd.command_id;
                let text = ControlMessage::Command(cmd).to_json();
                // A reliable channel with room queues it at once (`try_send_text` never waits
                // for room); no channel, or a full one, is a failed command at once.
                let sent = match &st.command {
                    Some(dc) => match dc.try_send_text(&text).await {
                        Ok(()) => Ok(()),
                        Err(e) => Err(format!("the WHIP publisher's command channel refused it: {e}")),
                    },
                    None => Err("the WHIP publisher has no open command data channel".to_owned()),
                };
                if let (Err(message), Some(publisher)) = (sent, &st.publisher) {
                    publisher.ack(CommandAck { command_id: id, ok: false, message });
                }
            }
            other => tracing::debug!(session = %self.publication.id, kind = other.name(), "not for a WHIP train"),
        }
    }

    /// A text message from the publisher's `command` channel.
    async fn channel_text(&self, st: &mut State, text: &str) {
        let max = railcast_protocol::control::DEFAULT_MAX_BODY;
        let error = |code: &str, message: String| ControlMessage::Error(ErrorMessage { code: code.into(), message });
        match ControlMessage::from_json(text, max) {
            Ok(ControlMessage::CommandAck(ack)) => {
                if let Some(publisher) = &st.publisher {
                    publisher.ack(ack);
                }
            }
            Ok(ControlMessage::Telemetry(t)) => {
                if let Some(publisher) = &st.publisher {
                    publisher.telemetry(t);
                }
            }
            Ok(ControlMessage::Error(e)) => {
                tracing::warn!(train = %self.publication.train, code = %e.code, "WHIP train reports an error: {}", e.message);
            }
            Ok(other) => {
                let message = format!("a train does not send {} messages", other.name());
                reply(st, &error("unexpected_frame", message)).await;
            }
            Err(e) => reply(st, &error(e.label(), e.to_string())).await,
        }
    }

    fn tick(&self, st: &mut State) {
        meter(st);
        if st.publisher.is_none() && st.first_keyframe_at.is_some_and(|t| t.elapsed() >= ONLINE_WAIT) {
            self.go_online(st);
        }
        let waiting = st.publisher.is_none();
        for cam in &mut st.cameras {
            if waiting && cam.pending.is_empty() || cam.depacketizer.needs_keyframe() {
                pli(cam);
            }
        }
        if st.last_log.elapsed() >= LOG_INTERVAL {
            st.last_log = Instant::now();
            for (i, cam) in st.cameras.iter_mut().enumerate() {
                let now = cam.depacketizer.counters;
                if now.incomplete > cam.reported.incomplete || now.late > cam.reported.late {
                    tracing::warn!(session = %self.publication.id, train = %self.publication.train, camera = i,
                        incomplete = now.incomplete - cam.reported.incomplete, late = now.late - cam.reported.late,
                        "WHIP frames dropped (lost or reordered RTP packets)");
                }
                cam.reported = now;
            }
        }
    }
}

/// Add what the cameras counted since the last call to the metrics.
fn meter(st: &mut State) {
    let m = &super::METRICS.frames;
    for cam in &mut st.cameras {
        let (now, was) = (cam.depacketizer.counters, cam.metered);
        m.with_label_values(&["incomplete"]).inc_by(now.incomplete - was.incomplete);
        m.with_label_values(&["held_back"]).inc_by(now.held_back - was.held_back);
        m.with_label_values(&["relayed"]).inc_by(cam.relayed - cam.relayed_metered);
        m.with_label_values(&["unannounced"]).inc_by(cam.unannounced_frames - cam.unannounced_metered);
        let r = &super::METRICS.reorder;
        r.with_label_values(&["video", "reordered"]).inc_by(cam.reorder.reordered - cam.reorder_metered.0);
        r.with_label_values(&["video", "gap"]).inc_by(cam.reorder.gaps - cam.reorder_metered.1);
        cam.reorder_metered = (cam.reorder.reordered, cam.reorder.gaps);
        cam.metered = now;
        cam.relayed_metered = cam.relayed;
        cam.unannounced_metered = cam.unannounced_frames;
    }
    let a = &mut st.audio_in;
    let r = &super::METRICS.reorder;
    r.with_label_values(&["audio", "reordered"]).inc_by(a.reorder.reordered - a.metered.0);
    r.with_label_values(&["audio", "gap"]).inc_by(a.reorder.gaps - a.metered.1);
    r.with_label_values(&["audio", "late"]).inc_by(a.late - a.metered.2);
    a.metered = (a.reorder.reordered, a.reorder.gaps, a.late);
}

/// Packetize one access unit and hand it to the hub.
fn publish_frame(st: &mut State, i: usize, data: &[u8], keyframe: bool, capture_us: u64, session: &str) {
    let Some(publisher) = &st.publisher else { return };
    let cam = &mut st.cameras[i];
    let meta = FrameMeta {
        keyframe,
        codec: Codec::H264AnnexB,
        camera: CameraId(i as u16),
        seq: FrameSeq(cam.seq),
        capture_us,
    };
    cam.seq = cam.seq.wrapping_add(1);
    cam.relayed += 1;
    match packetize(meta, data, st.max_payload) {
        Ok(packets) => {
            for p in packets {
                let _ = publisher.publish(p);
            }
        }
        Err(e) => tracing::debug!(%session, camera = i, "frame not relayed: {e}"),
    }
}

/// Send a PLI for `cam` now, whenever the last one went (an operator asked for it).
fn force_pli(cam: &mut Camera) {
    cam.last_pli = None;
    pli(cam);
}

/// Send a PLI for `cam`, unless one went out within [`PLI_INTERVAL`] or its track is unknown.
fn pli(cam: &mut Camera) {
    let (Some(track), Some(media_ssrc)) = (&cam.track, cam.ssrc) else { return };
    let now = Instant::now();
    if cam.last_pli.is_some_and(|t| now.duration_since(t) < PLI_INTERVAL) {
        return;
    }
    cam.last_pli = Some(now);
    super::METRICS.plis.inc();
    let track = Arc::clone(track);
    // The driver's queue is awaited on its own task: the session never waits for it.
    tokio::spawn(async move {
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!("PLI not sent: {e}");
        }
    });
}

/// Send `msg` on the command channel, if one is open, without waiting for room.
async fn reply(st: &State, msg: &ControlMessage) {
    if let Some(dc) = &st.command {
        let _ = dc.try_send_text(&msg.to_json()).await;
    }
}

/// Resolves at `at`; never without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the train's publisher was replaced by a newer connection; never without one.
async fn replaced(publisher: &mut Option<Publisher>) {
    match publisher {
        Some(p) => p.replaced().await,
        None => std::future::pending().await,
    }
}

/// A remote track's events → the task, each RTP packet stamped with the server's clock.
async fn read_track(track: usize, handle: Arc<dyn TrackRemote>, tx: mpsc::Sender<Media>) {
    let kind = handle.kind().await;
    let track_id = handle.track_id().await;
    if tx.send(Media::Track { track, handle: Arc::clone(&handle), kind, track_id }).await.is_err() {
        return;
    }
    while let Some(ev) = handle.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(packet) = ev {
            let at_us = crate::now_us();
            if tx.send(Media::Rtp { track, packet, at_us }).await.is_err() {
                return;
            }
        } else if matches!(ev, TrackRemoteEvent::OnEnded) {
            return;
        }
    }
}

/// A data channel's events → the task. Only `command` is read; other labels are ignored.
async fn pump(dc: Arc<dyn DataChannel>, tx: mpsc::Sender<Media>) {
    let label = dc.label().await.unwrap_or_default();
    if label != "command" {
        tracing::debug!(%label, "WHIP data channel ignored (only \"command\" is read)");
        return;
    }
    while let Some(ev) = dc.poll().await {
        let ev = match ev {
            DataChannelEvent::OnOpen => ChannelEvent::Open(Arc::clone(&dc)),
            DataChannelEvent::OnMessage(m) if m.is_string => {
                if tx.send(Media::Channel(ChannelEvent::Message(Arc::clone(&dc)))).await.is_err() {
                    return;
                }
                ChannelEvent::Text(String::from_utf8_lossy(&m.data).into_owned())
            }
            DataChannelEvent::OnMessage(_) => ChannelEvent::Binary,
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        if tx.send(Media::Channel(ev)).await.is_err() {
            return;
        }
    }
    let _ = tx.send(Media::Channel(ChannelEvent::Closed)).await;
}

#[cfg(test)]
mod tests {
    use super::AudioIn;

    #[test]
    fn audio_goes_on_only_ahead_of_the_last_packet_relayed() {
        let mut a = AudioIn::default();
        let admitted: Vec<u16> = [65534, 65535, 0, 65535, 0, 2, 1, 3].into_iter().filter(|s| a.admit(*s)).collect();
        assert_eq!(admitted, [65534, 65535, 0, 2, 3], "across the wrap; a duplicate and one behind dropped");
        assert_eq!(a.late, 3);
    }
}
