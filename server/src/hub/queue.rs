//! A subscriber's packet queue: bounded, one producer (the hub, under its stream's lock) and one
//! consumer (the subscriber's transport session).
//!
//! It replaces tokio's `mpsc` on the fan-out path, where every packet is sent once per
//! subscriber: a send is a short lock and a push, a receive a short lock and a pop, and waking is
//! one [`AtomicWaker`]. tokio's bounded channel also returns a semaphore permit (a mutex) and
//! updates its waiter lists on every packet; at 1,000 WebSocket clients that was about 12 % of the
//! server's time (docs/benchmarks.md). The same waker is also poked by the stream's events (see
//! [`super::stream`]), so a session waits on one thing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Context;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    waker: AtomicWaker,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    packets: VecDeque<Bytes>,
    receiver_gone: bool,
    sender_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in this module panics under the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a packet was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    Full,
    Closed,
}

/// A queue of at most `capacity` packets.
pub fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared =
        Arc::new(Shared { state: Mutex::new(State::default()), waker: AtomicWaker::new(), capacity: capacity.max(1) });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

/// The hub's end.
#[derive(Debug)]
pub struct Sender(Arc<Shared>);

impl Sender {
    /// Packets that can be queued now.
    pub fn room(&self) -> usize {
        self.0.capacity.saturating_sub(self.0.lock().packets.len())
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.0.lock().receiver_gone
    }

    pub fn try_send(&self, packet: Bytes) -> Result<(), SendError> {
        {
            let mut st = self.0.lock();
            if st.receiver_gone {
                return Err(SendError::Closed);
            }
            if st.packets.len() >= self.0.capacity {
                return Err(SendError::Full);
            }
            st.packets.push_back(packet);
        }
        self.0.waker.wake();
        Ok(())
    }

    /// Wake the receiver without a packet (something else for it happened: a train event).
    pub fn notify(&self) {
        self.0.waker.wake();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.lock().sender_gone = true;
        self.0.waker.wake();
    }
}

/// The subscriber's end.
#[derive(Debug)]
pub struct Receiver(Arc<Shared>);

impl Receiver {
    /// A queued packet, or `None` when the queue is empty.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.0.lock().packets.pop_front()
    }

    /// Move up to `max` queued packets to `out`, under one lock; returns how many.
    pub fn drain_into(&mut self, out: &mut impl Extend<Bytes>, max: usize) -> usize {
        let mut st = self.0.lock();
        let n = st.packets.len().min(max);
        out.extend(st.packets.drain(..n));
        n
    }

    /// Whether the sender is gone (no packet will ever come).
    pub fn sender_gone(&self) -> bool {
        self.0.lock().sender_gone
    }

    /// Register to be woken by the next packet or [`Sender::notify`]. Check again for packets
    /// (and whatever else notifies) after registering, before returning `Pending`.
    pub fn register(&self, cx: &Context<'_>) {
        self.0.waker.register(cx.waker());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.receiver_gone = true;
        st.packets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(i: u8) -> Bytes {
        Bytes::from(vec![i])
    }

    #[test]
    fn bounded_and_in_order() {
        let (tx, mut rx) = channel(3);
        assert_eq!(tx.room(), 3);
        for i in 0..3 {
            tx.try_send(pkt(i)).expect("test");
        }
        assert_eq!(tx.room(), 0);
        assert_eq!(tx.try_send(pkt(9)), Err(SendError::Full));
        assert_eq!(rx.try_recv(), Some(pkt(0)));
        assert_eq!(tx.room(), 1);
        tx.try_send(pkt(3)).expect("test");
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
        assert_eq!(tx.try_send(pkt(1)), Err(SendError::Closed));

        let (tx, mut rx) = channel(2);
        tx.try_send(pkt(1)).expect("test");
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
            tx.try_send(pkt(i)).expect("test");
        }
        drop(tx);
        assert_eq!(reader.await.expect("reader"), (0..5).map(pkt).collect::<Vec<_>>());
    }
}
