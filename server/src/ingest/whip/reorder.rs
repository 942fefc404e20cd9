//! Put one RTP stream back in sequence order before it is depacketized, sans IO.
//!
//! Packets that arrive in order leave at once. A packet that arrives ahead of a missing one
//! waits, at most [`HOLD`], for the missing one: reordered on the way, or resent after the NACK
//! the receiver's interceptors send. Then the gap is given up and the packets after it leave;
//! the depacketizer sees the sequence gap and drops the frame, as without this buffer. A packet
//! behind the point already released (very late, or a duplicate) leaves at once too, and the
//! depacketizer counts it as late.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a packet waits for a missing one before it.
pub const HOLD: Duration = Duration::from_millis(60);
/// Packets ahead of the next one expected that are held; one further ahead gives up every gap.
const WINDOW: usize = 512;

/// One stream's reorder buffer of `T` (a packet and what goes with it).
#[derive(Debug)]
pub struct Reorder<T> {
    /// The sequence number of `held[0]`: the next one to release.
    next: Option<u16>,
    /// Slot `i` is sequence number `next + i`: a packet waiting, and when it arrived.
    held: VecDeque<Option<(T, Instant)>>,
    /// Gaps given up (after [`HOLD`], or by a packet too far ahead).
    pub gaps: u64,
    /// Packets that waited for a missing one.
    pub reordered: u64,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self { next: None, held: VecDeque::new(), gaps: 0, reordered: 0 }
    }
}

impl<T> Reorder<T> {
    /// Whether packets wait for a missing one (call [`Reorder::expire`] then).
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Take the packet with sequence number `seq` that arrived `now`; what may leave, in order.
    pub fn push(&mut self, seq: u16, item: T, now: Instant, out: &mut Vec<T>) {
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next);
        if ahead >= 0x8000 {
            out.push(item); // behind what was released: the depacketizer counts it late
            return;
        }
        let ahead = usize::from(ahead);
        if ahead >= WINDOW {
            // Far ahead (a burst lost, or the sender jumped): give up every gap, start here.
            self.gaps += u64::from(self.held.iter().any(Option::is_none));
            out.extend(self.held.drain(..).flatten().map(|(t, _)| t));
            out.push(item);
            self.next = Some(seq.wrapping_add(1));
            return;
        }
        if ahead == 0 && self.held.is_empty() {
            self.next = Some(seq.wrapping_add(1));
            out.push(item);
            return;
        }
        if self.held.len() <= ahead {
            self.held.resize_with(ahead + 1, || None);
        }
        if self.held[ahead].is_some() {
            out.push(item); // a duplicate of one waiting: late
            return;
        }
        if ahead > 0 {
            self.reordered += 1;
        }
        self.held[ahead] = Some((item, now));
        self.release(out);
    }

    /// Give up the gap in front when the oldest packet behind it has waited [`HOLD`]; what may
    /// leave, in order.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        while let Some(oldest) = self.held.iter().flatten().map(|(_, at)| *at).min() {
            if now.saturating_duration_since(oldest) < HOLD {
                return;
            }
            let Some(skip) = self.held.iter().position(Option::is_some) else { return };
            self.held.drain(..skip);
            self.advance(skip);
            self.gaps += 1;
            self.release(out);
        }
    }

    /// Release the run of packets at the front.
    fn release(&mut self, out: &mut Vec<T>) {
        while let Some(Some(_)) = self.held.front() {
            if let Some(Some((item, _))) = self.held.pop_front() {
                out.push(item);
            }
            self.advance(1);
        }
    }

    fn advance(&mut self, n: usize) {
        if let Some(next) = self.next.as_mut() {
            *next = next.wrapping_add(n as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(r: &mut Reorder<u16>, seqs: &[u16], now: Instant) -> Vec<u16> {
        let mut out = Vec::new();
        for &s in seqs {
            r.push(s, s, now, &mut out);
        }
        out
    }

    #[test]
    fn in_order_packets_leave_at_once() {
        let mut r = Reorder::default();
        let t = Instant::now();
        assert_eq!(run(&mut r, &[7, 8, 9], t), [7, 8, 9]);
        assert!(!r.holding());
        assert_eq!((r.gaps, r.reordered), (0, 0));
    }

    #[test]
    fn a_swapped_pair_and_a_shuffled_run_leave_in_order() {
        let mut r = Reorder::default();
        let t = Instant::now();
        assert_eq!(run(&mut r, &[1, 3], t), [1]);
        assert!(r.holding());
        assert_eq!(run(&mut r, &[2], t), [2, 3]);
        assert_eq!(run(&mut r, &[6, 5, 4, 7], t), [4, 5, 6, 7]);
        assert!(!r.holding());
        assert_eq!((r.gaps, r.reordered), (0, 3));
    }

    #[test]
    fn across_the_wrap() {
        let mut r = Reorder::default();
        let t = Instant::now();
        assert_eq!(run(&mut r, &[65534, 0, 65535, 1], t), [65534, 65535, 0, 1]);
    }

    #[test]
    fn a_gap_is_given_up_after_the_hold_then_the_missing_one_is_late() {
        let mut r = Reorder::default();
        let t = Instant::now();
        assert_eq!(run(&mut r, &[10, 12, 13, 15], t), [10]);
        let mut out = Vec::new();
        r.expire(t + HOLD / 2, &mut out);
        assert!(out.is_empty(), "not yet");
        r.expire(t + HOLD, &mut out);
        // 11 given up: 12 and 13 leave; 15 waited as long, so 14 is given up too.
        assert_eq!(out, [12, 13, 15]);
        assert_eq!(r.gaps, 2);
        assert!(!r.holding());
        assert_eq!(run(&mut r, &[11, 16], t + HOLD), [11, 16], "11 behind: out at once, for the depacketizer to count");
    }

    #[test]
    fn a_packet_far_ahead_gives_up_every_gap() {
        let mut r = Reorder::default();
        let t = Instant::now();
        assert_eq!(run(&mut r, &[100, 102], t), [100]);
        assert_eq!(run(&mut r, &[102 + WINDOW as u16], t), [102, 102 + WINDOW as u16]);
        assert_eq!(r.gaps, 1);
        assert_eq!(run(&mut r, &[103 + WINDOW as u16], t), [103 + WINDOW as u16]);
    }

    #[test]
    fn a_duplicate_leaves_at_once() {
        let mut r = Reorder::default();
        let t = Instant::now();
        assert_eq!(run(&mut r, &[1, 3, 3, 1], t), [1, 3, 1]);
        assert_eq!(run(&mut r, &[2], t), [2, 3]);
    }
}
