//! One camera of the train, whatever its source: what it announces (picture size from its SPS,
//! frame rate), its parameter sets, its figures, and the way out of its access units to the
//! session — never blocking the source: a full queue drops the frame and the camera then waits
//! for its next keyframe, so the server never gets a frame it cannot decode.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use railcast_protocol::control::{AudioInfo, CameraInfo, SourceStatus};
use railcast_protocol::h264::{nal_units, sps_dimensions, NAL_IDR, NAL_PPS, NAL_SPS};
use railcast_protocol::packet::Codec;
use railcast_protocol::CameraId;
use railcast_uplink::Frame;
use tokio::sync::mpsc;

use crate::config::{AudioConfig, CameraConfig};
use crate::ogg::packet_samples;

/// Announced when neither the stream nor the configuration gave a size.
const FALLBACK_SIZE: (u32, u32) = (640, 480);
/// A streaming source with no frame for this long is reported `stalled`.
pub const STALLED_AFTER: Duration = Duration::from_secs(3);
/// Frame rate measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// The latest SPS and PPS (Annex B, with their start codes).
type ParameterSets = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Where cameras put their frames: the session's queue, and whether a session is up.
#[derive(Debug, Clone)]
pub struct Output {
    pub tx: mpsc::Sender<Frame>,
    pub connected: Arc<AtomicBool>,
}

#[derive(Debug)]
pub struct Camera {
    pub id: u16,
    pub label: String,
    /// `pipe` or `rtsp`.
    pub kind: &'static str,
    configured_size: Option<(u32, u32)>,
    configured_fps: Option<u32>,
    size: Mutex<Option<(u32, u32)>>,
    /// The latest SPS and PPS, with their start codes.
    params: Mutex<ParameterSets>,
    /// Drop delta frames until the next keyframe (after a drop, a (re)connection, a new source).
    wait_keyframe: AtomicBool,
    seq: AtomicU32,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Frames the queue had no room for.
    pub dropped: AtomicU64,
    /// Keyframes sent with the parameter sets put in front (the source sent them out of band).
    pub params_inserted: AtomicU64,
    recent: Mutex<VecDeque<(Instant, usize)>>,
    /// What the source said last (`waiting`, `streaming`, `reconnecting`, `ended`) and why.
    state: Mutex<(&'static str, Option<String>)>,
    last_frame: Mutex<Option<Instant>>,
    /// An audio source's announcement (Opus): channels and packet duration, ms.
    audio: Option<(u8, u32)>,
    /// Audio: the capture time of the current run's first packet, and packets since.
    run: Mutex<Option<(u64, u64)>>,
}

impl Camera {
    pub fn new(cfg: &CameraConfig, kind: &'static str) -> Arc<Camera> {
        Arc::new(Camera {
            id: cfg.id,
            label: cfg.label(),
            kind,
            configured_size: cfg.width.zip(cfg.height),
            configured_fps: cfg.fps,
            size: Mutex::new(None),
            params: Mutex::new((None, None)),
            wait_keyframe: AtomicBool::new(true),
            seq: AtomicU32::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            params_inserted: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
            state: Mutex::new(("waiting", Some("no data yet".into()))),
            last_frame: Mutex::new(None),
            audio: None,
            run: Mutex::new(None),
        })
    }

    /// An audio source (Ogg Opus on a pipe).
    pub fn new_audio(cfg: &AudioConfig) -> Arc<Camera> {
        let label = match &cfg.name {
            Some(n) => format!("audio {} ({n})", cfg.id),
            None => format!("audio {}", cfg.id),
        };
        let mut c = Camera::new(
            &CameraConfig { id: cfg.id, name: None, source: cfg.source.clone(), width: None, height: None, fps: None },
            "ogg opus pipe",
        );
        if let Some(c) = Arc::get_mut(&mut c) {
            c.label = label;
            c.audio = Some((cfg.channels, cfg.frame_ms));
        }
        c
    }

    /// What the hello announces for an audio source.
    pub fn audio_info(&self) -> Option<AudioInfo> {
        let (channels, frame_ms) = self.audio?;
        Some(AudioInfo {
            id: CameraId(self.id),
            codec: "opus".into(),
            sample_rate: railcast_protocol::control::AUDIO_SAMPLE_RATE,
            channels,
            frame_ms,
        })
    }

    /// The stream's `OpusHead` says how many channels it has: a mismatch with the configuration is
    /// logged (the hello announced the configured count).
    pub fn check_channels(&self, channels: u8) {
        if let Some((configured, _)) = self.audio {
            if configured != channels {
                tracing::warn!(
                    camera = self.id,
                    "{}: the stream has {channels} channels, configured {configured}",
                    self.label
                );
            }
        }
    }

    /// One Opus packet from the source, which reached the agent at `arrival_us`. Capture times run
    /// exactly one packet duration apart from the first packet of a run; a run starts again when
    /// the arrivals get more than two packets ahead of it (the source paused or was late).
    pub fn deliver_opus(&self, out: &Output, packet: Vec<u8>, arrival_us: u64) -> bool {
        let Some((_, frame_ms)) = self.audio else { return false };
        let step = u64::from(frame_ms) * 1000;
        if packet_samples(&packet).is_some_and(|s| u64::from(s) * 1000 / 48 != step) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    camera = self.id,
                    dropped = n,
                    "{}: Opus packets not of {frame_ms} ms dropped",
                    self.label
                );
            }
            return false;
        }
        let capture_us = match self.run.lock() {
            Ok(mut run) => {
                let (start, k) = match *run {
                    Some((start, k)) if arrival_us.saturating_sub(start + k * step) <= 2 * step => (start, k),
                    _ => (arrival_us, 0),
                };
                *run = Some((start, k + 1));
                start + k * step
            }
            Err(_) => arrival_us,
        };
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
        if let Ok(mut l) = self.last_frame.lock() {
            *l = Some(Instant::now());
        }
        if let Ok(mut r) = self.recent.lock() {
            r.push_back((Instant::now(), packet.len()));
        }
        if !out.connected.load(Ordering::Relaxed) {
            return false;
        }
        let frame = Frame {
            codec: Codec::Opus,
            camera: self.id,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            capture_us,
            data: Bytes::from(packet),
            keyframe: true,
        };
        out.tx.try_send(frame).is_ok()
    }

    /// Whether the hello can announce a size: the stream's, or the configured one.
    pub fn has_size(&self) -> bool {
        self.configured_size.is_some() || self.stream_size().is_some()
    }

    /// The picture size from the stream's SPS, if one came.
    pub fn stream_size(&self) -> Option<(u32, u32)> {
        self.size.lock().ok().and_then(|s| *s)
    }

    /// Frames per second over the last two seconds, and bits per second.
    pub fn measured(&self) -> (f64, f64) {
        let Ok(mut recent) = self.recent.lock() else { return (0.0, 0.0) };
        let now = Instant::now();
        while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            recent.pop_front();
        }
        let secs = RATE_WINDOW.as_secs_f64();
        (recent.len() as f64 / secs, recent.iter().fold(0.0, |sum, (_, n)| sum + *n as f64 * 8.0) / secs)
    }

    /// What the hello announces.
    pub fn info(&self) -> CameraInfo {
        let (width, height) = self.stream_size().or(self.configured_size).unwrap_or(FALLBACK_SIZE);
        let measured = self.measured().0.round() as u32;
        let fps = self.configured_fps.unwrap_or(if measured > 0 { measured } else { 30 });
        CameraInfo { id: CameraId(self.id), codec: "h264".into(), width, height, fps }
    }

    /// What the source is doing, for the server's train view (`status`).
    pub fn set_state(&self, state: &'static str, detail: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = (state, detail.map(|d| one_line(&d, MAX_DETAIL)));
        }
    }

    /// The source's status as the train reports it: `streaming` turns `stalled` when no frame
    /// came for [`STALLED_AFTER`].
    pub fn status(&self) -> SourceStatus {
        let (mut state, mut detail) = self.state.lock().map(|s| (s.0, s.1.clone())).unwrap_or(("streaming", None));
        let since = self.last_frame.lock().ok().and_then(|l| *l).map(|t| t.elapsed());
        if state == "streaming" && since.is_none_or(|d| d > STALLED_AFTER) {
            state = "stalled";
            detail = Some(match since {
                Some(d) => format!("no frame for {} s", d.as_secs()),
                None => "no frame yet".into(),
            });
        }
        let (fps, bitrate_bps) = self.measured();
        SourceStatus { id: CameraId(self.id), state: state.into(), detail, fps: fps as f32, bitrate_bps }
    }

    /// Start the next session (or a new source connection) at a keyframe.
    pub fn restart_at_keyframe(&self) {
        self.wait_keyframe.store(true, Ordering::Relaxed);
    }

    /// Remember parameter sets given out of band (an RTSP camera's SDP), Annex B.
    pub fn set_params(&self, sps: Option<Vec<u8>>, pps: Option<Vec<u8>>) {
        if let Some(sps) = &sps {
            self.note_size(&sps[start_code_len(sps)..]);
        }
        if let Ok(mut p) = self.params.lock() {
            if sps.is_some() {
                p.0 = sps;
            }
            if pps.is_some() {
                p.1 = pps;
            }
        }
    }

    fn note_size(&self, sps_payload: &[u8]) {
        let Some(size) = sps_dimensions(sps_payload) else { return };
        if let Ok(mut s) = self.size.lock() {
            if s.is_some_and(|old| old != size) {
                tracing::warn!(camera = self.id, "{}: picture size changed from {:?} to {size:?}", self.label, s);
            }
            *s = Some(size);
        }
    }

    /// One access unit (Annex B) from the source, as it came; `capture_us` is when its first
    /// byte reached the agent. Returns whether it went into the queue.
    pub fn deliver(&self, out: &Output, unit: Vec<u8>, capture_us: u64) -> bool {
        let mut keyframe = false;
        let (mut has_sps, mut has_pps) = (false, false);
        for nal in nal_units(&unit) {
            match nal.nal_type() {
                NAL_IDR => keyframe = true,
                NAL_SPS => {
                    has_sps = true;
                    self.note_size(nal.payload);
                    if let Ok(mut p) = self.params.lock() {
                        p.0 = Some(nal.with_start_code.to_vec());
                    }
                }
                NAL_PPS => {
                    has_pps = true;
                    if let Ok(mut p) = self.params.lock() {
                        p.1 = Some(nal.with_start_code.to_vec());
                    }
                }
                _ => {}
            }
        }
        let mut data = unit;
        if keyframe && !(has_sps && has_pps) {
            // A keyframe a late joiner cannot decode without what the source sent once.
            let params = self.params.lock().map(|p| p.clone()).unwrap_or_default();
            if let (Some(sps), Some(pps)) = params {
                let mut with = Vec::with_capacity(sps.len() + pps.len() + data.len());
                with.extend_from_slice(if has_sps { &[] } else { &sps[..] });
                with.extend_from_slice(if has_pps { &[] } else { &pps[..] });
                with.extend_from_slice(&data);
                data = with;
                self.params_inserted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.frames.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last_frame.lock() {
            *l = Some(Instant::now());
        }
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        if let Ok(mut r) = self.recent.lock() {
            r.push_back((Instant::now(), data.len()));
        }
        if !out.connected.load(Ordering::Relaxed) {
            self.wait_keyframe.store(true, Ordering::Relaxed);
            return false;
        }
        if self.wait_keyframe.load(Ordering::Relaxed) {
            if !keyframe {
                return false;
            }
            self.wait_keyframe.store(false, Ordering::Relaxed);
        }
        let frame = Frame {
            codec: Codec::H264AnnexB,
            camera: self.id,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            capture_us,
            data: Bytes::from(data),
            keyframe,
        };
        match out.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        camera = self.id,
                        dropped = n,
                        "{}: the network side is behind; frames dropped",
                        self.label
                    );
                }
                self.wait_keyframe.store(true, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Room for a detail in a `status` frame (the protocol's limit is 500 bytes).
const MAX_DETAIL: usize = 400;

/// `text` on one line (runs of whitespace become one space), at most `max` bytes (cut at a
/// character boundary, with "…").
fn one_line(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

fn start_code_len(nal: &[u8]) -> usize {
    if nal.starts_with(&[0, 0, 0, 1]) {
        4
    } else if nal.starts_with(&[0, 0, 1]) {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn details_fit_a_status_frame() {
        assert_eq!(one_line("401 response\n\nconn:  a", 100), "401 response conn: a");
        let long = "é".repeat(300);
        let cut = one_line(&long, 401);
        assert!(cut.len() <= 401 + "…".len() && cut.ends_with('…'), "{}", cut.len());
    }
}
