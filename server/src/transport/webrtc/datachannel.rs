//! One peer's session over its two data channels: one task owns the peer connection and its
//! channels, around a [`Relay`].
//!
//! The channels' event loops (`DataChannel::poll`) run in small pump tasks that turn events into
//! messages for this task, so one task decides everything about the session.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use railcast_protocol::client::ServerEvent;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::RTCPeerConnectionState;

use super::negotiate::{lock, Channels};
use super::peers::{is_finished, Peer, Server};
use super::METRICS;
use crate::core::Core;
use crate::hub::Packet;
use crate::relay::{End, Next, Relay};
use crate::remote::RemoteControl;

#[derive(Debug)]
pub(super) enum Ev {
    Open(Channel),
    Text(Channel, String),
    Binary,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Channel {
    Video,
    Command,
}

/// How the session gets its channels.
#[derive(Debug)]
pub enum Opening {
    /// The server offered them.
    Offered(Channels),
    /// The client opens them (the server answered its offer): they arrive here.
    Incoming(mpsc::UnboundedReceiver<Arc<dyn DataChannel>>),
}

/// Messages kept from the client while the channels open (they take milliseconds to).
const EARLY_MESSAGES: usize = 64;

/// Packets taken from the hub queue per wake-up, at most (then other sessions get to run).
const MAX_PACKETS_PER_WAKE: usize = 512;

pub(super) fn pump(dc: Arc<dyn DataChannel>, which: Channel, tx: mpsc::Sender<Ev>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = dc.poll().await {
            let msg = match ev {
                DataChannelEvent::OnOpen => Ev::Open(which),
                DataChannelEvent::OnMessage(m) if m.is_string => {
                    Ev::Text(which, String::from_utf8_lossy(&m.data).into_owned())
                }
                DataChannelEvent::OnMessage(_) => Ev::Binary,
                DataChannelEvent::OnClose => break,
                _ => continue,
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ev::Closed).await;
    })
}

pub(super) async fn send_event(command: &Arc<dyn DataChannel>, ev: &ServerEvent) -> bool {
    command.send_text(&ev.to_json()).await.is_ok()
}

/// Why the session ended.
enum Ending {
    /// Without a goodbye (a channel or the connection is gone, it never opened).
    Reason(&'static str),
    /// With a `closing` event.
    Closing(String),
}

impl From<End> for Ending {
    fn from(end: End) -> Self {
        Ending::Closing(end.reason())
    }
}

/// One peer's session (see the module docs).
#[derive(Debug)]
pub struct Session {
    core: Core,
    rc: Arc<RemoteControl>,
    server: Arc<Server>,
    peer: Arc<Peer>,
}

impl Session {
    pub fn new(core: Core, rc: Arc<RemoteControl>, server: Arc<Server>, peer: Arc<Peer>) -> Self {
        Self { core, rc, server, peer }
    }

    /// Wait for the channels to open, serve the peer, say goodbye, close it.
    pub async fn run(self, opening: Opening) {
        let peer = &self.peer;
        let mut pc_state = peer.state.connection.subscribe();
        let mut shutdown = self.core.shutdown.clone();
        let deadline = tokio::time::Instant::from_std(peer.created) + self.server.settings().connect_timeout;
        let (tx, mut rx) = mpsc::channel::<Ev>(64);
        let mut pumps = Vec::new();

        // Phase 0: the channels themselves, when the client opens them.
        let channels = match opening {
            Opening::Offered(ch) => Ok(ch),
            Opening::Incoming(mut incoming) => {
                let (mut video, mut command) = (None, None);
                loop {
                    if let (Some(video), Some(command)) = (&video, &command) {
                        break Ok(Channels { video: Arc::clone(video), command: Arc::clone(command) });
                    }
                    tokio::select! {
                        dc = incoming.recv() => match dc {
                            Some(dc) => match dc.label().await.as_deref() {
                                Ok("video") => video = Some(dc),
                                Ok("command") => command = Some(dc),
                                // Not ours to serve: the client gets no events on it.
                                Ok(_) | Err(_) => tracing::debug!(session = %peer.id, "ignoring a data channel that is not video or command"),
                            },
                            None => break Err("the peer connection closed"),
                        },
                        _ = tokio::time::sleep_until(deadline) => break Err("not connected in time"),
                        changed = pc_state.changed() => if changed.is_err() || is_finished(*pc_state.borrow()) { break Err("connection failed") },
                        _ = peer.stop.notified() => break Err("closed by the client"),
                        _ = crate::stopped(&mut shutdown) => break Err("server shutting down"),
                    }
                }
            }
        };

        // Phase 1: until both channels are open. A client may send on `command` as soon as it sees
        // that channel open, before this task has seen `video` open: keep those messages for
        // phase 2.
        let mut early = Vec::new();
        let opened = match &channels {
            Err(reason) => Err(*reason),
            Ok(ch) => {
                pumps.push(pump(Arc::clone(&ch.video), Channel::Video, tx.clone()));
                pumps.push(pump(Arc::clone(&ch.command), Channel::Command, tx.clone()));
                drop(tx);
                let (mut video_open, mut command_open) = (false, false);
                loop {
                    if video_open && command_open {
                        break Ok(());
                    }
                    tokio::select! {
                        ev = rx.recv() => match ev {
                            Some(Ev::Open(Channel::Video)) => {
                                video_open = true;
                                self.video_open();
                            }
                            Some(Ev::Open(Channel::Command)) => command_open = true,
                            Some(Ev::Closed) | None => break Err("a data channel closed before opening"),
                            Some(ev @ (Ev::Text(..) | Ev::Binary)) => {
                                if early.len() < EARLY_MESSAGES {
                                    early.push(ev);
                                } else {
                                    tracing::warn!(session = %peer.id, "message dropped: sent before the channels opened, over the limit");
                                }
                            }
                        },
                        _ = tokio::time::sleep_until(deadline) => break Err("not connected in time"),
                        changed = pc_state.changed() => if changed.is_err() || is_finished(*pc_state.borrow()) { break Err("connection failed") },
                        _ = peer.stop.notified() => break Err("closed by the client"),
                        _ = crate::stopped(&mut shutdown) => break Err("server shutting down"),
                    }
                }
            }
        };
        let end = match (opened, &channels) {
            (Ok(()), Ok(ch)) => self.serve(ch, early, &mut rx, &mut pc_state).await,
            (Ok(()), Err(_)) => Ending::Reason("no data channels"),
            (Err(reason), _) => {
                if reason != "closed by the client" && reason != "server shutting down" {
                    let label = if reason == "not connected in time" { "timeout" } else { "failed" };
                    METRICS.failed.with_label_values(&[label]).inc();
                }
                Ending::Reason(reason)
            }
        };
        let reason = match (&end, &channels) {
            (Ending::Reason(r), _) => (*r).to_owned(),
            (Ending::Closing(r), Ok(ch)) => {
                if send_event(&ch.command, &ServerEvent::Closing { reason: r.clone() }).await {
                    // Closing the peer at once would discard the event: let it leave first,
                    // checking after 1, 2, 4 … ms (the peer usually acknowledges within a round
                    // trip), 255 ms at most. The session's memory stays held until then.
                    for ms in (0..8).map(|i| 1 << i) {
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                        if ch.command.outstanding_bytes().await.map_or(true, |n| n == 0) {
                            break;
                        }
                    }
                }
                r.clone()
            }
            (Ending::Closing(r), Err(_)) => r.clone(),
        };
        tracing::debug!(session = %peer.id, %reason, "webrtc session ends");
        peer.closed.store(true, Ordering::Relaxed);
        let _ = peer.pc.close().await;
        for p in pumps {
            p.abort();
        }
        self.server.remove(&peer.id);
    }

    /// The `video` channel is open: the setup is over.
    fn video_open(&self) {
        let peer = &self.peer;
        *lock(&peer.video_open_at) = Some(Instant::now());
        let setup = peer.created.elapsed().as_secs_f64();
        METRICS.setup_seconds.observe(setup);
        let ms = |t: Option<Instant>| t.map_or(f64::NAN, |t| t.duration_since(peer.created).as_secs_f64() * 1000.0);
        tracing::debug!(
            session = %peer.id,
            offer_ms = ms(Some(peer.described_at)),
            answer_received_ms = ms(*lock(&peer.answer_received_at)),
            answer_ms = ms(*lock(&peer.answered_at)),
            ice_connected_ms = ms(*lock(&peer.state.ice_connected_at)),
            dtls_connected_ms = ms(*lock(&peer.state.connected_at)),
            video_open_ms = setup * 1000.0,
            "webrtc setup phases"
        );
    }

    /// Both channels are open: relay until the session ends.
    async fn serve(
        &self,
        ch: &Channels,
        early: Vec<Ev>,
        rx: &mut mpsc::Receiver<Ev>,
        pc_state: &mut tokio::sync::watch::Receiver<RTCPeerConnectionState>,
    ) -> Ending {
        let (peer, video, command) = (&self.peer, &ch.video, &ch.command);
        let (mut relay, greeting) =
            Relay::open(&self.core, Arc::clone(&self.rc), peer.principal.clone(), super::NAME, peer.id.clone());
        *lock(&peer.session) = Some(Arc::clone(relay.info()));
        for ev in &greeting {
            if !send_event(command, ev).await {
                return Ending::Reason("command channel closed");
            }
        }
        let metrics = crate::metrics::PacketOut::new(super::NAME);
        for ev in early {
            client_message(command, &mut relay, ev).await;
        }
        // The configured size, within what the SCTP transport negotiated with the peer (its SDP
        // max-message-size and webrtc-rs's own); the association is up once the channels are open.
        let negotiated = match peer.pc.sctp().await {
            Some(sctp) => sctp.max_message_size().await.ok(),
            None => None,
        };
        let limit =
            self.server.settings().video_message.min(negotiated.map_or(super::MAX_MESSAGE_SIZE, |n| n as usize));
        // Grows to the largest burst seen (a late joiner's GOP); an idle peer keeps none. Packets
        // `batch[sent..]` wait for room in the video channel.
        let mut batch: Vec<Packet> = Vec::new();
        let mut sent = 0;
        loop {
            let backlog = sent < batch.len();
            tokio::select! {
                // Room in the channel again: the next message. With the send-buffer limit on, video
                // waits here, not inside `send`, so the client's messages (commands, pings), the
                // answers to its commands and the end of the session are still handled meanwhile;
                // the hub queue fills and the hub drops whole frames for this peer only.
                ready = video.writable(), if backlog => {
                    if ready.is_err() {
                        return Ending::Reason("video channel closed");
                    }
                    // The next message, packed whole from what is queued, of at most `limit` bytes
                    // (docs/wire-format.md §2.6): a browser pays per message, not per byte. The data
                    // channel API takes an owned BytesMut, so packing is the one copy per peer that
                    // sending a packet alone cost before. `send` does not wait: the channel has room
                    // and this task is its only sender.
                    let Some((message, range)) = railcast_protocol::message::pack(&batch[sent..], limit).next() else {
                        continue;
                    };
                    if video.send(message).await.is_err() {
                        return Ending::Reason("video channel closed");
                    }
                    let packets = &batch[sent + range.start..sent + range.end];
                    let bytes = metrics.record_batch(packets.iter().map(Packet::sent), crate::now_us());
                    relay.info().sent(packets.len() as u64, bytes);
                    sent += range.len();
                }
                next = relay.next(!backlog) => match next {
                    Next::Packet(p) => {
                        // Whatever else is queued goes with it.
                        batch.clear();
                        batch.push(p);
                        relay.drain_packets(&mut batch, MAX_PACKETS_PER_WAKE - 1);
                        sent = 0;
                    }
                    Next::Event(ev) => {
                        if !send_event(command, &ev).await {
                            return Ending::Reason("command channel closed");
                        }
                        relay.event_sent();
                    }
                    Next::Answer(ev) => {
                        let _ = send_event(command, &ev).await;
                    }
                    Next::End(end) => return end.into(),
                },
                ev = rx.recv() => match ev {
                    Some(Ev::Closed) | None => return Ending::Reason("data channel closed"),
                    Some(Ev::Open(_)) => {}
                    Some(ev) => client_message(command, &mut relay, ev).await,
                },
                changed = pc_state.changed() => if changed.is_err() || is_finished(*pc_state.borrow()) { return Ending::Reason("connection failed") },
                _ = peer.stop.notified() => return Ending::Closing("closed by request".into()),
            }
        }
    }
}

/// What the client sent on a channel: JSON on `command` goes to the relay; anything else gets an
/// error.
pub(super) async fn client_message(command: &Arc<dyn DataChannel>, relay: &mut Relay, ev: Ev) {
    let reply = if let Ev::Text(Channel::Command, text) = ev {
        relay.on_text(&text).await
    } else {
        Some(ServerEvent::Error {
            code: "unexpected_message".into(),
            message: "send JSON text on the command channel; video flows server → client only".into(),
        })
    };
    if let Some(ev) = reply {
        let _ = send_event(command, &ev).await;
    }
}
