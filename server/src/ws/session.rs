//! One WebSocket connection.
//!
//! One task owns the connection. It waits on the train's packets and events, on the client's
//! messages and on the answers of commands in flight, and writes everything itself. Video packets
//! bypass tungstenite's write buffer: a batch of queued packets is one vectored write of the
//! shared packet buffers ([`super::video::Batch`]). Everything else goes through tungstenite,
//! which is flushed before each batch so that frames never interleave.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use railcast_protocol::client::{ClientMessage, ServerEvent};
use tokio::sync::mpsc;
use tokio_tungstenite_ws::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite_ws::tungstenite::{Error as WsError, Message};

use super::upgrade::Socket;
use super::video::Batch;
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
    /// Application code: the token that opened the session is no longer in force (revoked, or
    /// its name or role changed by a credentials reload).
    pub const REVOKED: u16 = 4003;
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

/// What to do after a client message.
enum Flow {
    Continue,
    /// End the session, with the close frame to send, if any.
    End(Option<(u16, String)>),
}

impl Session {
    pub fn new(app: AppState, rc: Arc<RemoteControl>, principal: Principal, peer: String, slot: AddressGuard) -> Self {
        Self { app, rc, principal, peer, _slot: slot }
    }

    pub async fn run(self, mut socket: Socket) {
        let guard =
            self.app.sessions.register(&self.rc.id, self.principal.clone(), Transport::WebSocket, self.peer.clone());
        let info = Arc::clone(&guard.info);
        tracing::debug!(session = info.id, remote_control = %self.rc.id, peer = %self.peer, "websocket session open");
        let (mut follower, initial) = Follower::new(&self.app, &self.rc, Arc::clone(&info));
        let welcome = ServerEvent::Welcome {
            remote_control_id: self.rc.id.clone(),
            transport: Transport::WebSocket.name().into(),
            train_id: follower.train().cloned(),
            server_time_us: crate::now_us(),
        };
        if send_event(&mut socket, &info, &welcome).await.is_err()
            || send_event(&mut socket, &info, &initial).await.is_err()
        {
            return;
        }
        // Answers of commands in flight (each waits for the train's ack in its own task).
        let (out_tx, mut out_rx) = mpsc::channel::<ServerEvent>(64);
        let mut client = dispatch::Client::new(&self.app, self.principal.clone());
        let mut shutdown = self.app.shutdown.clone();
        let max_batch = self.app.ws.batch.clamp(1, super::MAX_BATCH);
        let mut batch = Batch::with_capacity(max_batch);
        let metrics = crate::metrics::PacketOut::new(Transport::WebSocket.name());

        // A failed write ends the session without a closing handshake (the socket is broken, or
        // the client took nothing for `ws_write_timeout`: see `super::stall`).
        let mut write_error: Option<WsError> = None;
        let close: Option<(u16, String)> = loop {
            tokio::select! {
                item = follower.next() => match item {
                    Item::Packet(p) => {
                        // Answers waiting (command acks) go out before this video: on a slow link
                        // the socket may take a while to accept it.
                        while let Ok(ev) = out_rx.try_recv() {
                            if let Err(e) = send_event(&mut socket, &info, &ev).await { write_error = Some(e); break }
                        }
                        if write_error.is_some() { break None }
                        batch.push(p);
                        let room = batch.room(max_batch);
                        follower.drain_packets(&mut batch, room);
                        if let Err(e) = write_video(&mut socket, &info, &metrics, &mut batch).await { write_error = Some(e); break None }
                    }
                    Item::Event(ev) => if let Err(e) = send_event(&mut socket, &info, &ev).await { write_error = Some(e); break None },
                    Item::Closed(reason) => {
                        let _ = send_event(&mut socket, &info, &ServerEvent::Closing { reason: reason.clone() }).await;
                        break Some((close_code::DELETED, reason));
                    }
                    Item::Revoked(reason) => {
                        tracing::info!(session = info.id, principal = %self.principal.name, "credential revoked: closing the websocket session");
                        let _ = send_event(&mut socket, &info, &ServerEvent::Closing { reason: reason.clone() }).await;
                        break Some((close_code::REVOKED, reason));
                    }
                },
                Some(ev) = out_rx.recv() => if let Err(e) = send_event(&mut socket, &info, &ev).await { write_error = Some(e); break None },
                msg = socket.next() => {
                    match self.on_message(msg, &mut socket, &mut client, &out_tx, &info).await {
                        Flow::Continue => {}
                        Flow::End(close) => break close,
                    }
                }
                _ = crate::stopped(&mut shutdown) => {
                    let reason = "server shutting down".to_owned();
                    let _ = send_event(&mut socket, &info, &ServerEvent::Closing { reason: reason.clone() }).await;
                    break Some((close_code::GOING_AWAY, reason));
                }
            }
        };
        match write_error {
            Some(WsError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::info!(session = info.id, peer = %self.peer, "websocket client disconnected: {e}");
            }
            Some(e) => tracing::debug!(session = info.id, "websocket write failed: {e}"),
            None => {
                let frame = close.map(|(code, reason)| CloseFrame { code: code.into(), reason: reason.into() });
                let _ = socket.close(frame).await;
            }
        }
        tracing::debug!(session = info.id, "websocket session closed");
    }

    /// Handle one message (or the end, or an error) read from the client.
    async fn on_message(
        &self,
        msg: Option<Result<Message, WsError>>,
        socket: &mut Socket,
        client: &mut dispatch::Client,
        out: &mpsc::Sender<ServerEvent>,
        info: &SessionInfo,
    ) -> Flow {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                let ev = ServerEvent::Error {
                    code: "unexpected_binary".into(),
                    message: "clients send JSON text messages; binary messages are not accepted".into(),
                };
                return reply(socket, info, &ev).await;
            }
            // tungstenite answers the close handshake itself.
            None | Some(Ok(Message::Close(_))) => return Flow::End(None),
            Some(Ok(_)) => return Flow::Continue, // ping/pong are answered by the library
            Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Flow::End(None),
            Some(Err(e)) => {
                let code = if matches!(e, WsError::Capacity(_)) {
                    crate::limits::LimitHit::new("message_size", "WebSocket message over ws_max_message");
                    close_code::TOO_BIG
                } else {
                    close_code::PROTOCOL
                };
                let text = e.to_string();
                tracing::debug!(session = info.id, "websocket read error: {text}");
                return Flow::End(Some((code, truncate_reason(&text))));
            }
        };
        let msg = match dispatch::parse(text.as_str()) {
            Ok(m) => m,
            Err(refusal) => return reply(socket, info, &refusal).await,
        };
        if let ClientMessage::Command { request_id, command: action } = &msg {
            info.commands.fetch_add(1, Ordering::Relaxed);
            let permit = match client.admit_command(request_id, action) {
                Ok(p) => p,
                Err(refusal) => return reply(socket, info, &refusal).await,
            };
            let (app, rc, out) = (self.app.clone(), Arc::clone(&self.rc), out.clone());
            tokio::spawn(async move {
                let ev = dispatch::answer(&app, &rc, msg).await;
                let _ = out.send(ev).await;
                drop(permit);
            });
            Flow::Continue
        } else {
            let ev = dispatch::answer(&self.app, &self.rc, msg).await;
            reply(socket, info, &ev).await
        }
    }
}

async fn reply(socket: &mut Socket, info: &SessionInfo, ev: &ServerEvent) -> Flow {
    match send_event(socket, info, ev).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::End(None),
    }
}

/// Write a batch of video packets, after whatever tungstenite still holds (a pong, say).
async fn write_video(
    socket: &mut Socket,
    info: &SessionInfo,
    metrics: &crate::metrics::PacketOut,
    batch: &mut Batch,
) -> Result<(), WsError> {
    if batch.is_empty() {
        return Ok(());
    }
    socket.flush().await?;
    let n = batch.len() as u64;
    let bytes = metrics.record_batch(batch.packets(), crate::now_us());
    batch.write_to(socket.get_mut()).await?;
    info.packets_sent.fetch_add(n, Ordering::Relaxed);
    info.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    Ok(())
}

async fn send_event(socket: &mut Socket, info: &SessionInfo, ev: &ServerEvent) -> Result<(), WsError> {
    socket.send(Message::Text(ev.to_json().into())).await?;
    info.events_sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A close reason must fit in a control frame (123 bytes).
fn truncate_reason(s: &str) -> String {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
