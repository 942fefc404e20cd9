//! What nodes say to each other over NATS: the subjects and the message bodies (docs/cluster.md).
//! Sans-IO: building and parsing only; a message that does not parse is an error for the caller
//! to count, never a panic.

use railcast_protocol::client::ControlHolder;
use railcast_protocol::control::{AudioInfo, CameraInfo, KeyframeRequest};
use railcast_protocol::{Action, Hello, TrainId};
use serde::{Deserialize, Serialize};

/// Every node's presence, once a second: the trains it owns through a real ingest.
pub const PRESENCE: &str = "railcast.presence";
const WANT: &str = "railcast.want.";
const MEDIA: &str = "railcast.media.";
const TELEMETRY: &str = "railcast.telemetry.";
const COMMAND: &str = "railcast.command.";
const KEYFRAME: &str = "railcast.keyframe.";

/// The owner's side subscribes to these (the train is the rest of the subject).
pub const WANT_ALL: &str = "railcast.want.>";
pub const COMMAND_ALL: &str = "railcast.command.>";
pub const KEYFRAME_ALL: &str = "railcast.keyframe.>";

/// `railcast.want.<train>`: a mirror's interest lease (body: its node id).
pub fn want(train: &TrainId) -> String {
    format!("{WANT}{train}")
}
/// `railcast.media.<train>`: one wire packet per message, exactly as the train sent it.
pub fn media(train: &TrainId) -> String {
    format!("{MEDIA}{train}")
}
/// `railcast.telemetry.<train>`: the train's telemetry (JSON), while media flows.
pub fn telemetry(train: &TrainId) -> String {
    format!("{TELEMETRY}{train}")
}
/// `railcast.command.<train>`: a request ([`Action`] as JSON), answered with a [`CommandReply`].
pub fn command(train: &TrainId) -> String {
    format!("{COMMAND}{train}")
}
/// `railcast.keyframe.<train>`: a keyframe request (JSON [`KeyframeRequest`]), no answer.
pub fn keyframe(train: &TrainId) -> String {
    format!("{KEYFRAME}{train}")
}

/// Why a message from another node was not used (counted by `kind` in
/// `railcast_cluster_rejected_total`).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("subject {0:?} does not name a valid train id")]
    Subject(String),
    #[error("body is not valid JSON of its kind: {0}")]
    Body(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The train named by the subject `prefix<train>` (a train id may itself contain dots).
fn train_of(subject: &str, prefix: &str) -> Result<TrainId, WireError> {
    subject
        .strip_prefix(prefix)
        .and_then(|t| TrainId::new(t).ok())
        .ok_or_else(|| WireError::Subject(subject.to_owned()))
}

pub fn train_of_want(subject: &str) -> Result<TrainId, WireError> {
    train_of(subject, WANT)
}
pub fn train_of_command(subject: &str) -> Result<TrainId, WireError> {
    train_of(subject, COMMAND)
}
pub fn train_of_keyframe(subject: &str) -> Result<TrainId, WireError> {
    train_of(subject, KEYFRAME)
}

/// A train as presence announces it: its hello without the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announced {
    pub train_id: TrainId,
    pub cameras: Vec<CameraInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audio: Vec<AudioInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    /// The owner's claim on the train: the revision of its entry in the `railcast_trains`
    /// bucket. Of two nodes announcing one train, the higher epoch owns it.
    pub epoch: u64,
    /// Who holds the train's control lease (held on the owner only), and the reason of the
    /// lease's last change there; shown to the mirrors' sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlHolder>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub control_reason: String,
}

/// A value of the `railcast_trains` bucket: the node that claimed the train last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerClaim {
    pub node: String,
}

impl Announced {
    /// The same connection of the train as `other` (its hello and claim), whatever its lease.
    pub fn same_connection(&self, other: &Announced) -> bool {
        self.hello() == other.hello() && self.epoch == other.epoch
    }

    /// The hello a mirror connects with (no token: the owner checked it).
    pub fn hello(&self) -> Hello {
        Hello {
            train_id: self.train_id.clone(),
            cameras: self.cameras.clone(),
            audio: self.audio.clone(),
            software: self.software.clone(),
            token: None,
        }
    }
}

/// `railcast.presence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub node: String,
    pub trains: Vec<Announced>,
}

impl Presence {
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let p: Self = serde_json::from_slice(body)?;
        if p.node.is_empty() {
            return Err(WireError::Invalid("presence without a node id".into()));
        }
        Ok(p)
    }
}

/// The owner's answer on `railcast.command.<train>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandReply {
    /// The train acked (`ok` false: it refused).
    Ack { ok: bool, message: String, rtt_us: u64 },
    /// No ack: a `hub::CommandError` code (`train_offline`, `command_timeout`, …) or `bad_request`.
    Error { error: String, message: String },
}

pub fn parse_action(body: &[u8]) -> Result<Action, WireError> {
    let action: Action = serde_json::from_slice(body)?;
    action.validate().map_err(WireError::Invalid)?;
    Ok(action)
}

pub fn parse_keyframe(body: &[u8]) -> Result<KeyframeRequest, WireError> {
    Ok(serde_json::from_slice(body)?)
}

pub fn to_json(v: &impl Serialize) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(v).expect("plain data serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_train_ids_with_dots() {
        let t = TrainId::new("line.7_a-1").expect("id");
        assert_eq!(train_of_want(&want(&t)).expect("want"), t);
        assert_eq!(train_of_command(&command(&t)).expect("command"), t);
        assert_eq!(train_of_keyframe(&keyframe(&t)).expect("keyframe"), t);
        assert!(train_of_want("railcast.want.").is_err());
        assert!(train_of_want("railcast.media.x").is_err());
        assert!(train_of_command("railcast.command.a b").is_err());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(Presence::parse(b"").is_err());
        assert!(Presence::parse(b"{\"node\":\"\",\"trains\":[]}").is_err());
        assert!(Presence::parse(b"{\"node\":\"a\",\"trains\":[{\"train_id\":\"bad id\",\"cameras\":[],\"epoch\":1}]}")
            .is_err());
        assert!(
            Presence::parse(b"{\"node\":\"a\",\"trains\":[{\"train_id\":\"t\",\"cameras\":[]}]}").is_err(),
            "no epoch"
        );
        let p = Presence::parse(b"{\"node\":\"a\",\"trains\":[{\"train_id\":\"t\",\"cameras\":[],\"epoch\":7}]}")
            .expect("ok");
        assert_eq!(p.trains[0].epoch, 7);
        assert_eq!(p.trains[0].hello().token, None);
        assert!(parse_action(b"{\"type\":\"set_speed\",\"kmh\":900}").is_err(), "validated");
        assert!(parse_action(b"{\"type\":\"horn\"}").is_ok());
        assert!(parse_keyframe(b"{\"camera\":\"x\"}").is_err());
        assert!(parse_keyframe(b"nope").is_err());
        let replies = [
            CommandReply::Ack { ok: true, message: "m".into(), rtt_us: 5 },
            CommandReply::Error { error: "train_offline".into(), message: "x".into() },
        ];
        for r in replies {
            let back: CommandReply = serde_json::from_slice(&to_json(&r)).expect("parse");
            assert_eq!(back, r);
        }
    }
}
