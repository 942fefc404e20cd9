//! One WebTransport session.
//!
//! One task owns it. It waits for the client's bidirectional stream and its first message (the
//! server sends nothing before: datagrams sent as a session opens were seen lost in Chromium),
//! then opens a [`Relay`], writes the greeting and answers that message, and from then on waits
//! on the relay, on the client's lines and on the session's end. Video packets go as datagrams
//! while the datagram send buffer has room, so a slow client's backlog stays in the hub, where
//! whole frames are dropped; a packet larger than the datagram size goes alone on a
//! unidirectional stream written by a small task (a few at once; more also stop video).

use std::sync::Arc;
use std::time::Duration;

use railcast_protocol::client::ServerEvent;
use tokio::task::JoinSet;
use web_transport_quinn::{RecvStream, SendStream};

use super::framing::Framing;
use super::woken::Woken;
use crate::auth::Principal;
use crate::core::Core;
use crate::hub::Packet;
use crate::limits::{AddressGuard, Limit};
use crate::relay::{Next, Relay};
use crate::remote::RemoteControl;

/// Session close codes: the WebSocket close codes' numbers.
/// The shared close codes (`relay::close_code`) as WebTransport's 32-bit session error codes.
pub mod close_code {
    use crate::relay::close_code as shared;
    pub const GOING_AWAY: u32 = shared::GOING_AWAY as u32;
    pub const PROTOCOL: u32 = shared::PROTOCOL as u32;
    pub const TOO_BIG: u32 = shared::TOO_BIG as u32;
    pub const DELETED: u32 = shared::DELETED as u32;
    pub const REVOKED: u32 = shared::REVOKED as u32;
}

/// The client must open its stream and write its first message within this.
const FIRST_MESSAGE: Duration = Duration::from_secs(10);
/// A write on the client's stream that waits longer (the client reads nothing) ends the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The `closing` event and the session's close get at most this to leave.
const LINGER: Duration = Duration::from_secs(1);
/// The longest client line (the JSON message and its `\n`); a longer one closes the session (1009).
pub const MAX_LINE: usize = 64 * 1024;
/// Unidirectional streams (oversized packets) being written at once; at this many, video waits.
const MAX_STREAMS: usize = 16;
/// Packets taken from the hub queue per wake-up, at most.
const MAX_PACKETS_PER_WAKE: usize = 256;
/// Room for one datagram in the send buffer: the largest QUIC datagram with some margin.
const DATAGRAM_ROOM: usize = 1500;
/// While the datagram send buffer is full, how often to look again.
const ROOM_POLL: Duration = Duration::from_millis(2);

/// One WebTransport session: its own I/O loop around a [`Relay`].
#[derive(Debug)]
pub struct Session {
    core: Core,
    rc: Arc<RemoteControl>,
    principal: Principal,
    peer: String,
    session: web_transport_quinn::Session,
    /// Holds this session's place in the per-address limit.
    _slot: AddressGuard,
}

/// Lines (NDJSON) read from the client's stream. Cancel-safe: bytes are kept between calls.
struct Lines {
    recv: RecvStream,
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no newline.
    scanned: usize,
}

enum LineError {
    /// Over [`MAX_LINE`] without a newline.
    TooLong,
    /// The stream was reset or the session is gone.
    Read(String),
}

impl Lines {
    fn new(recv: RecvStream) -> Self {
        Self { recv, buf: Vec::new(), scanned: 0 }
    }

    /// The next line without its `\n`; `None` at the end of the stream.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        loop {
            if let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + i;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                if end + 1 > MAX_LINE {
                    return Err(LineError::TooLong);
                }
                return Ok(Some(line));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_LINE {
                return Err(LineError::TooLong);
            }
            match self.recv.read_chunk(MAX_LINE, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(LineError::Read(e.to_string())),
            }
        }
    }
}

impl Session {
    pub fn new(
        core: Core,
        rc: Arc<RemoteControl>,
        principal: Principal,
        peer: String,
        slot: AddressGuard,
        session: web_transport_quinn::Session,
    ) -> Self {
        Self { core, rc, principal, peer, session, _slot: slot }
    }

    pub async fn run(self, framing: &Framing) {
        let wt = self.session.clone();
        let mut stop = self.core.shutdown.clone();
        // Phase 1: the client's stream and first message; nothing is sent before.
        let opening = async {
            let (send, recv) = wt.accept_bi().await.map_err(|e| (None, e.to_string()))?;
            let mut lines = Lines::new(recv);
            match lines.next().await {
                Ok(Some(first)) => Ok((send, lines, first)),
                Ok(None) => {
                    Err((Some((close_code::PROTOCOL, "the stream ended before a first message")), String::new()))
                }
                Err(LineError::TooLong) => Err((Some((close_code::TOO_BIG, "message too big")), String::new())),
                Err(LineError::Read(e)) => Err((None, e)),
            }
        };
        let opened = tokio::select! {
            r = tokio::time::timeout(FIRST_MESSAGE, opening) => match r {
                Ok(r) => r,
                Err(_) => Err((Some((close_code::PROTOCOL, "no stream with a first message within 10 s")), String::new())),
            },
            _ = crate::stopped(&mut stop) => Err((Some((close_code::GOING_AWAY, "server shutting down")), String::new())),
        };
        let (mut send, mut lines, first) = match opened {
            Ok(o) => o,
            Err((close, why)) => {
                if let Some((code, reason)) = close {
                    tracing::debug!(peer = %self.peer, code, "webtransport session closed before its first message: {reason}");
                    goodbye(&wt, code, reason).await;
                } else {
                    tracing::debug!(peer = %self.peer, "webtransport session gone before its first message: {why}");
                }
                return;
            }
        };

        // Phase 2: the relay, from the first message on.
        let (mut relay, greeting) =
            Relay::open(&self.core, Arc::clone(&self.rc), self.principal.clone(), super::NAME, self.peer.clone());
        let id = relay.info().id;
        tracing::debug!(session = id, remote_control = %self.rc.id, peer = %self.peer, max_datagram = wt.max_datagram_size(), "webtransport session open");
        for ev in &greeting {
            if send_event(&mut send, &relay, ev).await.is_err() {
                return;
            }
        }
        let mut close = match on_line(first, &mut relay).await {
            Ok(Some(ev)) => send_event(&mut send, &relay, &ev).await.err().map(|()| None),
            Ok(None) => None,
            Err(close) => Some(Some(close)),
        };

        let metrics = crate::metrics::PacketOut::new(super::NAME);
        let mut streams: JoinSet<()> = JoinSet::new();
        let mut batch: Vec<Packet> = Vec::new();
        let mut reading = true;
        let ended = wt.closed();
        tokio::pin!(ended);
        // The client's stream is read when it has woken the task, not on every frame.
        let stream_woken = Woken::new();
        // `Some(None)`: end without a goodbye (the client is gone or takes nothing);
        // `Some(Some(close))`: say goodbye with this close.
        while close.is_none() {
            let space = wt.datagram_send_buffer_space();
            let datagram_room = space >= DATAGRAM_ROOM;
            let room = datagram_room && streams.len() < MAX_STREAMS;
            tokio::select! {
                next = relay.next(room) => match next {
                    Next::Packet(p) => {
                        // Answers waiting (command acks) go out before this video.
                        while let Some(ev) = relay.try_answer() {
                            if send_event(&mut send, &relay, &ev).await.is_err() { close = Some(None); break }
                        }
                        if close.is_some() { break }
                        batch.push(p);
                        // The room seen before waiting: it only grew since (this task alone adds).
                        let more = (space / DATAGRAM_ROOM).clamp(1, MAX_PACKETS_PER_WAKE) - 1;
                        relay.drain_packets(&mut batch, more);
                        if send_video(&wt, framing, &relay, &metrics, &mut batch, &mut streams).is_err() {
                            close = Some(None);
                        }
                    }
                    Next::Event(ev) | Next::Answer(ev) => if send_event(&mut send, &relay, &ev).await.is_err() { close = Some(None) },
                    Next::End(end) => {
                        let _ = tokio::time::timeout(LINGER, send_event(&mut send, &relay, &end.closing())).await;
                        close = Some(Some((u32::from(end.close_code()), end.reason())));
                    }
                },
                line = stream_woken.poll(lines.next()), if reading => match line {
                    Ok(Some(line)) => match on_line(line, &mut relay).await {
                        Ok(Some(ev)) => if send_event(&mut send, &relay, &ev).await.is_err() { close = Some(None) },
                        Ok(None) => {}
                        Err(c) => close = Some(Some(c)),
                    },
                    // The client finished its side: it sends nothing more, video goes on.
                    Ok(None) => reading = false,
                    Err(LineError::TooLong) => {
                        Limit::MessageSize.refuse("WebTransport line over 65536 bytes");
                        close = Some(Some((close_code::TOO_BIG, "message too big".into())));
                    }
                    Err(LineError::Read(e)) => {
                        tracing::debug!(session = id, "webtransport stream read failed: {e}");
                        close = Some(Some((close_code::PROTOCOL, "the client's stream failed".into())));
                    }
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
                _ = tokio::time::sleep(ROOM_POLL), if !datagram_room => {}
                e = &mut ended => {
                    tracing::debug!(session = id, "webtransport session ended by the client: {e}");
                    close = Some(None);
                }
            }
        }
        if let Some(Some((code, reason))) = close {
            goodbye(&wt, code, reason).await;
        }
        drop(streams);
        let s = quinn::Connection::stats(&wt);
        tracing::debug!(
            session = id,
            rtt_us = s.path.rtt.as_micros() as u64,
            cwnd = s.path.cwnd,
            congestion_events = s.path.congestion_events,
            lost_packets = s.path.lost_packets,
            sent_packets = s.path.sent_packets,
            udp_tx = s.udp_tx.datagrams,
            udp_tx_ios = s.udp_tx.ios,
            udp_rx = s.udp_rx.datagrams,
            "webtransport session closed"
        );
        drop(relay);
    }
}

/// Close the session with `code` and `reason` (the WebTransport close capsule, then the QUIC
/// close) and wait, at most [`LINGER`], until the client has it.
async fn goodbye(wt: &web_transport_quinn::Session, code: u32, reason: impl AsRef<str>) {
    wt.close(code, truncate_reason(reason.as_ref()).as_bytes());
    let _ = tokio::time::timeout(LINGER, wt.closed()).await;
}

/// Handle one client line: the reply to send now, if any; `Err`: close the session.
async fn on_line(line: Vec<u8>, relay: &mut Relay) -> Result<Option<ServerEvent>, (u32, String)> {
    let Ok(text) = std::str::from_utf8(&line) else {
        return Ok(Some(ServerEvent::Error {
            code: "bad_message".into(),
            message: "a client message is UTF-8 JSON followed by a newline".into(),
        }));
    };
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(None);
    }
    Ok(relay.on_text(text).await)
}

/// Hand a batch of packets to the session: datagrams (framed once for all sessions), or a stream
/// each for those too large.
fn send_video(
    wt: &web_transport_quinn::Session,
    framing: &Framing,
    relay: &Relay,
    metrics: &crate::metrics::PacketOut,
    batch: &mut Vec<Packet>,
    streams: &mut JoinSet<()>,
) -> Result<(), ()> {
    let n = batch.len() as u64;
    let bytes = metrics.record_batch(batch.iter().map(Packet::sent), crate::now_us());
    relay.info().sent(n, bytes);
    let max = wt.max_datagram_size();
    let header = wt.datagram_header();
    for p in batch.drain(..) {
        if p.bytes.len() <= max {
            // The session's header is in front: quinn's own send, not web-transport-quinn's copy.
            match quinn::Connection::send_datagram(wt, framing.datagram(header, &p.bytes)) {
                Ok(()) => continue,
                // The path's datagram size shrank meanwhile: a stream instead.
                Err(quinn::SendDatagramError::TooLarge) => {}
                Err(_) => return Err(()),
            }
        }
        let wt = wt.clone();
        streams.spawn(async move {
            let write = async {
                let mut s = wt.open_uni().await.ok()?;
                s.write_chunk(p.bytes).await.ok()?;
                s.finish().ok()
            };
            let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
        });
    }
    Ok(())
}

/// Write one event and its newline, within [`WRITE_TIMEOUT`].
async fn send_event(send: &mut SendStream, relay: &Relay, ev: &ServerEvent) -> Result<(), ()> {
    let mut line = ev.to_json().into_bytes();
    line.push(b'\n');
    match tokio::time::timeout(WRITE_TIMEOUT, send.write_all(&line)).await {
        Ok(Ok(())) => {
            relay.event_sent();
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::debug!(session = relay.info().id, "webtransport write failed: {e}");
            Err(())
        }
        Err(_) => {
            tracing::info!(
                session = relay.info().id,
                "webtransport client took no event for {WRITE_TIMEOUT:?}: disconnected"
            );
            Err(())
        }
    }
}

/// A close reason kept short (WebTransport allows 1,024 bytes; the WebSocket transport 123).
fn truncate_reason(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
