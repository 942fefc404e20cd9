//! WebRTC signaling over MQTT topics (the seed device's names), over
//! [`crate::transport::webrtc::Server`] and the MQTT transport's broker connection: the client
//! offers, the server answers with the same `video` and `command` data channels and the same
//! session as the REST flow.
//!
//! `ID` is an MQTT session id (`POST /api/mqtt/sessions`): its grant says which remote control,
//! whose token and which address (for limits), and its credentials may publish only on
//! `mobile/ID/webrtc/{offer,candidate}` and read only `device/ID/webrtc/{answer,candidate}`, so
//! an answer never reaches another viewer.
//!
//! - `mobile/ID/webrtc/offer` (QoS 1) `{type: "offer", sdp}` → `device/ID/webrtc/answer` (QoS 1)
//!   `{type: "answer", sdp, session_id}` (host candidates included; `session_id` the WebRTC
//!   session's id in the REST API), or `{type: "error", code, message}`.
//! - `mobile/ID/webrtc/candidate` (QoS 0) `{candidate, sdpMid, sdpMLineIndex}`; `""` or null ends
//!   them. Candidates may overtake the offer (QoS 0 vs 1): up to [`MAX_EARLY`] per ID with a grant
//!   are kept until the answer exists.
//! - `device/ID/webrtc/candidate` (QoS 0): the server's later candidates, `candidate: ""` last.
//!
//! Retained messages (replayed at subscription: stale by definition), messages for an ID
//! without a grant, and messages over [`MAX_MESSAGE`] are refused before parsing; every refusal
//! is logged and counted in `railcast_mqtt_signaling_refused_total{reason}`, with an error reply
//! where the ID's client can read one. One offer per ID: no renegotiation (a failed offer may be
//! followed by another until `mqtt_claim_timeout`). The grant is released (its credentials
//! deleted) when the peer ends.
//!
//! One owner task routes every message ([`spawn`]); each answered ID has its own task that owns
//! its peer's signaling and logs every connection and ICE state change. docs/signaling.md.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec};
use rumqttc::QoS;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::core::Core;
use crate::transport::mqtt::topics::{self, Signal};
use crate::transport::mqtt::{self, Broker, Grant, Inbound};
use crate::transport::webrtc::{self, negotiate, ClientCandidate, NegotiationError, PeerError};

/// The topics the server reads (its broker role allows exactly these).
pub const FILTER: &str = "mobile/+/webrtc/+";
/// Largest signaling message, bytes; larger ones are refused unread (`too_large`).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Client candidates kept per ID before its answer exists.
pub const MAX_EARLY: usize = 64;
/// Messages queued for one ID's task; beyond it they are refused (`busy`).
const INBOX: usize = MAX_EARLY + 16;

/// Metrics of this front-end.
pub struct SignalingMetrics {
    /// `railcast_mqtt_signaling_refused_total{reason}`: `retained`, `unknown_session`,
    /// `too_large`, `bad_json`, `bad_offer`, `bad_sdp`, `bad_candidate`, `already_offered`,
    /// `early_full`, `busy`, `refused` (limits, access, the remote control gone).
    pub refused: IntCounterVec,
    /// `railcast_mqtt_signaling_answers_total`: offers answered.
    pub answers: IntCounter,
}

impl std::fmt::Debug for SignalingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingMetrics").finish_non_exhaustive()
    }
}

pub static METRICS: LazyLock<SignalingMetrics> = LazyLock::new(|| {
    let r = crate::metrics::METRICS.registry();
    let answers = IntCounter::new("railcast_mqtt_signaling_answers_total", "Offers over MQTT signaling answered.")
        .expect("valid metric");
    r.register(Box::new(answers.clone())).expect("unique metric");
    SignalingMetrics {
        refused: crate::metrics::counter(
            r,
            "railcast_mqtt_signaling_refused_total",
            "MQTT signaling messages refused, by reason.",
            &["reason"],
        ),
        answers,
    }
});

/// A refusal: its metric label and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    code: &'static str,
    message: String,
}

fn refusal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// The SDP of an offer message: `{"type": "offer", "sdp": "…"}`.
fn parse_offer(payload: &[u8]) -> Result<String, Refusal> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| refusal("bad_json", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(refusal("bad_json", "expected a JSON object"));
    }
    match (v["type"].as_str(), v["sdp"].as_str()) {
        (Some("offer"), Some(sdp)) if !sdp.trim().is_empty() => Ok(sdp.to_owned()),
        (Some("offer"), _) => Err(refusal("bad_offer", "an offer needs a non-empty string \"sdp\"")),
        (t, _) => Err(refusal("bad_offer", format!("expected \"type\": \"offer\", got {t:?}"))),
    }
}

/// A candidate message: `{candidate, sdpMid, sdpMLineIndex[, usernameFragment]}`; `candidate`
/// `""` or null ends them.
fn parse_candidate(payload: &[u8]) -> Result<ClientCandidate, Refusal> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| refusal("bad_json", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(refusal("bad_json", "expected a JSON object"));
    }
    let text = |k: &str| -> Result<Option<String>, Refusal> {
        match &v[k] {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            other => Err(refusal("bad_candidate", format!("\"{k}\" must be a string, got {other}"))),
        }
    };
    let candidate = text("candidate")?.unwrap_or_default();
    let sdp_mline_index = match &v["sdpMLineIndex"] {
        Value::Null => None,
        n => Some(
            n.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| refusal("bad_candidate", format!("\"sdpMLineIndex\" must be 0..=65535, got {n}")))?,
        ),
    };
    if !candidate.is_empty() {
        negotiate::check_candidate(&candidate).map_err(|e| refusal("bad_candidate", e.to_string()))?;
    }
    Ok(ClientCandidate {
        candidate,
        sdp_mid: text("sdpMid")?,
        sdp_mline_index,
        username_fragment: text("usernameFragment")?,
    })
}

/// The code a failed offer is refused with.
fn peer_refusal(e: &PeerError) -> Refusal {
    let code = match e {
        PeerError::Negotiation(NegotiationError::BadSdp(_) | NegotiationError::NoMedia(_)) => "bad_sdp",
        PeerError::Negotiation(NegotiationError::BadCandidate(_)) => "bad_candidate",
        _ => "refused",
    };
    refusal(code, e.to_string())
}

/// The `a=mid:` of an SDP's first section: the server's end-of-candidates names it.
fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned))
}

/// What the owner task hands an ID's task.
#[derive(Debug)]
enum ToSession {
    Offer(String),
    Candidate(ClientCandidate),
}

/// What every task shares.
#[derive(Debug)]
struct Front {
    core: Core,
    mqtt: Arc<mqtt::Server>,
    webrtc: Arc<webrtc::Server>,
    broker: Arc<Broker>,
}

/// Register the signaling route with the MQTT transport's broker connection and start the owner
/// task. Call before the transport's `serve` (routes are subscribed at each connection). Nothing
/// when the MQTT transport is off.
pub fn spawn(core: &Core, mqtt: &Arc<mqtt::Server>, webrtc: &Arc<webrtc::Server>) {
    let Some(broker) = mqtt.broker().cloned() else { return };
    LazyLock::force(&METRICS);
    let inbound = broker.route(FILTER, QoS::AtLeastOnce);
    let front = Arc::new(Front { core: core.clone(), mqtt: Arc::clone(mqtt), webrtc: Arc::clone(webrtc), broker });
    tokio::spawn(front.run(inbound));
}

impl Front {
    /// The owner task: routes every signaling message until shutdown.
    async fn run(self: Arc<Self>, mut inbound: mpsc::Receiver<Inbound>) {
        let mut sessions: HashMap<String, mpsc::Sender<ToSession>> = HashMap::new();
        let mut early: HashMap<String, Vec<ClientCandidate>> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut stop = self.core.shutdown.clone();
        loop {
            tokio::select! {
                msg = inbound.recv() => match msg {
                    Some(msg) => self.on_message(msg, &mut sessions, &mut early),
                    None => break,
                },
                _ = tick.tick() => {
                    sessions.retain(|_, tx| !tx.is_closed());
                    early.retain(|id, _| self.mqtt.grant_of(id).is_some());
                }
                _ = crate::stopped(&mut stop) => break,
            }
        }
    }

    fn refuse(&self, id: &str, topic: &str, r: &Refusal, reply: bool) {
        METRICS.refused.with_label_values(&[r.code]).inc();
        tracing::info!(mqtt_session = id, topic, code = r.code, "mqtt signaling message refused: {}", r.message);
        if reply {
            let body = json!({"type": "error", "code": r.code, "message": r.message});
            let topic = topics::SignalingTopics::new(id).answer;
            // Never waits: the owner task serves every ID.
            if self.broker.try_publish(&topic, QoS::AtLeastOnce, body.to_string().into_bytes()).is_err() {
                tracing::debug!(mqtt_session = id, "error reply not sent: the broker queue is full");
            }
        }
    }

    fn on_message(
        self: &Arc<Self>,
        msg: Inbound,
        sessions: &mut HashMap<String, mpsc::Sender<ToSession>>,
        early: &mut HashMap<String, Vec<ClientCandidate>>,
    ) {
        let Some((id, kind)) = topics::parse_signal(&msg.topic) else { return };
        if msg.retain {
            // Replayed at the server's subscription: an old offer or candidate, never live.
            self.refuse(id, &msg.topic, &refusal("retained", "a retained message (stale)"), false);
            return;
        }
        let live = sessions.get(id).filter(|tx| !tx.is_closed()).cloned();
        if live.is_none() && self.mqtt.grant_of(id).is_none() {
            self.refuse(id, &msg.topic, &refusal("unknown_session", "no MQTT session with this id"), false);
            return;
        }
        if msg.payload.len() > MAX_MESSAGE {
            let r = refusal("too_large", format!("{} bytes; at most {MAX_MESSAGE}", msg.payload.len()));
            self.refuse(id, &msg.topic, &r, true);
            return;
        }
        let parsed = match kind {
            Signal::Offer => parse_offer(&msg.payload).map(ToSession::Offer),
            Signal::Candidate => parse_candidate(&msg.payload).map(ToSession::Candidate),
        };
        let item = match parsed {
            Ok(item) => item,
            Err(r) => return self.refuse(id, &msg.topic, &r, true),
        };
        if let Some(tx) = live {
            if tx.try_send(item).is_err() {
                self.refuse(id, &msg.topic, &refusal("busy", "too many signaling messages at once"), true);
            }
            return;
        }
        match item {
            ToSession::Candidate(c) => {
                let buffered = early.entry(id.to_owned()).or_default();
                if buffered.len() >= MAX_EARLY {
                    let r = refusal("early_full", format!("more than {MAX_EARLY} candidates before the offer"));
                    return self.refuse(id, &msg.topic, &r, true);
                }
                buffered.push(c);
            }
            ToSession::Offer(sdp) => {
                // Taken by the MQTT transport already, or its token revoked.
                let Some(grant) = self.mqtt.claim(&self.core, id) else {
                    let r = refusal("unknown_session", "this MQTT session is in use or no longer valid");
                    return self.refuse(id, &msg.topic, &r, false);
                };
                let (tx, rx) = mpsc::channel(INBOX);
                for c in early.remove(id).unwrap_or_default() {
                    let _ = tx.try_send(ToSession::Candidate(c));
                }
                sessions.insert(id.to_owned(), tx);
                tokio::spawn(Arc::clone(self).session(grant, sdp, rx));
            }
        }
    }

    /// Publish on `topic`, waiting for room (answers must not be lost).
    async fn publish(&self, grant: &Grant, topic: &str, qos: QoS, body: Value) {
        if let Err(e) = self.broker.publish(topic, qos, body.to_string().into_bytes()).await {
            tracing::warn!(mqtt_session = %grant.id, topic, "mqtt signaling message not sent: {e}");
        }
    }

    async fn reply_error(&self, grant: &Grant, r: &Refusal) {
        METRICS.refused.with_label_values(&[r.code]).inc();
        tracing::info!(mqtt_session = %grant.id, code = r.code, "mqtt signaling refused: {}", r.message);
        let body = json!({"type": "error", "code": r.code, "message": r.message});
        self.publish(grant, &grant.signaling.answer, QoS::AtLeastOnce, body).await;
    }

    async fn add_candidate(&self, grant: &Grant, peer: &str, c: ClientCandidate) {
        if let Err(e) = self.webrtc.add_candidate(peer, c, &grant.principal).await {
            self.reply_error(grant, &peer_refusal(&e)).await;
        }
    }

    /// One ID from its first offer to its peer's end: answer, candidates both ways, states; then
    /// its grant is released.
    async fn session(self: Arc<Self>, grant: Arc<Grant>, offer: String, mut inbox: mpsc::Receiver<ToSession>) {
        let g = &*grant;
        let started = Instant::now();
        let mut stop = self.core.shutdown.clone();
        let mut offer = Some(offer);
        let mut early = Vec::new();
        let deadline = tokio::time::Instant::now() + self.mqtt.settings().claim_timeout;
        // Until an offer is answered: a failed one may be followed by a good one in time.
        let answer = loop {
            if let Some(sdp) = offer.take() {
                let t = Instant::now();
                // The peer takes its own place in the per-address limit.
                g.hand_over_slot();
                match self.webrtc.answer(&self.core, &g.rc.id, &g.principal, g.address, sdp).await {
                    Ok(a) => {
                        tracing::info!(mqtt_session = %g.id, session = %a.id, remote_control = %g.rc.id,
                            answer_ms = t.elapsed().as_secs_f64() * 1000.0, "mqtt signaling: offer answered");
                        break Some(a);
                    }
                    Err(e) => self.reply_error(g, &peer_refusal(&e)).await,
                }
            }
            tokio::select! {
                m = inbox.recv() => match m {
                    Some(ToSession::Offer(sdp)) => offer = Some(sdp),
                    Some(ToSession::Candidate(c)) if early.len() < MAX_EARLY => early.push(c),
                    Some(ToSession::Candidate(_)) => {
                        let r = refusal("early_full", format!("more than {MAX_EARLY} candidates before the offer"));
                        self.reply_error(g, &r).await;
                    }
                    None => break None,
                },
                _ = tokio::time::sleep_until(deadline) => break None,
                _ = crate::stopped(&mut stop) => break None,
            }
        };
        let Some(answer) = answer else {
            tracing::info!(mqtt_session = %g.id, "mqtt signaling: no offer answered; credentials deleted");
            self.mqtt.release(g).await;
            return;
        };
        METRICS.answers.inc();
        let peer = answer.id.clone();
        let mid = first_mid(&answer.sdp);
        // `session_id`: the WebRTC session, as `GET`/`DELETE /api/webrtc/sessions/{id}` know it
        // (a field the seed's clients ignore).
        let body = json!({"type": "answer", "sdp": answer.sdp, "session_id": peer});
        self.publish(g, &g.signaling.answer, QoS::AtLeastOnce, body).await;
        for c in early {
            self.add_candidate(g, &peer, c).await;
        }
        let trickle = tokio::spawn(Arc::clone(&self).trickle(Arc::clone(&grant), peer.clone(), mid));
        let mut next = 0;
        let mut inbox_open = true;
        loop {
            tokio::select! {
                m = inbox.recv(), if inbox_open => match m {
                    Some(ToSession::Candidate(c)) => self.add_candidate(g, &peer, c).await,
                    Some(ToSession::Offer(_)) => {
                        let r = refusal("already_offered", "this session has an answer already; renegotiation is not supported (create a new MQTT session)");
                        self.reply_error(g, &r).await;
                    }
                    None => inbox_open = false,
                },
                changes = self.webrtc.state_changes(&peer, next, Duration::from_secs(1), &g.principal) => match changes {
                    Ok(c) => {
                        for s in &c.changes {
                            tracing::info!(mqtt_session = %g.id, session = %peer, at_ms = s.at.duration_since(started).as_secs_f64() * 1000.0,
                                "webrtc {} state: {}", s.what, s.state);
                        }
                        next = c.next;
                        if c.ended {
                            break;
                        }
                        // `DELETE /api/mqtt/sessions/{id}` took the grant away: end the peer too.
                        if self.mqtt.grant_of(&g.id).is_none() {
                            tracing::info!(mqtt_session = %g.id, session = %peer, "mqtt session deleted: ending its WebRTC peer");
                            let _ = self.webrtc.close(&peer, &g.principal).await;
                            break;
                        }
                    }
                    Err(_) => break,
                },
                // The peer says its goodbye by itself; the credentials go now, before the broker
                // connection closes.
                _ = crate::stopped(&mut stop) => break,
            }
        }
        trickle.abort();
        self.mqtt.release(g).await;
        tracing::info!(mqtt_session = %g.id, session = %peer, "mqtt signaling session ended; credentials deleted");
    }

    /// The server's candidates that the answer did not carry, then `candidate: ""`.
    async fn trickle(self: Arc<Self>, grant: Arc<Grant>, peer: String, mid: Option<String>) {
        let mut after = 0;
        loop {
            let Ok(c) = self.webrtc.server_candidates(&peer, after, Duration::from_secs(10), &grant.principal).await
            else {
                return;
            };
            for c in c.candidates {
                let body = json!({"candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_mline_index});
                self.publish(&grant, &grant.signaling.server_candidate, QoS::AtMostOnce, body).await;
            }
            after = c.next;
            if c.complete {
                let body = json!({"candidate": "", "sdpMid": mid, "sdpMLineIndex": 0});
                self.publish(&grant, &grant.signaling.server_candidate, QoS::AtMostOnce, body).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_checked_before_any_peer() {
        assert_eq!(parse_offer(br#"{"type":"offer","sdp":"v=0"}"#), Ok("v=0".into()));
        let code = |p: &[u8]| parse_offer(p).expect_err("refused").code;
        assert_eq!(code(b"{not json"), "bad_json");
        assert_eq!(code(b"[1]"), "bad_json");
        assert_eq!(code(br#"{"type":"answer","sdp":"v=0"}"#), "bad_offer");
        assert_eq!(code(br#"{"type":"offer"}"#), "bad_offer");
        assert_eq!(code(br#"{"type":"offer","sdp":" "}"#), "bad_offer");
    }

    #[test]
    fn candidates_are_checked_before_they_are_kept() {
        let c = parse_candidate(
            br#"{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50123 typ host","sdpMid":"0","sdpMLineIndex":0}"#,
        )
        .expect("good");
        assert_eq!((c.sdp_mid.as_deref(), c.sdp_mline_index), (Some("0"), Some(0)));
        assert!(parse_candidate(br#"{"candidate":""}"#).expect("end").candidate.is_empty());
        assert!(parse_candidate(br#"{"candidate":null,"sdpMid":"0"}"#).expect("end").candidate.is_empty());
        let code = |p: &[u8]| parse_candidate(p).expect_err("refused").code;
        assert_eq!(code(b"nope"), "bad_json");
        assert_eq!(code(br#"{"candidate":"candidate:1 1 udp 1 example.com 5 typ host"}"#), "bad_candidate");
        assert_eq!(code(br#"{"candidate":7}"#), "bad_candidate");
        assert_eq!(code(br#"{"candidate":"","sdpMLineIndex":-1}"#), "bad_candidate");
    }

    #[test]
    fn the_end_of_candidates_names_the_first_section() {
        assert_eq!(
            first_mid("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"),
            Some("0".into())
        );
        assert_eq!(first_mid("v=0\r\n"), None);
    }
}
