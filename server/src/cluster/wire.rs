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
const CONTROL: &str = "railcast.control.";

/// The owner's side subscribes to these (the train is the rest of the subject).
pub const WANT_ALL: &str = "railcast.want.>";
pub const COMMAND_ALL: &str = "railcast.command.>";
pub const KEYFRAME_ALL: &str = "railcast.keyframe.>";
pub const CONTROL_ALL: &str = "railcast.control.>";

/// A cluster-wide audit query: every node answers with its part (`crate::cluster::ask`).
pub const AUDIT: &str = "railcast.audit";

/// The header of a forwarded command that names the node of the session that sent it: the
/// owner runs it while a session of that node holds the lease (that node checked the session).
pub const FROM_NODE: &str = "Railcast-Node";

/// Headers naming `node` as the sender ([`FROM_NODE`]).
pub fn from_node_headers(node: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(FROM_NODE, node);
    headers
}

/// The node a message's [`FROM_NODE`] header names.
pub fn from_node(headers: Option<&async_nats::HeaderMap>) -> Option<String> {
    headers.and_then(|h| h.get(FROM_NODE)).map(|v| v.as_str().to_owned())
}

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

/// `railcast.control.<train>`: a [`ControlRequest`] from another node's session; a take or a
/// release is answered with a [`ControlReply`], the rest are not.
pub fn control(train: &TrainId) -> String {
    format!("{CONTROL}{train}")
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
pub fn train_of_control(subject: &str) -> Result<TrainId, WireError> {
    train_of(subject, CONTROL)
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

/// A session of `node` asks the owner about the train's control lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    pub node: String,
    #[serde(flatten)]
    pub op: ControlOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlOp {
    /// Take the lease for `holder` (its `session` is the node's); `force`: an admin takes over.
    Take { holder: ControlHolder, force: bool },
    /// Give it back.
    Release { session: u64 },
    /// The holder is alive (sent at most every quarter of the heartbeat timeout).
    Heartbeat { session: u64 },
    /// The holder's session ended (`why` absent: a lease of its console waits for another
    /// link), or must give the lease up now (`why`: its remote control was remapped away).
    Ended {
        session: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
}

/// The owner's answer to a take or a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ControlReply {
    /// Taken (how), for the lease's holder.
    Taken { taken: TakenHow, holder: ControlHolder },
    /// Another session holds it.
    Held { holder: ControlHolder },
    /// Released, or not held by that session (`ok` false).
    Released { ok: bool },
}

/// How a lease was taken (`hub::Taken` without the previous holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakenHow {
    Granted,
    AlreadyHeld,
    Resumed,
    TakenOver,
}

impl ControlRequest {
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let r: Self = serde_json::from_slice(body)?;
        if r.node.is_empty() {
            return Err(WireError::Invalid("control request without a node id".into()));
        }
        if let ControlOp::Take { holder, .. } = &r.op {
            if holder.node.as_deref() != Some(r.node.as_str()) {
                return Err(WireError::Invalid("a holder of another node than the request's".into()));
            }
        }
        Ok(r)
    }
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
        assert!(ControlRequest::parse(b"{\"node\":\"\",\"op\":\"release\",\"session\":1}").is_err());
        assert!(ControlRequest::parse(b"{\"node\":\"b\",\"op\":\"steal\"}").is_err());
        let ended = ControlRequest::parse(b"{\"node\":\"b\",\"op\":\"ended\",\"session\":4}").expect("ok");
        assert_eq!(ended.op, ControlOp::Ended { session: 4, why: None });
        let holder = |node: &str| ControlHolder {
            name: "alice".into(),
            role: "operator".into(),
            session: 4,
            transport: "websocket".into(),
            console_id: None,
            since_us: 1,
            node: Some(node.into()),
        };
        let take = |node: &str| ControlRequest {
            node: "b".into(),
            op: ControlOp::Take { holder: holder(node), force: false },
        };
        assert_eq!(ControlRequest::parse(&to_json(&take("b"))).expect("take"), take("b"));
        assert!(ControlRequest::parse(&to_json(&take("a"))).is_err(), "a holder of another node");
        for r in [
            ControlReply::Taken { taken: TakenHow::Granted, holder: holder("b") },
            ControlReply::Held { holder: holder("a") },
            ControlReply::Released { ok: true },
        ] {
            let back: ControlReply = serde_json::from_slice(&to_json(&r)).expect("parse");
            assert_eq!(back, r);
        }
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
