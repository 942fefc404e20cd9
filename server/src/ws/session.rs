//! One WebSocket connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use railcast_protocol::client::{ClientMessage, ServerEvent};
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::dispatch::{self, Follower, Item};
use crate::limits::AddressGuard;
use crate::remote::RemoteControl;
use crate::session::{SessionInfo, Transport};
use crate::state::AppState;

/// WebSocket close codes used by the server.
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const TOO_BIG: u16 = 1009;
    /// Application code: the remote control was deleted.
    pub const DELETED: u16 = 4001;
}

#[derive(Debug)]
pub struct Session {
    app: AppState,
    rc: Arc<RemoteControl>,
    principal: Principal,
    peer: String,
    /// Holds this session's place in the per-address limit.
    _slot: AddressGuard,
}

type Sink = SplitSink<WebSocket, Message>;

impl Session {
    pub fn new(app: AppState, rc: Arc<RemoteControl>, principal: Principal, peer: String, slot: AddressGuard) -> Self {
        Self { app, rc, principal, peer, _slot: slot }
    }

    pub async fn run(self, socket: WebSocket) {
        let guard =
            self.app.sessions.register(&self.rc.id, self.principal.clone(), Transport::WebSocket, self.peer.clone());
        let info = Arc::clone(&guard.info);
        tracing::debug!(session = info.id, remote_control = %self.rc.id, peer = %self.peer, "websocket session open");
        let (mut sink, stream) = socket.split();
        let (mut follower, initial) = Follower::new(&self.app, &self.rc, Arc::clone(&info.hub));
        let welcome = ServerEvent::Welcome {
            remote_control_id: self.rc.id.clone(),
            transport: Transport::WebSocket.name().into(),
            train_id: follower.train().cloned(),
            server_time_us: crate::now_us(),
        };
        if send_event(&mut sink, &info, &welcome).await.is_err()
            || send_event(&mut sink, &info, &initial).await.is_err()
        {
            return;
        }
        let (out_tx, mut out_rx) = mpsc::channel::<ServerEvent>(64);
        let client = dispatch::Client::new(&self.app, self.principal.clone());
        let mut reader =
            tokio::spawn(read_loop(stream, self.app.clone(), Arc::clone(&self.rc), client, out_tx, Arc::clone(&info)));
        let mut shutdown = self.app.shutdown.clone();
        let batch = self.app.ws.batch.max(1);
        let metrics = crate::metrics::PacketOut::new(Transport::WebSocket.name());

        let close: Option<(u16, String)> = loop {
            tokio::select! {
                item = follower.next() => match item {
                    Item::Packet(p) => {
                        if feed_packet(&mut sink, &info, &metrics, p).await.is_err() { break None }
                        let mut n = 1;
                        while n < batch {
                            let Some(p) = follower.try_packet() else { break };
                            if feed_packet(&mut sink, &info, &metrics, p).await.is_err() { break }
                            n += 1;
                        }
                        if sink.flush().await.is_err() { break None }
                    }
                    Item::Event(ev) => if send_event(&mut sink, &info, &ev).await.is_err() { break None },
                    Item::Closed(reason) => {
                        let _ = send_event(&mut sink, &info, &ServerEvent::Closing { reason: reason.clone() }).await;
                        break Some((close_code::DELETED, reason));
                    }
                },
                Some(ev) = out_rx.recv() => if send_event(&mut sink, &info, &ev).await.is_err() { break None },
                end = &mut reader => break end.unwrap_or(None),
                _ = crate::stopped(&mut shutdown) => {
                    let reason = "server shutting down".to_owned();
                    let _ = send_event(&mut sink, &info, &ServerEvent::Closing { reason: reason.clone() }).await;
                    break Some((close_code::GOING_AWAY, reason));
                }
            }
        };
        reader.abort();
        if let Some((code, reason)) = close {
            let frame = CloseFrame { code, reason: reason.into() };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
        tracing::debug!(session = info.id, "websocket session closed");
    }
}

async fn feed_packet(
    sink: &mut Sink,
    info: &SessionInfo,
    metrics: &crate::metrics::PacketOut,
    p: bytes::Bytes,
) -> Result<(), axum::Error> {
    let len = p.len() as u64;
    let counted = p.clone(); // same allocation
    sink.feed(Message::Binary(p)).await?;
    metrics.record(&counted, crate::now_us());
    info.packets_sent.fetch_add(1, Ordering::Relaxed);
    info.bytes_sent.fetch_add(len, Ordering::Relaxed);
    Ok(())
}

async fn send_event(sink: &mut Sink, info: &SessionInfo, ev: &ServerEvent) -> Result<(), axum::Error> {
    sink.send(Message::Text(ev.to_json().into())).await?;
    info.events_sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Read the client's messages until it closes; returns the close to send, if any.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    app: AppState,
    rc: Arc<RemoteControl>,
    mut client: dispatch::Client,
    out: mpsc::Sender<ServerEvent>,
    info: Arc<SessionInfo>,
) -> Option<(u16, String)> {
    while let Some(msg) = stream.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                let ev = ServerEvent::Error {
                    code: "unexpected_binary".into(),
                    message: "clients send JSON text messages; binary messages are not accepted".into(),
                };
                if out.send(ev).await.is_err() {
                    return None;
                }
                continue;
            }
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue, // ping/pong are answered by the library
            Err(e) => {
                let text = e.to_string();
                let code = if text.contains("too long") || text.contains("Space limit") {
                    crate::limits::LimitHit::new("message_size", "WebSocket message over ws_max_message");
                    close_code::TOO_BIG
                } else {
                    close_code::PROTOCOL
                };
                tracing::debug!(session = info.id, "websocket read error: {text}");
                return Some((code, truncate_reason(&text)));
            }
        };
        let msg = match dispatch::parse(text.as_str()) {
            Ok(m) => m,
            Err(refusal) => {
                if out.send(refusal).await.is_err() {
                    return None;
                }
                continue;
            }
        };
        if let ClientMessage::Command { request_id, command: action } = &msg {
            info.commands.fetch_add(1, Ordering::Relaxed);
            let permit = match client.admit_command(request_id, action) {
                Ok(p) => p,
                Err(refusal) => {
                    if out.send(refusal).await.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            let (app, rc, out) = (app.clone(), Arc::clone(&rc), out.clone());
            tokio::spawn(async move {
                let ev = dispatch::answer(&app, &rc, msg).await;
                let _ = out.send(ev).await;
                drop(permit);
            });
        } else {
            let ev = dispatch::answer(&app, &rc, msg).await;
            if out.send(ev).await.is_err() {
                return None;
            }
        }
    }
    None
}

/// A close reason must fit in a control frame (123 bytes).
fn truncate_reason(s: &str) -> String {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
