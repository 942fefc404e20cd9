//! A subscriber's packet queue ([`super::Packet`]s; generic for its tests): bounded, one producer (the hub, under its stream's lock) and one
//! consumer (the subscriber's transport session).
//!
//! It replaces tokio's `mpsc` on the fan-out path, where every packet is sent once per
//! subscriber: a send is a short lock and a push (the packets the hub is given together go under
//! one lock, with one wake-up: [`Sender::batch`]), a receive a short lock and a pop, and waking is
//! one [`AtomicWaker`]. tokio's bounded channel also returns a semaphore permit (a mutex) and
//! updates its waiter lists on every packet, which showed in the server's profile at 1,000
//! WebSocket clients (docs/benchmarks-history.md, "Session 4: the WebSocket write path and the
//! hub queue"). The same waker is also poked by the stream's events (see [`super::stream`]), so a
//! session waits on one thing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Context;

use futures_util::task::AtomicWaker;

#[derive(Debug)]
struct Shared<T> {
    packets: Mutex<VecDeque<T>>,
    waker: AtomicWaker,
    capacity: usize,
    receiver_gone: AtomicBool,
    sender_gone: AtomicBool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // Nothing in this module panics under the lock; a poisoned queue is still consistent.
        self.packets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a packet was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    Full,
    Closed,
}

/// A queue of at most `capacity` packets.
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        packets: Mutex::new(VecDeque::new()),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
        receiver_gone: AtomicBool::new(false),
        sender_gone: AtomicBool::new(false),
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

/// The hub's end.
#[derive(Debug)]
pub struct Sender<T>(Arc<Shared<T>>);

impl<T: Clone> Sender<T> {
    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.0.receiver_gone.load(Ordering::Acquire)
    }

    /// Queue `packet` if there is room for `room` packets (at least one) now: a frame's first
    /// chunk asks for room for the whole frame. (The hub sends in batches; this is a batch of one.)
    #[cfg(test)]
    pub fn try_send(&self, packet: &T, room: usize) -> Result<(), SendError> {
        self.batch()?.try_send(packet, room)
    }

    /// Hold the queue for several sends under one lock; the receiver is woken once, when the
    /// batch ends, if anything was queued. `Err(Closed)` when the receiver is gone.
    pub fn batch(&self) -> Result<Batch<'_, T>, SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        Ok(Batch { queue: Some(self.0.lock()), shared: &self.0, queued: false })
    }

    /// Wake the receiver without a packet (something else for it happened: a train event).
    pub fn notify(&self) {
        self.0.waker.wake();
    }
}

/// Sends under one hold of a queue's lock ([`Sender::batch`]).
#[derive(Debug)]
pub struct Batch<'a, T> {
    queue: Option<MutexGuard<'a, VecDeque<T>>>,
    shared: &'a Shared<T>,
    queued: bool,
}

impl<T: Clone> Batch<'_, T> {
    /// Queue `packet` if there is room for `room` packets (at least one) now: a frame's first
    /// chunk asks for room for the whole frame. Only `Full` fails it: a receiver that goes
    /// meanwhile clears the queue once the batch lets go of it.
    pub fn try_send(&mut self, packet: &T, room: usize) -> Result<(), SendError> {
        let q = self.queue.as_mut().expect("held until dropped");
        if self.shared.capacity.saturating_sub(q.len()) < room.max(1) {
            return Err(SendError::Full);
        }
        q.push_back(packet.clone());
        self.queued = true;
        Ok(())
    }
}

impl<T> Drop for Batch<'_, T> {
    fn drop(&mut self) {
        // Unlock first: the woken receiver takes the lock at once.
        drop(self.queue.take());
        if self.queued {
            self.shared.waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.sender_gone.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

/// The subscriber's end.
#[derive(Debug)]
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// A queued packet, or `None` when the queue is empty.
    pub fn try_recv(&mut self) -> Option<T> {
        self.0.lock().pop_front()
    }

    /// Move up to `max` queued packets to `out`, under one lock; returns how many.
    pub fn drain_into(&mut self, out: &mut impl Extend<T>, max: usize) -> usize {
        let mut q = self.0.lock();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        n
    }

    /// Whether the sender is gone (no packet will ever come).
    pub fn sender_gone(&self) -> bool {
        self.0.sender_gone.load(Ordering::Acquire)
    }

    /// Register to be woken by the next packet or [`Sender::notify`]. Check again for packets
    /// (and whatever else notifies) after registering, before returning `Pending`.
    pub fn register(&self, cx: &Context<'_>) {
        self.0.waker.register(cx.waker());
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
        self.0.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn pkt(i: u8) -> Bytes {
        Bytes::from(vec![i])
    }

    #[test]
    fn bounded_and_in_order() {
        let (tx, mut rx) = channel(3);
        assert_eq!(tx.try_send(&pkt(9), 4), Err(SendError::Full), "room for 4 of 3");
        tx.try_send(&pkt(0), 3).expect("room for 3");
        for i in 1..3 {
            tx.try_send(&pkt(i), 0).expect("test");
        }
        assert_eq!(tx.try_send(&pkt(9), 0), Err(SendError::Full));
        assert_eq!(rx.try_recv(), Some(pkt(0)));
        assert_eq!(tx.try_send(&pkt(9), 2), Err(SendError::Full), "room for 1 only");
        tx.try_send(&pkt(3), 1).expect("test");
        let mut out = Vec::new();
        assert_eq!(rx.drain_into(&mut out, 2), 2);
        assert_eq!(out, vec![pkt(1), pkt(2)]);
        assert_eq!(rx.drain_into(&mut out, 10), 1);
        assert_eq!(out.last(), Some(&pkt(3)));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn closing_either_end() {
        let (tx, rx) = channel(2);
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(&pkt(1), 1), Err(SendError::Closed));

        let (tx, mut rx) = channel(2);
        tx.try_send(&pkt(1), 1).expect("test");
        drop(tx);
        assert!(rx.sender_gone());
        assert_eq!(rx.try_recv(), Some(pkt(1)));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_send_wakes_a_waiting_receiver() {
        let (tx, mut rx) = channel(8);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 5 {
                std::future::poll_fn(|cx| {
                    rx.register(cx);
                    match rx.try_recv() {
                        Some(p) => {
                            got.push(p);
                            std::task::Poll::Ready(())
                        }
                        None => std::task::Poll::Pending,
                    }
                })
                .await;
            }
            got
        });
        for i in 0..5 {
            tokio::task::yield_now().await;
            tx.try_send(&pkt(i), 1).expect("test");
        }
        drop(tx);
        assert_eq!(reader.await.expect("reader"), (0..5).map(pkt).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_wakes_once_when_it_ends_and_only_if_it_queued() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(Arc::clone(&count));
        let wakes = || count.0.load(Ordering::SeqCst);
        let (tx, mut rx) = channel(3);

        rx.register(&Context::from_waker(&waker));
        let mut batch = tx.batch().expect("open");
        batch.try_send(&pkt(0), 2).expect("room for 2");
        batch.try_send(&pkt(1), 1).expect("room");
        assert_eq!(batch.try_send(&pkt(9), 2), Err(SendError::Full), "room for 1 only");
        batch.try_send(&pkt(2), 1).expect("room");
        assert_eq!(wakes(), 0, "not during the batch");
        drop(batch);
        assert_eq!(wakes(), 1, "once, at its end");

        rx.register(&Context::from_waker(&waker));
        let mut batch = tx.batch().expect("open");
        assert_eq!(batch.try_send(&pkt(9), 1), Err(SendError::Full));
        drop(batch);
        assert_eq!(wakes(), 1, "nothing queued, nobody woken");
        let mut out = Vec::new();
        rx.drain_into(&mut out, 10);
        assert_eq!(out, vec![pkt(0), pkt(1), pkt(2)]);

        drop(rx);
        assert_eq!(tx.batch().err(), Some(SendError::Closed));
    }
}
