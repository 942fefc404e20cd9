//! `wt-fanout`'s WebTransport remote controls, all driven by one thread: quinn-proto's
//! connections without quinn's tasks.
//!
//! The load tool runs every client on one core, so a packet's latency taken when it is read
//! includes the time the tool spent on the clients served before it. With quinn's async API
//! ([`crate::wt_client`]) each client is three tasks (the endpoint's driver, the connection's
//! driver, the reader) handing each datagram through a channel and two wake-ups; at 500
//! clients that bookkeeping made the tool as busy as the server and bounded the read figure.
//! Here one thread waits on every client's socket with `epoll`, and for each ready socket
//! reads the GRO batches, hands each datagram to the (one, shared) quinn-proto endpoint and the
//! client's connection, counts the video it decrypted, and sends the acknowledgement, in one
//! pass. Each client still has its own UDP socket, connection, keys and flow control, so the
//! server does exactly the work it does for 500 separate browsers.
//!
//! The WebTransport layer is the few bytes web-transport-quinn writes (web-transport-proto's
//! SETTINGS and extended CONNECT), then the session's bidirectional stream with the first
//! message; video is counted from datagrams (session ID varint, then a wire packet) and from
//! unidirectional streams, like the other clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use quinn::udp::{EcnCodepoint, UdpSocketState};
use quinn_proto::{
    ConnectionHandle, DatagramEvent, Dir, EndpointConfig, Event, ReadError, StreamEvent, StreamId, VarInt,
};
use tokio::sync::{oneshot, watch};

use crate::fleet::{self, Poller, RECV_BUF};
use crate::stamped_udp::Stamp;
use crate::stats::Window;
use crate::ws_client::WsResult;

/// The first message, as [`crate::wt_client`] sends it: video starts after it.
const HELLO: &[u8] = b"{\"type\":\"ping\",\"t\":0}\n";

/// The clients' thread. Dropping it stops the thread and answers every client.
pub struct Fleet {
    add: Option<mpsc::Sender<Add>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Add {
    url: url::Url,
    config: quinn::ClientConfig,
    connected: oneshot::Sender<anyhow::Result<()>>,
    done: oneshot::Sender<WsResult>,
}

impl Fleet {
    /// A thread whose clients count into `window` until `stop` turns true.
    pub fn start(window: Arc<Window>, warm: Arc<AtomicUsize>, stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let (add, adds) = mpsc::channel();
        let poller = Poller::new()?;
        let thread = std::thread::Builder::new().name("wt-fleet".into()).spawn(move || {
            Driver { poller, endpoint: endpoint(), clients: Vec::new(), handles: HashMap::new() }
                .run(adds, &window, &warm, &stop)
        })?;
        Ok(Self { add: Some(add), thread: Some(thread) })
    }

    /// Open a session to `url` trusting `hashes`. The first receiver answers once the session is
    /// open and its first message sent; the second with what the client counted when it stopped.
    pub fn connect(
        &self,
        url: &str,
        hashes: &[String],
    ) -> anyhow::Result<(oneshot::Receiver<anyhow::Result<()>>, oneshot::Receiver<WsResult>)> {
        let hashes = hashes.iter().map(hex::decode).collect::<Result<Vec<_>, _>>()?;
        let (connected, connected_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        let add = Add { url: url::Url::parse(url)?, config: testkit::wt::client_config(hashes), connected, done };
        self.add
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the fleet has stopped"))?
            .send(add)
            .map_err(|_| anyhow::anyhow!("the fleet's thread has ended"))?;
        Ok((connected_rx, done_rx))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.add = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn endpoint() -> quinn_proto::Endpoint {
    quinn_proto::Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None)
}

/// Where a client's session is.
enum Phase {
    /// The QUIC handshake.
    Handshake,
    /// SETTINGS and CONNECT sent on the stream `connect`; waiting for the response.
    Connecting { connect: StreamId, response: Vec<u8> },
    /// The session is open: video counts.
    Open { session: u64 },
    /// Closed or failed; the result has been sent.
    Done,
}

struct Client {
    socket: std::net::UdpSocket,
    udp: UdpSocketState,
    handle: ConnectionHandle,
    conn: quinn_proto::Connection,
    url: url::Url,
    phase: Phase,
    stamp: Stamp,
    /// The session's own bidirectional stream (events from the server arrive on it).
    control: Option<StreamId>,
    /// Unidirectional streams being read: what arrived so far.
    uni: HashMap<StreamId, Vec<u8>>,
    timeout: Option<Instant>,
    result: WsResult,
    connected: Option<oneshot::Sender<anyhow::Result<()>>>,
    done: Option<oneshot::Sender<WsResult>>,
}

struct Driver {
    poller: Poller,
    endpoint: quinn_proto::Endpoint,
    clients: Vec<Client>,
    handles: HashMap<ConnectionHandle, usize>,
}

impl Driver {
    fn run(mut self, adds: mpsc::Receiver<Add>, window: &Window, warm: &AtomicUsize, stop: &watch::Receiver<bool>) {
        let mut ready = Vec::new();
        let mut rx = vec![0u8; RECV_BUF];
        let mut tx = Vec::with_capacity(64 * 1024);
        let mut accepting = true;
        loop {
            if accepting {
                loop {
                    match adds.try_recv() {
                        Ok(a) => self.add(a, &mut tx),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            accepting = false;
                            break;
                        }
                    }
                }
            }
            if *stop.borrow() || !accepting {
                break;
            }
            if let Err(e) = self.poller.wait(&mut ready) {
                self.fail_all(&format!("epoll: {e}"));
                break;
            }
            for &i in &ready {
                self.receive(i, &mut rx);
                self.drive(i, &mut tx, window, warm);
            }
            let now = Instant::now();
            while let Some(i) = self.poller.due(now, |i| self.clients[i].timeout) {
                self.clients[i].timeout = None;
                self.clients[i].conn.handle_timeout(now);
                self.drive(i, &mut tx, window, warm);
            }
        }
        self.close_all(&mut tx);
    }

    fn add(&mut self, a: Add, tx: &mut Vec<u8>) {
        let (socket, udp, handle, conn) = match self.open(&a.url, a.config) {
            Ok(o) => o,
            Err(e) => {
                let _ = a.connected.send(Err(e));
                return;
            }
        };
        let i = self.clients.len();
        self.handles.insert(handle, i);
        self.clients.push(Client {
            socket,
            udp,
            handle,
            conn,
            url: a.url,
            phase: Phase::Handshake,
            stamp: Stamp::default(),
            control: None,
            uni: HashMap::new(),
            timeout: None,
            result: WsResult::default(),
            connected: Some(a.connected),
            done: Some(a.done),
        });
        self.transmit(i, tx);
    }

    /// A socket for the next client, and its connection started.
    fn open(
        &mut self,
        url: &url::Url,
        config: quinn::ClientConfig,
    ) -> anyhow::Result<(std::net::UdpSocket, UdpSocketState, ConnectionHandle, quinn_proto::Connection)> {
        let remote = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => SocketAddr::new(h.trim_matches(['[', ']']).parse()?, p),
            _ => anyhow::bail!("{url}: expected an IP address and a port"),
        };
        let socket = std::net::UdpSocket::bind(SocketAddr::new(remote.ip(), 0))?;
        socket.set_nonblocking(true)?;
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimestampns, &true)?;
        // GRO, ECN and the packet-info options, as quinn sets them on its own sockets.
        let udp = UdpSocketState::new((&socket).into())?;
        let name = url.host_str().unwrap_or("localhost").trim_matches(['[', ']']).to_owned();
        let (handle, conn) = self.endpoint.connect(Instant::now(), config, remote, &name)?;
        self.poller.add(&socket, self.clients.len())?;
        Ok((socket, udp, handle, conn))
    }

    /// Read what client `i`'s socket holds and hand it to its connection.
    fn receive(&mut self, i: usize, rx: &mut [u8]) {
        loop {
            let c = &self.clients[i];
            let got = match fleet::recv(&c.socket, &c.stamp, rx) {
                Ok(Some(g)) => g,
                Ok(None) => return,
                Err(e) => {
                    self.finish(i, Some(format!("recv: {e}")));
                    return;
                }
            };
            let (addr, len, stride, dst_ip) = (got.addr, got.len, got.stride, got.dst_ip);
            let ecn = got.tos.and_then(|t| quinn_proto::EcnCodepoint::from_bits(t & 0b11));
            let now = Instant::now();
            let mut data = BytesMut::from(&rx[..len]);
            let mut response = Vec::new();
            while !data.is_empty() {
                let d = data.split_to(stride.min(data.len()));
                match self.endpoint.handle(now, addr, dst_ip, ecn, d, &mut response) {
                    Some(DatagramEvent::ConnectionEvent(h, ev)) => {
                        if let Some(&j) = self.handles.get(&h) {
                            self.clients[j].conn.handle_event(ev);
                        }
                    }
                    Some(DatagramEvent::Response(t)) => {
                        let c = &self.clients[i];
                        send(c, &t, &response);
                        response.clear();
                    }
                    Some(DatagramEvent::NewConnection(_)) | None => {}
                }
            }
        }
    }

    /// Everything a connection has to do after an input: the endpoint's bookkeeping, the
    /// application's events (the session's steps, video, the server's messages), then its
    /// packets, then its next timer.
    fn drive(&mut self, i: usize, tx: &mut Vec<u8>, window: &Window, warm: &AtomicUsize) {
        let c = &mut self.clients[i];
        while let Some(ev) = c.conn.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(c.handle, ev) {
                c.conn.handle_event(back);
            }
        }
        let mut ended = None;
        while let Some(ev) = c.conn.poll() {
            match ev {
                Event::Connected => {
                    if let Err(e) = c.start_session() {
                        ended = Some(e);
                    }
                }
                Event::ConnectionLost { reason } => ended = Some(format!("connection lost: {reason}")),
                Event::Stream(StreamEvent::Readable { id }) => {
                    if let Err(e) = c.read(id, window, warm) {
                        ended = Some(e);
                    }
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = c.conn.streams().accept(Dir::Uni) {
                        c.uni.insert(id, Vec::new());
                        if let Err(e) = c.read(id, window, warm) {
                            ended = Some(e);
                        }
                    }
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                    // The server opens none; refuse what it might.
                    while let Some(id) = c.conn.streams().accept(Dir::Bi) {
                        let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(0));
                    }
                }
                _ => {}
            }
        }
        if let Phase::Open { session } = c.phase {
            while let Some(d) = c.conn.datagrams().recv() {
                c.datagram(session, d, window, warm);
            }
        }
        if let Some(e) = ended {
            self.finish(i, Some(e));
        }
        self.transmit(i, tx);
    }

    /// Send what client `i`'s connection has, and file its next timer.
    fn transmit(&mut self, i: usize, tx: &mut Vec<u8>) {
        let c = &mut self.clients[i];
        let now = Instant::now();
        let segments = c.udp.max_gso_segments();
        loop {
            tx.clear();
            let Some(t) = c.conn.poll_transmit(now, segments, tx) else { break };
            send(c, &t, tx);
        }
        let next = c.conn.poll_timeout();
        self.poller.file(i, &mut c.timeout, next);
    }

    /// Client `i` is done: answer its waiters once.
    fn finish(&mut self, i: usize, error: Option<String>) {
        let c = &mut self.clients[i];
        if matches!(c.phase, Phase::Done) {
            return;
        }
        c.phase = Phase::Done;
        if c.result.error.is_none() {
            c.result.error = error.clone();
        }
        if let Some(tx) = c.connected.take() {
            let _ = tx.send(Err(anyhow::anyhow!(error.unwrap_or_else(|| "closed before the session opened".into()))));
        }
        if let Some(tx) = c.done.take() {
            let _ = tx.send(std::mem::take(&mut c.result));
        }
    }

    fn fail_all(&mut self, e: &str) {
        for i in 0..self.clients.len() {
            self.finish(i, Some(e.to_owned()));
        }
    }

    /// `stop`: close every connection (the server's session gets its goodbye), send the
    /// closes, answer every client.
    fn close_all(&mut self, tx: &mut Vec<u8>) {
        let now = Instant::now();
        for i in 0..self.clients.len() {
            self.clients[i].conn.close(now, VarInt::from_u32(0), Bytes::from_static(b"done"));
            self.transmit(i, tx);
            self.finish(i, None);
        }
    }
}

/// One transmit of `c`'s connection; a full socket buffer drops it (QUIC recovers).
fn send(c: &Client, t: &quinn_proto::Transmit, buf: &[u8]) {
    let transmit = quinn::udp::Transmit {
        destination: t.destination,
        ecn: t.ecn.and_then(|e| EcnCodepoint::from_bits(e as u8)),
        contents: &buf[..t.size],
        segment_size: t.segment_size,
        src_ip: t.src_ip,
    };
    let _ = c.udp.send((&c.socket).into(), &transmit);
}

impl Client {
    /// The QUIC handshake is done: SETTINGS on a control stream, the extended CONNECT on a
    /// request stream (web-transport-proto's encoding, as web-transport-quinn's client).
    fn start_session(&mut self) -> Result<(), String> {
        let mut settings = web_transport_proto::Settings::default();
        settings.enable_webtransport(1);
        let mut buf = BytesMut::new();
        settings.encode(&mut buf);
        let uni = self.conn.streams().open(Dir::Uni).ok_or("no unidirectional stream for SETTINGS")?;
        self.write_all(uni, &buf)?;
        let connect = self.conn.streams().open(Dir::Bi).ok_or("no stream for CONNECT")?;
        let mut buf = BytesMut::new();
        web_transport_proto::ConnectRequest::new(self.url.clone())
            .encode(&mut buf)
            .map_err(|e| format!("CONNECT: {e}"))?;
        self.write_all(connect, &buf)?;
        self.phase = Phase::Connecting { connect, response: Vec::new() };
        Ok(())
    }

    fn write_all(&mut self, id: StreamId, data: &[u8]) -> Result<(), String> {
        let n = self.conn.send_stream(id).write(data).map_err(|e| format!("write: {e}"))?;
        // The first bytes of a fresh stream always fit the initial flow-control window.
        if n < data.len() {
            return Err(format!("write: {n} of {} bytes accepted", data.len()));
        }
        Ok(())
    }

    /// Everything stream `id` holds now.
    fn read(&mut self, id: StreamId, window: &Window, warm: &AtomicUsize) -> Result<(), String> {
        let mut got = Vec::new();
        let mut finished = false;
        // A reset stream's bytes are a packet cut short: dropped, not counted.
        let mut reset = false;
        let mut rs = self.conn.recv_stream(id);
        let Ok(mut chunks) = rs.read(true) else { return Ok(()) };
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(ch)) => got.push(ch.bytes),
                Ok(None) => {
                    finished = true;
                    break;
                }
                Err(ReadError::Blocked) => break,
                Err(ReadError::Reset(_)) => {
                    finished = true;
                    reset = true;
                    break;
                }
            }
        }
        let _ = chunks.finalize();
        match &mut self.phase {
            Phase::Connecting { connect, response } if *connect == id => {
                got.iter().for_each(|b| response.extend_from_slice(b));
                let mut r = response.as_slice();
                match web_transport_proto::ConnectResponse::decode(&mut r) {
                    Ok(resp) if resp.status.as_u16() == 200 => {
                        let session = VarInt::from(id).into_inner();
                        self.open(session)?;
                    }
                    Ok(resp) => return Err(format!("CONNECT answered {}", resp.status)),
                    Err(web_transport_proto::ConnectError::UnexpectedEnd) if !finished => {}
                    Err(e) => return Err(format!("CONNECT response: {e}")),
                }
            }
            Phase::Open { session } => {
                let session = *session;
                if Some(id) == self.control {
                    self.result.events +=
                        got.iter().map(|b| b.iter().filter(|&&b| b == b'\n').count() as u64).sum::<u64>();
                } else if let Some(buf) = self.uni.get_mut(&id) {
                    got.iter().for_each(|b| buf.extend_from_slice(b));
                    if finished {
                        let buf = self.uni.remove(&id).unwrap_or_default();
                        if !reset {
                            self.uni_packet(session, &buf, window, warm);
                        }
                    }
                }
            }
            // The server's control stream (SETTINGS) and the CONNECT stream after the response:
            // read and dropped.
            _ => {
                if finished {
                    self.uni.remove(&id);
                }
            }
        }
        Ok(())
    }

    /// The CONNECT was answered 200: open the session's stream and send the first message.
    fn open(&mut self, session: u64) -> Result<(), String> {
        let id = self.conn.streams().open(Dir::Bi).ok_or("no stream for the session")?;
        let mut buf = BytesMut::new();
        web_transport_proto::Frame::WEBTRANSPORT.encode(&mut buf);
        web_transport_proto::VarInt::from_u64(session).map_err(|e| format!("session id: {e}"))?.encode(&mut buf);
        buf.extend_from_slice(HELLO);
        self.write_all(id, &buf)?;
        self.control = Some(id);
        self.phase = Phase::Open { session };
        if let Some(tx) = self.connected.take() {
            let _ = tx.send(Ok(()));
        }
        Ok(())
    }

    /// A datagram: the session ID, then a wire packet.
    fn datagram(&mut self, session: u64, mut d: Bytes, window: &Window, warm: &AtomicUsize) {
        match web_transport_proto::VarInt::decode(&mut d) {
            Ok(s) if s.into_inner() == session => {
                self.result.counter.packet_warming_at(&d, window, warm, self.stamp.get());
            }
            _ => self.result.counter.malformed += 1,
        }
    }

    /// A unidirectional stream, whole: its type and session ID, then a wire packet. Other
    /// types (the server's HTTP/3 control stream) are not video.
    fn uni_packet(&mut self, session: u64, mut buf: &[u8], window: &Window, warm: &AtomicUsize) {
        let Ok(kind) = web_transport_proto::StreamUni::decode(&mut buf) else { return };
        if kind != web_transport_proto::StreamUni::WEBTRANSPORT {
            return;
        }
        match web_transport_proto::VarInt::decode(&mut buf) {
            Ok(s) if s.into_inner() == session => {
                let p = buf.chunk();
                self.result.counter.packet_warming_at(p, window, warm, self.stamp.get());
            }
            _ => self.result.counter.malformed += 1,
        }
    }
}
