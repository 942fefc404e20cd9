//! JSON shapes of the HTTP API.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::rfc3339;
use crate::hub::StreamSnapshot;
use crate::remote::RemoteControl;
use crate::sessions::ClientSession;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 0, "codec": "h264", "width": 640, "height": 480, "fps": 30, "measured_fps": 30.0, "bitrate_bps": 1010000.0, "frames": 900, "bytes": 3800000}))]
pub struct Camera {
    pub id: u16,
    #[schema(example = "h264")]
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate announced by the train.
    pub fps: u32,
    /// Frames per second received over the last second.
    pub measured_fps: f64,
    /// Bits per second received over the last second (packet bytes, headers included).
    pub bitrate_bps: f64,
    pub frames: u64,
    pub bytes: u64,
}

/// A train known to the server (online now, or seen since start-up).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "train-1", "online": true, "cameras": [{"id": 0, "codec": "h264", "width": 640, "height": 480, "fps": 30, "measured_fps": 30.0, "bitrate_bps": 1010000.0, "frames": 900, "bytes": 3800000}], "software": "railcast-train-sim/0.1.0", "connected_since": "2026-11-22T12:00:00.000Z", "last_seen": null, "offline_reason": null, "bitrate_bps": 1010000.0, "fps": 30.0, "packets_in": 3300, "bytes_in": 3800000, "frames_in": 900, "rejected_packets": {}, "subscribers": 2, "connections": 1, "ingest": "quic"}))]
pub struct Train {
    pub id: String,
    pub online: bool,
    pub cameras: Vec<Camera>,
    pub software: Option<String>,
    /// When the current (or last) connection started.
    pub connected_since: Option<String>,
    /// When the train last went offline.
    pub last_seen: Option<String>,
    pub offline_reason: Option<String>,
    /// Sum over cameras, bits per second over the last second.
    pub bitrate_bps: f64,
    /// Highest camera frame rate over the last second.
    pub fps: f64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub frames_in: u64,
    /// Packets refused, by reason (`truncated`, `bad_magic`, `unknown_camera`, …).
    pub rejected_packets: BTreeMap<String, u64>,
    /// Live subscriptions to this train (all transports).
    pub subscribers: usize,
    /// Connections since start-up.
    pub connections: u64,
    /// How the train's current (or last) connection came in: `quic` (the railcast wire format) or
    /// `whip` (WebRTC, docs/whip.md); null before its first connection.
    #[serde(default)]
    pub ingest: Option<String>,
    /// The session that controls the train (its control lease); null when nobody does. In a
    /// cluster the lease is held on the train's node (`owner_node`), and this is its holder there.
    pub control: Option<ControlView>,
    /// How the train's own sources are doing, as its last `status` frame said (the train agent
    /// sends one; empty for a train that sends none).
    #[serde(default)]
    pub sources: Vec<SourceView>,
    /// In a cluster (docs/cluster.md): the node the train is connected to, while it is online
    /// (this node's id, or another's for a train mirrored here); null on a single node.
    #[serde(default)]
    pub owner_node: Option<String>,
}

/// A source (camera or audio) as the train reports it (wire format §3, `status`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceView {
    pub id: u16,
    /// `streaming`, `waiting`, `reconnecting`, `stalled` or `ended`.
    pub state: String,
    /// Why, in the train's words.
    pub detail: Option<String>,
    /// As the train measured them.
    pub fps: f32,
    pub bitrate_bps: f64,
    /// Seconds since the train said so.
    pub age_s: f64,
}

/// Who controls a train.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ControlView {
    /// The principal's name and role.
    pub name: String,
    pub role: String,
    /// The client session (`GET /api/sessions`) and its transport.
    pub session: u64,
    pub transport: String,
    pub console_id: Option<String>,
    /// Since when (RFC 3339), and the same in µs since the UNIX epoch (as `control_changed`
    /// has it).
    pub since: String,
    pub since_us: u64,
    /// In a cluster, the node of the holder's session (whose session number `session` is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<StreamSnapshot> for Train {
    fn from(s: StreamSnapshot) -> Self {
        Self {
            id: s.train_id.to_string(),
            online: s.online,
            cameras: s
                .cameras
                .into_iter()
                .map(|c| Camera {
                    id: c.info.id.0,
                    codec: c.info.codec,
                    width: c.info.width,
                    height: c.info.height,
                    fps: c.info.fps,
                    measured_fps: round2(c.fps),
                    bitrate_bps: c.bitrate_bps.round(),
                    frames: c.frames,
                    bytes: c.bytes,
                })
                .collect(),
            software: s.software,
            connected_since: s.connected_since.map(rfc3339),
            last_seen: s.last_seen.map(rfc3339),
            offline_reason: s.offline_reason,
            bitrate_bps: s.bitrate_bps.round(),
            fps: round2(s.fps),
            packets_in: s.packets_in,
            bytes_in: s.bytes_in,
            frames_in: s.frames_in,
            rejected_packets: s.rejected,
            subscribers: s.subscribers,
            connections: s.connections,
            ingest: s.ingest.map(String::from),
            control: s.control.map(|h| ControlView {
                name: h.name,
                role: h.role,
                session: h.session,
                transport: h.transport,
                console_id: h.console_id,
                since: rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_micros(h.since_us)),
                since_us: h.since_us,
                node: h.node,
            }),
            sources: s
                .sources
                .into_iter()
                .map(|(src, age)| SourceView {
                    id: src.id.0,
                    state: src.state,
                    detail: src.detail,
                    fps: src.fps,
                    bitrate_bps: src.bitrate_bps,
                    age_s: round2(age.as_secs_f64()),
                })
                .collect(),
            owner_node: None,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A live transport session of a remote control.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 7, "remote_control_id": "rc-00c0ffee00c0ffee", "client": "alice", "role": "operator", "transport": "websocket", "peer": "127.0.0.1:50412", "connected_at": "2026-11-22T12:00:01.000Z", "packets_queued": 4200, "packets_sent": 4200, "bytes_sent": 4800000, "packets_dropped": 0, "frames_dropped": 0, "events_sent": 12, "commands": 1}))]
#[schema(as = Session)]
pub struct SessionView {
    pub id: u64,
    pub remote_control_id: String,
    /// The client whose token opened it.
    pub client: String,
    pub role: crate::auth::Role,
    #[schema(example = "websocket")]
    pub transport: String,
    pub peer: String,
    pub connected_at: String,
    /// Packets the hub queued for this session.
    pub packets_queued: u64,
    /// Packets handed to the transport.
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Packets and frames dropped because the session could not keep up.
    pub packets_dropped: u64,
    pub frames_dropped: u64,
    pub events_sent: u64,
    pub commands: u64,
}

impl From<&ClientSession> for SessionView {
    fn from(s: &ClientSession) -> Self {
        Self {
            id: s.id,
            remote_control_id: s.remote_control_id.clone(),
            client: s.principal.name.clone(),
            role: s.principal.role,
            transport: s.transport.into(),
            peer: s.peer.clone(),
            connected_at: rfc3339(s.connected_at),
            packets_queued: s.hub.packets_queued.load(Ordering::Relaxed),
            packets_sent: s.packets_sent.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            packets_dropped: s.hub.packets_dropped.load(Ordering::Relaxed),
            frames_dropped: s.hub.frames_dropped.load(Ordering::Relaxed),
            events_sent: s.events_sent.load(Ordering::Relaxed),
            commands: s.commands.load(Ordering::Relaxed),
        }
    }
}

/// An operator's console and the train it watches and drives.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "rc-00c0ffee00c0ffee", "name": "desk 1", "owner": "alice", "train_id": "train-1", "created_at": "2026-11-22T12:00:00.000Z", "sessions": []}))]
pub struct RemoteControlView {
    pub id: String,
    pub name: String,
    /// The only non-admin client that may use it; null: any authenticated client.
    pub owner: Option<String>,
    pub train_id: Option<String>,
    pub created_at: String,
    pub sessions: Vec<SessionView>,
}

impl RemoteControlView {
    pub fn new(rc: &RemoteControl, sessions: &[std::sync::Arc<ClientSession>]) -> Self {
        Self {
            id: rc.id.clone(),
            name: rc.name.clone(),
            owner: rc.owner.clone(),
            train_id: rc.train().map(|t| t.to_string()),
            created_at: rfc3339(rc.created_at),
            sessions: sessions.iter().map(|s| SessionView::from(&**s)).collect(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "desk 1", "owner": "alice"}))]
#[serde(deny_unknown_fields)]
pub struct CreateRemoteControl {
    /// Display name; defaults to the generated id. At most 100 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// Name of the only non-admin client (a `name` in the credentials) allowed to open sessions
    /// for it. Absent: any authenticated client may (viewers watch, operators also command).
    #[serde(default)]
    pub owner: Option<String>,
}

/// Revoke a credential (a client's or a train's token): give the token or its SHA-256, not both.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "note": "laptop lost"}))]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The token itself (it is not kept: only its SHA-256).
    #[serde(default)]
    pub token: Option<String>,
    /// The token's SHA-256, 64 hex digits (as a credentials file may list it).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Why, for the record. At most 100 characters.
    #[serde(default)]
    pub note: Option<String>,
}

/// A revoked credential.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "revoked_at": "2026-12-02T10:00:00.000Z", "by": "demo-admin", "note": "laptop lost"}))]
pub struct RevocationView {
    /// SHA-256 of the token, lower-case hex.
    pub sha256: String,
    /// When it was revoked (RFC 3339).
    pub revoked_at: String,
    /// The admin who revoked it.
    pub by: String,
    pub note: Option<String>,
}

impl From<crate::auth::Revocation> for RevocationView {
    fn from(r: crate::auth::Revocation) -> Self {
        Self {
            sha256: r.sha256,
            revoked_at: rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.revoked_at_ms)),
            by: r.by,
            note: r.note,
        }
    }
}

/// The caller, as its token names it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "alice", "role": "operator"}))]
pub struct Me {
    pub name: String,
    pub role: crate::auth::Role,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"train_id": "train-1"}))]
pub struct SetTrain {
    pub train_id: String,
}

/// How a train finds and pins the QUIC endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"alpn": "railcast/1", "quic_port": 4433, "sha256": "F4:CA:C3:02:D3:CE:68:58:0C:78:CE:DB:CD:E9:52:59:55:55:A3:AC:BF:FB:9D:26:0C:8A:AC:05:AE:13:AB:DE", "pem": "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n", "self_signed": true}))]
pub struct QuicCertificate {
    #[schema(example = "railcast/1")]
    pub alpn: String,
    /// UDP port of the QUIC endpoint (same host as this API).
    pub quic_port: u16,
    /// SHA-256 of the certificate (DER), colon-separated upper-case hex.
    pub sha256: String,
    pub pem: String,
    /// Generated at start-up (no certificate configured).
    pub self_signed: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}
