//! One WebSocket connection.
//!
//! One task owns the connection. It waits on the train's packets and events, on the client's
//! messages and on the answers of commands in flight, and writes everything itself. Video packets
//! bypass tungstenite's write buffer: a batch of queued packets is one vectored write of the
//! shared packet buffers ([`super::video::Batch`]). Everything else goes through tungstenite,
//! which is flushed before each batch so that frames never interleave.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use railcast_protocol::client::ServerEvent;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::upgrade::Socket;
use super::video::Batch;
use crate::auth::Principal;
use crate::core::Core;
use crate::limits::{AddressGuard, Limit};
use crate::relay::{Next, Relay};
use crate::remote::RemoteControl;

/// WebSocket close codes used by the server.
pub use crate::relay::close_code;

/// One WebSocket connection: its own I/O loop around a [`Relay`].
#[derive(Debug)]
pub struct Session {
    core: Core,
    rc: Arc<RemoteControl>,
    principal: Principal,
    peer: String,
    /// Most packets per vectored write.
    max_batch: usize,
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
    pub fn new(
        core: Core,
        rc: Arc<RemoteControl>,
        principal: Principal,
        peer: String,
        slot: AddressGuard,
        max_batch: usize,
    ) -> Self {
        Self { core, rc, principal, peer, max_batch, _slot: slot }
    }

    pub async fn run(self, mut socket: Socket) {
        let (mut relay, greeting) =
            Relay::open(&self.core, Arc::clone(&self.rc), self.principal.clone(), super::NAME, self.peer.clone());
        let id = relay.info().id;
        tracing::debug!(session = id, remote_control = %self.rc.id, peer = %self.peer, "websocket session open");
        for ev in &greeting {
            if send_event(&mut socket, &relay, ev).await.is_err() {
                return;
            }
        }
        let mut batch = Batch::new();
        let metrics = crate::metrics::PacketOut::new(super::NAME);

        // A failed write ends the session without a closing handshake (the socket is broken, or
        // the client took nothing for `ws_write_timeout`: see `super::stall`).
        let mut write_error: Option<WsError> = None;
        let close: Option<(u16, String)> = loop {
            tokio::select! {
                next = relay.next(true) => match next {
                    Next::Packet(p) => {
                        // Answers waiting (command acks) go out before this video: on a slow link
                        // the socket may take a while to accept it.
                        while let Some(ev) = relay.try_answer() {
                            if let Err(e) = send_event(&mut socket, &relay, &ev).await { write_error = Some(e); break }
                        }
                        if write_error.is_some() { break None }
                        batch.push(p);
                        let room = batch.room(self.max_batch);
                        relay.drain_packets(&mut batch, room);
                        if let Err(e) = write_video(&mut socket, &relay, &metrics, &mut batch).await { write_error = Some(e); break None }
                    }
                    Next::Event(ev) | Next::Answer(ev) => if let Err(e) = send_event(&mut socket, &relay, &ev).await { write_error = Some(e); break None },
                    Next::End(end) => {
                        let _ = send_event(&mut socket, &relay, &end.closing()).await;
                        break Some((end.close_code(), end.reason()));
                    }
                },
                msg = socket.next() => {
                    match on_message(msg, &mut socket, &mut relay).await {
                        Flow::Continue => {}
                        Flow::End(close) => break close,
                    }
                }
            }
        };
        match write_error {
            Some(WsError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::info!(session = id, peer = %self.peer, "websocket client disconnected: {e}");
            }
            Some(e) => tracing::debug!(session = id, "websocket write failed: {e}"),
            None => {
                let frame = close.map(|(code, reason)| CloseFrame { code: code.into(), reason: reason.into() });
                goodbye(&mut socket, frame).await;
            }
        }
        tracing::debug!(session = id, "websocket session closed");
    }
}

/// The longest a closing connection waits for the client's side of the closing handshake.
const LINGER: Duration = Duration::from_secs(1);
/// After a read error, unread bytes still arriving are drained until the link is quiet this long.
const QUIET: Duration = Duration::from_millis(100);

/// End the connection cleanly (RFC 6455 §5.5.1, §7.1.1): send our Close (`frame`), or the answer to
/// the client's, and make sure it leaves; then read until the client's Close or the end of its
/// stream, so that nothing is left unread when the socket is dropped: closing a TCP socket with
/// unread data makes the kernel send a reset, which can destroy the Close frame before the client
/// reads it (and a client that closed would see 1006 instead of its own code). At most
/// [`LINGER`].
async fn goodbye(socket: &mut Socket, frame: Option<CloseFrame>) {
    let _ = socket.close(frame).await;
    // After the client's Close, tungstenite queues the answer; `close` may return before it is
    // written.
    let _ = socket.flush().await;
    let linger = async {
        loop {
            match socket.next().await {
                // The handshake is complete: the server closes TCP first.
                Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
                // The stream is unreadable (after the message that was too big, tungstenite
                // ends it: `None`), or the client is gone: drain raw bytes until the end or a
                // quiet link (at the end of the stream that returns at once).
                Some(Err(_)) | None => break,
            }
        }
        let mut buf = [0u8; 4096];
        let io = socket.get_mut();
        while let Ok(Ok(n)) = tokio::time::timeout(QUIET, io.read(&mut buf)).await {
            if n == 0 {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, linger).await;
}

/// Handle one message (or the end, or an error) read from the client.
async fn on_message(msg: Option<Result<Message, WsError>>, socket: &mut Socket, relay: &mut Relay) -> Flow {
    let text = match msg {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(Message::Binary(_))) => {
            let ev = ServerEvent::Error {
                code: "unexpected_binary".into(),
                message: "clients send JSON text messages; binary messages are not accepted".into(),
            };
            return reply(socket, relay, &ev).await;
        }
        // tungstenite answers the close handshake itself.
        None | Some(Ok(Message::Close(_))) => return Flow::End(None),
        Some(Ok(_)) => return Flow::Continue, // ping/pong are answered by the library
        Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Flow::End(None),
        Some(Err(e)) => {
            let code = if matches!(e, WsError::Capacity(_)) {
                Limit::MessageSize.refuse("WebSocket message over ws_max_message");
                close_code::TOO_BIG
            } else {
                close_code::PROTOCOL
            };
            let text = e.to_string();
            tracing::debug!(session = relay.info().id, "websocket read error: {text}");
            return Flow::End(Some((code, truncate_reason(&text))));
        }
    };
    match relay.on_text(text.as_str()).await {
        Some(ev) => reply(socket, relay, &ev).await,
        None => Flow::Continue,
    }
}

async fn reply(socket: &mut Socket, relay: &Relay, ev: &ServerEvent) -> Flow {
    match send_event(socket, relay, ev).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::End(None),
    }
}

/// Write a batch of video packets, after whatever tungstenite still holds (a pong, say).
async fn write_video(
    socket: &mut Socket,
    relay: &Relay,
    metrics: &crate::metrics::PacketOut,
    batch: &mut Batch,
) -> Result<(), WsError> {
    if batch.is_empty() {
        return Ok(());
    }
    socket.flush().await?;
    let n = batch.len() as u64;
    let bytes = metrics.record_batch(batch.packets().iter().map(|p| p.sent()), crate::now_us());
    batch.write_to(socket.get_mut()).await?;
    relay.info().sent(n, bytes);
    Ok(())
}

async fn send_event(socket: &mut Socket, relay: &Relay, ev: &ServerEvent) -> Result<(), WsError> {
    socket.send(Message::Text(ev.to_json().into())).await?;
    relay.event_sent();
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
