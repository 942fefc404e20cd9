//! Remote control ⇄ server messages (JSON text), the same on every transport.
//!
//! On WebSocket they are text messages; on WebRTC they travel on the `command` data channel.
//! Video never travels here: it is binary [`crate::VideoPacket`]s on the video path.

use serde::{Deserialize, Serialize};

use crate::control::{Action, AudioInfo, CameraInfo, Telemetry};
use crate::error::DecodeError;
use crate::ids::TrainId;

/// Largest client message the server reads; longer ones are refused with an error event.
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Longest `request_id` a client may use.
pub const MAX_REQUEST_ID: usize = 64;

/// Remote control → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Send `command` to the mapped train; answered by `command_ack` or `command_error` carrying the
    /// same `request_id` (chosen by the client, at most 64 bytes).
    Command { request_id: String, command: Action },
    /// Clock probe: answered at once by `pong` echoing `t`, with the server clock. Also the
    /// heartbeat of a session that holds control of its train.
    Ping { t: f64 },
    /// Take control of the mapped train: granted when it is free (or, with `force`, by an admin
    /// over another holder); answered by `control_changed` (to every session of the train) or an
    /// `error` (`control_held`, `control_elsewhere` on a cluster node the train is not connected
    /// to, `forbidden`, `not_mapped`). `console_id` (1–64 bytes, chosen by
    /// the console, the same for all its links) lets another link of the same console take the
    /// lease over without a gap when it switches transport.
    TakeControl {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        console_id: Option<String>,
        #[serde(default)]
        force: bool,
    },
    /// Give control of the mapped train back (answered by `control_changed`).
    ReleaseControl,
}

impl ClientMessage {
    /// Parse and validate one message; the error text says what is wrong.
    pub fn parse(text: &str) -> Result<Self, DecodeError> {
        if text.len() > MAX_CLIENT_MESSAGE {
            return Err(DecodeError::BodyTooLarge { len: text.len(), max: MAX_CLIENT_MESSAGE });
        }
        let msg: ClientMessage = serde_json::from_str(text)
            .map_err(|e| DecodeError::BadBody { kind: "client message", reason: e.to_string() })?;
        if let ClientMessage::Command { request_id, command } = &msg {
            if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID {
                return Err(DecodeError::BadBody {
                    kind: "client message",
                    reason: format!("request_id must be 1..={MAX_REQUEST_ID} bytes"),
                });
            }
            command.validate().map_err(|reason| DecodeError::BadBody { kind: "client message", reason })?;
        }
        if let ClientMessage::TakeControl { console_id: Some(id), .. } = &msg {
            if id.is_empty() || id.len() > MAX_REQUEST_ID {
                return Err(DecodeError::BadBody {
                    kind: "client message",
                    reason: format!("console_id must be 1..={MAX_REQUEST_ID} bytes"),
                });
            }
        }
        Ok(msg)
    }
}

/// Server → remote control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// First message of every session.
    Welcome {
        remote_control_id: String,
        transport: String,
        train_id: Option<TrainId>,
        server_time_us: u64,
        /// The server's payload limit (`max_payload`): it relays no packet whose payload is larger,
        /// so a client refuses one as `payload_too_large` (wire format §2.1, step 5). A packet is at
        /// most `26 + max_payload` bytes. Absent (a server before this field): the field's maximum.
        #[serde(default = "max_payload_limit")]
        max_payload: u32,
    },
    /// The remote control's mapping changed (or was set at connect time); video from the new train
    /// follows this event, video from the old one stops before it. `cameras`: those of the train's
    /// latest hello (in its order), also while it is offline; empty when not mapped or the train has
    /// not connected since the server started. `audio`: the audio sources of the same hello, left
    /// out of the JSON when there are none (as before audio existed).
    MappedTrainChanged {
        train_id: Option<TrainId>,
        online: bool,
        cameras: Vec<CameraInfo>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        audio: Vec<AudioInfo>,
    },
    /// The mapped train connected; `cameras` and `audio` are those of this connection's hello, in
    /// its order (`audio` left out when empty).
    TrainOnline {
        train_id: TrainId,
        cameras: Vec<CameraInfo>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        audio: Vec<AudioInfo>,
    },
    /// The mapped train went away.
    TrainOffline { train_id: TrainId, reason: String },
    /// Telemetry of the mapped train.
    Telemetry { train_id: TrainId, telemetry: Telemetry },
    /// The train answered a command this client sent.
    CommandAck {
        request_id: String,
        command_id: u64,
        ok: bool,
        message: String,
        /// Server → train → server time, µs.
        train_rtt_us: u64,
    },
    /// A command could not be delivered or was not answered in time.
    CommandError { request_id: String, code: String, message: String },
    /// A client message was refused.
    Error { code: String, message: String },
    /// Answer to `ping`.
    Pong { t: f64, server_time_us: u64 },
    /// The server is closing this session.
    Closing { reason: String },
    /// Who controls the mapped train changed (or is told after `take_control`): `holder` is
    /// null when nobody does. `reason` says why (`taken`, `released`, `taken over by NAME`,
    /// `operator lost: …`, `resumed`).
    ControlChanged { train_id: TrainId, holder: Option<Box<ControlHolder>>, reason: String },
}

/// The session that controls a train.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlHolder {
    /// The principal's name and role.
    pub name: String,
    pub role: String,
    /// The client session (`GET /api/sessions`) and its transport.
    pub session: u64,
    pub transport: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_id: Option<String>,
    /// Since when, µs since the UNIX epoch.
    pub since_us: u64,
    /// In a cluster, the node of the holder's session (its session numbers are that node's);
    /// absent on a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn max_payload_limit() -> u32 {
    crate::MAX_PAYLOAD_LIMIT as u32
}

impl ServerEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"unserializable event"}"#.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let m = ClientMessage::parse(r#"{"type":"command","request_id":"r1","command":{"type":"horn"}}"#).expect("ok");
        assert_eq!(m, ClientMessage::Command { request_id: "r1".into(), command: Action::Horn { duration_ms: 500 } });
        let m = ClientMessage::parse(r#"{"type":"command","request_id":"r2","command":{"type":"set_speed","kmh":80}}"#)
            .expect("ok");
        assert_eq!(m, ClientMessage::Command { request_id: "r2".into(), command: Action::SetSpeed { kmh: 80.0 } });
        assert_eq!(ClientMessage::parse(r#"{"type":"ping","t":1.5}"#).expect("ok"), ClientMessage::Ping { t: 1.5 });
    }

    #[test]
    fn refuses_bad_messages() {
        for bad in [
            "",
            "not json",
            r#"{"type":"nope"}"#,
            r#"{"type":"command","request_id":"r1","command":{"type":"fly"}}"#,
            r#"{"type":"command","request_id":"","command":{"type":"horn"}}"#,
            r#"{"type":"command","request_id":"r","command":{"type":"set_speed","kmh":9000}}"#,
        ] {
            assert!(matches!(ClientMessage::parse(bad), Err(DecodeError::BadBody { .. })), "{bad}");
        }
        let big = format!(r#"{{"type":"ping","t":1,"pad":"{}"}}"#, "x".repeat(MAX_CLIENT_MESSAGE));
        assert!(matches!(ClientMessage::parse(&big), Err(DecodeError::BodyTooLarge { .. })));
    }

    #[test]
    fn welcome_carries_the_payload_limit() {
        let json = r#"{"type":"welcome","remote_control_id":"rc","transport":"websocket","train_id":null,"server_time_us":1,"max_payload":900}"#;
        let ev: ServerEvent = serde_json::from_str(json).expect("welcome");
        assert!(matches!(ev, ServerEvent::Welcome { max_payload: 900, .. }), "{ev:?}");
        assert_eq!(ev.to_json(), json);
        // A welcome from a server without the field: the largest payload the wire can express.
        let old =
            r#"{"type":"welcome","remote_control_id":"rc","transport":"websocket","train_id":null,"server_time_us":1}"#;
        let ev: ServerEvent = serde_json::from_str(old).expect("old welcome");
        assert!(matches!(ev, ServerEvent::Welcome { max_payload: 65_535, .. }), "{ev:?}");
    }

    #[test]
    fn events_announce_audio_only_when_there_is_some() {
        use crate::ids::CameraId;
        let train_id = TrainId::new("t").expect("id");
        let cam = CameraInfo { id: CameraId(0), codec: "h264".into(), width: 2, height: 2, fps: 1 };
        let ev = ServerEvent::TrainOnline { train_id: train_id.clone(), cameras: vec![cam.clone()], audio: Vec::new() };
        assert_eq!(
            ev.to_json(),
            r#"{"type":"train_online","train_id":"t","cameras":[{"id":0,"codec":"h264","width":2,"height":2,"fps":1}]}"#
        );
        let mic = AudioInfo { id: CameraId(256), codec: "opus".into(), sample_rate: 48_000, channels: 1, frame_ms: 20 };
        let ev = ServerEvent::MappedTrainChanged {
            train_id: Some(train_id),
            online: true,
            cameras: vec![cam],
            audio: vec![mic.clone()],
        };
        let json = ev.to_json();
        assert!(
            json.ends_with(r#""audio":[{"id":256,"codec":"opus","sample_rate":48000,"channels":1,"frame_ms":20}]}"#),
            "{json}"
        );
        let back: ServerEvent = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, ev);
    }

    #[test]
    fn events_are_tagged() {
        let e = ServerEvent::TrainOffline { train_id: TrainId::new("t").expect("id"), reason: "gone".into() };
        assert_eq!(e.to_json(), r#"{"type":"train_offline","train_id":"t","reason":"gone"}"#);
    }
}
