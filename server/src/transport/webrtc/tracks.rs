//! RTP media tracks for WHEP: the server answers a client's offer of receive-only video
//! transceivers with one H.264 track per camera of the mapped train, and its first audio
//! transceiver with an Opus track for the train's audio; one task per peer ([`Session`]) turns the
//! hub's packets into RTP on those tracks.
//!
//! - **Tracks.** The i-th video m-line of the offer carries the i-th camera of the train (the
//!   order of `cameras` in `mapped_train_changed`). Video m-lines beyond the train's cameras are
//!   answered `inactive`. The first audio m-line carries the train's first audio source (wire
//!   codec 0x02, docs/wire-format.md §2.7) as an Opus track when the train announces audio, or
//!   when the train is not known yet (unmapped, never connected: as every video m-line then gets
//!   a track); when the train is known to have no audio it is answered `inactive`, as are further
//!   audio m-lines. An inactive m-line stays inactive for the session: a remap to a train with
//!   audio brings no sound until the player offers again (WHEP has no renegotiation but a new
//!   POST). An audio m-line without Opus is rejected by the library (port 0; vendored patch 17
//!   keeps the answer's candidates out of a rejected first m-section). A track is a [`Slot`]:
//!   what it carries ([`Media`]), its SSRC, the payload type the client negotiated, its
//!   packetizer and clock; packets are routed to slots by [`Slots::route`].
//! - **Frames.** The hub's packets are reassembled into frames with
//!   [`railcast_protocol::assembler::Assembler`] (incomplete frames, and deltas after a loss, never
//!   reach a decoder), then packetized per RFC 6184 by webrtc-rs' H.264 payloader: start codes
//!   stripped, SPS and PPS sent as one STAP-A in front of the IDR slice, FU-A for NAL units above
//!   the MTU. Every IDR is preceded by SPS and PPS: the simulator's keyframes carry them, and a
//!   keyframe that does not gets the last ones seen on that camera ([`ParameterSets`]). A frame
//!   is packetized once, by the first session that sends it; the others send the same payloads
//!   (`SharedPayloads`, the last 512 frames), each with its own header, and never join the
//!   frame's chunks ([`railcast_protocol::assembler::FrameParts`]): the assembler's rules still
//!   decide which frames go out.
//! - **Audio.** A railcast audio packet is one whole Opus packet (one chunk, always a keyframe),
//!   so it is one RTP packet as it is (RFC 7587: no payload header; the marker bit is left clear,
//!   which the RFC allows). The hub does not replay audio to a late joiner: sound starts with the
//!   next packet.
//! - **Time.** RTP timestamps are the frames' capture times at the track's clock rate, 90 kHz
//!   for video and 48 kHz for Opus, `capture_us × rate / 10⁶ mod 2³²` ([`RtpClock`]): a dropped
//!   frame leaves a gap in time, never a skew, every track of a train runs on its one sender
//!   clock (audio and video line up by capture time), and a player can tell each frame's capture
//!   time from its RTP timestamp (the console's glass-to-glass figure does). When
//!   that would step back or leap more than 10 s ahead (a remap to a train whose cached keyframe
//!   is older than the last frame sent, a train clock stepped), the clock shifts to continue one
//!   frame (video: 3,000 ticks; audio: one 20 ms packet, 960) after the last timestamp and keeps
//!   the shift; sequence numbers run on.
//! - **Keyframes.** A client's RTCP PLI or FIR reaches this task (the interceptor
//!   [`super::feedback::SenderFeedback`] marks them for the application) and becomes the hub's
//!   keyframe request for that camera, at most one per camera per [`KEYFRAME_REQUEST_INTERVAL`].
//! - **Losses and reports.** The same interceptor answers the client's NACKs from the last
//!   packets of each track and sends each track's sender report every second.
//! - **Back-pressure.** Writing RTP waits for the peer connection's driver queue; meanwhile the
//!   hub queue of this session fills and the hub drops whole frames for it alone.
//! - **Commands.** When the offer has a data-channel m-line, the client's `command` channel
//!   carries the same JSON as on the data-channel transport, through the same [`Relay`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use railcast_protocol::assembler::{Assembler, Frame, FrameParts};
use railcast_protocol::client::ServerEvent;
use railcast_protocol::h264::{nal_units, NAL_IDR, NAL_PPS, NAL_SPS};
use railcast_protocol::{AudioInfo, CameraId, CameraInfo, TrainId, VideoPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    configure_nack, configure_rtcp_reports, MediaEngine, PeerConnection, RTCPeerConnectionState, RTCSessionDescription,
    Registry,
};

use super::datachannel::{self, Channel, Ev};
use super::negotiate::{self, lock, Interceptors, NegotiationError, PeerState};
use super::peers::{is_finished, Peer, Server};
use super::{Settings, METRICS};
use crate::core::Core;
use crate::relay::{Next, Relay};
use crate::remote::RemoteControl;

/// The transport's name in the API and metric labels.
pub const NAME: &str = "whep";

/// Most video m-lines answered with a track; more are answered inactive.
pub const MAX_VIDEO_TRACKS: usize = 16;

/// At most one keyframe request per camera this often, whatever the client sends.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// RTP payload budget per packet (webrtc-rs' own for samples): fits a 1,280-byte path MTU with
/// the RTP, SRTP, UDP and IP headers.
const RTP_MTU: usize = 1200;

/// 90 kHz video clock.
const VIDEO_CLOCK_HZ: u32 = 90_000;

/// Where a re-anchored video clock starts after the last timestamp sent: one frame at 30 fps.
const REANCHOR_STEP: u32 = 3_000;

/// Opus's RTP clock (RFC 7587: 48 kHz whatever the audio's own rate).
const AUDIO_CLOCK_HZ: u32 = 48_000;

/// Where a re-anchored audio clock starts after the last timestamp sent: one 20 ms packet.
const AUDIO_REANCHOR_STEP: u32 = 960;

/// Opus as WebRTC offers it (RFC 7587: always `opus/48000/2` in SDP, mono or not) with the
/// parameters browsers offer. The payload type is only the server's default: the answer and
/// every packet use the client's.
const OPUS_PAYLOAD_TYPE: u8 = 111;
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// H.264 with packetization mode 1 in the profiles a Constrained Baseline stream (what trains
/// send) conforms to, so the answer accepts whichever of them the client offers: Constrained
/// Baseline (42e0), Baseline (4200), Main (4d00). Payload types here are only the server's
/// defaults: the answer and every packet use the client's.
const H264_PROFILES: [(&str, u8); 3] = [("42e01f", 102), ("42001f", 106), ("4d001f", 108)];

/// The codecs and interceptors of a peer that receives media (a WHIP train): H.264 (above) with
/// NACK, PLI and FIR feedback, and Opus; NACKs (generated and answered), sender and receiver
/// reports.
pub fn media() -> (MediaEngine, Interceptors) {
    let mut engine = engine();
    let registry = configure_nack(Registry::new(), &mut engine);
    (engine, Interceptors::Chain(configure_rtcp_reports(registry)))
}

/// The same codecs for a peer that only sends media (WHEP), with what a sender uses: NACK
/// answers (retransmissions from the last packets sent), sender reports and keyframe requests,
/// all in one interceptor that is the peer's whole chain ([`super::feedback::SenderFeedback`]):
/// webrtc-rs' chain walks every packet through each interceptor's queue and a terminus, which at
/// 500 viewers costs more than the work. The receiver's (NACK generator, receiver reports) are
/// not needed.
pub fn media_sender() -> (MediaEngine, Interceptors) {
    let mut engine = engine();
    // The feedback `configure_nack` announces, without its generator.
    engine.register_feedback(RTCPFeedback { typ: "nack".into(), parameter: String::new() }, RtpCodecKind::Video);
    engine.register_feedback(RTCPFeedback { typ: "nack".into(), parameter: "pli".into() }, RtpCodecKind::Video);
    (engine, Interceptors::Only(Box::new(super::feedback::SenderFeedback::default())))
}

/// H.264 in three profiles and Opus, with FIR feedback for video (NACK and PLI: see callers).
fn engine() -> MediaEngine {
    let mut engine = MediaEngine::default();
    // `register_codec` only fails for a kind that is neither audio nor video.
    for (profile, payload_type) in H264_PROFILES {
        let codec = RTCRtpCodecParameters { rtp_codec: h264_codec(profile), payload_type };
        let _ = engine.register_codec(codec, RtpCodecKind::Video);
    }
    let opus = RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: OPUS_PAYLOAD_TYPE };
    let _ = engine.register_codec(opus, RtpCodecKind::Audio);
    engine.register_feedback(RTCPFeedback { typ: "ccm".into(), parameter: "fir".into() }, RtpCodecKind::Video);
    engine
}

fn h264_codec(profile: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: VIDEO_CLOCK_HZ,
        channels: 0,
        sdp_fmtp_line: format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"),
        rtcp_feedback: vec![],
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: AUDIO_CLOCK_HZ,
        channels: 2,
        sdp_fmtp_line: OPUS_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The SSRCs a compound RTCP packet asks keyframes of (PLI's media SSRC, FIR's entries).
pub fn keyframe_requests(packets: &[Box<dyn rtc::rtcp::packet::Packet>]) -> Vec<u32> {
    let mut ssrcs = Vec::new();
    for p in packets {
        if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
            ssrcs.push(pli.media_ssrc);
        } else if let Some(fir) = p.as_any().downcast_ref::<FullIntraRequest>() {
            ssrcs.extend(fir.fir.iter().map(|e| e.ssrc));
        }
    }
    ssrcs
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// The camera at this index of the train's camera list (its hello's order).
    Video { camera: usize },
    /// The audio source at this index of the train's audio list (Opus, wire codec 0x02).
    Audio { source: usize },
}

/// One negotiated track, as the session writes it.
pub struct Slot {
    pub media: Media,
    pub mid: String,
    pub ssrc: u32,
    /// The payload type the client negotiated for it.
    pub payload_type: u8,
    track: Arc<dyn TrackLocal>,
    sequence: u16,
    clock: RtpClock,
    parameter_sets: ParameterSets,
    /// A frame was lost on the way to the peer (a write failed): send nothing until a keyframe.
    awaiting_keyframe: bool,
    last_keyframe_request: Option<Instant>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("media", &self.media)
            .field("mid", &self.mid)
            .field("ssrc", &self.ssrc)
            .field("payload_type", &self.payload_type)
            .finish_non_exhaustive()
    }
}

/// The tracks of a session.
#[derive(Debug, Default)]
pub struct Slots(pub Vec<Slot>);

impl Slots {
    /// The slot that carries `frame` of a train whose cameras and audio sources are `ids`
    /// (camera and audio ids share one id space per train; the codec says again which it is).
    fn route(&mut self, frame: &FrameParts, ids: &TrackIds) -> Option<&mut Slot> {
        let media = if frame.codec.is_audio() {
            Media::Audio { source: ids.audio.iter().position(|c| *c == frame.camera)? }
        } else {
            Media::Video { camera: ids.cameras.iter().position(|c| *c == frame.camera)? }
        };
        self.0.iter_mut().find(|s| s.media == media)
    }
}

/// RTP timestamps from capture times: `capture_us × rate / 10⁶ mod 2³²` plus a shift, zero until
/// time would step back or leap ahead (more than [`MAX_LEAP_SECONDS`]); then the shift makes the
/// timestamp continue one step (a frame, a packet) after the last one, and stays.
#[derive(Debug, Clone)]
pub struct RtpClock {
    rate: u32,
    reanchor_step: u32,
    shift: u32,
    last: Option<u32>,
}

/// The largest forward step taken as real time.
const MAX_LEAP_SECONDS: i64 = 10;

impl RtpClock {
    /// A clock of `rate` Hz that continues `reanchor_step` ticks after the last timestamp when
    /// capture time cannot be followed.
    pub fn new(rate: u32, reanchor_step: u32) -> Self {
        Self { rate, reanchor_step, shift: 0, last: None }
    }

    /// The 90 kHz clock of a video track.
    pub fn video() -> Self {
        Self::new(VIDEO_CLOCK_HZ, REANCHOR_STEP)
    }

    /// The 48 kHz clock of an Opus track.
    pub fn audio() -> Self {
        Self::new(AUDIO_CLOCK_HZ, AUDIO_REANCHOR_STEP)
    }

    /// `capture_us` at this clock's rate, modulo 2³² (no shift).
    pub fn absolute(&self, capture_us: u64) -> u32 {
        (u128::from(capture_us) * u128::from(self.rate) / 1_000_000) as u32
    }

    pub fn timestamp(&mut self, capture_us: u64) -> u32 {
        let mut t = self.absolute(capture_us).wrapping_add(self.shift);
        if let Some(last) = self.last {
            let step = i64::from(t.wrapping_sub(last) as i32);
            if !(0..=MAX_LEAP_SECONDS * i64::from(self.rate)).contains(&step) {
                let want = last.wrapping_add(self.reanchor_step);
                self.shift = self.shift.wrapping_add(want.wrapping_sub(t));
                t = want;
            }
        }
        self.last = Some(t);
        t
    }
}

/// A video frame's RTP payloads, shared by every WHEP session that sends it: the reassembled frame
/// is the same bytes for every viewer, so the NAL scan and RFC 6184 packetization run once per
/// frame, not once per viewer. Only frames sent as they are (not an IDR that got parameter sets
/// prepended for one viewer) are shared.
#[derive(Debug)]
struct Packetized {
    payloads: Vec<Bytes>,
    /// The parameter sets the frame carried, for the viewers' [`ParameterSets`].
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

/// Train, camera, frame sequence, capture time. The train's id is shared, not copied, per
/// viewer and frame.
type FrameKey = (Arc<str>, u16, u32, u64);

/// Frames kept: a few seconds of a handful of trains' cameras; a viewer far behind packetizes
/// its own.
const SHARED_FRAMES: usize = 512;

#[derive(Debug, Default)]
struct SharedPayloads {
    frames: HashMap<FrameKey, Arc<Packetized>>,
    order: VecDeque<FrameKey>,
}

impl SharedPayloads {
    fn get(&self, key: &FrameKey) -> Option<Arc<Packetized>> {
        self.frames.get(key).cloned()
    }

    fn insert(&mut self, key: FrameKey, p: Arc<Packetized>) {
        if self.frames.insert(key.clone(), p).is_none() {
            self.order.push_back(key);
            while self.order.len() > SHARED_FRAMES {
                if let Some(old) = self.order.pop_front() {
                    self.frames.remove(&old);
                }
            }
        }
    }
}

static SHARED: LazyLock<Mutex<SharedPayloads>> = LazyLock::new(Mutex::default);

/// The last SPS and PPS seen on a camera, put in front of a keyframe that lacks them.
#[derive(Debug, Clone, Default)]
pub struct ParameterSets {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl ParameterSets {
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// What [`ParameterSets::complete`] learns from a frame carrying these parameter sets.
    fn learn(&mut self, sps: Option<&Vec<u8>>, pps: Option<&Vec<u8>>) {
        if let Some(sps) = sps {
            self.sps = Some(sps.clone());
        }
        if let Some(pps) = pps {
            self.pps = Some(pps.clone());
        }
    }

    /// The SPS and PPS an access unit carries.
    fn carried(data: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let (mut sps, mut pps) = (None, None);
        for nal in nal_units(data) {
            match nal.nal_type() {
                NAL_SPS => sps = Some(nal.payload.to_vec()),
                NAL_PPS => pps = Some(nal.payload.to_vec()),
                _ => {}
            }
        }
        (sps, pps)
    }

    /// The access unit to send: `data` itself, or, for an IDR without SPS or PPS, the last ones
    /// seen prepended. `None`: an IDR whose parameter sets were never seen (undecodable).
    pub fn complete(&mut self, data: Vec<u8>) -> Option<Vec<u8>> {
        let (mut has_sps, mut has_pps, mut has_idr) = (false, false, false);
        for nal in nal_units(&data) {
            match nal.nal_type() {
                NAL_SPS => {
                    has_sps = true;
                    self.sps = Some(nal.payload.to_vec());
                }
                NAL_PPS => {
                    has_pps = true;
                    self.pps = Some(nal.payload.to_vec());
                }
                NAL_IDR => has_idr = true,
                _ => {}
            }
        }
        if !has_idr || (has_sps && has_pps) {
            return Some(data);
        }
        let (sps, pps) = (self.sps.as_ref()?, self.pps.as_ref()?);
        let mut out = Vec::with_capacity(data.len() + sps.len() + pps.len() + 8);
        for nal in [(!has_sps).then_some(sps), (!has_pps).then_some(pps)].into_iter().flatten() {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
        out.extend_from_slice(&data);
        Some(out)
    }
}

/// One m-section of an SDP, as far as answering needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Section {
    /// `video`, `audio`, `application` …
    kind: String,
    /// Its `a=mid:` ("" without one).
    mid: String,
    /// It has `a=rtpmap:<pt> opus/48000/2` (RFC 7587's only form).
    opus: bool,
}

fn sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(Section { kind: m.split(' ').next().unwrap_or_default().to_owned(), ..Section::default() });
        } else if let Some(last) = out.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                mid.clone_into(&mut last.mid);
            } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
                let codec = map.split_once(' ').map_or("", |(_, c)| c);
                last.opus |= codec.eq_ignore_ascii_case("opus/48000/2");
            }
        }
    }
    out
}

/// Count the video m-lines of an SDP and list their mids, in order.
pub fn video_mids(sdp: &str) -> Vec<String> {
    sections(sdp).into_iter().filter(|s| s.kind == "video").map(|s| s.mid).collect()
}

/// The mid of an SDP's first audio m-line, if that line offers Opus.
fn opus_mid(sdp: &str) -> Option<String> {
    sections(sdp).into_iter().find(|s| s.kind == "audio").filter(|s| s.opus && !s.mid.is_empty()).map(|s| s.mid)
}

/// The first `a=mid:` of an SDP.
fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned))
}

/// What [`answer`] hands the session.
#[derive(Debug)]
pub struct Opening {
    pub slots: Slots,
    /// The client's data channels (`command`), when its offer had an application m-line.
    pub incoming: Option<mpsc::UnboundedReceiver<Arc<dyn DataChannel>>>,
}

/// What the mapped train sends, as far as the server knows when it answers an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Its cameras; `None`: not known (unmapped, or never connected), so every video m-line
    /// gets a track, up to [`MAX_VIDEO_TRACKS`].
    pub cameras: Option<usize>,
    /// Give the first audio m-line a track: the train announces audio, or is not known yet.
    pub audio: bool,
}

/// Answer a client's WHEP offer: a sending track on each of its first `wanted.cameras` video
/// m-lines, the others inactive; an Opus track on its first audio m-line when `wanted.audio`
/// (and that m-line offers Opus), further audio m-lines inactive; and its data channels when it
/// has an application m-line. Returns the answer once it has the host candidates.
pub async fn answer(
    pc: &Arc<dyn PeerConnection>,
    state: &PeerState,
    config: &Settings,
    offer: String,
    wanted: Wanted,
) -> Result<(String, Opening), NegotiationError> {
    // Malformed SDP is a 400 before anything else is said about it.
    let desc = RTCSessionDescription::offer(offer.clone()).map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
    let mids = video_mids(&offer);
    if mids.is_empty() {
        return Err(NegotiationError::NoMedia("the offer has no video m-line (m=video …) to send cameras on".into()));
    }
    if mids.iter().any(String::is_empty) {
        return Err(NegotiationError::BadSdp("a video m-line has no a=mid".into()));
    }
    let application = negotiate::application_mid(&offer);
    *lock(&state.mid) = application.clone().or_else(|| first_mid(&offer)).unwrap_or_else(|| "0".into());
    let incoming = application.map(|_| {
        let (inbox, incoming) = mpsc::unbounded_channel();
        *lock(&state.incoming) = Some(inbox);
        incoming
    });
    pc.set_remote_description(desc).await.map_err(|e| NegotiationError::BadSdp(e.to_string()))?;

    let tracks = wanted.cameras.unwrap_or(mids.len()).min(mids.len()).min(MAX_VIDEO_TRACKS);
    // Every track in one media stream (`msid`): a browser synchronises the audio and video of a
    // stream.
    let add = |kind, id: String, label: String| async move {
        // The encoding names its codec: the library binds a track's stream to the interceptors
        // (NACK answers, sender reports: `super::feedback`) only when that codec matches a
        // negotiated one (by format parameters, else by MIME type).
        let codec = if kind == RtpCodecKind::Audio { opus_codec() } else { h264_codec(H264_PROFILES[0].0) };
        let track = MediaStreamTrack::new(
            "railcast".to_owned(),
            id,
            label,
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(rand::random::<u32>()),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        let local: Arc<dyn TrackLocal> = Arc::new(TrackLocalStaticRTP::new(track));
        // Attached to the first transceiver of its kind without a sender: the offer's m-lines
        // in order.
        pc.add_track(local).await.map_err(|e| NegotiationError::Internal(e.to_string()))
    };
    for camera in 0..tracks {
        add(RtpCodecKind::Video, format!("camera-{camera}"), format!("camera {camera}")).await?;
    }
    let audio_mid = opus_mid(&offer).filter(|_| wanted.audio);
    if audio_mid.is_some() {
        add(RtpCodecKind::Audio, "audio-0".to_owned(), "cab audio".to_owned()).await?;
    }
    // The rest (video beyond the cameras, audio beyond the first or of a train without audio)
    // carry nothing: answered inactive. An audio m-line without Opus has no codec in common and
    // is rejected by the library.
    let mut slots = Vec::new();
    for t in pc.get_transceivers().await {
        let internal = |e: webrtc::error::Error| NegotiationError::Internal(e.to_string());
        let Some(sender) = t.sender().await.map_err(internal)? else {
            t.set_direction(RTCRtpTransceiverDirection::Inactive).await.map_err(internal)?;
            continue;
        };
        let mid = t.mid().await.map_err(internal)?.unwrap_or_default();
        let media = match mids.iter().position(|m| *m == mid) {
            Some(camera) => Media::Video { camera },
            None if audio_mid.as_ref() == Some(&mid) => Media::Audio { source: 0 },
            None => continue,
        };
        let track = Arc::clone(sender.track());
        let Some(ssrc) = track.ssrcs().await.first().copied() else { continue };
        slots.push((media, mid, ssrc, track, sender));
    }
    let answer = pc.create_answer(None).await.map_err(|e| NegotiationError::Internal(e.to_string()))?;
    pc.set_local_description(answer).await.map_err(|e| NegotiationError::Internal(e.to_string()))?;

    let mut out = Vec::new();
    for (media, mid, ssrc, track, sender) in slots {
        let params = sender.get_parameters().await.map_err(|e| NegotiationError::Internal(e.to_string()))?;
        let negotiated = params.rtp_parameters.codecs.iter().find(|c| match media {
            Media::Video { .. } => {
                c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_H264)
                    && c.rtp_codec.sdp_fmtp_line.contains("packetization-mode=1")
            }
            Media::Audio { .. } => c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS),
        });
        let Some(codec) = negotiated else { continue };
        out.push(Slot {
            media,
            mid,
            ssrc,
            payload_type: codec.payload_type,
            track,
            sequence: rand::random(),
            clock: match media {
                Media::Video { .. } => RtpClock::video(),
                Media::Audio { .. } => RtpClock::audio(),
            },
            parameter_sets: ParameterSets::default(),
            awaiting_keyframe: false,
            last_keyframe_request: None,
        });
    }
    if !out.iter().any(|s| matches!(s.media, Media::Video { .. })) {
        return Err(NegotiationError::NoMedia(
            "the offer has no H.264 codec with packetization-mode=1 (profile 42e0, 4200 or 4d00) on its video m-lines"
                .into(),
        ));
    }
    out.sort_by_key(|s| match s.media {
        Media::Video { camera } => (0, camera),
        Media::Audio { source } => (1, source),
    });
    let sdp = negotiate::local_sdp(pc, state, config).await?;
    Ok((sdp, Opening { slots: Slots(out), incoming }))
}

/// What the helper tasks tell the session.
enum Event {
    /// A PLI or FIR for these SSRCs.
    Keyframe(Vec<u32>),
    /// Something on the `command` channel.
    Command(Ev),
}

/// One WHEP peer's session (see the module docs).
#[derive(Debug)]
pub struct Session {
    core: Core,
    rc: Arc<RemoteControl>,
    server: Arc<Server>,
    peer: Arc<Peer>,
}

impl Session {
    pub fn new(core: Core, rc: Arc<RemoteControl>, server: Arc<Server>, peer: Arc<Peer>) -> Self {
        Self { core, rc, server, peer }
    }

    /// Wait for the connection, send media until the session ends, close the peer.
    pub async fn run(self, opening: Opening) {
        let peer = &self.peer;
        let mut pc_state = peer.state.connection.subscribe();
        let mut shutdown = self.core.shutdown.clone();
        let deadline = tokio::time::Instant::from_std(peer.created) + self.server.settings().connect_timeout;
        let connected: Result<(), &'static str> = loop {
            if *pc_state.borrow() == RTCPeerConnectionState::Connected {
                break Ok(());
            }
            tokio::select! {
                changed = pc_state.changed() => if changed.is_err() || is_finished(*pc_state.borrow()) { break Err("connection failed") },
                _ = tokio::time::sleep_until(deadline) => break Err("not connected in time"),
                _ = peer.stop.notified() => break Err("closed by the client"),
                _ = crate::stopped(&mut shutdown) => break Err("server shutting down"),
            }
        };
        let mut helpers = Vec::new();
        let reason = match connected {
            Ok(()) => {
                let (tx, rx) = mpsc::channel::<Event>(64);
                for slot in &opening.slots.0 {
                    helpers.push(rtcp_pump(Arc::clone(&slot.track), tx.clone()));
                }
                self.serve(opening, tx, rx, &mut pc_state, &mut helpers).await
            }
            Err(reason) => {
                if reason != "closed by the client" && reason != "server shutting down" {
                    let label = if reason == "not connected in time" { "timeout" } else { "failed" };
                    METRICS.failed.with_label_values(&[label]).inc();
                }
                reason.to_owned()
            }
        };
        tracing::debug!(session = %peer.id, %reason, "whep session ends");
        peer.closed.store(true, Ordering::Relaxed);
        let _ = peer.pc.close().await;
        for h in helpers {
            h.abort();
        }
        self.server.remove(&peer.id);
    }

    async fn serve(
        &self,
        opening: Opening,
        tx: mpsc::Sender<Event>,
        mut rx: mpsc::Receiver<Event>,
        pc_state: &mut tokio::sync::watch::Receiver<RTCPeerConnectionState>,
        helpers: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> String {
        let peer = &self.peer;
        let Opening { mut slots, mut incoming } = opening;
        let (mut relay, [welcome, mapping]) =
            Relay::open(&self.core, Arc::clone(&self.rc), peer.principal.clone(), NAME, peer.id.clone());
        *lock(&peer.session) = Some(Arc::clone(relay.info()));
        let metrics = crate::metrics::PacketOut::new(NAME);
        let mut train = MappedTrain::of(&mapping);
        let mut ids = TrackIds::of(&mapping);
        let mut last_mapping = mapping;
        let mut assembler = Assembler::new();
        let mut command: Option<Arc<dyn DataChannel>> = None;
        let mut command_open = false;
        let (ev_tx, mut ev_rx) = mpsc::channel::<Ev>(64);
        // Forward the command channel's events into the one queue.
        {
            let tx = tx.clone();
            helpers.push(tokio::spawn(async move {
                while let Some(ev) = ev_rx.recv().await {
                    if tx.send(Event::Command(ev)).await.is_err() {
                        return;
                    }
                }
            }));
        }
        drop(tx);
        let mut batch: Vec<crate::hub::Packet> = Vec::new();
        loop {
            tokio::select! {
                next = relay.next(true) => match next {
                    Next::Packet(p) => {
                        batch.clear();
                        batch.push(p);
                        relay.drain_packets(&mut batch, 255);
                        // Counted as handed to the transport once taken from the queue, as on
                        // the other transports (the RTP packets are the library's).
                        let bytes = metrics.record_batch(batch.iter().map(crate::hub::Packet::sent), crate::now_us());
                        relay.info().sent(batch.len() as u64, bytes);
                        for p in batch.drain(..) {
                            let packet = VideoPacket { header: p.header, bytes: p.bytes };
                            let Some(frame) = assembler.push_parts(&packet) else { continue };
                            let Some(slot) = slots.route(&frame, &ids) else { continue };
                            match slot.media {
                                Media::Video { .. } => {
                                    self.write_frame(slot, frame, train.as_ref()).await;
                                }
                                Media::Audio { .. } => {
                                    self.write_audio(slot, frame.join()).await;
                                }
                            }
                        }
                    }
                    Next::Event(ev) => {
                        match &ev {
                            ServerEvent::MappedTrainChanged { .. } | ServerEvent::TrainOnline { .. } => {
                                if let ServerEvent::MappedTrainChanged { .. } = ev {
                                    train = MappedTrain::of(&ev);
                                    last_mapping = ev.clone();
                                }
                                ids = TrackIds::of(&ev);
                                // New frame sequence numbers, maybe a new train: start over at its
                                // next keyframe (the clock goes on: capture times, or just after the
                                // last timestamp if the new train's keyframe is older).
                                assembler.reset();
                                for slot in &mut slots.0 {
                                    slot.parameter_sets.clear();
                                }
                            }
                            _ => {}
                        }
                        if command_open {
                            if let Some(ch) = &command {
                                let _ = datachannel::send_event(ch, &ev).await;
                            }
                        }
                        relay.event_sent();
                    }
                    Next::Answer(ev) => {
                        if let Some(ch) = command.as_ref().filter(|_| command_open) {
                            let _ = datachannel::send_event(ch, &ev).await;
                        }
                    }
                    Next::End(end) => {
                        if let Some(ch) = command.as_ref().filter(|_| command_open) {
                            goodbye(ch, &end.closing()).await;
                        }
                        return end.reason();
                    }
                },
                dc = recv_channel(&mut incoming) => match dc {
                    Some(dc) => {
                        if command.is_none() && dc.label().await.as_deref() == Ok("command") {
                            helpers.push(datachannel::pump(Arc::clone(&dc), Channel::Command, ev_tx.clone()));
                            command = Some(dc);
                        } else {
                            tracing::debug!(session = %peer.id, "ignoring a data channel that is not command");
                        }
                    }
                    None => incoming = None,
                },
                ev = rx.recv() => match ev {
                    Some(Event::Keyframe(ssrcs)) => {
                        for ssrc in ssrcs {
                            self.keyframe_request(&mut slots, ssrc, &ids.cameras, train.as_ref().map(|t| &t.id));
                        }
                    }
                    Some(Event::Command(Ev::Open(_))) => {
                        command_open = true;
                        if let Some(ch) = &command {
                            for ev in [&welcome, &last_mapping] {
                                let _ = datachannel::send_event(ch, ev).await;
                            }
                        }
                    }
                    Some(Event::Command(Ev::Closed)) => {
                        command_open = false;
                        command = None;
                    }
                    Some(Event::Command(ev)) => {
                        if let Some(ch) = &command {
                            datachannel::client_message(ch, &mut relay, ev).await;
                        }
                    }
                    None => return "session helpers ended".into(),
                },
                changed = pc_state.changed() => if changed.is_err() || is_finished(*pc_state.borrow()) { return "connection failed".into() },
                _ = peer.stop.notified() => {
                    if let Some(ch) = command.as_ref().filter(|_| command_open) {
                        goodbye(ch, &ServerEvent::Closing { reason: "closed by request".into() }).await;
                    }
                    return "closed by request".into();
                }
            }
        }
    }

    /// Packetize `frame` and write it on `slot`'s track; returns the RTP packets written. A
    /// frame another viewer has packetized already is sent from the shared payloads, its chunks
    /// never joined.
    async fn write_frame(&self, slot: &mut Slot, frame: FrameParts, train: Option<&MappedTrain>) -> usize {
        if slot.awaiting_keyframe && !frame.keyframe {
            return 0;
        }
        let key = train.map(|t| (Arc::clone(&t.key), frame.camera.0, frame.seq.0, frame.capture_us));
        let train = train.map(|t| &t.id);
        let shared = key.as_ref().and_then(|k| lock(&SHARED).get(k));
        let (camera, keyframe, capture_us) = (frame.camera, frame.keyframe, frame.capture_us);
        let payloads = if let Some(p) = shared {
            slot.parameter_sets.learn(p.sps.as_ref(), p.pps.as_ref());
            p.payloads.clone()
        } else {
            let frame = frame.join();
            let len = frame.data.len();
            let Some(data) = slot.parameter_sets.complete(frame.data) else {
                self.request_for(slot, frame.camera, train);
                return 0;
            };
            let as_is = data.len() == len;
            let data = Bytes::from(data);
            // A fresh payloader per frame: its output depends on the frame alone, so any viewer
            // may send it.
            let payloads = match H264Payloader::default().payload(RTP_MTU, &data) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(session = %self.peer.id, "cannot packetize a frame: {e}");
                    return 0;
                }
            };
            if let (Some(key), true) = (key, as_is) {
                let (sps, pps) = ParameterSets::carried(&data);
                lock(&SHARED).insert(key, Arc::new(Packetized { payloads: payloads.clone(), sps, pps }));
            }
            payloads
        };
        let timestamp = slot.clock.timestamp(capture_us);
        let n = payloads.len();
        let mut packets = Vec::with_capacity(n);
        for (i, payload) in payloads.into_iter().enumerate() {
            packets.push(rtc::rtp::Packet {
                header: rtc::rtp::Header {
                    version: 2,
                    marker: i + 1 == n,
                    payload_type: slot.payload_type,
                    sequence_number: slot.sequence,
                    timestamp,
                    ssrc: slot.ssrc,
                    ..Default::default()
                },
                payload,
            });
            slot.sequence = slot.sequence.wrapping_add(1);
        }
        // The whole frame in one batch: encrypted under one lock of the connection and sent by
        // this task in one GSO send, with no driver wake-up (third_party/PATCHES.md, 22, 24).
        if let Err(e) = slot.track.write_rtp_batch(packets).await {
            // The frame is lost to the peer: wait for a keyframe, and ask for one.
            tracing::debug!(session = %self.peer.id, "RTP write failed: {e}");
            slot.awaiting_keyframe = true;
            self.request_for(slot, camera, train);
            return 0;
        }
        if keyframe {
            slot.awaiting_keyframe = false;
        }
        if lock(&self.peer.video_open_at).is_none() {
            *lock(&self.peer.video_open_at) = Some(Instant::now());
            METRICS.setup_seconds.observe(self.peer.created.elapsed().as_secs_f64());
        }
        n
    }

    /// Write an Opus packet on `slot`'s track as one RTP packet; returns whether it was written.
    /// A lost one costs only itself (every Opus packet decodes on its own).
    async fn write_audio(&self, slot: &mut Slot, frame: Frame) -> bool {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                payload_type: slot.payload_type,
                sequence_number: slot.sequence,
                timestamp: slot.clock.timestamp(frame.capture_us),
                ssrc: slot.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(frame.data),
        };
        slot.sequence = slot.sequence.wrapping_add(1);
        match slot.track.write_rtp(packet).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(session = %self.peer.id, "RTP write failed (audio): {e}");
                false
            }
        }
    }

    /// A client's PLI or FIR for `ssrc` (of a video track; audio has no keyframes).
    fn keyframe_request(&self, slots: &mut Slots, ssrc: u32, cameras: &[CameraId], train: Option<&TrainId>) {
        let Some(slot) = slots.0.iter_mut().find(|s| s.ssrc == ssrc) else { return };
        let Media::Video { camera } = slot.media else { return };
        let Some(&id) = cameras.get(camera) else { return };
        self.request_for(slot, id, train);
    }

    /// Ask the train for a keyframe of `camera`, at most once per [`KEYFRAME_REQUEST_INTERVAL`]
    /// per track.
    fn request_for(&self, slot: &mut Slot, camera: CameraId, train: Option<&TrainId>) {
        let Some(train) = train else { return };
        let now = Instant::now();
        if slot.last_keyframe_request.is_some_and(|t| now.duration_since(t) < KEYFRAME_REQUEST_INTERVAL) {
            METRICS.keyframe_requests.with_label_values(&["limited"]).inc();
            return;
        }
        slot.last_keyframe_request = Some(now);
        let sent = self.core.hub.request_keyframe(train, Some(camera));
        METRICS.keyframe_requests.with_label_values(&[if sent { "sent" } else { "not_sent" }]).inc();
        tracing::debug!(session = %self.peer.id, %train, camera = camera.0, sent, "keyframe requested for a client");
    }
}

/// Send the `closing` event and let it leave before the peer is closed, which would discard it:
/// checked after 1, 2, 4 … ms, 255 ms at most (as the data-channel session does).
async fn goodbye(command: &Arc<dyn DataChannel>, closing: &ServerEvent) {
    if datachannel::send_event(command, closing).await {
        for ms in (0..8).map(|i| 1 << i) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if command.outstanding_bytes().await.map_or(true, |n| n == 0) {
                break;
            }
        }
    }
}

/// The next data channel the client opens; pending forever once there are none.
async fn recv_channel(
    incoming: &mut Option<mpsc::UnboundedReceiver<Arc<dyn DataChannel>>>,
) -> Option<Arc<dyn DataChannel>> {
    match incoming {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A task reading a track's RTCP events and passing on the keyframe requests.
fn rtcp_pump(track: Arc<dyn TrackLocal>, tx: mpsc::Sender<Event>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = track.poll().await {
            let TrackLocalEvent::OnRtcpPacket(packets) = ev else { continue };
            let ssrcs = keyframe_requests(&packets);
            // Keyframe requests are idempotent: a full queue loses nothing that matters.
            if !ssrcs.is_empty() && tx.try_send(Event::Keyframe(ssrcs)).is_err() && tx.is_closed() {
                return;
            }
        }
    })
}

/// The train a session's mapping names, with its id as [`SHARED`] keys it (made once per mapping,
/// not per frame).
struct MappedTrain {
    id: TrainId,
    key: Arc<str>,
}

impl MappedTrain {
    fn of(ev: &ServerEvent) -> Option<Self> {
        match ev {
            ServerEvent::MappedTrainChanged { train_id: Some(id), .. } => {
                Some(Self { key: Arc::from(id.as_str()), id: id.clone() })
            }
            _ => None,
        }
    }
}

/// The track ids of the mapped train: its cameras and its audio sources, each in its hello's
/// order (one id space per train, docs/wire-format.md §2.7).
#[derive(Debug, Clone, Default)]
struct TrackIds {
    cameras: Vec<CameraId>,
    audio: Vec<CameraId>,
}

impl TrackIds {
    fn of(ev: &ServerEvent) -> Self {
        let (cameras, audio): (&[CameraInfo], &[AudioInfo]) = match ev {
            ServerEvent::MappedTrainChanged { cameras, audio, .. }
            | ServerEvent::TrainOnline { cameras, audio, .. } => (cameras, audio),
            _ => (&[], &[]),
        };
        Self { cameras: cameras.iter().map(|c| c.id).collect(), audio: audio.iter().map(|a| a.id).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_capture_times_across_drops() {
        let mut clock = RtpClock::video();
        let t0 = clock.timestamp(5_000_000);
        assert_eq!(t0, 450_000, "capture time at 90 kHz");
        // 33,333 µs later: 2,999 ticks; a dropped frame later: 9,000 after the first.
        assert_eq!(clock.timestamp(5_033_333).wrapping_sub(t0), 2_999);
        assert_eq!(clock.timestamp(5_100_000).wrapping_sub(t0), 9_000);
        // Back in time: just after the last one, and the shift stays for what follows.
        let last = clock.timestamp(5_100_000);
        assert_eq!(clock.timestamp(1_000), last.wrapping_add(REANCHOR_STEP));
        assert_eq!(clock.timestamp(34_333), last.wrapping_add(REANCHOR_STEP + 2_999));
        // A leap of an hour is not taken as time either.
        let last = clock.timestamp(67_666);
        assert_eq!(clock.timestamp(3_600_067_666), last.wrapping_add(REANCHOR_STEP));
    }

    #[test]
    fn timestamps_are_capture_times_modulo_2_pow_32() {
        // 2026-12-01T00:00:00Z: 90 kHz ticks wrap every 13.25 h.
        let capture_us: u64 = 1_795_996_800_000_000;
        let mut clock = RtpClock::video();
        let t = clock.timestamp(capture_us);
        assert_eq!(u64::from(t), (capture_us * 9 / 100) % (1u64 << 32));
        // Across the wrap, time runs on.
        let before_wrap = (capture_us * 9 / 100 / (1 << 32) + 1) * (1 << 32) * 100 / 9 - 20_000;
        let mut clock = RtpClock::video();
        let a = clock.timestamp(before_wrap);
        let b = clock.timestamp(before_wrap + 33_333);
        assert!(a > u32::MAX - 2_000 && b < 2_000, "{a} then {b}");
        assert_eq!(b.wrapping_sub(a), 3_000);
    }

    #[test]
    fn audio_timestamps_are_capture_times_at_48_khz() {
        let mut clock = RtpClock::audio();
        let t0 = clock.timestamp(5_000_000);
        assert_eq!(t0, 240_000, "capture time at 48 kHz");
        // 20 ms packets step 960; a lost packet leaves a gap of one more.
        assert_eq!(clock.timestamp(5_020_000).wrapping_sub(t0), 960);
        assert_eq!(clock.timestamp(5_060_000).wrapping_sub(t0), 2_880);
        // Back in time (a remap to a train whose clock is behind): one packet after the last.
        let last = clock.timestamp(5_060_000);
        assert_eq!(clock.timestamp(1_000_000), last.wrapping_add(960));
        assert_eq!(clock.timestamp(1_020_000), last.wrapping_add(1_920));
        // 10 s is time; more is a leap.
        let last = clock.timestamp(1_040_000);
        assert_eq!(clock.timestamp(11_040_000), last.wrapping_add(480_000));
        let last = clock.timestamp(11_040_000);
        assert_eq!(clock.timestamp(3_611_040_000), last.wrapping_add(960));
        // Modulo 2³², as video's: 2026-12-01T00:00:00Z.
        let capture_us: u64 = 1_795_996_800_000_000;
        assert_eq!(u64::from(RtpClock::audio().timestamp(capture_us)), (capture_us * 48 / 1000) % (1u64 << 32));
    }

    #[test]
    fn keyframes_get_parameter_sets() {
        let sps = [0, 0, 0, 1, 0x67, 1, 2];
        let pps = [0, 0, 0, 1, 0x68, 3];
        let idr = [0, 0, 0, 1, 0x65, 9, 9];
        let delta = [0, 0, 0, 1, 0x41, 7];
        let mut sets = ParameterSets::default();
        assert_eq!(sets.complete(idr.to_vec()), None, "an IDR before any SPS/PPS is undecodable");
        assert_eq!(sets.complete(delta.to_vec()), Some(delta.to_vec()));
        let full = [&sps[..], &pps, &idr].concat();
        assert_eq!(sets.complete(full.clone()), Some(full.clone()), "a complete keyframe is sent as is");
        assert_eq!(sets.complete(idr.to_vec()), Some(full), "a bare IDR gets the last SPS and PPS");
        let with_sps = [&sps[..], &idr].concat();
        assert_eq!(sets.complete(with_sps), Some([&pps[..], &sps, &idr].concat()));
    }

    #[test]
    fn pli_and_fir_name_the_ssrcs_to_refresh() {
        use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
        use rtc::rtcp::receiver_report::ReceiverReport;
        let packets: Vec<Box<dyn rtc::rtcp::packet::Packet>> = vec![
            Box::new(ReceiverReport::default()),
            Box::new(PictureLossIndication { sender_ssrc: 1, media_ssrc: 7 }),
            Box::new(FullIntraRequest {
                sender_ssrc: 1,
                media_ssrc: 0,
                fir: vec![FirEntry { ssrc: 8, sequence_number: 1 }, FirEntry { ssrc: 9, sequence_number: 1 }],
            }),
        ];
        assert_eq!(keyframe_requests(&packets), [7, 8, 9]);
        assert!(keyframe_requests(&packets[..1]).is_empty(), "a receiver report asks for nothing");
    }

    #[test]
    fn video_mids_in_order() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v2\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n";
        assert_eq!(video_mids(sdp), ["0", "v2"]);
        assert_eq!(video_mids("v=0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"), Vec::<String>::new());
        assert_eq!(opus_mid(sdp), None, "an audio m-line without Opus");
        let opus = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=mid:a\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:b\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(opus_mid(opus).as_deref(), Some("a"), "the first audio m-line");
        let pcmu_first = opus.replacen("a=rtpmap:111 opus/48000/2\r\n", "", 1);
        assert_eq!(opus_mid(&pcmu_first), None, "only the first audio m-line is answered with a track");
        let payloads: Vec<&[u8]> = nal_units(&[0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68]).iter().map(|n| n.payload).collect();
        assert_eq!(payloads, [&[0x67u8, 1][..], &[0x68]]);
    }
}
