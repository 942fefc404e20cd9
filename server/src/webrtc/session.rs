//! One WebRTC session's task: owns the peer connection and its two channels.
//!
//! The channels' event loops (`DataChannel::poll`) run in small pump tasks that turn events into
//! messages for this task, so one task decides everything about the session.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use railcast_protocol::client::{ClientMessage, ServerEvent};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::{is_finished, lock, Session, Signaling};
use crate::dispatch::{self, Follower, Item};
use crate::metrics::METRICS;
use crate::remote::RemoteControl;
use crate::session::Transport;
use crate::state::AppState;

#[derive(Debug)]
enum Ev {
    Open(Channel),
    Text(Channel, String),
    Binary,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Video,
    Command,
}

/// Messages kept from the client while the channels open (they take milliseconds to).
const EARLY_MESSAGES: usize = 64;

/// Packets taken from the hub queue per wake-up, at most (then other sessions get to run).
const MAX_PACKETS_PER_WAKE: usize = 512;

fn pump(dc: Arc<dyn DataChannel>, which: Channel, tx: mpsc::Sender<Ev>) -> tokio::task::JoinHandle<()> {
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

async fn send_event(command: &Arc<dyn DataChannel>, ev: &ServerEvent) -> bool {
    command.send_text(&ev.to_json()).await.is_ok()
}

/// Why the session ended.
enum End {
    Reason(&'static str),
    Closing(String),
}

pub(super) async fn run(
    app: AppState,
    rc: Arc<RemoteControl>,
    signaling: Arc<Signaling>,
    session: Arc<Session>,
    video: Arc<dyn DataChannel>,
    command: Arc<dyn DataChannel>,
) {
    let (tx, mut rx) = mpsc::channel::<Ev>(64);
    let pumps =
        [pump(Arc::clone(&video), Channel::Video, tx.clone()), pump(Arc::clone(&command), Channel::Command, tx)];
    let mut pc_state = session.peer.connection.subscribe();
    let mut shutdown = app.shutdown.clone();
    let deadline = tokio::time::Instant::from_std(session.created) + signaling.config().connect_timeout;

    // Phase 1: until both channels are open. A client may send on `command` as soon as it sees
    // that channel open, before this task has seen `video` open: keep those messages for phase 2.
    let (mut video_open, mut command_open) = (false, false);
    let mut early = Vec::new();
    let opened = loop {
        if video_open && command_open {
            break Ok(());
        }
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Ev::Open(Channel::Video)) => {
                    video_open = true;
                    *lock(&session.video_open_at) = Some(Instant::now());
                    let setup = session.created.elapsed().as_secs_f64();
                    METRICS.webrtc_setup_seconds.observe(setup);
                    let ms = |t: Option<Instant>| t.map_or(f64::NAN, |t| t.duration_since(session.created).as_secs_f64() * 1000.0);
                    tracing::debug!(
                        session = %session.id,
                        offer_ms = ms(Some(session.offered_at)),
                        answer_received_ms = ms(*lock(&session.answer_received_at)),
                        answer_ms = ms(*lock(&session.answered_at)),
                        ice_connected_ms = ms(*lock(&session.peer.ice_connected_at)),
                        dtls_connected_ms = ms(*lock(&session.peer.connected_at)),
                        video_open_ms = setup * 1000.0,
                        "webrtc setup phases"
                    );
                }
                Some(Ev::Open(Channel::Command)) => command_open = true,
                Some(Ev::Closed) | None => break Err("a data channel closed before opening"),
                Some(ev @ (Ev::Text(..) | Ev::Binary)) => {
                    if early.len() < EARLY_MESSAGES {
                        early.push(ev);
                    } else {
                        tracing::warn!(session = %session.id, "message dropped: sent before the channels opened, over the limit");
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline) => break Err("not connected in time"),
            changed = pc_state.changed() => if changed.is_err() || is_finished(*pc_state.borrow()) { break Err("connection failed") },
            _ = session.stop.notified() => break Err("closed by the client"),
            _ = crate::stopped(&mut shutdown) => break Err("server shutting down"),
        }
    };
    let end = match opened {
        Err(reason) => {
            if reason != "closed by the client" && reason != "server shutting down" {
                METRICS
                    .webrtc_sessions_failed
                    .with_label_values(&[if reason == "not connected in time" { "timeout" } else { "failed" }])
                    .inc();
            }
            End::Reason(reason)
        }
        Ok(()) => {
            let video_message = signaling.config().video_message;
            serve(&app, &rc, &session, &video, &command, video_message, early, &mut rx, &mut pc_state, &mut shutdown)
                .await
        }
    };
    let reason = match &end {
        End::Reason(r) => (*r).to_owned(),
        End::Closing(r) => {
            if send_event(&command, &ServerEvent::Closing { reason: r.clone() }).await {
                // Closing the peer at once would discard the event: let it leave first, checking
                // after 1, 2, 4 … ms (the peer usually acknowledges within a round trip), 255 ms
                // at most. The session's memory stays held until then.
                for ms in (0..8).map(|i| 1 << i) {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    if command.outstanding_bytes().await.map_or(true, |n| n == 0) {
                        break;
                    }
                }
            }
            r.clone()
        }
    };
    tracing::debug!(session = %session.id, %reason, "webrtc session ends");
    session.closed.store(true, Ordering::Relaxed);
    let _ = session.pc.close().await;
    for p in pumps {
        p.abort();
    }
    signaling.remove(&session.id);
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    app: &AppState,
    rc: &Arc<RemoteControl>,
    session: &Arc<Session>,
    video: &Arc<dyn DataChannel>,
    command: &Arc<dyn DataChannel>,
    video_message: usize,
    early: Vec<Ev>,
    rx: &mut mpsc::Receiver<Ev>,
    pc_state: &mut tokio::sync::watch::Receiver<webrtc::peer_connection::RTCPeerConnectionState>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> End {
    let guard = app.sessions.register(&rc.id, session.principal.clone(), Transport::WebRtc, session.id.clone());
    let info = Arc::clone(&guard.info);
    *lock(&session.info) = Some(Arc::clone(&info));
    let (mut follower, initial) = Follower::new(app, rc, Arc::clone(&info));
    let welcome = ServerEvent::Welcome {
        remote_control_id: rc.id.clone(),
        transport: Transport::WebRtc.name().into(),
        train_id: follower.train().cloned(),
        server_time_us: crate::now_us(),
    };
    if !send_event(command, &welcome).await || !send_event(command, &initial).await {
        return End::Reason("command channel closed");
    }
    let mut client = dispatch::Client::new(app, session.principal.clone());
    let metrics = crate::metrics::PacketOut::new(Transport::WebRtc.name());
    for ev in early {
        client_message(app, rc, command, &info, &mut client, ev).await;
    }
    // The configured size, within what the SCTP transport negotiated with the peer (its SDP
    // max-message-size and webrtc-rs's own); the association is up once the channels are open.
    let negotiated = match session.pc.sctp().await {
        Some(sctp) => sctp.max_message_size().await.ok(),
        None => None,
    };
    let limit = video_message.min(negotiated.map_or(super::MAX_MESSAGE_SIZE, |n| n as usize));
    // Grows to the largest burst seen (a late joiner's GOP); an idle peer keeps none. Packets
    // `batch[sent..]` wait for room in the video channel.
    let mut batch: Vec<Bytes> = Vec::new();
    let mut sent = 0;
    loop {
        let backlog = sent < batch.len();
        tokio::select! {
            // Room in the channel again: the next message. With the send-buffer limit on, video
            // waits here, not inside `send`, so the client's messages (commands, pings) and the
            // end of the session are still handled meanwhile; the hub queue fills and the hub
            // drops whole frames for this peer only.
            ready = video.writable(), if backlog => {
                if ready.is_err() {
                    return End::Reason("video channel closed");
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
                    return End::Reason("video channel closed");
                }
                let now = crate::now_us();
                for p in &batch[sent + range.start..sent + range.end] {
                    metrics.record(p, now);
                    info.packets_sent.fetch_add(1, Ordering::Relaxed);
                    info.bytes_sent.fetch_add(p.len() as u64, Ordering::Relaxed);
                }
                sent += range.len();
            }
            item = follower.next(), if !backlog => match item {
                Item::Packet(p) => {
                    // Whatever else is queued goes with it.
                    batch.clear();
                    batch.push(p);
                    follower.drain_packets(&mut batch, MAX_PACKETS_PER_WAKE - 1);
                    sent = 0;
                }
                Item::Event(ev) => {
                    if !send_event(command, &ev).await {
                        return End::Reason("command channel closed");
                    }
                    info.events_sent.fetch_add(1, Ordering::Relaxed);
                }
                Item::Closed(reason) => return End::Closing(reason),
                Item::Revoked(reason) => {
                    tracing::info!(session = %session.id, principal = %session.principal.name, "credential revoked: closing the webrtc session");
                    return End::Closing(reason);
                }
            },
            ev = rx.recv() => match ev {
                Some(Ev::Closed) | None => return End::Reason("data channel closed"),
                Some(Ev::Open(_)) => {}
                Some(ev) => client_message(app, rc, command, &info, &mut client, ev).await,
            },
            changed = pc_state.changed() => if changed.is_err() || is_finished(*pc_state.borrow()) { return End::Reason("connection failed") },
            _ = session.stop.notified() => return End::Closing("closed by request".into()),
            _ = crate::stopped(shutdown) => return End::Closing("server shutting down".into()),
        }
    }
}

/// What the client sent on a channel: JSON on `command` is handled; anything else gets an error.
async fn client_message(
    app: &AppState,
    rc: &Arc<RemoteControl>,
    command: &Arc<dyn DataChannel>,
    info: &Arc<crate::session::SessionInfo>,
    client: &mut dispatch::Client,
    ev: Ev,
) {
    if let Ev::Text(Channel::Command, text) = ev {
        handle_text(app, rc, command, info, client, text).await;
    } else {
        let ev = ServerEvent::Error {
            code: "unexpected_message".into(),
            message: "send JSON text on the command channel; video flows server → client only".into(),
        };
        let _ = send_event(command, &ev).await;
    }
}

async fn handle_text(
    app: &AppState,
    rc: &Arc<RemoteControl>,
    command: &Arc<dyn DataChannel>,
    info: &Arc<crate::session::SessionInfo>,
    client: &mut dispatch::Client,
    text: String,
) {
    let msg = match dispatch::parse(&text) {
        Ok(m) => m,
        Err(refusal) => {
            let _ = send_event(command, &refusal).await;
            return;
        }
    };
    if let ClientMessage::Command { request_id, command: action } = &msg {
        info.commands.fetch_add(1, Ordering::Relaxed);
        let permit = match client.admit_command(request_id, action) {
            Ok(p) => p,
            Err(refusal) => {
                let _ = send_event(command, &refusal).await;
                return;
            }
        };
        let (app, rc, command) = (app.clone(), Arc::clone(rc), Arc::clone(command));
        tokio::spawn(async move {
            let ev = dispatch::answer(&app, &rc, msg).await;
            let _ = send_event(&command, &ev).await;
            drop(permit);
        });
    } else {
        let ev = dispatch::answer(app, rc, msg).await;
        let _ = send_event(command, &ev).await;
    }
}
