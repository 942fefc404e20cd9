//! What the one-thread client fleets ([`crate::wt_fleet`], [`crate::whep_fleet`]) share: the
//! wait on every client's socket and the clients' timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::stamped_udp::{recv_batch, Got, Stamp};

/// A receive buffer: one GRO batch, up to 64 KiB.
pub const RECV_BUF: usize = 64 * 1024;
/// How long the thread waits for a socket at most, so that new clients and `stop` are seen.
const TICK: Duration = Duration::from_millis(5);

/// Clients' sockets (by index) and their next timers.
pub struct Poller {
    epoll: Epoll,
    events: Vec<EpollEvent>,
    /// Each client's next timer; stale entries are skipped (the client's own deadline decides).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Poller {
    pub fn new() -> nix::Result<Self> {
        Ok(Self {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            events: vec![EpollEvent::empty(); 256],
            timers: BinaryHeap::new(),
        })
    }

    /// Watch client `i`'s socket for reading.
    pub fn add(&self, fd: impl AsFd, i: usize) -> nix::Result<()> {
        self.epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
    }

    /// Wait until a socket is readable, the next timer is due, or [`TICK`]; the readable
    /// clients go to `ready`.
    pub fn wait(&mut self, ready: &mut Vec<usize>) -> nix::Result<()> {
        ready.clear();
        let now = Instant::now();
        let wait = self.timers.peek().map_or(TICK, |t| t.0 .0.saturating_duration_since(now)).min(TICK);
        // Round up: a timer due in 0.4 ms must not spin on zero-length waits.
        let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let n = match self.epoll.wait(&mut self.events, EpollTimeout::from(ms)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e),
        };
        ready.extend(self.events[..n].iter().map(|e| e.data() as usize));
        Ok(())
    }

    /// Client `i`'s next deadline is `next`; `current` is the one on file, updated.
    pub fn file(&mut self, i: usize, current: &mut Option<Instant>, next: Option<Instant>) {
        if next != *current {
            *current = next;
            if let Some(at) = next {
                self.timers.push(Reverse((at, i)));
            }
        }
    }

    /// The next client whose deadline (`deadline(i)`) is due by `now`.
    pub fn due(&mut self, now: Instant, deadline: impl Fn(usize) -> Option<Instant>) -> Option<usize> {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                return None;
            }
            self.timers.pop();
            if deadline(i) == Some(at) {
                return Some(i);
            }
        }
        None
    }
}

/// One GRO batch from a client's socket into `rx`, its receive time into `stamp`; `None` when
/// the socket has nothing more.
pub fn recv(socket: &impl AsRawFd, stamp: &Stamp, rx: &mut [u8]) -> io::Result<Option<Got>> {
    let mut got = None;
    match recv_batch(socket, stamp, &mut [IoSliceMut::new(rx)], 1, |_, g| got = Some(g)) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}
