//! railcast patch (third_party/PATCHES.md, 18): one UDP socket shared by many peer connections.
//!
//! Upstream left this as a `todo` (`SettingEngine::set_udp_network` in `rtc`): every peer
//! connection binds its own socket(s), so a server needs one open port per session. A
//! [`UdpMux`] owns one bound socket and a task that reads it; each peer connection built with
//! [`PeerConnectionBuilder::with_udp_mux`](crate::peer_connection::PeerConnectionBuilder::with_udp_mux)
//! gets a [`UdpMuxConn`], a virtual socket with the mux's address, in place of a socket of its
//! own. Datagrams are routed the way pion's `UDPMuxDefault` and webrtc-rs 0.x's `UDPMuxDefault`
//! route them:
//!
//! 1. a STUN Binding request by the local ufrag in its USERNAME (`local:remote`, RFC 8445
//!    §7.2.2): the connection that owns that ufrag gets it, and from then on owns the sender's
//!    address. Before an address is given to a connection (a new one, or one another connection
//!    owns), the request's MESSAGE-INTEGRITY must verify with that connection's password, so a
//!    datagram with a forged source address cannot take a session's address away;
//! 2. a STUN response (success or error) by its transaction id, when the connection sent the
//!    request through the mux (its connectivity checks, and STUN server queries for
//!    server-reflexive candidates: several connections ask the same STUN server, so its address
//!    alone cannot tell them apart);
//! 3. everything else (DTLS, SRTP/SRTCP, later STUN) by the sender's address.
//!
//! What matches nothing is dropped and counted ([`UdpMuxStats`]); nothing is parsed beyond the
//! STUN header and the USERNAME and MESSAGE-INTEGRITY attributes, and nothing from the network can
//! make the mux grow:
//! each connection owns at most [`MAX_UFRAGS_PER_CONN`] ufrags, [`MAX_ADDRS_PER_CONN`] remote
//! addresses and [`MAX_TRANSACTIONS_PER_CONN`] outstanding transactions (the oldest go first),
//! and a connection's entries go when it is dropped (its driver stops, or an ICE restart
//! replaces its transports). Datagrams from an address a connection already owns go to it
//! unchecked: the ICE agent behind the mux verifies every check, as on a socket of its own.
//!
//! TURN allocations cannot share the socket: a TURN server keys an allocation by its 5-tuple
//! (RFC 8656 §2.2), so two connections allocating from one local address would collide. A peer
//! connection with TURN servers therefore binds one extra ephemeral socket per mux for its TURN
//! client; that socket only talks to the TURN server, and clients never need to reach it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::BytesMut;
use log::{debug, error, warn};

use super::{gro_recv_buf_len, is_retryable_socket_recv_error};
use crate::runtime::{AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, Transmit};

/// Datagrams queued for one connection before the mux drops what arrives for it.
pub const DEFAULT_QUEUE_DATAGRAMS: usize = 1024;
/// Local ufrags one connection keeps (ICE restarts add one each; the oldest goes first).
pub const MAX_UFRAGS_PER_CONN: usize = 4;
/// Remote addresses one connection owns (the oldest goes first).
pub const MAX_ADDRS_PER_CONN: usize = 32;
/// Outstanding STUN transactions one connection may have (the oldest goes first).
pub const MAX_TRANSACTIONS_PER_CONN: usize = 128;

type ConnId = u64;
type TransactionId = [u8; 12];

/// What the mux holds and what it dropped, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpMuxStats {
    /// Connections using the mux now.
    pub connections: usize,
    /// Local ufrags routed now.
    pub ufrags: usize,
    /// Remote addresses routed now.
    pub addresses: usize,
    /// STUN transactions awaiting their response now.
    pub transactions: usize,
    /// Datagrams received on the socket.
    pub received: u64,
    /// Dropped: a STUN Binding request whose USERNAME names no connection's ufrag.
    pub dropped_unknown_ufrag: u64,
    /// Dropped: from an address no connection owns, and not a STUN message that says whose it is.
    pub dropped_unknown_address: u64,
    /// Dropped: the connection's queue was full (its driver is not keeping up).
    pub dropped_queue_full: u64,
    /// Dropped: a Binding request for a known ufrag from an address its connection does not own,
    /// whose MESSAGE-INTEGRITY does not verify with that connection's password.
    pub dropped_bad_integrity: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    unknown_ufrag: AtomicU64,
    unknown_address: AtomicU64,
    queue_full: AtomicU64,
    bad_integrity: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Datagrams routed to one connection, and the waker of its driver's receive.
#[derive(Debug, Default)]
struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Debug, Default)]
struct InboxState {
    datagrams: VecDeque<(BytesMut, SocketAddr)>,
    waker: Option<Waker>,
}

impl Inbox {
    /// Queue a datagram; `false` when the queue is full.
    fn push(&self, datagram: BytesMut, from: SocketAddr, limit: usize) -> bool {
        let mut state = lock(&self.state);
        if state.datagrams.len() >= limit {
            return false;
        }
        state.datagrams.push_back((datagram, from));
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

#[derive(Debug)]
struct ConnEntry {
    inbox: Arc<Inbox>,
    ufrags: VecDeque<String>,
    addrs: VecDeque<SocketAddr>,
    transactions: VecDeque<TransactionId>,
}

/// The routing tables. One lock, short critical sections: a lookup per datagram.
#[derive(Debug, Default)]
struct Tables {
    next_id: ConnId,
    conns: HashMap<ConnId, ConnEntry>,
    /// Local ufrag → its connection and the ICE password that goes with it.
    ufrags: HashMap<String, (ConnId, String)>,
    addrs: HashMap<SocketAddr, ConnId>,
    transactions: HashMap<TransactionId, ConnId>,
}

impl Tables {
    /// `id` owns `from` from now on (a check with its ufrag came from there).
    fn claim_addr(&mut self, id: ConnId, from: SocketAddr) {
        match self.addrs.insert(from, id) {
            Some(previous) if previous == id => return,
            Some(previous) => {
                if let Some(other) = self.conns.get_mut(&previous) {
                    other.addrs.retain(|a| *a != from);
                }
            }
            None => {}
        }
        let Some(entry) = self.conns.get_mut(&id) else {
            self.addrs.remove(&from);
            return;
        };
        entry.addrs.push_back(from);
        if entry.addrs.len() > MAX_ADDRS_PER_CONN {
            if let Some(old) = entry.addrs.pop_front() {
                if self.addrs.get(&old) == Some(&id) {
                    self.addrs.remove(&old);
                }
            }
        }
    }

    fn remember_transaction(&mut self, id: ConnId, tid: TransactionId) {
        if self.transactions.insert(tid, id) == Some(id) {
            return; // a retransmission, or the same send polled again
        }
        let Some(entry) = self.conns.get_mut(&id) else {
            self.transactions.remove(&tid);
            return;
        };
        entry.transactions.push_back(tid);
        if entry.transactions.len() > MAX_TRANSACTIONS_PER_CONN {
            if let Some(old) = entry.transactions.pop_front() {
                if self.transactions.get(&old) == Some(&id) {
                    self.transactions.remove(&old);
                }
            }
        }
    }

    fn add_ufrag(&mut self, id: ConnId, ufrag: &str, pwd: &str) {
        match self.ufrags.get(ufrag) {
            Some((owner, _)) if *owner == id => {
                self.ufrags.insert(ufrag.to_owned(), (id, pwd.to_owned()));
                return;
            }
            Some((owner, _)) => {
                warn!("UDP mux: local ufrag {ufrag:?} moves from connection {owner} to {id}");
                let owner = *owner;
                if let Some(other) = self.conns.get_mut(&owner) {
                    other.ufrags.retain(|u| u != ufrag);
                }
            }
            None => {}
        }
        let Some(entry) = self.conns.get_mut(&id) else { return };
        self.ufrags.insert(ufrag.to_owned(), (id, pwd.to_owned()));
        entry.ufrags.push_back(ufrag.to_owned());
        if entry.ufrags.len() > MAX_UFRAGS_PER_CONN {
            if let Some(old) = entry.ufrags.pop_front() {
                if self.ufrags.get(&old).is_some_and(|(owner, _)| *owner == id) {
                    self.ufrags.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, id: ConnId) {
        let Some(entry) = self.conns.remove(&id) else { return };
        for ufrag in entry.ufrags {
            if self.ufrags.get(&ufrag).is_some_and(|(owner, _)| *owner == id) {
                self.ufrags.remove(&ufrag);
            }
        }
        for addr in entry.addrs {
            if self.addrs.get(&addr) == Some(&id) {
                self.addrs.remove(&addr);
            }
        }
        for tid in entry.transactions {
            if self.transactions.get(&tid) == Some(&id) {
                self.transactions.remove(&tid);
            }
        }
    }
}

/// Wakes every connection that found the shared socket not writable. tokio keeps only the waker
/// of the latest `poll_send_ready`, so each connection's own waker would be lost as soon as
/// another connection polled; the socket is always polled with this one waker instead.
#[derive(Debug, Default)]
struct SendWake {
    waiters: Mutex<Vec<Waker>>,
}

impl SendWake {
    fn register(&self, waker: &Waker) {
        let mut waiters = lock(&self.waiters);
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }
}

impl Wake for SendWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for waker in waiters {
            waker.wake();
        }
    }
}

struct Shared {
    socket: Arc<dyn AsyncUdpSocket>,
    local_addr: SocketAddr,
    tables: Mutex<Tables>,
    counters: Counters,
    queue_limit: usize,
    send_wake: Arc<SendWake>,
    send_waker: Waker,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMux").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Shared {
    /// Route one received datagram.
    fn route(&self, datagram: &[u8], from: SocketAddr) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let mut tables = lock(&self.tables);
        let by_addr = |tables: &Tables| tables.addrs.get(&from).copied();
        let id = match stun::header(datagram) {
            Some(h) if h.class == stun::CLASS_REQUEST && h.method == stun::METHOD_BINDING => {
                match stun::local_ufrag(datagram) {
                    Some(ufrag) => match std::str::from_utf8(ufrag).ok().and_then(|u| tables.ufrags.get(u)) {
                        Some((id, _)) if tables.addrs.get(&from) == Some(id) => Some(*id),
                        Some((id, pwd)) => {
                            // A new address for this connection: only with its password.
                            let id = *id;
                            if !stun::integrity_verifies(datagram, pwd.as_bytes()) {
                                drop(tables);
                                self.counters.bad_integrity.fetch_add(1, Ordering::Relaxed);
                                debug!("UDP mux: dropped a Binding request from {from} whose integrity fails");
                                return;
                            }
                            tables.claim_addr(id, from);
                            Some(id)
                        }
                        None => {
                            drop(tables);
                            self.counters.unknown_ufrag.fetch_add(1, Ordering::Relaxed);
                            debug!("UDP mux: dropped a Binding request from {from} for an unknown ufrag");
                            return;
                        }
                    },
                    None => by_addr(&tables),
                }
            }
            Some(h) if h.class == stun::CLASS_SUCCESS || h.class == stun::CLASS_ERROR => {
                match tables.transactions.remove(&h.transaction_id) {
                    Some(id) => Some(id),
                    None => by_addr(&tables),
                }
            }
            _ => by_addr(&tables),
        };
        let inbox = id.and_then(|id| tables.conns.get(&id)).map(|c| Arc::clone(&c.inbox));
        drop(tables);
        match inbox {
            Some(inbox) => {
                if !inbox.push(BytesMut::from(datagram), from, self.queue_limit) {
                    self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.counters.unknown_address.fetch_add(1, Ordering::Relaxed);
                debug!("UDP mux: dropped {} bytes from unknown address {from}", datagram.len());
            }
        }
    }
}

/// One UDP socket shared by many peer connections. Cheap to clone behind an `Arc`; the reading
/// task stops when the last `Arc<UdpMux>` is dropped (each peer connection built with it holds
/// one).
pub struct UdpMux {
    shared: Arc<Shared>,
    reader: Box<dyn JoinHandle>,
}

impl fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl UdpMux {
    /// Bind `addr` and start reading it on `runtime` (with tokio: call this inside the runtime).
    /// Port 0 picks a free port; [`local_addr`](Self::local_addr) tells which.
    pub fn bind(addr: SocketAddr, runtime: Arc<dyn Runtime>) -> io::Result<Arc<Self>> {
        Self::from_std(std::net::UdpSocket::bind(addr)?, runtime)
    }

    /// Use an already bound socket.
    pub fn from_std(socket: std::net::UdpSocket, runtime: Arc<dyn Runtime>) -> io::Result<Arc<Self>> {
        Self::with_queue_limit(socket, runtime, DEFAULT_QUEUE_DATAGRAMS)
    }

    /// Use an already bound socket; at most `queue_limit` datagrams wait for each connection.
    pub fn with_queue_limit(
        socket: std::net::UdpSocket,
        runtime: Arc<dyn Runtime>,
        queue_limit: usize,
    ) -> io::Result<Arc<Self>> {
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let socket = runtime.wrap_udp_socket(socket)?;
        let send_wake = Arc::new(SendWake::default());
        let shared = Arc::new(Shared {
            socket,
            local_addr,
            tables: Mutex::new(Tables::default()),
            counters: Counters::default(),
            queue_limit: queue_limit.max(1),
            send_waker: Waker::from(Arc::clone(&send_wake)),
            send_wake,
        });
        let reader = runtime.spawn(Box::pin(read_loop(Arc::clone(&shared), Arc::clone(&runtime))));
        Ok(Arc::new(Self { shared, reader }))
    }

    /// The bound address: every connection's host candidate has it.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Counts, for metrics.
    pub fn stats(&self) -> UdpMuxStats {
        let tables = lock(&self.shared.tables);
        let c = &self.shared.counters;
        UdpMuxStats {
            connections: tables.conns.len(),
            ufrags: tables.ufrags.len(),
            addresses: tables.addrs.len(),
            transactions: tables.transactions.len(),
            received: c.received.load(Ordering::Relaxed),
            dropped_unknown_ufrag: c.unknown_ufrag.load(Ordering::Relaxed),
            dropped_unknown_address: c.unknown_address.load(Ordering::Relaxed),
            dropped_queue_full: c.queue_full.load(Ordering::Relaxed),
            dropped_bad_integrity: c.bad_integrity.load(Ordering::Relaxed),
        }
    }

    /// A new virtual socket on this mux, for one peer connection's transports.
    pub(crate) fn connect(&self) -> Arc<UdpMuxConn> {
        let inbox = Arc::new(Inbox::default());
        let mut tables = lock(&self.shared.tables);
        tables.next_id += 1;
        let id = tables.next_id;
        tables.conns.insert(
            id,
            ConnEntry {
                inbox: Arc::clone(&inbox),
                ufrags: VecDeque::new(),
                addrs: VecDeque::new(),
                transactions: VecDeque::new(),
            },
        );
        Arc::new(UdpMuxConn { id, shared: Arc::clone(&self.shared), inbox })
    }
}

impl Drop for UdpMux {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop(shared: Arc<Shared>, runtime: Arc<dyn Runtime>) {
    let socket = Arc::clone(&shared.socket);
    let len = gro_recv_buf_len(socket.max_gro_segments());
    let mut buf = vec![0u8; len];
    loop {
        let received = futures::future::poll_fn(|cx| {
            let mut meta = [RecvMeta::default(); 1];
            let mut bufs = [IoSliceMut::new(&mut buf[..])];
            socket.poll_recv(cx, &mut bufs, &mut meta).map(|r| r.map(|_| meta[0]))
        })
        .await;
        match received {
            Ok(meta) => {
                let (n, stride) = (meta.len.min(len), meta.stride.max(1));
                for datagram in buf[..n].chunks(stride) {
                    shared.route(datagram, meta.addr);
                }
            }
            Err(err) if is_retryable_socket_recv_error(&err) => {}
            Err(err) => {
                // Never a busy loop, never the end: the socket is the only way in.
                error!("UDP mux {}: receive error: {err}", shared.local_addr);
                runtime.sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One peer connection's view of a [`UdpMux`]: a socket with the mux's address that receives
/// what is routed to it and sends through the shared socket. Dropping it removes its routes.
pub struct UdpMuxConn {
    id: ConnId,
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
}

impl fmt::Debug for UdpMuxConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMuxConn")
            .field("id", &self.id)
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

impl UdpMuxConn {
    /// Route Binding requests for `ufrag` (this connection's local ufrag, `pwd` its password)
    /// here.
    pub(crate) fn add_local_credentials(&self, ufrag: &str, pwd: &str) {
        lock(&self.shared.tables).add_ufrag(self.id, ufrag, pwd);
    }
}

impl Drop for UdpMuxConn {
    fn drop(&mut self) {
        lock(&self.shared.tables).remove(self.id);
    }
}

impl AsyncUdpSocket for UdpMuxConn {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.local_addr)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if let Some(h) = stun::header(transmit.contents) {
            if h.class == stun::CLASS_REQUEST {
                lock(&self.shared.tables).remember_transaction(self.id, h.transaction_id);
            }
        }
        let mut shared_cx = Context::from_waker(&self.shared.send_waker);
        if let Poll::Ready(r) = self.shared.socket.poll_send(&mut shared_cx, transmit) {
            return Poll::Ready(r);
        }
        // Not writable: be woken with the others when it is. Register, then try again, so a
        // wake between the first try and the registration is not lost.
        self.shared.send_wake.register(cx.waker());
        self.shared.socket.poll_send(&mut shared_cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut state = lock(&self.inbox.state);
        let filled = bufs.len().min(meta.len());
        let mut n = 0;
        while n < filled {
            let Some((datagram, from)) = state.datagrams.pop_front() else { break };
            let len = datagram.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&datagram[..len]);
            meta[n] = RecvMeta::default();
            meta[n].len = len;
            meta[n].stride = len.max(1);
            meta[n].addr = from;
            n += 1;
        }
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        // A readiness probe (the driver's burst drain) polls with a no-op waker: it must not
        // replace the waker of the receive that is really waiting.
        if !cx.waker().will_wake(Waker::noop()) {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn max_gso_segments(&self) -> usize {
        self.shared.socket.max_gso_segments()
    }
}

/// Just enough STUN (RFC 8489 §5, §14.3) to route: the header and the USERNAME attribute.
mod stun {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const HEADER_LEN: usize = 20;
    const ATTR_USERNAME: u16 = 0x0006;
    const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
    pub(super) const CLASS_REQUEST: u8 = 0;
    pub(super) const CLASS_SUCCESS: u8 = 2;
    pub(super) const CLASS_ERROR: u8 = 3;
    pub(super) const METHOD_BINDING: u16 = 0x001;

    pub(super) struct Header {
        pub(super) class: u8,
        pub(super) method: u16,
        pub(super) transaction_id: [u8; 12],
    }

    /// The header of a well-formed STUN message, `None` for anything else.
    pub(super) fn header(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN || b[0] & 0xC0 != 0 || b[4..8] != MAGIC_COOKIE {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if len % 4 != 0 || HEADER_LEN + len != b.len() {
            return None;
        }
        let t = u16::from_be_bytes([b[0], b[1]]);
        let class = (((t >> 4) & 1) | ((t >> 7) & 2)) as u8;
        let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&b[8..HEADER_LEN]);
        Some(Header { class, method, transaction_id })
    }

    /// The first attribute of type `wanted`: its offset and its value.
    fn attribute(b: &[u8], wanted: u16) -> Option<(usize, &[u8])> {
        let mut at = HEADER_LEN;
        while at + 4 <= b.len() {
            let kind = u16::from_be_bytes([b[at], b[at + 1]]);
            let len = usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
            let value = b.get(at + 4..at + 4 + len)?;
            if kind == wanted {
                return Some((at, value));
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        None
    }

    /// The part of USERNAME before the first `:`: in a connectivity check, the receiver's ufrag.
    pub(super) fn local_ufrag(b: &[u8]) -> Option<&[u8]> {
        let (_, value) = attribute(b, ATTR_USERNAME)?;
        let end = value.iter().position(|&c| c == b':').unwrap_or(value.len());
        Some(&value[..end])
    }

    /// Whether MESSAGE-INTEGRITY (RFC 8489 §14.5: HMAC-SHA1 over the message up to the
    /// attribute, the header's length counting up to its end) verifies with the short-term key
    /// `key` (the ICE password).
    pub(super) fn integrity_verifies(b: &[u8], key: &[u8]) -> bool {
        use hmac::{Hmac, Mac};
        let Some((at, value)) = attribute(b, ATTR_MESSAGE_INTEGRITY) else { return false };
        if value.len() != 20 {
            return false;
        }
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else { return false };
        let len = u16::try_from(at + 4 + 20 - HEADER_LEN).unwrap_or(u16::MAX);
        mac.update(&b[..2]);
        mac.update(&len.to_be_bytes());
        mac.update(&b[4..at]);
        mac.verify_slice(value).is_ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn message(kind: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
            let mut body = Vec::new();
            for (t, v) in attrs {
                body.extend_from_slice(&t.to_be_bytes());
                body.extend_from_slice(&(v.len() as u16).to_be_bytes());
                body.extend_from_slice(v);
                body.resize(body.len().div_ceil(4) * 4, 0);
            }
            let mut m = kind.to_be_bytes().to_vec();
            m.extend_from_slice(&(body.len() as u16).to_be_bytes());
            m.extend_from_slice(&MAGIC_COOKIE);
            m.extend_from_slice(&[7; 12]);
            m.extend_from_slice(&body);
            m
        }

        #[test]
        fn binding_request_and_its_local_ufrag() {
            let m = message(0x0001, &[(0x8022, b"x"), (ATTR_USERNAME, b"srv1:cli2")]);
            let h = header(&m).expect("stun");
            assert_eq!((h.class, h.method, h.transaction_id), (CLASS_REQUEST, METHOD_BINDING, [7; 12]));
            assert_eq!(local_ufrag(&m), Some(&b"srv1"[..]));
        }

        /// RFC 5769 §2.1, the sample request: its MESSAGE-INTEGRITY is keyed with
        /// "VOkJxbRl1RmTxUk/WvJxBt".
        #[test]
        fn integrity_of_the_rfc5769_sample_request() {
            let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e2074657374\
                       20636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576\
                       746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571\
                       a280280004e57a3bcf";
            let hex: String = hex.split_whitespace().collect();
            let m: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            let h = header(&m).expect("stun");
            assert_eq!((h.class, h.method), (CLASS_REQUEST, METHOD_BINDING));
            assert_eq!(local_ufrag(&m), Some(&b"evtj"[..]));
            assert!(integrity_verifies(&m, b"VOkJxbRl1RmTxUk/WvJxBt"));
            assert!(!integrity_verifies(&m, b"VOkJxbRl1RmTxUk/WvJxBT"), "another key");
            let mut forged = m.clone();
            forged[30] ^= 1;
            assert!(!integrity_verifies(&forged, b"VOkJxbRl1RmTxUk/WvJxBt"), "a changed byte");
            assert!(!integrity_verifies(&message(0x0001, &[(ATTR_USERNAME, b"a:b")]), b"k"), "none");
        }

        #[test]
        fn classes_of_responses() {
            assert_eq!(header(&message(0x0101, &[])).expect("success").class, CLASS_SUCCESS);
            assert_eq!(header(&message(0x0111, &[])).expect("error").class, CLASS_ERROR);
            assert_eq!(header(&message(0x0011, &[])).expect("indication").class, 1);
        }

        #[test]
        fn not_stun() {
            assert!(header(&[0x16, 0xfe, 0xfd]).is_none(), "DTLS");
            assert!(header(&[0u8; 19]).is_none(), "short");
            let mut m = message(0x0001, &[(ATTR_USERNAME, b"a:b")]);
            m[4] = 0;
            assert!(header(&m).is_none(), "no magic cookie");
            let mut m = message(0x0001, &[(ATTR_USERNAME, b"a:b")]);
            m.push(0);
            assert!(header(&m).is_none(), "length disagrees");
            // An attribute running past the end is no USERNAME, and no panic.
            let mut m = message(0x0001, &[]);
            m.extend_from_slice(&[0x00, 0x06, 0x00, 0x40]);
            assert_eq!(local_ufrag(&m), None);
        }
    }
}

#[cfg(all(test, feature = "runtime-tokio"))]
mod routing_tests {
    use super::*;
    use crate::runtime::TokioRuntime;
    use hmac::{Hmac, Mac};
    use std::net::UdpSocket;

    /// A STUN message: `kind`, transaction id `[tid; 12]`, USERNAME if any, and
    /// MESSAGE-INTEGRITY keyed with `key` if any.
    fn stun_msg(kind: u16, tid: u8, username: Option<&[u8]>, key: Option<&[u8]>) -> Vec<u8> {
        let mut m = kind.to_be_bytes().to_vec();
        m.extend_from_slice(&[0, 0, 0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[tid; 12]);
        if let Some(u) = username {
            m.extend_from_slice(&0x0006u16.to_be_bytes());
            m.extend_from_slice(&(u.len() as u16).to_be_bytes());
            m.extend_from_slice(u);
            m.resize(m.len().div_ceil(4) * 4, 0);
        }
        if let Some(key) = key {
            let len = (m.len() - 20 + 24) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
            mac.update(&m);
            let tag = mac.finalize().into_bytes();
            m.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
            m.extend_from_slice(&tag);
        }
        let len = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    fn check(tid: u8, username: &[u8], key: &[u8]) -> Vec<u8> {
        stun_msg(0x0001, tid, Some(username), Some(key))
    }

    async fn recv(conn: &UdpMuxConn) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 1500];
        let got = ::tokio::time::timeout(Duration::from_millis(300), conn.recv_from(&mut buf)).await;
        got.ok().map(|r| {
            let (n, from) = r.expect("recv");
            (buf[..n].to_vec(), from)
        })
    }

    async fn settle(mux: &UdpMux, received: u64) {
        while mux.stats().received < received {
            ::tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn runtime() -> ::tokio::runtime::Runtime {
        ::tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn routes_by_ufrag_then_address_then_transaction_and_forgets_closed_connections() {
        runtime().block_on(async {
            let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), Arc::new(TokioRuntime)).expect("bind");
            let (a, b) = (mux.connect(), mux.connect());
            a.add_local_credentials("ufragA", "passwordA");
            b.add_local_credentials("ufragB", "passwordB");
            let c1 = UdpSocket::bind("127.0.0.1:0").unwrap();
            let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = mux.local_addr();

            // A check for B's ufrag goes to B, which now owns c1's address.
            c1.send_to(&check(1, b"ufragB:remote", b"passwordB"), to).unwrap();
            let (m, from) = recv(&b).await.expect("B gets its check");
            assert_eq!((m[1], from), (0x01, c1.local_addr().unwrap()));
            c1.send_to(b"\x16\xfe\xfd dtls", to).unwrap();
            assert_eq!(recv(&b).await.expect("by address").0, b"\x16\xfe\xfd dtls");
            assert!(recv(&a).await.is_none(), "A gets nothing of B's");

            // Unknown: dropped and counted.
            c2.send_to(b"garbage", to).unwrap();
            c2.send_to(&check(2, b"nobody:x", b"x"), to).unwrap();
            c2.send_to(&stun_msg(0x0101, 3, None, None), to).unwrap();
            settle(&mux, 5).await;
            let s = mux.stats();
            assert_eq!((s.dropped_unknown_address, s.dropped_unknown_ufrag), (2, 1), "{s:?}");

            // A's request to c2: the response comes back to A by its transaction id.
            a.send_to(&stun_msg(0x0001, 9, Some(b"remote:ufragA"), None), c2.local_addr().unwrap())
                .await
                .unwrap();
            let mut buf = [0u8; 64];
            let (n, _) = c2.recv_from(&mut buf).unwrap();
            assert_eq!(n, 20 + 4 + 16, "header, USERNAME header, padded value");
            c2.send_to(&stun_msg(0x0101, 9, None, None), to).unwrap();
            assert_eq!(recv(&a).await.expect("A gets its response").0[..2], [0x01, 0x01]);
            assert_eq!(mux.stats().transactions, 0, "answered transactions are forgotten");

            // B closes: its ufrag and address go with it.
            drop(b);
            let s = mux.stats();
            assert_eq!((s.connections, s.ufrags, s.addresses), (1, 1, 0), "{s:?}");
            c1.send_to(b"\x16\xfe\xfd late", to).unwrap();
            settle(&mux, 7).await;
            assert_eq!(mux.stats().dropped_unknown_address, 3);
            assert!(recv(&a).await.is_none());
        });
    }

    #[test]
    fn an_address_moves_only_with_the_new_owners_password() {
        runtime().block_on(async {
            let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), Arc::new(TokioRuntime)).expect("bind");
            let (a, b) = (mux.connect(), mux.connect());
            a.add_local_credentials("ufragA", "passwordA");
            b.add_local_credentials("ufragB", "passwordB");
            let c1 = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = mux.local_addr();
            c1.send_to(&check(1, b"ufragB:r", b"passwordB"), to).unwrap();
            recv(&b).await.expect("B owns c1");

            // From c1 (as a forged source would be), A's ufrag without A's password: dropped.
            c1.send_to(&check(2, b"ufragA:r", b"guess"), to).unwrap();
            c1.send_to(&stun_msg(0x0001, 3, Some(b"ufragA:r"), None), to).unwrap();
            c1.send_to(b"\x17\xfe\xfd data", to).unwrap();
            assert_eq!(recv(&b).await.expect("still B's").0, b"\x17\xfe\xfd data");
            assert!(recv(&a).await.is_none());
            assert_eq!(mux.stats().dropped_bad_integrity, 2);

            // A first check from a new address needs the password too.
            let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
            c2.send_to(&check(4, b"ufragA:r", b"passwordB"), to).unwrap();
            settle(&mux, 5).await;
            assert_eq!(mux.stats().dropped_bad_integrity, 3);

            // With A's password the address moves (an ICE restart or a new session on that port).
            c1.send_to(&check(5, b"ufragA:r", b"passwordA"), to).unwrap();
            recv(&a).await.expect("A's check");
            c1.send_to(b"\x17 moved", to).unwrap();
            assert_eq!(recv(&a).await.expect("now A's").0, b"\x17 moved");
            // Once owned, later checks from it are not verified again here (the agent does).
            c1.send_to(&stun_msg(0x0001, 6, Some(b"ufragA:r"), None), to).unwrap();
            recv(&a).await.expect("delivered to A's agent");
        });
    }

    #[test]
    fn a_connection_keeps_only_a_bounded_number_of_addresses_and_ufrags() {
        runtime().block_on(async {
            let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), Arc::new(TokioRuntime)).expect("bind");
            let a = mux.connect();
            for i in 0..10 {
                a.add_local_credentials(&format!("ufrag{i}"), "password");
            }
            let sockets: Vec<UdpSocket> =
                (0..MAX_ADDRS_PER_CONN + 8).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
            for s in &sockets {
                s.send_to(&check(1, b"ufrag9:x", b"password"), mux.local_addr()).unwrap();
            }
            settle(&mux, sockets.len() as u64).await;
            let s = mux.stats();
            assert_eq!((s.ufrags, s.addresses), (MAX_UFRAGS_PER_CONN, MAX_ADDRS_PER_CONN), "{s:?}");
        });
    }
}
