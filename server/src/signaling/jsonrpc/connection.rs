//! One `/rpc` socket: reads JSON-RPC messages, runs their calls in order, writes replies and
//! the notifications other peers (and the relay's candidate trickle) queue for it. Its end
//! (close, error, shutdown) says `peer_left` to the others and ends its relay sessions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::rpc::{self, Call, Incoming, RpcError};
use super::{deliver, JsonRpc, Peer, METRICS, RELAY};
use crate::auth::{Principal, Role};
use crate::core::Core;
use crate::http::ApiError;
use crate::limits::{AddressGuard, RateLimiter};
use crate::transport::webrtc::{ClientCandidate, PeerError};

/// Relay sessions one socket may hold at once.
const MAX_RELAY_SESSIONS: usize = 16;

/// What one socket holds.
struct Conn {
    front: Arc<JsonRpc>,
    core: Core,
    principal: Principal,
    address: SocketAddr,
    me: Option<Arc<Peer>>,
    outbox: mpsc::Sender<String>,
    /// Relay sessions opened from this socket, oldest first, with their candidate trickles.
    relay_sessions: Vec<(String, tokio::task::AbortHandle)>,
}

pub async fn run(
    front: Arc<JsonRpc>,
    core: Core,
    principal: Principal,
    address: SocketAddr,
    _slot: AddressGuard,
    socket: WebSocket,
) {
    METRICS.connections.inc();
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut out_rx) = mpsc::channel::<String>(super::OUTBOX);
    let mut conn = Conn { front, core: core.clone(), principal, address, me: None, outbox, relay_sessions: Vec::new() };
    let mut budget = RateLimiter::new(super::RATE, super::BURST);
    let mut stop = core.shutdown.clone();
    let close: Option<(u16, &str)> = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let replies = if !budget.try_take(Instant::now()) {
                        rate_limited(text.as_str())
                    } else {
                        conn.on_text(text.as_str()).await
                    };
                    if let Some(reply) = replies {
                        if sink.send(Message::Text(reply.into())).await.is_err() { break None }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = RpcError::new(rpc::INVALID_REQUEST, "invalid request: JSON-RPC messages are text");
                    METRICS.errors.with_label_values(&["invalid_request"]).inc();
                    if sink.send(Message::Text(rpc::error(Value::Null, &e).to_string().into())).await.is_err() { break None }
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Ok(_)) => {}
                // Over the frame limit, or a broken stream.
                Some(Err(e)) => {
                    tracing::debug!(peer = %conn.address, "rpc socket error: {e}");
                    break Some((1009, "message too big or unreadable"));
                }
            },
            Some(text) = out_rx.recv() => {
                if sink.send(Message::Text(text.into())).await.is_err() { break None }
            }
            _ = crate::stopped(&mut stop) => break Some((1001, "server shutting down")),
        }
    };
    if let Some((code, reason)) = close {
        let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
    conn.end().await;
    METRICS.connections.dec();
}

/// The replies to a message over the budget: each request gets -32001, notifications nothing.
fn rate_limited(text: &str) -> Option<String> {
    let e =
        RpcError::coded(rpc::RATE_LIMITED, "rate_limited", "rate limited: at most 20 messages a second, bursts of 40");
    let ids: Vec<Value> = match rpc::parse(text) {
        Incoming::Single(Ok(c)) => c.id.into_iter().collect(),
        Incoming::Batch(calls) => calls.into_iter().filter_map(|c| c.ok().and_then(|c| c.id)).collect(),
        Incoming::Single(Err((id, _))) => vec![id],
        Incoming::Refused(_) => vec![Value::Null],
    };
    METRICS.errors.with_label_values(&["rate_limited"]).inc_by(ids.len().max(1) as u64);
    match ids.len() {
        0 => None,
        1 => Some(rpc::error(ids[0].clone(), &e).to_string()),
        _ => Some(Value::Array(ids.into_iter().map(|id| rpc::error(id, &e)).collect()).to_string()),
    }
}

impl Conn {
    /// The reply to one text message, if it has one.
    async fn on_text(&mut self, text: &str) -> Option<String> {
        if text.len() > super::MAX_MESSAGE {
            let e = RpcError::coded(
                rpc::TOO_LARGE,
                "message_too_large",
                format!("a message is at most {} bytes; this one had {}", super::MAX_MESSAGE, text.len()),
            );
            METRICS.errors.with_label_values(&["message_too_large"]).inc();
            return Some(rpc::error(Value::Null, &e).to_string());
        }
        match rpc::parse(text) {
            Incoming::Refused(e) => {
                METRICS.errors.with_label_values(&[&e.label()]).inc();
                Some(rpc::error(Value::Null, &e).to_string())
            }
            Incoming::Single(c) => self.one(c).await.map(|v| v.to_string()),
            Incoming::Batch(calls) => {
                let mut replies = Vec::new();
                for c in calls {
                    if let Some(r) = self.one(c).await {
                        replies.push(r);
                    }
                }
                (!replies.is_empty()).then(|| Value::Array(replies).to_string())
            }
        }
    }

    /// Run one call; its reply (none for a notification).
    async fn one(&mut self, c: Result<Call, (rpc::Id, RpcError)>) -> Option<Value> {
        let call = match c {
            Ok(c) => c,
            Err((id, e)) => {
                METRICS.errors.with_label_values(&[&e.label()]).inc();
                return Some(rpc::error(id, &e));
            }
        };
        let outcome = match rpc::canonical(&call.method) {
            Some(m) => {
                METRICS.requests.with_label_values(&[m]).inc();
                if call.params.is_object() {
                    self.method(m, &call.params).await
                } else {
                    Err(RpcError::invalid_params("params must be an object (named params)"))
                }
            }
            None => {
                METRICS.requests.with_label_values(&["unknown"]).inc();
                Err(RpcError::new(rpc::METHOD_NOT_FOUND, format!("method not found: {:?}", call.method)))
            }
        };
        if let Err(e) = &outcome {
            METRICS.errors.with_label_values(&[&e.label()]).inc();
            tracing::debug!(method = %call.method, peer = %self.address, "rpc error {}: {}", e.code, e.message);
        }
        let id = call.id?;
        Some(match outcome {
            Ok(v) => rpc::result(id, v),
            Err(e) => rpc::error(id, &e),
        })
    }

    async fn method(&mut self, method: &str, p: &Value) -> Result<Value, RpcError> {
        match method {
            "announce" => self.announce(p),
            "list_peers" => Ok(Value::Array(self.front.peers.list())),
            "offer" => self.offer(p).await,
            "answer" => self.forward("answer", p).await,
            "ice_candidate" => self.ice_candidate(p).await,
            "disconnect" => self.disconnect(p).await,
            _ => Err(RpcError::new(rpc::METHOD_NOT_FOUND, format!("method not found: {method:?}"))),
        }
    }

    fn me(&self) -> Result<&Arc<Peer>, RpcError> {
        self.me.as_ref().ok_or_else(|| RpcError::server("not_announced", "call `announce` first"))
    }

    fn announce(&mut self, p: &Value) -> Result<Value, RpcError> {
        if let Some(me) = &self.me {
            return Err(RpcError::server("already_announced", format!("this socket is peer {} already", me.id)));
        }
        let name =
            rpc::str_param(p, &["name"]).ok_or_else(|| RpcError::invalid_params("`name` (a string) is required"))?;
        if name.is_empty() || name.chars().count() > 64 {
            return Err(RpcError::invalid_params("`name` must be 1–64 characters"));
        }
        let capabilities = match p.get("capabilities") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= 16 && a.iter().all(|c| c.as_str().is_some_and(|s| s.len() <= 64)) => {
                a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect()
            }
            Some(_) => return Err(RpcError::invalid_params("`capabilities` must be at most 16 strings of ≤ 64 bytes")),
        };
        let peer = self.front.peers.add(
            name.to_owned(),
            capabilities,
            self.principal.role,
            self.principal.name.clone(),
            self.outbox.clone(),
        );
        tracing::info!(peer_id = %peer.id, name = %peer.name, principal = %self.principal.name, "rpc peer announced");
        let result = json!({ "peer_id": peer.id, "peers": self.front.peers.list() });
        self.me = Some(peer);
        Ok(result)
    }

    async fn offer(&mut self, p: &Value) -> Result<Value, RpcError> {
        let to = target(p)?;
        if to != RELAY {
            if self.principal.role == Role::Viewer {
                return Err(RpcError::server("forbidden", "a viewer may not offer to another peer"));
            }
            return self.forward("offer", p).await;
        }
        let me = Arc::clone(self.me()?);
        let sdp =
            rpc::str_param(p, &["sdp"]).ok_or_else(|| RpcError::invalid_params("`sdp` (a string) is required"))?;
        let rc = rpc::str_param(p, &["remote_control_id"])
            .ok_or_else(|| RpcError::invalid_params("an offer to the relay needs `remote_control_id`"))?;
        if self.relay_sessions.len() >= MAX_RELAY_SESSIONS {
            return Err(RpcError::server(
                "limit_rpc_sessions",
                format!("{MAX_RELAY_SESSIONS} relay sessions are open on this socket"),
            ));
        }
        let webrtc = &self.front.webrtc;
        let media = sdp.contains("\nm=video") || sdp.contains("\nm=audio") || sdp.starts_with("m=");
        let ip = self.address.ip();
        let (id, answer) = if media {
            let a = webrtc.media(&self.core, rc, &self.principal, ip, sdp.to_owned()).await.map_err(peer_error)?;
            (a.id, a.sdp)
        } else {
            let a = webrtc.answer(&self.core, rc, &self.principal, ip, sdp.to_owned()).await.map_err(peer_error)?;
            (a.id, a.sdp)
        };
        tracing::info!(peer_id = %me.id, session = %id, remote_control = rc, media, "rpc offer answered by the relay");
        let trickle = tokio::spawn(trickle(Arc::clone(&self.front), self.principal.clone(), me, id.clone()));
        self.relay_sessions.push((id.clone(), trickle.abort_handle()));
        Ok(json!({ "session_id": id, "sdp": answer }))
    }

    async fn ice_candidate(&mut self, p: &Value) -> Result<Value, RpcError> {
        let to = target(p)?;
        if to != RELAY {
            return self.forward("ice_candidate", p).await;
        }
        self.me()?;
        let candidate = rpc::str_param(p, &["candidate"])
            .ok_or_else(|| RpcError::invalid_params("`candidate` (a string, \"\" at the end) is required"))?;
        let session = self.relay_session(p)?;
        let index = ["sdp_mline_index", "sdp_m_line_index", "sdpMLineIndex"].iter().find_map(|k| p.get(*k));
        let sdp_mline_index = match index {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| RpcError::invalid_params("`sdp_mline_index` must be a small integer"))?,
            ),
        };
        let c = ClientCandidate {
            candidate: candidate.to_owned(),
            sdp_mid: rpc::str_param(p, &["sdp_mid", "sdpMid"]).map(str::to_owned),
            sdp_mline_index,
            username_fragment: rpc::str_param(p, &["username_fragment", "usernameFragment"]).map(str::to_owned),
        };
        self.front.webrtc.add_candidate(&session, c, &self.principal).await.map_err(peer_error)?;
        Ok(json!({ "delivered": true }))
    }

    async fn disconnect(&mut self, p: &Value) -> Result<Value, RpcError> {
        let to = target(p)?;
        if to != RELAY {
            return self.forward("disconnect", p).await;
        }
        self.me()?;
        let ids: Vec<String> = match rpc::str_param(p, &["session_id"]) {
            Some(id) => vec![self.relay_session(p).map(|_| id.to_owned())?],
            None => self.relay_sessions.iter().map(|(id, _)| id.clone()).collect(),
        };
        let mut ended = 0;
        for id in &ids {
            if self.front.webrtc.close(id, &self.principal).await.is_ok() {
                ended += 1;
            }
        }
        self.relay_sessions.retain(|(id, trickle)| {
            let gone = ids.contains(id);
            if gone {
                trickle.abort();
            }
            !gone
        });
        Ok(json!({ "ended": ended }))
    }

    /// The relay session a call names (`session_id`), or the latest one of this socket.
    fn relay_session(&self, p: &Value) -> Result<String, RpcError> {
        match rpc::str_param(p, &["session_id"]) {
            Some(id) if self.relay_sessions.iter().any(|(s, _)| s == id) => Ok(id.to_owned()),
            Some(id) => Err(RpcError::server("unknown_session", format!("no relay session {id:?} on this socket"))),
            None => self
                .relay_sessions
                .last()
                .map(|(s, _)| s.clone())
                .ok_or_else(|| RpcError::server("unknown_session", "no relay session on this socket: offer first")),
        }
    }

    /// Forward `method` to the peer the params name, with the sender added.
    async fn forward(&mut self, method: &str, p: &Value) -> Result<Value, RpcError> {
        let me = Arc::clone(self.me()?);
        let to = target(p)?;
        if to == RELAY {
            return Err(RpcError::server(
                "unknown_session",
                format!("the relay takes no `{method}`: it answers offers"),
            ));
        }
        if to == me.id {
            return Err(RpcError::invalid_params("`to_peer_id` is this peer itself"));
        }
        let peer =
            self.front.peers.get(to).ok_or_else(|| RpcError::server("unknown_peer", format!("no peer {to:?}")))?;
        if method != "offer" && p.get("sdp").is_some_and(|s| !s.is_string()) {
            return Err(RpcError::invalid_params("`sdp` must be a string"));
        }
        if method == "offer" && rpc::str_param(p, &["sdp"]).is_none() {
            return Err(RpcError::invalid_params("`sdp` (a string) is required"));
        }
        let mut params = p.clone();
        params["from_peer_id"] = json!(me.id);
        params["from"] = json!(me.id);
        params["to_peer_id"] = json!(peer.id);
        if !deliver(&peer, rpc::notification(method, params).to_string()) {
            return Err(RpcError::server("peer_not_reading", format!("peer {} is not reading its socket", peer.id)));
        }
        Ok(json!({ "delivered": true }))
    }

    /// The socket is gone: leave, and end the relay sessions.
    async fn end(&mut self) {
        if let Some(me) = self.me.take() {
            self.front.peers.remove(&me.id);
            tracing::info!(peer_id = %me.id, "rpc peer left");
        }
        for (id, trickle) in self.relay_sessions.drain(..) {
            trickle.abort();
            let _ = self.front.webrtc.close(&id, &self.principal).await;
        }
    }
}

/// `to_peer_id` (or `to`).
fn target(p: &Value) -> Result<&str, RpcError> {
    rpc::str_param(p, &["to_peer_id", "to"])
        .ok_or_else(|| RpcError::invalid_params("`to_peer_id` (a string) is required"))
}

/// A WebRTC refusal as a server error with the REST API's code.
fn peer_error(e: PeerError) -> RpcError {
    let api = ApiError::from(e);
    RpcError::server(api.code, api.message)
}

/// The relay's candidates that its answer did not carry, as `ice_candidate` notifications, then
/// `candidate: ""`.
async fn trickle(front: Arc<JsonRpc>, principal: Principal, me: Arc<Peer>, session: String) {
    let mut after = 0;
    loop {
        let Ok(c) = front.webrtc.server_candidates(&session, after, Duration::from_secs(10), &principal).await else {
            return;
        };
        let notify = |candidate: &str, mid: Option<&str>, index: Option<u16>| {
            let params = json!({
                "from_peer_id": RELAY, "from": RELAY, "to_peer_id": me.id, "session_id": session,
                "candidate": candidate, "sdp_mid": mid, "sdp_mline_index": index,
            });
            deliver(&me, rpc::notification("ice_candidate", params).to_string());
        };
        for cand in &c.candidates {
            notify(&cand.candidate, cand.sdp_mid.as_deref(), cand.sdp_mline_index);
        }
        after = c.next;
        if c.complete {
            notify("", None, None);
            return;
        }
    }
}
