//! One MQTT session: a [`Relay`] whose client messages come from its command topic and whose
//! events and video go to its topics, through the server's one broker connection.
//!
//! Video never waits: packets queued for the session are packed whole into messages of at most
//! `mqtt_video_message` bytes (wire format §2.6) and handed to the connection's queue without
//! waiting; while that queue is full the message is kept and retried, the session takes no more
//! packets, and the hub drops whole frames for it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use railcast_protocol::client::{ServerEvent, MAX_CLIENT_MESSAGE};
use rumqttc::QoS;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Broker, Grant, Server, METRICS};
use crate::core::Core;
use crate::hub::Packet;
use crate::relay::{End, Next, Relay};

/// Most packets taken from the hub per round.
const BATCH: usize = 64;
/// How long the credentials outlive the `closing` event.
const LINGER: Duration = Duration::from_millis(200);
/// How soon a message refused by a full queue is offered again.
const RETRY: Duration = Duration::from_millis(5);

/// Why a session ended, besides the relay's reasons.
enum Ending {
    Relay(End),
    /// The client's goodbye (an empty message, or its will).
    Bye,
    /// Nothing from the client for `mqtt_idle_timeout`.
    Idle,
    /// `DELETE` or the grant was taken away.
    Deleted,
}

/// One session (see the module docs).
#[derive(Debug)]
pub struct Session {
    core: Core,
    server: Arc<Server>,
    grant: Arc<Grant>,
}

impl Session {
    pub fn new(core: Core, server: Arc<Server>, grant: Arc<Grant>) -> Self {
        Self { core, server, grant }
    }

    /// Run until the end; `first` is the client message that opened it.
    pub async fn run(self, first: Bytes, mut inbox: mpsc::Receiver<Bytes>) {
        let Some(broker) = self.server.broker().cloned() else { return };
        let g = Arc::clone(&self.grant);
        let (mut relay, greeting) = Relay::open(
            &self.core,
            Arc::clone(&g.rc),
            g.principal.clone(),
            super::NAME,
            format!("{} (mqtt)", g.address),
        );
        let id = relay.info().id;
        tracing::info!(session = id, mqtt_session = %g.id, remote_control = %g.rc.id, "mqtt session open");
        let out = Out { broker: &broker, grant: &g };
        for ev in &greeting {
            out.event(&relay, ev).await;
        }
        let idle = self.server.settings().idle_timeout;
        let max_message = self.server.settings().video_message;
        let metrics = crate::metrics::PacketOut::new(super::NAME);
        let mut last_heard = Instant::now();
        let mut held: Option<Vec<u8>> = None;
        let mut packets: Vec<Packet> = Vec::with_capacity(BATCH);
        let mut ending = on_message(&out, &mut relay, first).await;
        while ending.is_none() {
            let retry_at = Instant::now() + RETRY;
            tokio::select! {
                next = relay.next(held.is_none()) => match next {
                    Next::Packet(p) => {
                        while let Some(ev) = relay.try_answer() {
                            out.event(&relay, &ev).await;
                        }
                        packets.push(p);
                        relay.drain_packets(&mut packets, BATCH - 1);
                        let now = crate::now_us();
                        let mut rest = pack(&packets, max_message).into_iter();
                        let mut n = 0usize;
                        for (msg, count) in rest.by_ref() {
                            match broker.try_publish(&g.topics.video, QoS::AtMostOnce, msg) {
                                Ok(()) => n += count,
                                Err(msg) => {
                                    METRICS.publish_full.inc();
                                    held = Some(msg).filter(|m| !m.is_empty());
                                    break;
                                }
                            }
                        }
                        // Messages after a refused one are dropped with it: they would arrive
                        // late anyway, and reassembly waits for the next keyframe.
                        let bytes = metrics.record_batch(packets[..n].iter().map(|p| p.sent()), now);
                        relay.info().sent(n as u64, bytes);
                        packets.clear();
                    }
                    Next::Event(ev) | Next::Answer(ev) => out.event(&relay, &ev).await,
                    Next::End(end) => ending = Some(Ending::Relay(end)),
                },
                _ = tokio::time::sleep_until(retry_at), if held.is_some() => {
                    if let Some(msg) = held.take() {
                        held = broker.try_publish(&g.topics.video, QoS::AtMostOnce, msg).err().filter(|m| !m.is_empty());
                    }
                }
                msg = inbox.recv() => match msg {
                    Some(payload) => {
                        last_heard = Instant::now();
                        ending = on_message(&out, &mut relay, payload).await;
                    }
                    None => ending = Some(Ending::Deleted),
                },
                _ = tokio::time::sleep_until(last_heard + idle) => ending = Some(Ending::Idle),
            }
        }
        let why = match ending {
            Some(Ending::Relay(end)) => end.reason(),
            Some(Ending::Bye) => "the client said goodbye".into(),
            Some(Ending::Idle) => format!("nothing from the client for {}", humantime::format_duration(idle)),
            Some(Ending::Deleted) | None => "the session was deleted".into(),
        };
        // Every ending gets its goodbye, even the client's (its will may come while it is still
        // subscribed, through another connection).
        tracing::debug!(session = id, mqtt_session = %g.id, "mqtt session ending: {why}");
        out.event(&relay, &ServerEvent::Closing { reason: why.clone() }).await;
        self.server.inboxes.remove(&g.id);
        // Deleting the credentials disconnects the client at once, and the broker drops what it
        // has not written to it yet: give the `closing` event a moment to get there first.
        tokio::time::sleep(LINGER).await;
        self.server.release(&g).await;
        tracing::info!(session = id, mqtt_session = %g.id, "mqtt session closed: {why}");
        drop(relay);
    }
}

/// Where a session's events go.
struct Out<'a> {
    broker: &'a Broker,
    grant: &'a Grant,
}

impl Out<'_> {
    /// Publish one event (QoS 1); waits for room in the connection's queue, since events are
    /// not to be lost.
    async fn event(&self, relay: &Relay, ev: &ServerEvent) {
        match self.broker.publish(&self.grant.topics.events, QoS::AtLeastOnce, ev.to_json()).await {
            Ok(()) => relay.event_sent(),
            Err(e) => tracing::debug!(mqtt_session = %self.grant.id, "mqtt event not sent: {e}"),
        }
    }
}

/// Handle one message from the command topic.
async fn on_message(out: &Out<'_>, relay: &mut Relay, payload: Bytes) -> Option<Ending> {
    if payload.is_empty() {
        return Some(Ending::Bye);
    }
    if payload.len() > MAX_CLIENT_MESSAGE {
        // The relay refuses it (and counts the limit); counted here as MQTT's too.
        METRICS.refused.with_label_values(&["too_large"]).inc();
    }
    // Invalid UTF-8 becomes replacement characters, which JSON parsing then refuses.
    let text = String::from_utf8_lossy(&payload);
    if let Some(ev) = relay.on_text(&text).await {
        if matches!(ev, ServerEvent::Error { .. }) && payload.len() <= MAX_CLIENT_MESSAGE {
            METRICS.refused.with_label_values(&["bad_message"]).inc();
        }
        out.event(relay, &ev).await;
    }
    None
}

/// Pack `packets` whole, in order, into messages of at most `max` bytes (a larger packet alone):
/// each message with the number of packets it holds.
fn pack(packets: &[Packet], max: usize) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut n = 0;
    for p in packets {
        if !cur.is_empty() && cur.len() + p.bytes.len() > max {
            out.push((std::mem::take(&mut cur), n));
            n = 0;
        }
        cur.extend_from_slice(&p.bytes);
        n += 1;
    }
    if n > 0 {
        out.push((cur, n));
    }
    out
}
