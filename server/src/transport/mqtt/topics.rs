//! The MQTT topic names (docs/wire-format.md §4, "MQTT"): built and parsed here only.
//!
//! Per session `SID` of remote control `RC`:
//! - `railcast/v1/rc/RC/SID/video`: server → client, QoS 0, wire packets (§2.6 packing);
//! - `railcast/v1/rc/RC/SID/events`: server → client, QoS 1, JSON events;
//! - `railcast/v1/rc/RC/SID/command`: client → server, QoS 1, JSON client messages (empty: bye).
//!
//! WebRTC signaling over MQTT (the seed device's topic names, `ID` = the session id):
//! `mobile/ID/webrtc/{offer,candidate}` client → server, `device/ID/webrtc/{answer,candidate}`
//! server → client.

/// Every railcast transport topic starts with this.
pub const PREFIX: &str = "railcast/v1/rc/";
/// What the server subscribes to for the client messages of every session.
pub const COMMANDS: &str = "railcast/v1/rc/+/+/command";

/// The three topics of one session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SessionTopics {
    /// Server → client, QoS 0: one or more whole wire packets back to back (wire format §2.6).
    #[schema(example = "railcast/v1/rc/rc-0123456789abcdef/mq-0123456789abcdef/video")]
    pub video: String,
    /// Server → client, QoS 1: the JSON events of wire format §4.
    #[schema(example = "railcast/v1/rc/rc-0123456789abcdef/mq-0123456789abcdef/events")]
    pub events: String,
    /// Client → server, QoS 1: JSON client messages; an empty payload ends the session.
    #[schema(example = "railcast/v1/rc/rc-0123456789abcdef/mq-0123456789abcdef/command")]
    pub command: String,
}

impl SessionTopics {
    pub fn new(rc: &str, sid: &str) -> Self {
        Self {
            video: format!("{PREFIX}{rc}/{sid}/video"),
            events: format!("{PREFIX}{rc}/{sid}/events"),
            command: format!("{PREFIX}{rc}/{sid}/command"),
        }
    }
}

/// The WebRTC signaling topics of one session (the seed's names).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SignalingTopics {
    /// Client → server, QoS 1: `{"type":"offer","sdp":…}`.
    #[schema(example = "mobile/mq-0123456789abcdef/webrtc/offer")]
    pub offer: String,
    /// Client → server, QoS 0: `{"candidate","sdpMid","sdpMLineIndex"}`.
    #[schema(example = "mobile/mq-0123456789abcdef/webrtc/candidate")]
    pub candidate: String,
    /// Server → client, QoS 1: `{"type":"answer","sdp":…}`, or `{"type":"error","code","message"}`.
    #[schema(example = "device/mq-0123456789abcdef/webrtc/answer")]
    pub answer: String,
    /// Server → client, QoS 0: the server's candidates; `candidate: ""` ends them.
    #[schema(example = "device/mq-0123456789abcdef/webrtc/candidate")]
    pub server_candidate: String,
}

impl SignalingTopics {
    pub fn new(sid: &str) -> Self {
        Self {
            offer: format!("mobile/{sid}/webrtc/offer"),
            candidate: format!("mobile/{sid}/webrtc/candidate"),
            answer: format!("device/{sid}/webrtc/answer"),
            server_candidate: format!("device/{sid}/webrtc/candidate"),
        }
    }
}

/// The `(remote control, session)` of a command topic; `None` for any other topic.
pub fn parse_command(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(PREFIX)?.strip_suffix("/command")?;
    let (rc, sid) = rest.split_once('/')?;
    (!rc.is_empty() && !sid.is_empty() && !sid.contains('/')).then_some((rc, sid))
}

/// What arrived on a signaling topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Offer,
    Candidate,
}

/// The `(session, kind)` of a client signaling topic; `None` for any other topic.
pub fn parse_signal(topic: &str) -> Option<(&str, Signal)> {
    let rest = topic.strip_prefix("mobile/")?;
    let (sid, what) = rest.split_once('/')?;
    let kind = match what {
        "webrtc/offer" => Signal::Offer,
        "webrtc/candidate" => Signal::Candidate,
        _ => return None,
    };
    (!sid.is_empty()).then_some((sid, kind))
}

/// Whether `id` may stand as one topic level: not empty, no `/`, no wildcard, no NUL, and not
/// starting with `$` (reserved for the broker).
pub fn valid_level(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('$') && !id.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let t = SessionTopics::new("rc-1", "mq-2");
        assert_eq!(t.video, "railcast/v1/rc/rc-1/mq-2/video");
        assert_eq!(parse_command(&t.command), Some(("rc-1", "mq-2")));
        assert_eq!(parse_command(&t.events), None);
        assert_eq!(parse_command("railcast/v1/rc/rc-1/command"), None);
        assert_eq!(parse_command("railcast/v1/rc/rc-1/a/b/command"), None);
        assert_eq!(parse_command("railcast/v1/rc//x/command"), None);
        let s = SignalingTopics::new("mq-2");
        assert_eq!(parse_signal(&s.offer), Some(("mq-2", Signal::Offer)));
        assert_eq!(parse_signal(&s.candidate), Some(("mq-2", Signal::Candidate)));
        assert_eq!(parse_signal(&s.answer), None);
        assert_eq!(parse_signal("mobile/x/webrtc/answer"), None);
        assert_eq!(parse_signal("mobile//webrtc/offer"), None);
    }

    #[test]
    fn levels() {
        assert!(valid_level("rc-0123456789abcdef"));
        for bad in ["", "a/b", "a+", "#", "$SYS", "a\0"] {
            assert!(!valid_level(bad), "{bad:?}");
        }
    }
}
