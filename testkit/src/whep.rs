//! A WHEP player written with webrtc-rs: it offers receive-only H.264 video transceivers (and, if
//! asked, an Opus audio transceiver first and a `command` channel), POSTs the offer, applies the
//! answer, and turns each video track's RTP into access units (RFC 6184 depacketized by webrtc-rs'
//! own H.264 depacketizer) that a test checks against the simulator's manifest ([`verify`]); the
//! audio track's RTP packets are kept whole ([`AudioPacket`]: one Opus packet each, RFC 7587) and
//! checked against the manifest's Opus entries by [`verify_audio`].
//!
//! **Comparing frames.** The server's payloader strips the Annex B start codes, drops access unit
//! delimiters and filler data, and sends SPS and PPS as one STAP-A; the depacketizer writes every
//! NAL unit back with a 4-byte start code `00 00 00 01`. [`normalize`] puts a frame in that
//! same form (4-byte start codes; AUD, type 9, and filler, type 12, dropped), so a received
//! access unit verifies when SHA-256 of it equals the manifest's SHA-256 of the simulator's frame.
//! The simulator writes exactly that form (OpenH264: 4-byte start codes, no AUD, no filler;
//! `train-sim/src/video.rs` checks it), so its manifest hashes are compared as they are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    configure_nack, configure_rtcp_reports, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};

use crate::{HttpClient, Manifest, Server};

/// The client's payload type for H.264 (packetization-mode 1, Constrained Baseline): not the
/// server's default, so a packet stamped with the server's own would show.
pub const CLIENT_H264_PT: u8 = 109;

/// The client's payload type for Opus (`opus/48000/2`): not the server's default (111) either.
pub const CLIENT_OPUS_PT: u8 = 120;

/// The Opus RTP clock (RFC 7587).
pub const OPUS_CLOCK_HZ: u64 = 48_000;

/// What a signaling exchange gave a player: the answer, where the session lives, its ETag and
/// `Link` headers (empty where the style has none).
#[derive(Debug, Clone)]
pub struct Signaled {
    pub answer: String,
    /// The session's URL, and its location as the server gave it (or its id).
    pub url: String,
    pub location: String,
    pub etag: String,
    pub links: Vec<String>,
}

/// What the player offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offer {
    /// Receive-only video transceivers.
    pub cameras: usize,
    /// Receive-only audio transceivers (Opus), before the video ones, as browsers order them
    /// (the server sends on the first one only).
    pub audio: usize,
    /// The `command` data channel.
    pub command: bool,
}

/// One RTP packet of the audio track: one Opus packet.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub received: Instant,
}

/// One complete access unit as received.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// The index of its video m-line (= camera index) in the offer.
    pub slot: usize,
    pub ssrc: u32,
    pub payload_type: u8,
    pub timestamp: u32,
    /// Annex B, 4-byte start codes.
    pub data: Vec<u8>,
    pub received: Instant,
}

/// What the tracks delivered so far.
#[derive(Debug, Default)]
pub struct Received {
    pub units: Vec<AccessUnit>,
    /// Access units that could not be completed (a lost packet, no marker).
    pub broken: u64,
    /// RTP packets seen (video and audio).
    pub packets: u64,
    /// The audio track's RTP packets, in arrival order.
    pub audio: Vec<AudioPacket>,
    /// Every video RTP packet, in arrival order (retransmissions included), for
    /// [`units_in_sequence`].
    pub video: Vec<VideoPacket>,
}

/// One RTP packet of a video track, as it arrived.
#[derive(Debug, Clone)]
pub struct VideoPacket {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

/// The access units of `slot` (the SSRCs `ssrcs` maps to it) rebuilt from `packets` in sequence
/// order, as a player's jitter buffer would: duplicates count once, and a packet that arrives
/// late (a retransmission) fills its gap. Returns the units and the frames left incomplete (a
/// gap in sequence numbers, a timestamp that changes before the marker).
pub fn units_in_sequence(packets: &[VideoPacket], ssrcs: &HashMap<u32, usize>, slot: usize) -> (Vec<AccessUnit>, u64) {
    // Sequence numbers extended past their wrap, in arrival order (a late packet is within a
    // few hundred of the newest).
    let mut newest: Option<i64> = None;
    let mut ordered = std::collections::BTreeMap::new();
    for p in packets.iter().filter(|p| ssrcs.get(&p.ssrc) == Some(&slot)) {
        let ext = match newest {
            None => i64::from(p.sequence),
            Some(n) => n + i64::from(p.sequence.wrapping_sub(n as u16) as i16),
        };
        newest = Some(newest.map_or(ext, |n| n.max(ext)));
        ordered.entry(ext).or_insert(p);
    }
    let (mut units, mut broken) = (Vec::new(), 0);
    let mut current: Vec<(i64, &VideoPacket)> = Vec::new();
    for (seq, p) in ordered {
        if let Some((last, first)) = current.last().map(|l| l.0).zip(current.first().map(|f| f.1)) {
            if seq != last + 1 || first.timestamp != p.timestamp {
                broken += 1;
                current.clear();
            }
        }
        current.push((seq, p));
        if !p.marker {
            continue;
        }
        let h = current[0].1;
        match access_unit(current.iter().map(|(_, p)| &p.payload), slot, (h.ssrc, h.payload_type, h.timestamp)) {
            Some(unit) => units.push(unit),
            None => broken += 1,
        }
        current.clear();
    }
    (units, broken)
}

struct Handler {
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
    ice: Arc<Mutex<Vec<RTCIceConnectionState>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.channels.send(dc);
    }
    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        self.ice.lock().expect("lock").push(state);
    }
}

/// A WHEP session of this client.
pub struct Whep {
    pub pc: Arc<dyn PeerConnection>,
    /// `Location` of the session, and its URL.
    pub location: String,
    pub url: String,
    pub etag: String,
    pub answer: String,
    /// All `Link` headers of the answer.
    pub links: Vec<String>,
    /// SSRC → slot, from the answer.
    pub ssrcs: HashMap<u32, usize>,
    /// The H.264 payload type of each video m-line in the answer (slot order).
    pub payload_types: Vec<Option<u8>>,
    /// The answer's audio m-lines, in order.
    pub audio_sections: Vec<AnswerSection>,
    pub received: Arc<Mutex<Received>>,
    /// The remote tracks, as they appeared.
    pub tracks: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
    /// The `command` channel, when offered.
    pub command: Option<Arc<dyn DataChannel>>,
    /// Every ICE connection state this client went through, in order.
    pub ice_states: Arc<Mutex<Vec<RTCIceConnectionState>>>,
    /// POST → the answer applied.
    pub signaling: Duration,
    pub started: Instant,
}

impl std::fmt::Debug for Whep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whep").field("location", &self.location).field("etag", &self.etag).finish_non_exhaustive()
    }
}

/// A webrtc-rs peer that can receive H.264 and Opus (offered only with an audio transceiver).
pub async fn media_peer() -> (
    Arc<dyn PeerConnection>,
    mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
    Arc<Mutex<Vec<RTCIceConnectionState>>>,
) {
    media_peer_with(true).await
}

/// [`media_peer`], with or without a player's interceptors (NACK generator and responder, sender
/// and receiver reports). Without them the peer asks for no retransmission and sends no reports:
/// the load tool's 500 viewers share one core, where each interceptor costs per packet.
pub async fn media_peer_with(
    interceptors: bool,
) -> (
    Arc<dyn PeerConnection>,
    mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
    Arc<Mutex<Vec<RTCIceConnectionState>>>,
) {
    media_peer_on(interceptors, webrtc::runtime::default_runtime().expect("runtime")).await
}

/// A player's codecs: H.264 (payload types [`CLIENT_H264_PT`], constrained baseline, and 125,
/// baseline) and Opus ([`CLIENT_OPUS_PT`]), for webrtc-rs peers and for the load tool's
/// sans-IO viewers alike.
pub fn player_media_engine() -> MediaEngine {
    let mut engine = MediaEngine::default();
    for (pt, profile) in [(CLIENT_H264_PT, "42e01f"), (125, "42001f")] {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_H264.to_owned(),
                        clock_rate: 90_000,
                        channels: 0,
                        sdp_fmtp_line: format!(
                            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
                        ),
                        rtcp_feedback: vec![],
                    },
                    payload_type: pt,
                },
                RtpCodecKind::Video,
            )
            .expect("register H.264");
    }
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS.to_owned(),
                    clock_rate: OPUS_CLOCK_HZ as u32,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: CLIENT_OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .expect("register Opus");
    engine
}

/// [`media_peer_with`] on `runtime` (the load tool's wraps the sockets to stamp what they
/// receive).
pub async fn media_peer_on(
    interceptors: bool,
    runtime: Arc<dyn webrtc::runtime::Runtime>,
) -> (
    Arc<dyn PeerConnection>,
    mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
    Arc<Mutex<Vec<RTCIceConnectionState>>>,
) {
    let mut engine = player_media_engine();
    let registry = interceptors.then(|| configure_rtcp_reports(configure_nack(Registry::new(), &mut engine)));
    let (tracks_tx, tracks) = mpsc::unbounded_channel();
    let (dc_tx, channels) = mpsc::unbounded_channel();
    let ice = Arc::new(Mutex::new(Vec::new()));
    let builder = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine);
    // Without a player's interceptors, only the terminus (inbound RTCP stops there), as the
    // whole chain: no chain to walk per packet (vendored patch 23).
    let builder = match registry {
        Some(registry) => builder.with_interceptor_registry(registry),
        None => builder.with_interceptor(Box::new(rtc::interceptor::NoopInterceptor::new())),
    };
    let pc = builder
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
                .build(),
        )
        .with_handler(Arc::new(Handler { tracks: tracks_tx, channels: dc_tx, ice: Arc::clone(&ice) })
            as Arc<dyn PeerConnectionEventHandler>)
        .with_runtime(runtime)
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .expect("peer connection");
    (Arc::new(pc), tracks, channels, ice)
}

/// Make `pc`'s offer: `cameras` receive-only video transceivers and, with `command`, the
/// `command` channel; waits until it has a host candidate (no trickle).
pub async fn offer(
    pc: &Arc<dyn PeerConnection>,
    cameras: usize,
    command: bool,
) -> (String, Option<Arc<dyn DataChannel>>) {
    offer_with(pc, Offer { cameras, audio: 0, command }).await
}

/// Make `pc`'s offer of `what` (see [`offer`]).
pub async fn offer_with(pc: &Arc<dyn PeerConnection>, what: Offer) -> (String, Option<Arc<dyn DataChannel>>) {
    let kinds = std::iter::repeat_n(RtpCodecKind::Audio, what.audio)
        .chain(std::iter::repeat_n(RtpCodecKind::Video, what.cameras));
    for kind in kinds {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .expect("receive-only transceiver");
    }
    let command = what.command;
    let dc = if command { Some(pc.create_data_channel("command", None).await.expect("command")) } else { None };
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("set offer");
    let mut sdp = String::new();
    for _ in 0..300 {
        sdp = pc.local_description().await.expect("local").sdp;
        if sdp.contains("a=candidate") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sdp.contains("a=candidate"), "the client gathered a host candidate");
    (sdp, dc)
}

/// One HTTP request with any body and headers: status, response headers, body text.
pub async fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, HeaderMap, String) {
    let client: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_owned()))).expect("request")).await.expect("http");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// One m-line of an answer, as the player reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerSection {
    /// `video`, `audio`, `application`.
    pub kind: String,
    /// The port of the m-line (0: rejected).
    pub port: u16,
    pub mid: String,
    /// `sendonly`, `inactive` … (as written; "" if none).
    pub direction: String,
    pub ssrcs: Vec<u32>,
    /// Its first H.264 (video) or Opus (audio) payload type.
    pub payload_type: Option<u8>,
}

/// Every m-line of `sdp`, in order.
pub fn answer_sections(sdp: &str) -> Vec<AnswerSection> {
    let mut out: Vec<AnswerSection> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split(' ');
            let kind = f.next().unwrap_or_default().to_owned();
            let port = f.next().and_then(|p| p.parse().ok()).unwrap_or_default();
            out.push(AnswerSection { kind, port, ..Default::default() });
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if let Some(rest) = line.strip_prefix("a=ssrc:") {
            if let Some(ssrc) = rest.split(' ').next().and_then(|s| s.parse().ok()) {
                if !cur.ssrcs.contains(&ssrc) {
                    cur.ssrcs.push(ssrc);
                }
            }
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let mut f = rest.split([' ', '/']);
            if let (Some(pt), Some(name)) = (f.next(), f.next()) {
                let wanted = if cur.kind == "audio" { "opus" } else { "H264" };
                if name.eq_ignore_ascii_case(wanted) && cur.payload_type.is_none() {
                    cur.payload_type = pt.parse().ok();
                }
            }
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            mid.clone_into(&mut cur.mid);
        } else if let Some(d) = ["a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"].iter().find(|d| line == **d) {
            d[2..].clone_into(&mut cur.direction);
        }
    }
    out
}

/// Per video m-line of `sdp`, in order: its SSRCs and its first H.264 payload type.
pub fn video_sections(sdp: &str) -> Vec<(Vec<u32>, Option<u8>)> {
    answer_sections(sdp).into_iter().filter(|s| s.kind == "video").map(|s| (s.ssrcs, s.payload_type)).collect()
}

impl Whep {
    /// Offer `cameras` video m-lines (and `command`) to remote control `rc` as `token`, and apply
    /// the answer. Panics unless the server answers 201.
    pub async fn connect(server: &Server, rc: &str, token: Option<&str>, cameras: usize, command: bool) -> Whep {
        Self::connect_with(server, rc, token, Offer { cameras, audio: 0, command }).await
    }

    /// [`Whep::connect`] with an offer of `what` (audio too).
    pub async fn connect_with(server: &Server, rc: &str, token: Option<&str>, what: Offer) -> Whep {
        let url = server.url(&format!("/api/whep/remote-controls/{rc}"));
        Self::signal_with(what, |sdp| async move {
            let (status, headers, answer) =
                http("POST", &url, token, &[("content-type", "application/sdp")], &sdp).await;
            assert_eq!(status, 201, "WHEP POST: {answer}");
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            assert_eq!(header("content-type").as_deref(), Some("application/sdp"));
            let location = header("location").expect("Location");
            let etag = header("etag").expect("ETag");
            let links = headers.get_all("link").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
            Signaled { answer, url: server.url(&location), location, etag, links }
        })
        .await
    }

    /// A media player whose offer of `what` goes through `signal` (any signaling style), which
    /// returns the answer and where the session lives.
    pub async fn signal_with<F, Fut>(what: Offer, signal: F) -> Whep
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Signaled>,
    {
        let started = Instant::now();
        let (pc, mut tracks_rx, _channels, ice_states) = media_peer().await;
        let (sdp, command) = offer_with(&pc, what).await;
        let Signaled { answer, url, location, etag, links } = signal(sdp).await;
        let sections = video_sections(&answer);
        let mut ssrcs = HashMap::new();
        for (slot, (list, _)) in sections.iter().enumerate() {
            for s in list {
                ssrcs.insert(*s, slot);
            }
        }
        let payload_types = sections.iter().map(|(_, pt)| *pt).collect();
        let audio_sections: Vec<AnswerSection> =
            answer_sections(&answer).into_iter().filter(|s| s.kind == "audio").collect();
        let audio_ssrcs: Vec<u32> = audio_sections.iter().flat_map(|s| s.ssrcs.clone()).collect();
        pc.set_remote_description(RTCSessionDescription::answer(answer.clone()).expect("answer"))
            .await
            .expect("set answer");
        let signaling = started.elapsed();
        let received = Arc::new(Mutex::new(Received::default()));
        let tracks = Arc::new(Mutex::new(Vec::new()));
        {
            let (received, tracks, ssrcs) = (Arc::clone(&received), Arc::clone(&tracks), ssrcs.clone());
            tokio::spawn(async move {
                while let Some(track) = tracks_rx.recv().await {
                    tracks.lock().expect("lock").push(Arc::clone(&track));
                    let received = Arc::clone(&received);
                    tokio::spawn(read_track(track, ssrcs.clone(), audio_ssrcs.clone(), received));
                }
            });
        }
        Whep {
            pc,
            url,
            location,
            etag,
            answer,
            links,
            ssrcs,
            payload_types,
            audio_sections,
            received,
            tracks,
            command,
            ice_states,
            signaling,
            started,
        }
    }

    /// Access units received so far on `slot`.
    pub fn units(&self, slot: usize) -> Vec<AccessUnit> {
        self.received.lock().expect("lock").units.iter().filter(|u| u.slot == slot).cloned().collect()
    }

    /// Wait until every slot in `0..slots` has `n` access units; panics after `timeout`.
    pub async fn wait_units(&self, slots: usize, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if (0..slots).all(|s| self.units(s).len() >= n) {
                return;
            }
            let counts: Vec<usize> = (0..slots).map(|s| self.units(s).len()).collect();
            assert!(Instant::now() < deadline, "access units per slot after {timeout:?}: {counts:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The audio track's RTP packets so far.
    pub fn audio(&self) -> Vec<AudioPacket> {
        self.received.lock().expect("lock").audio.clone()
    }

    /// Wait until `n` audio RTP packets arrived; panics after `timeout`.
    pub async fn wait_audio(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received.lock().expect("lock").audio.len();
            if got >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{got} audio RTP packets after {timeout:?}, wanted {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send a PLI for `slot`'s SSRC.
    pub async fn pli(&self, slot: usize) {
        let ssrc = *self.ssrcs.iter().find(|(_, s)| **s == slot).expect("ssrc of slot").0;
        let track = self.tracks.lock().expect("lock").first().cloned().expect("a remote track");
        let pli = rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        };
        track.write_rtcp(vec![Box::new(pli)]).await.expect("PLI sent");
    }
}

/// One track's RTP: audio (an SSRC of the answer's audio m-line) packet by packet; video into
/// access units: packets of one timestamp, in sequence, up to the marker.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    ssrcs: HashMap<u32, usize>,
    audio_ssrcs: Vec<u32>,
    received: Arc<Mutex<Received>>,
) {
    let mut current: Vec<rtc::rtp::Packet> = Vec::new();
    let audio = track.kind().await == RtpCodecKind::Audio;
    while let Some(ev) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(p) = ev else { continue };
        let mut r = received.lock().expect("lock");
        r.packets += 1;
        // Audio by the answer's SSRC, or anything that looks like it (a track of kind audio, the
        // Opus payload type): a test that expects none sees it.
        if audio || audio_ssrcs.contains(&p.header.ssrc) || p.header.payload_type == CLIENT_OPUS_PT {
            r.audio.push(AudioPacket {
                ssrc: p.header.ssrc,
                payload_type: p.header.payload_type,
                sequence: p.header.sequence_number,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
                payload: p.payload.to_vec(),
                received: Instant::now(),
            });
            continue;
        }
        r.video.push(VideoPacket {
            ssrc: p.header.ssrc,
            payload_type: p.header.payload_type,
            sequence: p.header.sequence_number,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            payload: p.payload.clone(),
        });
        if let Some(first) = current.first() {
            let expected = current.last().map_or(0, |l| l.header.sequence_number.wrapping_add(1));
            if first.header.timestamp != p.header.timestamp || p.header.sequence_number != expected {
                r.broken += 1;
                current.clear();
            }
        }
        let marker = p.header.marker;
        current.push(p);
        if !marker {
            continue;
        }
        let packets = std::mem::take(&mut current);
        let h = &packets[0].header;
        let unit = ssrcs.get(&h.ssrc).and_then(|&slot| {
            access_unit(packets.iter().map(|p| &p.payload), slot, (h.ssrc, h.payload_type, h.timestamp))
        });
        match unit {
            Some(unit) => r.units.push(unit),
            None => r.broken += 1,
        }
    }
}

/// The access unit of one frame's RTP payloads, in order, on `slot` (its first packet's SSRC,
/// payload type and timestamp); `None` when a payload does not depacketize or nothing is left.
fn access_unit<'a>(
    payloads: impl Iterator<Item = &'a Bytes>,
    slot: usize,
    (ssrc, payload_type, timestamp): (u32, u8, u32),
) -> Option<AccessUnit> {
    let mut depacketizer = H264Packet::default();
    let mut data = Vec::new();
    for payload in payloads {
        data.extend_from_slice(&depacketizer.depacketize(payload).ok()?);
    }
    (!data.is_empty()).then(|| AccessUnit { slot, ssrc, payload_type, timestamp, data, received: Instant::now() })
}

/// An access unit in the form the depacketizer writes: every NAL unit after `00 00 00 01`; AUD
/// and filler data dropped (the payloader drops them).
pub fn normalize(data: &[u8]) -> Vec<u8> {
    use railcast_protocol::h264::{nal_units, NAL_AUD, NAL_FILLER};
    let mut out = Vec::with_capacity(data.len());
    for nal in nal_units(data) {
        if nal.payload.is_empty() || matches!(nal.nal_type(), NAL_AUD | NAL_FILLER) {
            continue;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal.payload);
    }
    out
}

/// What [`verify`] found for one slot.
#[derive(Debug, Default, Clone)]
pub struct Verified {
    /// Access units whose SHA-256 is a frame of the manifest (train, camera = slot).
    pub frames: usize,
    pub keyframes: usize,
    /// Access units matching no frame.
    pub unknown: usize,
    /// Consecutive verified frames whose RTP timestamp step differs from the capture-time step
    /// at 90 kHz by more than one tick.
    pub bad_timestamps: usize,
    /// Payload types seen.
    pub payload_types: Vec<u8>,
    /// The manifest sequence numbers verified, in arrival order.
    pub seqs: Vec<u32>,
}

/// Check `units` of one slot against the frames `train`'s camera `camera` sent.
pub fn verify(units: &[AccessUnit], manifest: &Manifest, train: &str, camera: u16) -> Verified {
    let by_hash: HashMap<&str, &crate::Entry> =
        manifest.of_train(train).filter(|e| e.camera == camera).map(|e| (e.sha256.as_str(), e)).collect();
    let mut v = Verified::default();
    let mut last: Option<(u32, u64)> = None;
    for u in units {
        if !v.payload_types.contains(&u.payload_type) {
            v.payload_types.push(u.payload_type);
        }
        let sha = crate::sha256_hex(&normalize(&u.data));
        let Some(e) = by_hash.get(sha.as_str()) else {
            v.unknown += 1;
            last = None;
            continue;
        };
        v.frames += 1;
        v.keyframes += usize::from(e.keyframe);
        v.seqs.push(e.seq);
        if let Some((ts, capture)) = last {
            let want = e.capture_us.wrapping_sub(capture) as i64 * 90_000 / 1_000_000;
            let got = u.timestamp.wrapping_sub(ts) as i32 as i64;
            if (got - want).abs() > 1 {
                v.bad_timestamps += 1;
            }
        }
        last = Some((u.timestamp, e.capture_us));
    }
    v
}

/// The largest RTP−capture shift [`verify_audio`] learns: 100 ms at 48 kHz.
pub const MAX_AUDIO_SHIFT: u32 = 4_800;

/// What [`verify_audio`] found.
#[derive(Debug, Default, Clone)]
pub struct VerifiedAudio {
    /// Packets whose payload's SHA-256 is the manifest's for the Opus packet captured at the time
    /// its RTP timestamp names (capture time at 48 kHz mod 2³², plus [`VerifiedAudio::shift`]).
    pub packets: usize,
    /// Packets whose timestamp names a manifest packet with another SHA-256.
    pub mismatched: usize,
    /// Packets whose timestamp names no packet of the manifest.
    pub unknown: usize,
    /// Consecutive packets (RTP sequence +1) looked at.
    pub pairs: usize,
    /// Of those, the ones whose timestamps step by exactly 960 (20 ms).
    pub steps_960: usize,
    /// RTP sequence numbers skipped (lost packets) between the first and the last.
    pub missing: usize,
    pub payload_types: Vec<u8>,
    /// RTP time minus capture time at 48 kHz, in ticks: 0 unless the server's clock re-anchored
    /// (`None`: no payload is in the manifest).
    pub shift: Option<u32>,
    /// The manifest sequence numbers verified, in arrival order.
    pub seqs: Vec<u32>,
    /// Per packet of `packets`: verified.
    pub matched: Vec<bool>,
}

/// Check `packets` against the Opus packets `train`'s audio source `source` sent, by time: each
/// RTP packet names, by its timestamp, the manifest packet captured then (48 kHz, as the server's
/// clock), and its payload's SHA-256 must be that packet's. (The chime repeats, and every train
/// of a simulator plays it from its start, so a payload alone does not say which packet it is.)
/// The one shift a re-anchored clock keeps (a remap whose first new packet was captured before
/// the last old one: the clock continues one packet after it, so a few packets at most while
/// every train runs on one clock) is learnt from the last ten packets whose payload is in the
/// manifest within [`MAX_AUDIO_SHIFT`] of their timestamp: the smallest such distance. A farther
/// packet with the same payload is no shift: the chime repeats every 2 s, and every train of a
/// simulator plays it from its own connection on. Read `packets` before the manifest, so that
/// every packet is listed in it.
pub fn verify_audio(packets: &[AudioPacket], manifest: &Manifest, train: &str, source: u16) -> VerifiedAudio {
    let ticks = |capture_us: u64| (u128::from(capture_us) * u128::from(OPUS_CLOCK_HZ) / 1_000_000) as u32;
    let entries: Vec<&crate::Entry> =
        manifest.of_train(train).filter(|e| e.camera == source && e.codec == "opus").collect();
    let mut v = VerifiedAudio {
        shift: packets
            .iter()
            .rev()
            .filter_map(|p| {
                let sha = crate::sha256_hex(&p.payload);
                entries
                    .iter()
                    .filter(|e| e.sha256 == sha)
                    .map(|e| p.timestamp.wrapping_sub(ticks(e.capture_us)))
                    .filter(|d| (*d as i32).unsigned_abs() <= MAX_AUDIO_SHIFT)
                    .min_by_key(|d| (*d as i32).unsigned_abs())
            })
            .take(10)
            .min_by_key(|d| (*d as i32).unsigned_abs()),
        ..VerifiedAudio::default()
    };
    let shift = v.shift.unwrap_or(0);
    let by_ticks: HashMap<u32, &crate::Entry> =
        entries.iter().map(|e| (ticks(e.capture_us).wrapping_add(shift), *e)).collect();
    let mut last: Option<&AudioPacket> = None;
    for p in packets {
        if !v.payload_types.contains(&p.payload_type) {
            v.payload_types.push(p.payload_type);
        }
        let entry = by_ticks.get(&p.timestamp).copied();
        match entry {
            Some(e) if e.sha256 == crate::sha256_hex(&p.payload) => {
                v.packets += 1;
                v.seqs.push(e.seq);
            }
            Some(_) => v.mismatched += 1,
            None => v.unknown += 1,
        }
        v.matched.push(entry.is_some_and(|e| e.sha256 == crate::sha256_hex(&p.payload)));
        if let Some(prev) = last {
            let gap = p.sequence.wrapping_sub(prev.sequence);
            if gap == 1 {
                v.pairs += 1;
                let step = p.timestamp.wrapping_sub(prev.timestamp);
                v.steps_960 += usize::from(step == 960);
            } else if (1..0x8000).contains(&gap) {
                v.missing += usize::from(gap - 1);
            }
        }
        last = Some(p);
    }
    v
}
