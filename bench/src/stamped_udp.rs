//! A quinn UDP socket for the load tool's QUIC clients that records when the kernel received
//! what the client reads (`SO_TIMESTAMPNS`).
//!
//! At hundreds of clients the tool runs every client on one core. A client's latency measured
//! when its task reads a datagram then includes the time the tool spent on the clients served
//! before it, which a real client on its own machine does not have. The kernel's receive time
//! is when the server's packet reached the client's socket. [`Stamp`] holds the receive time
//! of the newest datagram the socket has handed to quinn, so a datagram read afterwards was
//! received at or before it: a latency taken from it may be late, never early.
//!
//! Sending, write readiness and the socket options (GRO, ECN, packet info) stay quinn's; only
//! the receive is ours, one `recvmsg` per GRO batch as quinn's own. [`StampedRuntime`] does
//! the same for the webrtc-rs peers of `whep-fanout` (a runtime whose sockets it wraps).

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn};
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};
use tokio::io::Interest;

/// The kernel receive time of the newest datagram a socket handed to quinn, µs since the Unix
/// epoch (the clock of the capture timestamps); 0 before the first.
#[derive(Debug, Default)]
pub struct Stamp(AtomicU64);

impl Stamp {
    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }
}

#[derive(Debug)]
pub struct StampedSocket {
    /// quinn's own socket: sends, write readiness, the options it sets.
    quinn: Arc<dyn AsyncUdpSocket>,
    /// The same socket (a duplicated descriptor), registered for reading.
    rx: tokio::net::UdpSocket,
    stamp: Arc<Stamp>,
}

impl StampedSocket {
    /// A loopback socket on a free port. Must run inside the tokio runtime.
    pub fn bind() -> io::Result<(Arc<Self>, Arc<Stamp>)> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        socket::setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        let rx = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
        let quinn = quinn::TokioRuntime.wrap_udp_socket(socket)?;
        let stamp = Arc::new(Stamp::default());
        Ok((Arc::new(Self { quinn, rx, stamp: Arc::clone(&stamp) }), stamp))
    }

    /// As many datagrams (GRO batches) as `bufs` hold and the socket has.
    fn recv(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let max = bufs.len().min(meta.len());
        recv_batch(&self.rx, &self.stamp, bufs, max, |n, got| {
            let m = &mut meta[n];
            m.addr = got.addr;
            m.len = got.len;
            m.stride = got.stride;
            m.ecn = got.tos.and_then(|tos| EcnCodepoint::from_bits(tos & 0b11));
            m.dst_ip = got.dst_ip;
        })
    }
}

/// What one `recvmsg` brought besides the bytes.
pub(crate) struct Got {
    pub addr: SocketAddr,
    pub len: usize,
    /// The datagram size within a GRO batch (`len` when there is one datagram).
    pub stride: usize,
    pub tos: Option<u8>,
    pub dst_ip: Option<IpAddr>,
}

/// Read up to `max` messages (GRO batches) from `rx` into `bufs` without blocking, one
/// `recvmsg` each; `fill(n, got)` takes the n-th message's metadata. The newest kernel receive
/// time goes to `stamp`. `WouldBlock` only when nothing was read.
pub(crate) fn recv_batch(
    rx: &impl AsRawFd,
    stamp: &Stamp,
    bufs: &mut [IoSliceMut<'_>],
    max: usize,
    mut fill: impl FnMut(usize, Got),
) -> io::Result<usize> {
    let mut cmsg = [0u8; 256];
    let mut n = 0;
    while n < max {
        let iov = &mut bufs[n..=n];
        let msg = match socket::recvmsg::<SockaddrIn>(rx.as_raw_fd(), iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT) {
            Ok(m) => m,
            Err(e) if n > 0 && e == nix::errno::Errno::EAGAIN => break,
            Err(e) => return Err(e.into()),
        };
        let Some(addr) = msg.address else { continue };
        let mut got = Got { addr: SocketAddr::from(addr), len: msg.bytes, stride: msg.bytes, tos: None, dst_ip: None };
        let mut at = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::ScmTimestampns(ts) => {
                        at = Some(ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000);
                    }
                    ControlMessageOwned::UdpGroSegments(s) if s > 0 => got.stride = s as usize,
                    ControlMessageOwned::Ipv4Tos(tos) => got.tos = Some(tos),
                    ControlMessageOwned::Ipv4PacketInfo(info) => {
                        got.dst_ip = Some(IpAddr::V4(Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes())));
                    }
                    _ => {}
                }
            }
        }
        if let Some(at) = at {
            stamp.0.fetch_max(at, Ordering::Relaxed);
        }
        // A zero-length datagram: a stride of 0 would divide by zero in the reader.
        got.stride = got.stride.max(1);
        fill(n, got);
        n += 1;
    }
    Ok(n)
}

impl AsyncUdpSocket for StampedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.quinn).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.quinn.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.rx.poll_recv_ready(cx))?;
            match self.rx.try_io(Interest::READABLE, || self.recv(bufs, meta)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.quinn.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.quinn.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.quinn.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.quinn.may_fragment()
    }
}

/// A webrtc-rs runtime whose UDP sockets record the kernel receive time in one [`Stamp`] (a
/// WHEP viewer's, `whep-fanout`): everything else is the default runtime's.
#[derive(Debug)]
pub struct StampedRuntime {
    inner: Arc<dyn webrtc::runtime::Runtime>,
    stamp: Arc<Stamp>,
}

impl StampedRuntime {
    pub fn new() -> io::Result<(Arc<Self>, Arc<Stamp>)> {
        let inner = webrtc::runtime::default_runtime().ok_or_else(|| io::Error::other("no async runtime"))?;
        let stamp = Arc::new(Stamp::default());
        Ok((Arc::new(Self { inner, stamp: Arc::clone(&stamp) }), stamp))
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl webrtc::runtime::Runtime for StampedRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn webrtc::runtime::JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(&self, pool: usize, future: BoxFuture<'static, ()>) -> Box<dyn webrtc::runtime::JoinHandle> {
        self.inner.spawn_reactor(pool, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn webrtc::runtime::AsyncUdpSocket>> {
        socket.set_nonblocking(true)?;
        socket::setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        let rx = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
        let webrtc = self.inner.wrap_udp_socket(socket)?;
        Ok(Arc::new(StampedRtcSocket { webrtc, rx, stamp: Arc::clone(&self.stamp) }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn webrtc::runtime::AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn webrtc::runtime::AsyncTcpStream>>> {
        self.inner.connect_tcp(remote)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: std::time::Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: std::time::Duration) -> Box<dyn webrtc::runtime::AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn std::future::Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "stamped"
    }
}

/// webrtc-rs's own socket for sending; receives are ours, as [`StampedSocket`]'s.
#[derive(Debug)]
struct StampedRtcSocket {
    webrtc: Arc<dyn webrtc::runtime::AsyncUdpSocket>,
    rx: tokio::net::UdpSocket,
    stamp: Arc<Stamp>,
}

impl webrtc::runtime::AsyncUdpSocket for StampedRtcSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.webrtc.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &webrtc::runtime::Transmit<'_>) -> Poll<io::Result<usize>> {
        self.webrtc.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [webrtc::runtime::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let max = bufs.len().min(meta.len());
        loop {
            ready!(self.rx.poll_recv_ready(cx))?;
            let read = self.rx.try_io(Interest::READABLE, || {
                recv_batch(&self.rx, &self.stamp, bufs, max, |n, got| {
                    let m = &mut meta[n];
                    m.addr = got.addr;
                    m.len = got.len;
                    m.stride = got.stride;
                    m.ecn = got.tos.and_then(|tos| webrtc::runtime::EcnCodepoint::from_bits(tos & 0b11));
                    m.dst_ip = got.dst_ip;
                })
            });
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.webrtc.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.webrtc.max_gro_segments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::now_us;

    #[tokio::test]
    async fn hands_quinn_each_datagram_with_its_sender_and_records_the_kernel_time() {
        let (socket, stamp) = StampedSocket::bind().expect("bind");
        assert_eq!(stamp.get(), None, "nothing received yet");
        let to = socket.local_addr().expect("addr");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
        let before = now_us();
        for i in 0..3u8 {
            sender.send_to(&[i; 100], to).expect("send");
        }
        // Three more as one GSO send, which loopback delivers as one GRO batch (quinn's socket
        // asks for them): one buffer of 300 bytes, a datagram every 100.
        let batch: Vec<u8> = (3..6u8).flat_map(|i| [i; 100]).collect();
        let dest = SockaddrIn::from(match to {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
        });
        socket::sendmsg(
            sender.as_raw_fd(),
            &[std::io::IoSlice::new(&batch)],
            &[socket::ControlMessage::UdpGsoSegments(&100)],
            MsgFlags::empty(),
            Some(&dest),
        )
        .expect("GSO send");
        let after = now_us();
        let mut got = Vec::new();
        let mut lens = Vec::new();
        while got.len() < 6 {
            let mut storage = vec![[0u8; 2048]; 4];
            let mut bufs: Vec<IoSliceMut<'_>> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let mut meta = vec![RecvMeta::default(); 4];
            let n = std::future::poll_fn(|cx| socket.poll_recv(cx, &mut bufs, &mut meta)).await.expect("recv");
            for (m, b) in meta.iter().zip(&bufs).take(n) {
                assert_eq!(m.addr, sender.local_addr().expect("sender addr"));
                assert_eq!(m.stride, 100);
                assert!(m.len % 100 == 0 && m.len > 0, "{}", m.len);
                got.extend(b[..m.len].chunks(m.stride).map(|d| d[0]));
                lens.push(m.len);
            }
        }
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        assert_eq!(lens, [100, 100, 100, 300]);
        let at = stamp.get().expect("a receive time");
        // The kernel stamps on arrival, between the first send and now; the clock is the same.
        assert!(at + 1 >= before && at <= now_us(), "{before} ≤ {at} (sent by {after})");
    }
}
