//! Control frames: the train's QUIC control stream, in both directions.
//!
//! ```text
//!  0      2     3      4             8
//!  | "RC" | ver | kind | body length | body (UTF-8 JSON object)…
//! ```
//! Integers big-endian. Frames follow each other on the stream with no padding. A stream decoder
//! calls [`ControlMessage::decode`] on its buffer: [`DecodeError::Incomplete`] means "read more".

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{check_preamble, DecodeError};
use crate::ids::{CameraId, TrainId};

pub const KIND_HELLO: u8 = 0x10;
pub const KIND_WELCOME: u8 = 0x11;
pub const KIND_COMMAND: u8 = 0x12;
pub const KIND_COMMAND_ACK: u8 = 0x13;
pub const KIND_TELEMETRY: u8 = 0x14;
pub const KIND_KEYFRAME_REQUEST: u8 = 0x15;
pub const KIND_ERROR: u8 = 0x16;
pub const KIND_STATUS: u8 = 0x17;
/// Most sources one `status` frame may describe.
pub const MAX_STATUS_SOURCES: usize = 64;
/// Longest `state` and `detail` of a source's status, bytes.
pub const MAX_STATUS_STATE: usize = 32;
pub const MAX_STATUS_DETAIL: usize = 500;
/// Size of the fixed control-frame header.
pub const CONTROL_HEADER_LEN: usize = 8;
/// Default limit on a control body; larger frames are refused.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Most cameras one train may announce.
pub const MAX_CAMERAS: usize = 16;
/// Largest picture dimension accepted in a hello.
pub const MAX_DIMENSION: u32 = 8192;
/// Most audio sources one train may announce.
pub const MAX_AUDIO_SOURCES: usize = 4;
/// The one audio sample rate of version 1 (Opus's, and its RTP clock rate).
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;
/// Opus frame durations an audio source may announce, ms (RFC 6716 also allows 2.5 and 5).
pub const AUDIO_FRAME_MS: [u32; 4] = [10, 20, 40, 60];

pub(crate) fn is_control_kind(kind: u8) -> bool {
    (KIND_HELLO..=KIND_STATUS).contains(&kind)
}

/// A camera as announced in the hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraInfo {
    pub id: CameraId,
    /// `"h264"` (Annex B) is the only codec of version 1.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate.
    pub fps: u32,
}

/// An audio source (the cab microphone) as announced in the hello (docs/wire-format.md §3).
///
/// Its packets carry `id` in the packet header's camera field: cameras and audio sources share
/// one id space per train, so no audio source has the id of a camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    pub id: CameraId,
    /// `"opus"` is the only audio codec of version 1 (packet codec `0x02`).
    pub codec: String,
    /// Samples per second: 48,000.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (stereo).
    pub channels: u8,
    /// Duration of one Opus packet, ms: 10, 20, 40 or 60.
    pub frame_ms: u32,
}

/// Train → server, first frame on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub train_id: TrainId,
    pub cameras: Vec<CameraInfo>,
    /// Audio sources, none by default. Absent from the JSON when empty, so a hello without audio
    /// is byte for byte what it was before audio existed; a server that predates the field
    /// ignores it (unknown fields are ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audio: Vec<AudioInfo>,
    /// Free text naming the sender's software, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    /// The train's secret, configured per train id on the server (`docs/security.md`). A server
    /// that requires it refuses a hello without it (error `unauthorized`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// A credential carried on the wire. Its `Debug` never shows the value, so it stays out of logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl Hello {
    /// Semantic checks beyond JSON shape.
    pub fn validate(&self) -> Result<(), String> {
        if self.cameras.is_empty() {
            return Err("hello announces no camera".into());
        }
        if self.cameras.len() > MAX_CAMERAS {
            return Err(format!("hello announces {} cameras, the limit is {MAX_CAMERAS}", self.cameras.len()));
        }
        for (i, cam) in self.cameras.iter().enumerate() {
            if self.cameras[..i].iter().any(|c| c.id == cam.id) {
                return Err(format!("camera id {} announced twice", cam.id));
            }
            if cam.codec != "h264" {
                return Err(format!("camera {}: unsupported codec {:?}", cam.id, cam.codec));
            }
            if cam.width == 0 || cam.height == 0 || cam.width > MAX_DIMENSION || cam.height > MAX_DIMENSION {
                return Err(format!("camera {}: bad size {}x{}", cam.id, cam.width, cam.height));
            }
            if cam.fps == 0 || cam.fps > 240 {
                return Err(format!("camera {}: bad fps {}", cam.id, cam.fps));
            }
        }
        if self.audio.len() > MAX_AUDIO_SOURCES {
            return Err(format!(
                "hello announces {} audio sources, the limit is {MAX_AUDIO_SOURCES}",
                self.audio.len()
            ));
        }
        for (i, a) in self.audio.iter().enumerate() {
            if self.cameras.iter().any(|c| c.id == a.id) {
                return Err(format!("audio source id {} is also a camera id", a.id));
            }
            if self.audio[..i].iter().any(|b| b.id == a.id) {
                return Err(format!("audio source id {} announced twice", a.id));
            }
            if a.codec != "opus" {
                return Err(format!("audio source {}: unsupported codec {:?}", a.id, a.codec));
            }
            if a.sample_rate != AUDIO_SAMPLE_RATE {
                return Err(format!(
                    "audio source {}: sample rate must be {AUDIO_SAMPLE_RATE}, got {}",
                    a.id, a.sample_rate
                ));
            }
            if !(1..=2).contains(&a.channels) {
                return Err(format!("audio source {}: channels must be 1 or 2, got {}", a.id, a.channels));
            }
            if !AUDIO_FRAME_MS.contains(&a.frame_ms) {
                return Err(format!(
                    "audio source {}: frame_ms must be one of {AUDIO_FRAME_MS:?}, got {}",
                    a.id, a.frame_ms
                ));
            }
        }
        Ok(())
    }
}

/// Server → train, answer to a valid hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Server clock, µs since the UNIX epoch, when the welcome was written.
    pub server_time_us: u64,
    /// Largest video payload the server accepts per packet.
    pub max_payload: u32,
}

/// What an operator asks a train to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Send a keyframe now (one camera, or all when `camera` is absent).
    RequestKeyframe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        camera: Option<CameraId>,
    },
    /// Set the target speed in km/h (0–400).
    SetSpeed { kmh: f32 },
    /// Sound the horn for `duration_ms` (1–10,000 ms).
    Horn {
        #[serde(default = "default_horn_ms")]
        duration_ms: u32,
    },
    /// Server → train only: the operator in control is gone (their link went silent for the
    /// heartbeat timeout, or their session ended). The train must bring itself to a safe state
    /// (the simulator brakes to 0 km/h) and ack. Clients cannot send it.
    OperatorLost { operator: String, reason: String },
}

fn default_horn_ms() -> u32 {
    500
}

impl Action {
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Action::SetSpeed { kmh } if !(0.0..=400.0).contains(&kmh) => {
                Err(format!("set_speed: kmh must be within 0..=400, got {kmh}"))
            }
            Action::Horn { duration_ms } if !(1..=10_000).contains(&duration_ms) => {
                Err(format!("horn: duration_ms must be within 1..=10000, got {duration_ms}"))
            }
            Action::OperatorLost { ref operator, ref reason } if operator.len() > 256 || reason.len() > 256 => {
                Err("operator_lost: operator and reason are at most 256 bytes".into())
            }
            _ => Ok(()),
        }
    }
    /// The `type` tag, for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Action::RequestKeyframe { .. } => "request_keyframe",
            Action::SetSpeed { .. } => "set_speed",
            Action::Horn { .. } => "horn",
            Action::OperatorLost { .. } => "operator_lost",
        }
    }
}

/// Server → train: carry out `action` and answer with a [`CommandAck`] of the same `command_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub command_id: u64,
    pub command: Action,
}

/// Train → server: outcome of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAck {
    pub command_id: u64,
    pub ok: bool,
    #[serde(default)]
    pub message: String,
}

/// Train → server, periodically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Sender clock, µs since the UNIX epoch.
    pub timestamp_us: u64,
    pub speed_kmh: f32,
    pub odometer_m: f64,
    #[serde(default)]
    pub horn: bool,
    /// The train is in the safe state `operator_lost` asked for (left out when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator_lost: bool,
}

/// Train → server, when something changes and every few seconds: how each of its sources
/// (cameras, audio) is doing as the train sees it, for the server's train view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub sources: Vec<SourceStatus>,
}

/// One source's state (docs/wire-format.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The camera's (or audio source's) id.
    pub id: CameraId,
    /// `streaming`, `waiting` (nothing to read yet, or its writer went away), `reconnecting`
    /// (the camera dropped or refused), `stalled` (connected, no frame for a while), `ended`.
    pub state: String,
    /// Why, in words (the last error, what the source is waiting for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Frames per second and bits per second over the last seconds, as the train measured them.
    #[serde(default)]
    pub fps: f32,
    #[serde(default)]
    pub bitrate_bps: f64,
}

impl Status {
    pub fn validate(&self) -> Result<(), String> {
        if self.sources.len() > MAX_STATUS_SOURCES {
            return Err(format!("{} sources; at most {MAX_STATUS_SOURCES}", self.sources.len()));
        }
        for s in &self.sources {
            if s.state.is_empty() || s.state.len() > MAX_STATUS_STATE {
                return Err(format!("source {}: state must be 1..={MAX_STATUS_STATE} bytes", s.id.0));
            }
            if s.detail.as_ref().is_some_and(|d| d.len() > MAX_STATUS_DETAIL) {
                return Err(format!("source {}: detail longer than {MAX_STATUS_DETAIL} bytes", s.id.0));
            }
            if !s.fps.is_finite() || s.fps < 0.0 || !s.bitrate_bps.is_finite() || s.bitrate_bps < 0.0 {
                return Err(format!("source {}: fps and bitrate_bps must be finite and not negative", s.id.0));
            }
        }
        Ok(())
    }
}

/// Server → train: send a keyframe soon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyframeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<CameraId>,
}

/// Either direction: something went wrong. The sender may close the stream after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub code: String,
    pub message: String,
}

/// One control frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlMessage {
    Hello(Hello),
    Welcome(Welcome),
    Command(Command),
    CommandAck(CommandAck),
    Telemetry(Telemetry),
    KeyframeRequest(KeyframeRequest),
    Error(ErrorMessage),
    Status(Status),
}

impl ControlMessage {
    pub fn kind(&self) -> u8 {
        match self {
            Self::Hello(_) => KIND_HELLO,
            Self::Welcome(_) => KIND_WELCOME,
            Self::Command(_) => KIND_COMMAND,
            Self::CommandAck(_) => KIND_COMMAND_ACK,
            Self::Telemetry(_) => KIND_TELEMETRY,
            Self::KeyframeRequest(_) => KIND_KEYFRAME_REQUEST,
            Self::Error(_) => KIND_ERROR,
            Self::Status(_) => KIND_STATUS,
        }
    }

    pub fn name(&self) -> &'static str {
        kind_name(self.kind())
    }

    fn body(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail (no maps with non-string keys, no I/O).
        let json = match self {
            Self::Hello(m) => serde_json::to_vec(m),
            Self::Welcome(m) => serde_json::to_vec(m),
            Self::Command(m) => serde_json::to_vec(m),
            Self::CommandAck(m) => serde_json::to_vec(m),
            Self::Telemetry(m) => serde_json::to_vec(m),
            Self::KeyframeRequest(m) => serde_json::to_vec(m),
            Self::Error(m) => serde_json::to_vec(m),
            Self::Status(m) => serde_json::to_vec(m),
        };
        json.unwrap_or_else(|_| b"{}".to_vec())
    }

    /// Append the encoded frame to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        let body = self.body();
        out.put_slice(&crate::MAGIC);
        out.put_u8(crate::VERSION);
        out.put_u8(self.kind());
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// Decode the frame at the start of `buf`; returns it and the number of bytes it used.
    ///
    /// `Err(Incomplete)` when `buf` holds only part of a frame. Any other error is fatal for the
    /// stream: framing cannot be recovered after a bad header.
    pub fn decode(buf: &[u8], max_body: usize) -> Result<(Self, usize), DecodeError> {
        if buf.len() < 4 {
            // Check what we have so that garbage fails fast instead of waiting for more.
            if !buf.is_empty() && buf[0] != crate::MAGIC[0] || buf.len() >= 2 && buf[1] != crate::MAGIC[1] {
                let second = buf.get(1).copied().unwrap_or(0);
                return Err(DecodeError::BadMagic { found: [buf[0], second] });
            }
            return Err(DecodeError::Incomplete { needed: CONTROL_HEADER_LEN - buf.len() });
        }
        let kind = check_preamble(buf, "control frame")?;
        if !is_control_kind(kind) {
            return Err(if kind == crate::packet::KIND_VIDEO {
                DecodeError::WrongKind { expected: "control", found: kind }
            } else {
                DecodeError::UnknownKind(kind)
            });
        }
        if buf.len() < CONTROL_HEADER_LEN {
            return Err(DecodeError::Incomplete { needed: CONTROL_HEADER_LEN - buf.len() });
        }
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if len > max_body {
            return Err(DecodeError::BodyTooLarge { len, max: max_body });
        }
        let total = CONTROL_HEADER_LEN + len;
        if buf.len() < total {
            return Err(DecodeError::Incomplete { needed: total - buf.len() });
        }
        let body = &buf[CONTROL_HEADER_LEN..total];
        let name = kind_name(kind);
        let bad = |e: serde_json::Error| DecodeError::BadBody { kind: name, reason: e.to_string() };
        let msg = match kind {
            KIND_HELLO => {
                let hello: Hello = serde_json::from_slice(body).map_err(bad)?;
                hello.validate().map_err(|reason| DecodeError::BadBody { kind: name, reason })?;
                Self::Hello(hello)
            }
            KIND_WELCOME => Self::Welcome(serde_json::from_slice(body).map_err(bad)?),
            KIND_COMMAND => {
                let cmd: Command = serde_json::from_slice(body).map_err(bad)?;
                cmd.command.validate().map_err(|reason| DecodeError::BadBody { kind: name, reason })?;
                Self::Command(cmd)
            }
            KIND_COMMAND_ACK => Self::CommandAck(serde_json::from_slice(body).map_err(bad)?),
            KIND_TELEMETRY => Self::Telemetry(serde_json::from_slice(body).map_err(bad)?),
            KIND_KEYFRAME_REQUEST => Self::KeyframeRequest(serde_json::from_slice(body).map_err(bad)?),
            KIND_STATUS => {
                let status: Status = serde_json::from_slice(body).map_err(bad)?;
                status.validate().map_err(|reason| DecodeError::BadBody { kind: name, reason })?;
                Self::Status(status)
            }
            _ => Self::Error(serde_json::from_slice(body).map_err(bad)?),
        };
        Ok((msg, total))
    }
}

impl ControlMessage {
    /// The frame as one JSON text, for a WHIP publisher's `command` data channel
    /// (docs/whip.md): the body's fields plus `"type"`, the kind's name (`command`,
    /// `command_ack`, …). The same JSON as the control stream's body, with no binary header.
    pub fn to_json(&self) -> String {
        let mut object = match serde_json::from_slice::<serde_json::Value>(&self.body()) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        object.insert("type".into(), serde_json::Value::String(self.name().into()));
        serde_json::Value::Object(object).to_string()
    }

    /// Parse [`ControlMessage::to_json`]'s form, with the same checks as [`ControlMessage::decode`]
    /// (a body over `max_body` bytes, missing fields, bad values).
    pub fn from_json(text: &str, max_body: usize) -> Result<Self, DecodeError> {
        if text.len() > max_body {
            return Err(DecodeError::BodyTooLarge { len: text.len(), max: max_body });
        }
        let bad = |reason: String| DecodeError::BadBody { kind: "json control message", reason };
        let mut object = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err(bad("not a JSON object".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        let kind = match object.remove("type") {
            Some(serde_json::Value::String(name)) => (KIND_HELLO..=KIND_ERROR)
                .find(|k| kind_name(*k) == name)
                .ok_or_else(|| bad(format!("unknown type {name:?}")))?,
            _ => return Err(bad("\"type\" (a string naming the kind) is missing".into())),
        };
        let body = serde_json::Value::Object(object).to_string().into_bytes();
        let mut frame = Vec::with_capacity(CONTROL_HEADER_LEN + body.len());
        frame.extend_from_slice(&crate::MAGIC);
        frame.push(crate::VERSION);
        frame.push(kind);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        Self::decode(&frame, max_body.saturating_add(16)).map(|(msg, _)| msg)
    }
}

/// Splits a byte stream into control frames, however the bytes arrive. Sans-IO: feed it what
/// the socket gave, then take frames until it says it needs more.
#[derive(Debug)]
pub struct ControlDecoder {
    buf: BytesMut,
    max_body: usize,
}

impl ControlDecoder {
    pub fn new(max_body: usize) -> Self {
        Self { buf: BytesMut::with_capacity(4096), max_body }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed. An error is final.
    pub fn next_frame(&mut self) -> Result<Option<ControlMessage>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match ControlMessage::decode(&self.buf, self.max_body) {
            Ok((msg, used)) => {
                let _ = self.buf.split_to(used);
                Ok(Some(msg))
            }
            Err(DecodeError::Incomplete { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes held that do not yet form a frame (non-zero at end of stream means a cut frame).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// The snake_case name of a control kind.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_HELLO => "hello",
        KIND_WELCOME => "welcome",
        KIND_COMMAND => "command",
        KIND_COMMAND_ACK => "command_ack",
        KIND_TELEMETRY => "telemetry",
        KIND_KEYFRAME_REQUEST => "keyframe_request",
        KIND_ERROR => "error",
        KIND_STATUS => "status",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON form of a WHIP `command` channel: the body with `"type"`, both ways, checked.
    #[test]
    fn json_form_round_trips_and_checks() {
        let cmd = ControlMessage::Command(Command { command_id: 7, command: Action::Horn { duration_ms: 300 } });
        let text = cmd.to_json();
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["type"], "command");
        assert_eq!(v["command"]["type"], "horn");
        assert_eq!(ControlMessage::from_json(&text, DEFAULT_MAX_BODY).expect("parse"), cmd);
        let ack = r#"{"type":"command_ack","command_id":7,"ok":true,"message":"done"}"#;
        assert_eq!(
            ControlMessage::from_json(ack, DEFAULT_MAX_BODY).expect("ack"),
            ControlMessage::CommandAck(CommandAck { command_id: 7, ok: true, message: "done".into() })
        );
        for bad in ["[]", "{}", r#"{"type":"nope"}"#, r#"{"type":"command_ack"}"#, "{", r#"{"type":5}"#] {
            let e = ControlMessage::from_json(bad, DEFAULT_MAX_BODY).expect_err(bad);
            assert_eq!(e.label(), "bad_body", "{bad}");
        }
        let long = format!(r#"{{"type":"error","code":"x","message":"{}"}}"#, "a".repeat(100));
        assert_eq!(ControlMessage::from_json(&long, 64).expect_err("too long").label(), "body_too_large");
    }

    fn hello() -> Hello {
        Hello {
            train_id: TrainId::new("t1").expect("id"),
            cameras: vec![CameraInfo { id: CameraId(0), codec: "h264".into(), width: 640, height: 480, fps: 30 }],
            audio: Vec::new(),
            software: None,
            token: None,
        }
    }

    fn mic(id: u16) -> AudioInfo {
        AudioInfo { id: CameraId(id), codec: "opus".into(), sample_rate: 48_000, channels: 1, frame_ms: 20 }
    }

    #[test]
    fn hello_with_audio() {
        let mut h = hello();
        // Without audio the field is left out: the bytes of a hello from before audio existed.
        let json = serde_json::to_string(&h).expect("json");
        assert!(!json.contains("audio"), "{json}");
        h.audio.push(mic(256));
        let b = ControlMessage::Hello(h.clone()).to_bytes();
        let (got, _) = ControlMessage::decode(&b, DEFAULT_MAX_BODY).expect("decode");
        assert_eq!(got, ControlMessage::Hello(h.clone()));
        let json = serde_json::to_string(&h).expect("json");
        assert!(
            json.contains(r#""audio":[{"id":256,"codec":"opus","sample_rate":48000,"channels":1,"frame_ms":20}]"#),
            "{json}"
        );
        let bad = |change: &dyn Fn(&mut Hello), why: &str| {
            let mut h = hello();
            h.audio.push(mic(256));
            change(&mut h);
            match ControlMessage::decode(&ControlMessage::Hello(h).to_bytes(), DEFAULT_MAX_BODY) {
                Err(DecodeError::BadBody { reason, .. }) => assert!(reason.contains(why), "{why}: {reason}"),
                other => panic!("{why}: {other:?}"),
            }
        };
        bad(&|h| h.audio[0].id = CameraId(0), "also a camera id");
        bad(&|h| h.audio.push(mic(256)), "announced twice");
        bad(&|h| h.audio[0].codec = "aac".into(), "unsupported codec");
        bad(&|h| h.audio[0].sample_rate = 44_100, "sample rate");
        bad(&|h| h.audio[0].channels = 0, "channels");
        bad(&|h| h.audio[0].channels = 3, "channels");
        bad(&|h| h.audio[0].frame_ms = 25, "frame_ms");
        bad(&|h| h.audio.extend((300..304).map(mic)), "audio sources");
    }

    #[test]
    fn round_trip_every_kind() {
        let msgs = vec![
            ControlMessage::Hello(hello()),
            ControlMessage::Welcome(Welcome { server_time_us: 5, max_payload: 1150 }),
            ControlMessage::Command(Command { command_id: 9, command: Action::SetSpeed { kmh: 42.5 } }),
            ControlMessage::Command(Command { command_id: 10, command: Action::RequestKeyframe { camera: None } }),
            ControlMessage::Command(Command { command_id: 11, command: Action::Horn { duration_ms: 300 } }),
            ControlMessage::CommandAck(CommandAck { command_id: 9, ok: true, message: "ok".into() }),
            ControlMessage::Telemetry(Telemetry {
                timestamp_us: 1,
                speed_kmh: 3.0,
                odometer_m: 4.5,
                horn: false,
                operator_lost: false,
            }),
            ControlMessage::KeyframeRequest(KeyframeRequest { camera: Some(CameraId(1)) }),
            ControlMessage::Error(ErrorMessage { code: "x".into(), message: "y".into() }),
        ];
        let mut stream = BytesMut::new();
        for m in &msgs {
            m.encode(&mut stream);
        }
        let mut at = 0;
        for m in &msgs {
            let (got, used) = ControlMessage::decode(&stream[at..], DEFAULT_MAX_BODY).expect("decode");
            assert_eq!(&got, m);
            at += used;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let b = ControlMessage::Hello(hello()).to_bytes();
        for cut in 0..b.len() {
            match ControlMessage::decode(&b[..cut], DEFAULT_MAX_BODY) {
                Err(DecodeError::Incomplete { needed }) => assert!(needed > 0),
                other => panic!("prefix {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn decoder_reassembles_any_split() {
        let mut stream = BytesMut::new();
        ControlMessage::Hello(hello()).encode(&mut stream);
        ControlMessage::Telemetry(Telemetry {
            timestamp_us: 1,
            speed_kmh: 2.0,
            odometer_m: 3.0,
            horn: true,
            operator_lost: false,
        })
        .encode(&mut stream);
        for step in [1, 2, 7, 64, stream.len()] {
            let mut d = ControlDecoder::new(DEFAULT_MAX_BODY);
            let mut got = Vec::new();
            for chunk in stream.chunks(step) {
                d.push(chunk);
                while let Some(m) = d.next_frame().expect("valid") {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "step {step}");
            assert_eq!(d.buffered(), 0);
        }
        let mut d = ControlDecoder::new(DEFAULT_MAX_BODY);
        d.push(b"XXXXXXXXXX");
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn rejects() {
        let mut b = ControlMessage::Hello(hello()).to_bytes().to_vec();
        assert!(matches!(ControlMessage::decode(&b, 10), Err(DecodeError::BodyTooLarge { .. })));
        b[8] = b'[';
        assert!(matches!(
            ControlMessage::decode(&b, DEFAULT_MAX_BODY),
            Err(DecodeError::BadBody { kind: "hello", .. })
        ));
        assert!(matches!(ControlMessage::decode(b"XY", 10), Err(DecodeError::BadMagic { .. })));
        assert!(matches!(ControlMessage::decode(b"RC\x01\x01", 10), Err(DecodeError::WrongKind { .. })));
        assert!(matches!(ControlMessage::decode(b"RC\x01\x30", 10), Err(DecodeError::UnknownKind(0x30))));
        let mut h = hello();
        h.cameras.push(h.cameras[0].clone());
        let b = ControlMessage::Hello(h).to_bytes();
        match ControlMessage::decode(&b, DEFAULT_MAX_BODY) {
            Err(DecodeError::BadBody { reason, .. }) => assert!(reason.contains("twice"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let b = ControlMessage::Command(Command { command_id: 1, command: Action::SetSpeed { kmh: -1.0 } }).to_bytes();
        assert!(matches!(ControlMessage::decode(&b, DEFAULT_MAX_BODY), Err(DecodeError::BadBody { .. })));
    }
}
