//! A subscriber's queue and its drop policy.
//!
//! Each subscriber has a bounded queue of packets. Per camera it is either *forwarding* or
//! *waiting for a keyframe*. It starts waiting (so its first frame is a keyframe, from the GOP
//! cache or live). A frame is admitted whole or not at all: at a frame's first chunk the queue must
//! have room for every chunk of it; otherwise that frame and every frame up to the next keyframe
//! are dropped (delta frames after a gap cannot be decoded anyway) and counted. The publisher only
//! ever calls `try_send`, so a slow subscriber costs the others nothing. The queue is
//! [`super::queue`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use railcast_protocol::{CameraId, TrainId};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::queue::{self, SendError};
use super::stream::{Stream, TrainEvent};
use super::Packet;
use crate::metrics::METRICS;

/// How often a slow subscriber is reported in the log.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Counters of one subscriber (shared with its transport session, which may resubscribe).
#[derive(Debug, Default)]
pub struct SubscriberCounters {
    /// Packets put in the queue.
    pub packets_queued: AtomicU64,
    pub bytes_queued: AtomicU64,
    pub frames_queued: AtomicU64,
    /// Packets and frames not queued because the subscriber was too slow.
    pub packets_dropped: AtomicU64,
    pub frames_dropped: AtomicU64,
}

/// Why a frame was not delivered to a subscriber (the `reason` label of the drop metric).
#[derive(Debug, Clone, Copy)]
enum DropReason {
    /// The queue had no room: the subscriber fell behind.
    QueueFull,
    /// Skipped while waiting for a keyframe (after a loss, or before the first keyframe).
    AwaitingKeyframe,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::AwaitingKeyframe => "awaiting_keyframe",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Offer {
    Queued,
    Dropped,
    Closed,
}

#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    tx: queue::Sender<Packet>,
    /// Cameras currently forwarding; every other camera waits for a keyframe.
    forwarding: Vec<CameraId>,
    counters: Arc<SubscriberCounters>,
    last_drop_log: Option<Instant>,
    frames_dropped_since_log: u64,
}

impl Slot {
    pub(super) fn new(id: u64, tx: queue::Sender<Packet>, counters: Arc<SubscriberCounters>) -> Self {
        Self { id, tx, forwarding: Vec::new(), counters, last_drop_log: None, frames_dropped_since_log: 0 }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Wake the subscriber (a train event was sent).
    pub(super) fn notify(&self) {
        self.tx.notify();
    }

    pub(super) fn wait_for_keyframe_all(&mut self) {
        self.forwarding.clear();
    }

    pub(super) fn offer(&mut self, packet: &Packet, now: Instant, train: &TrainId) -> Offer {
        let h = &packet.header;
        if self.tx.is_closed() {
            return Offer::Closed;
        }
        let pos = self.forwarding.iter().position(|c| *c == h.camera);
        let forwarding = match pos {
            Some(_) => true,
            None if h.starts_keyframe() => {
                self.forwarding.push(h.camera);
                true
            }
            None => false,
        };
        if !forwarding {
            return self.drop_packet(h, now, train, DropReason::AwaitingKeyframe);
        }
        // Admit a frame only if all of its chunks fit now; the hub is the only sender, so the room
        // it sees can only grow until the frame's last chunk.
        let room = if h.starts_frame() { usize::from(h.chunk_count) } else { 1 };
        match self.tx.try_send(packet, room) {
            Ok(()) => {
                let c = &self.counters;
                c.packets_queued.fetch_add(1, Ordering::Relaxed);
                c.bytes_queued.fetch_add(packet.bytes.len() as u64, Ordering::Relaxed);
                if h.starts_frame() {
                    c.frames_queued.fetch_add(1, Ordering::Relaxed);
                }
                Offer::Queued
            }
            Err(SendError::Full) => self.stop_camera(h, now, train),
            Err(SendError::Closed) => Offer::Closed,
        }
    }

    fn stop_camera(&mut self, h: &railcast_protocol::VideoHeader, now: Instant, train: &TrainId) -> Offer {
        self.forwarding.retain(|c| *c != h.camera);
        // A frame cut after its first chunk is lost too; count it once here.
        if !h.starts_frame() {
            self.count_frame_drop(DropReason::QueueFull);
        }
        self.drop_packet(h, now, train, DropReason::QueueFull)
    }

    fn count_frame_drop(&mut self, reason: DropReason) {
        self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        self.frames_dropped_since_log += 1;
        METRICS.frames_dropped.with_label_values(&[reason.label()]).inc();
    }

    fn drop_packet(
        &mut self,
        h: &railcast_protocol::VideoHeader,
        now: Instant,
        train: &TrainId,
        reason: DropReason,
    ) -> Offer {
        self.counters.packets_dropped.fetch_add(1, Ordering::Relaxed);
        if h.starts_frame() {
            self.count_frame_drop(reason);
        }
        if self.last_drop_log.is_none_or(|t| now.duration_since(t) >= DROP_LOG_INTERVAL)
            && self.frames_dropped_since_log > 0
        {
            tracing::info!(
                train = %train,
                subscriber = self.id,
                frames_dropped = self.frames_dropped_since_log,
                "subscriber too slow: dropping frames until the next keyframe"
            );
            self.last_drop_log = Some(now);
            self.frames_dropped_since_log = 0;
        }
        Offer::Dropped
    }
}

/// What a subscription yields next.
#[derive(Debug)]
pub enum SubItem {
    Packet(Packet),
    /// A train event; `Err(Lagged)` when events were lost (the caller resynchronises).
    Event(Result<TrainEvent, broadcast::error::RecvError>),
}

/// A transport's handle on one train's stream: a queue of packets and the train's events.
/// Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    stream: Arc<Stream>,
    packets: queue::Receiver<Packet>,
    events: broadcast::Receiver<TrainEvent>,
    counters: Arc<SubscriberCounters>,
}

impl Subscription {
    pub(super) fn new(
        id: u64,
        stream: Arc<Stream>,
        packets: queue::Receiver<Packet>,
        events: broadcast::Receiver<TrainEvent>,
        counters: Arc<SubscriberCounters>,
    ) -> Self {
        Self { id, stream, packets, events, counters }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    pub fn counters(&self) -> &Arc<SubscriberCounters> {
        &self.counters
    }

    /// Move up to `max` queued packets to `out` at once; returns how many.
    pub fn drain_packets(&mut self, out: &mut impl Extend<Packet>, max: usize) -> usize {
        self.packets.drain_into(out, max)
    }

    fn try_event(&mut self) -> Option<Result<TrainEvent, RecvError>> {
        match self.events.try_recv() {
            Ok(ev) => Some(Ok(ev)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }

    /// Next packet or event, events first. Cancel-safe.
    pub async fn next(&mut self) -> SubItem {
        let waited = std::future::poll_fn(|cx| {
            // Packets and events both wake the queue's waker; check, register, check again.
            for registered in [false, true] {
                if let Some(ev) = self.try_event() {
                    return Poll::Ready(Some(SubItem::Event(ev)));
                }
                if let Some(p) = self.packets.try_recv() {
                    return Poll::Ready(Some(SubItem::Packet(p)));
                }
                if !registered {
                    self.packets.register(cx);
                }
            }
            if self.packets.sender_gone() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match waited {
            Some(item) => item,
            // Dropped by the stream (not expected while subscribed): only events can come.
            None => SubItem::Event(self.events.recv().await),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.unsubscribe(self.id);
    }
}
