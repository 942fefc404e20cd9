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

use super::queue;
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

#[test]
fn every_drop_reason_has_its_series() {
    let labels = [DropReason::QueueFull.label(), DropReason::AwaitingKeyframe.label()];
    assert_eq!(labels, crate::metrics::DROP_REASONS);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    policy: DropPolicy,
}

impl Slot {
    pub(super) fn new(id: u64, tx: queue::Sender<Packet>, counters: Arc<SubscriberCounters>) -> Self {
        let policy = DropPolicy { counters, last_drop_log: None, frames_dropped_since_log: 0 };
        Self { id, tx, forwarding: Vec::new(), policy }
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

    /// Offer `packets`, in order, under one hold of the queue's lock and with one wake-up of the
    /// subscriber at the end (a train's datagrams read together: a frame's chunks, typically):
    /// each is admitted or dropped as if offered alone, and `each` is told which. Returns
    /// [`Offer::Closed`] (and offers nothing) when the subscriber is gone, else
    /// [`Offer::Queued`].
    pub(super) fn offer_batch(
        &mut self,
        packets: &[Packet],
        now: Instant,
        train: Origin<'_>,
        mut each: impl FnMut(Offer),
    ) -> Offer {
        let Ok(mut queue) = self.tx.batch() else {
            packets.iter().for_each(|_| each(Offer::Closed));
            return Offer::Closed;
        };
        let (mut packets_queued, mut bytes_queued, mut frames_queued) = (0, 0, 0);
        for packet in packets {
            let h = &packet.header;
            let forwarding = match self.forwarding.contains(&h.camera) {
                true => true,
                false if h.starts_keyframe() => {
                    self.forwarding.push(h.camera);
                    true
                }
                false => false,
            };
            if !forwarding {
                each(self.policy.drop_packet(self.id, h, now, train, DropReason::AwaitingKeyframe));
                continue;
            }
            // Admit a frame only if all of its chunks fit now; the hub is the only sender, so the
            // room it sees can only grow until the frame's last chunk.
            let room = if h.starts_frame() { usize::from(h.chunk_count) } else { 1 };
            match queue.try_send(packet, room) {
                Ok(()) => {
                    packets_queued += 1;
                    bytes_queued += packet.bytes.len() as u64;
                    frames_queued += u64::from(h.starts_frame());
                    each(Offer::Queued);
                }
                Err(_) => {
                    // Full: the only error inside a batch.
                    self.forwarding.retain(|c| *c != h.camera);
                    // A frame cut after its first chunk is lost too; count it once here.
                    if !h.starts_frame() {
                        self.policy.count_frame_drop(DropReason::QueueFull, train);
                    }
                    each(self.policy.drop_packet(self.id, h, now, train, DropReason::QueueFull));
                }
            }
        }
        drop(queue);
        if packets_queued > 0 {
            let c = &self.policy.counters;
            c.packets_queued.fetch_add(packets_queued, Ordering::Relaxed);
            c.bytes_queued.fetch_add(bytes_queued, Ordering::Relaxed);
            c.frames_queued.fetch_add(frames_queued, Ordering::Relaxed);
        }
        Offer::Queued
    }
}

/// A slot's drop accounting: its counters and the rate-limited log of a slow subscriber.
#[derive(Debug)]
struct DropPolicy {
    counters: Arc<SubscriberCounters>,
    last_drop_log: Option<Instant>,
    frames_dropped_since_log: u64,
}

impl DropPolicy {
    fn count_frame_drop(&mut self, reason: DropReason, train: Origin<'_>) {
        self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        train.frames_dropped.fetch_add(1, Ordering::Relaxed);
        self.frames_dropped_since_log += 1;
        METRICS.frames_dropped.with_label_values(&[reason.label()]).inc();
    }

    fn drop_packet(
        &mut self,
        subscriber: u64,
        h: &railcast_protocol::VideoHeader,
        now: Instant,
        train: Origin<'_>,
        reason: DropReason,
    ) -> Offer {
        self.counters.packets_dropped.fetch_add(1, Ordering::Relaxed);
        if h.starts_frame() {
            self.count_frame_drop(reason, train);
        }
        if self.last_drop_log.is_none_or(|t| now.duration_since(t) >= DROP_LOG_INTERVAL)
            && self.frames_dropped_since_log > 0
        {
            tracing::info!(
                train = %train.id,
                subscriber,
                frames_dropped = self.frames_dropped_since_log,
                "subscriber too slow: dropping frames until the next keyframe"
            );
            self.last_drop_log = Some(now);
            self.frames_dropped_since_log = 0;
        }
        Offer::Dropped
    }
}

/// The stream a packet offered to a [`Slot`] comes from: its train, for the drop log, and the
/// train's own count of frames its subscribers lost (`railcast_train_frames_dropped_total`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin<'a> {
    pub id: &'a TrainId,
    pub frames_dropped: &'a AtomicU64,
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

#[cfg(test)]
mod tests {
    //! The drop policy, synchronously: a [`Slot`] offered packets in the order a train sends
    //! them, its queue drained by hand.

    use railcast_protocol::packet::{packetize, Codec, FrameMeta};
    use railcast_protocol::{CameraId, FrameSeq, VideoHeader};

    use super::*;

    /// The packets of frame `seq` of `camera`, `chunks` of them.
    fn frame(camera: u16, seq: u32, keyframe: bool, chunks: usize) -> Vec<Packet> {
        let meta = FrameMeta {
            keyframe,
            codec: Codec::H264AnnexB,
            camera: CameraId(camera),
            seq: FrameSeq(seq),
            capture_us: 1,
        };
        let data = vec![0u8; chunks * 100];
        packetize(meta, &data, 100)
            .expect("packetize")
            .into_iter()
            .map(|bytes| Packet { header: VideoHeader::parse(&bytes, 100).expect("header"), bytes })
            .collect()
    }

    struct Fixture {
        /// Offer a test's packets in one batch, or each alone.
        together: bool,
        slot: Slot,
        rx: queue::Receiver<Packet>,
        counters: Arc<SubscriberCounters>,
        train: TrainId,
        train_dropped: AtomicU64,
    }

    impl Fixture {
        /// Each test runs twice: its packets offered each alone, then in batches. The outcome
        /// must be the same.
        fn both(capacity: usize, test: impl Fn(Self)) {
            test(Self::new(capacity, false));
            test(Self::new(capacity, true));
        }

        fn new(capacity: usize, together: bool) -> Self {
            let (tx, rx) = queue::channel(capacity);
            let counters = Arc::new(SubscriberCounters::default());
            Self {
                together,
                slot: Slot::new(1, tx, Arc::clone(&counters)),
                rx,
                counters,
                train: TrainId::new("train-1").expect("id"),
                train_dropped: AtomicU64::new(0),
            }
        }

        fn offer(&mut self, packets: &[Packet]) -> Vec<Offer> {
            let train = Origin { id: &self.train, frames_dropped: &self.train_dropped };
            let mut offers = Vec::new();
            if self.together {
                self.slot.offer_batch(packets, Instant::now(), train, |o| offers.push(o));
            } else {
                for p in packets {
                    self.slot.offer_batch(std::slice::from_ref(p), Instant::now(), train, |o| offers.push(o));
                }
            }
            assert_eq!(offers.len(), packets.len(), "one outcome per packet");
            offers
        }

        /// (camera, seq, chunk) of every packet queued, drained.
        fn drain(&mut self) -> Vec<(u16, u32, u16)> {
            let mut out = Vec::new();
            self.rx.drain_into(&mut out, usize::MAX);
            out.iter().map(|p| (p.header.camera.0, p.header.seq.0, p.header.chunk_index)).collect()
        }

        fn dropped(&self) -> (u64, u64) {
            (
                self.counters.packets_dropped.load(Ordering::Relaxed),
                self.counters.frames_dropped.load(Ordering::Relaxed),
            )
        }
    }

    #[test]
    fn a_new_subscriber_starts_at_a_keyframe() {
        Fixture::both(64, |mut f| {
            assert_eq!(f.offer(&frame(0, 1, false, 2)), [Offer::Dropped, Offer::Dropped], "delta before any keyframe");
            assert_eq!(f.dropped(), (2, 1));
            assert_eq!(f.offer(&frame(0, 2, true, 2)), [Offer::Queued, Offer::Queued]);
            assert_eq!(f.offer(&frame(0, 3, false, 1)), [Offer::Queued]);
            assert_eq!(f.drain(), [(0, 2, 0), (0, 2, 1), (0, 3, 0)]);
        });
    }

    #[test]
    fn a_frame_is_admitted_whole_or_not_at_all_then_nothing_until_a_keyframe() {
        Fixture::both(4, |mut f| {
            assert_eq!(f.offer(&frame(0, 1, true, 3)), [Offer::Queued; 3]);
            // Room for 1: a 2-chunk frame does not fit, and neither does anything before the next keyframe.
            assert_eq!(f.offer(&frame(0, 2, false, 2)), [Offer::Dropped; 2]);
            f.drain();
            assert_eq!(f.offer(&frame(0, 3, false, 1)), [Offer::Dropped], "a delta after the gap cannot be decoded");
            assert_eq!(f.dropped(), (3, 2));
            assert_eq!(f.offer(&frame(0, 4, true, 2)), [Offer::Queued; 2]);
            assert_eq!(f.drain(), [(0, 4, 0), (0, 4, 1)]);
            assert_eq!(f.counters.frames_queued.load(Ordering::Relaxed), 2);
        });
    }

    #[test]
    fn a_frame_cut_after_its_first_chunk_counts_once() {
        Fixture::both(3, |mut f| {
            let key = frame(0, 1, true, 3);
            assert_eq!(f.offer(&key[..1]), [Offer::Queued], "room for the whole frame at its first chunk");
            // The consumer never reads; another camera's keyframe takes the room left.
            assert_eq!(f.offer(&frame(1, 1, true, 2)), [Offer::Queued; 2]);
            assert_eq!(f.offer(&key[1..]), [Offer::Dropped; 2]);
            assert_eq!(f.dropped(), (2, 1), "two packets, one frame");
        });
    }

    #[test]
    fn cameras_recover_independently() {
        Fixture::both(4, |mut f| {
            f.offer(&frame(0, 1, true, 1));
            f.offer(&frame(1, 1, true, 1));
            f.offer(&frame(0, 2, false, 3)); // does not fit: camera 0 waits for a keyframe
            f.drain();
            assert_eq!(f.offer(&frame(1, 2, false, 1)), [Offer::Queued], "camera 1 keeps forwarding");
            assert_eq!(f.offer(&frame(0, 3, false, 1)), [Offer::Dropped], "camera 0 waits");
            assert_eq!(f.drain(), [(1, 2, 0)]);
        });
    }

    #[test]
    fn a_gone_receiver_closes_the_slot() {
        Fixture::both(4, |mut f| {
            let packets = frame(0, 1, true, 1);
            drop(std::mem::replace(&mut f.rx, queue::channel(1).1));
            assert_eq!(f.offer(&packets), [Offer::Closed]);
        });
    }

    #[test]
    fn frames_read_together_fare_as_if_offered_alone() {
        Fixture::both(4, |mut f| {
            let together: Vec<Packet> =
                [frame(0, 1, true, 3), frame(0, 2, false, 2), frame(1, 1, true, 1), frame(0, 3, false, 1)].concat();
            let offers = f.offer(&together);
            assert_eq!(offers[..3], [Offer::Queued; 3], "the keyframe fits");
            assert_eq!(offers[3..5], [Offer::Dropped; 2], "room for 1, not 2");
            assert_eq!(offers[5], Offer::Queued, "camera 1's keyframe takes the last place");
            assert_eq!(offers[6], Offer::Dropped, "camera 0 waits for a keyframe");
            assert_eq!(f.dropped(), (3, 2));
            assert_eq!(f.drain(), [(0, 1, 0), (0, 1, 1), (0, 1, 2), (1, 1, 0)]);
            let c = &f.counters;
            let queued = |n: &AtomicU64| n.load(Ordering::Relaxed);
            assert_eq!(
                (queued(&c.packets_queued), queued(&c.frames_queued), queued(&c.bytes_queued)),
                (4, 2, 4 * (100 + railcast_protocol::packet::HEADER_LEN as u64))
            );
        });
    }
}
