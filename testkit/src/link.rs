//! A network path with a bottleneck, on loopback: a UDP relay between a WebRTC client and the
//! server whose server → client direction leaves at a fixed rate through a drop-tail queue, like
//! the slowest link on the path to an operator's browser.
//!
//! The client is given the relay's address as the server's only candidate and keeps its own
//! candidates to itself, so the server learns the client only as the relay's address (a
//! peer-reflexive candidate) and every datagram of the session crosses the relay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Datagrams and bytes that crossed, or were dropped at the full queue (server → client).
#[derive(Debug, Default)]
pub struct LinkStats {
    pub down_datagrams: AtomicU64,
    pub down_bytes: AtomicU64,
    pub down_dropped: AtomicU64,
    pub up_datagrams: AtomicU64,
}

#[derive(Debug)]
pub struct Link {
    /// Where the client sends: the server's address as the client sees it.
    pub front: SocketAddr,
    pub stats: Arc<LinkStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Link {
    /// Relay to `server`; server → client leaves at `down_bps` bits/s, and a datagram that would
    /// wait longer than `max_queue` in the queue is dropped.
    pub async fn start(server: SocketAddr, down_bps: u64, max_queue: Duration) -> Link {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind front"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind back"));
        let stats = Arc::new(LinkStats::default());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();

        let up = {
            let (front, back, client, stats) =
                (Arc::clone(&front), Arc::clone(&back), Arc::clone(&client), Arc::clone(&stats));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().expect("lock") = Some(from);
                    stats.up_datagrams.fetch_add(1, Ordering::Relaxed);
                    let _ = back.send_to(&buf[..n], server).await;
                }
            })
        };
        let down = {
            let (back, stats) = (Arc::clone(&back), Arc::clone(&stats));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                // When the link is free again: each datagram occupies it for its size at the rate.
                let mut free_at = Instant::now();
                while let Ok((n, from)) = back.recv_from(&mut buf).await {
                    if from != server {
                        continue;
                    }
                    let now = Instant::now();
                    let start = free_at.max(now);
                    if start - now > max_queue {
                        stats.down_dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    free_at = start + airtime(n, down_bps);
                    if tx.send((free_at, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            })
        };
        let pacer = {
            let (front, client, stats) = (Arc::clone(&front), Arc::clone(&client), Arc::clone(&stats));
            tokio::spawn(async move {
                while let Some((at, datagram)) = rx.recv().await {
                    tokio::time::sleep_until(at).await;
                    let to = *client.lock().expect("lock");
                    if let Some(to) = to {
                        stats.down_datagrams.fetch_add(1, Ordering::Relaxed);
                        stats.down_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                        let _ = front.send_to(&datagram, to).await;
                    }
                }
            })
        };
        Link { front: front.local_addr().expect("addr"), stats, tasks: vec![up, down, pacer] }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How long `bytes` occupy a link of `bps` bits/s.
fn airtime(bytes: usize, bps: u64) -> Duration {
    Duration::from_nanos(bytes as u64 * 8 * 1_000_000_000 / bps)
}

/// The server's UDP host candidate on 127.0.0.1 in `sdp`.
pub fn server_candidate(sdp: &str) -> SocketAddr {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2).is_some_and(|t| t.eq_ignore_ascii_case("udp")) && f.get(4) == Some(&"127.0.0.1"))
                .then(|| format!("{}:{}", f[4], f[5]).parse().ok())
                .flatten()
        })
        .expect("the offer has a UDP host candidate on 127.0.0.1")
}

/// `sdp` with `via` as its only candidate, in place of the server's `server` candidate.
pub fn through(sdp: &str, server: SocketAddr, via: SocketAddr) -> String {
    let needle = format!(" {} {} typ host", server.ip(), server.port());
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=candidate:") {
            if !line.contains(&needle) {
                continue;
            }
            out.push_str(&line.replace(&needle, &format!(" {} {} typ host", via.ip(), via.port())));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `sdp` without its candidates.
pub fn without_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:") && !l.starts_with("a=end-of-candidates"))
        .collect()
}

/// The same bottleneck for TCP (a WebSocket client): a relay whose server → client direction
/// leaves at `down_bps`, reading from the server through a receive buffer of `buffer` bytes, so
/// that the server's socket sees the slow path's back-pressure as it would over a real link.
#[derive(Debug)]
pub struct TcpLink {
    pub addr: SocketAddr,
    pub stats: Arc<LinkStats>,
    task: JoinHandle<()>,
}

impl TcpLink {
    pub async fn start(server: SocketAddr, down_bps: u64, buffer: u32) -> TcpLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(LinkStats::default());
        let st = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.set_recv_buffer_size(buffer).expect("SO_RCVBUF");
                let Ok(upstream) = socket.connect(server).await else { continue };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut uw).await;
                });
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 1460];
                    let mut free_at = Instant::now();
                    while let Ok(n) = ur.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        free_at = free_at.max(Instant::now()) + airtime(n, down_bps);
                        tokio::time::sleep_until(free_at).await;
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        st.down_datagrams.fetch_add(1, Ordering::Relaxed);
                        st.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        TcpLink { addr, stats, task }
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP relay that can black-hole its path: until [`TcpHole::cut`] it forwards both ways; from
/// then on it forwards nothing and closes nothing (no FIN, no reset), as a link that died
/// between the operator and the server.
#[derive(Debug)]
pub struct TcpHole {
    pub addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl TcpHole {
    pub async fn start(server: SocketAddr) -> TcpHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(server).await else { continue };
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                for (mut r, mut w) in [(cr, uw), (ur, cw)] {
                    let c = Arc::clone(&c);
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = r.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if c.load(Ordering::Relaxed) {
                                // Swallowed: the sockets stay open, nothing goes through.
                                continue;
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        // Keep the other side open whatever happens.
                        std::future::pending::<()>().await;
                        drop(w);
                    });
                }
            }
        });
        TcpHole { addr, cut, task }
    }

    /// From now on nothing crosses.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

impl Drop for TcpHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP relay between a WebRTC client and the server that reorders the client's RTP on the way
/// up: every `every`-th RTP datagram is held back until `by` more RTP datagrams have passed it,
/// or for [`Reorderer::MAX_HOLD`] when fewer come (as on a path with several routes: late by a
/// few packets, never by much time). RTCP, STUN and DTLS are neither held nor counted. Server → client passes as it
/// comes. Give the client [`Reorderer::front`] as the server's candidate.
#[derive(Debug)]
pub struct Reorderer {
    pub front: SocketAddr,
    /// RTP datagrams held back so far.
    pub held: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Reorderer {
    /// The longest a datagram is held back.
    pub const MAX_HOLD: Duration = Duration::from_millis(40);

    pub async fn start(server: SocketAddr, every: u64, by: usize) -> Reorderer {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind front"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind back"));
        let held = Arc::new(AtomicU64::new(0));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let up = {
            let (front, back, client, held) =
                (Arc::clone(&front), Arc::clone(&back), Arc::clone(&client), Arc::clone(&held));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut rtp = 0u64;
                // Datagrams held back: how many more must pass each, until when at most.
                let mut waiting: Vec<(usize, Instant, Vec<u8>)> = Vec::new();
                loop {
                    let due = waiting.iter().map(|w| w.1).min();
                    let got = tokio::select! {
                        r = front.recv_from(&mut buf) => match r {
                            Ok(r) => Some(r),
                            Err(_) => return,
                        },
                        () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => None,
                    };
                    if let Some((n, from)) = got {
                        *client.lock().expect("lock") = Some(from);
                        let d = &buf[..n];
                        // RTP (RFC 7983: first byte 128–191) that is not RTCP (packet types 192–223).
                        let is_rtp = n > 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]);
                        if is_rtp {
                            rtp += 1;
                            if rtp.is_multiple_of(every) {
                                held.fetch_add(1, Ordering::Relaxed);
                                waiting.push((by, Instant::now() + Self::MAX_HOLD, d.to_vec()));
                                continue;
                            }
                        }
                        let _ = back.send_to(d, server).await;
                        if is_rtp {
                            for w in &mut waiting {
                                w.0 = w.0.saturating_sub(1);
                            }
                        }
                    }
                    let now = Instant::now();
                    for (_, _, late) in waiting.extract_if(.., |w| w.0 == 0 || w.1 <= now) {
                        let _ = back.send_to(&late, server).await;
                    }
                }
            })
        };
        let down = {
            let (front, back, client) = (Arc::clone(&front), Arc::clone(&back), Arc::clone(&client));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = back.recv_from(&mut buf).await {
                    let to = *client.lock().expect("lock");
                    if let (true, Some(to)) = (from == server, to) {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            })
        };
        Reorderer { front: front.local_addr().expect("addr"), held, tasks: vec![up, down] }
    }
}

impl Drop for Reorderer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A UDP relay that loses media on the way to the client: every `every`-th RTP datagram from the
/// server is dropped (RTCP, STUN and DTLS always pass, and are not counted). Client → server
/// passes as it comes. Give the client [`Lossy::front`] as the server's candidate.
#[derive(Debug)]
pub struct Lossy {
    pub front: SocketAddr,
    /// RTP datagrams dropped so far.
    pub dropped: Arc<AtomicU64>,
    /// RTP datagrams passed on to the client so far.
    pub passed: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Lossy {
    pub async fn start(server: SocketAddr, every: u64) -> Lossy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind front"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind back"));
        let (dropped, passed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let up = {
            let (front, back, client) = (Arc::clone(&front), Arc::clone(&back), Arc::clone(&client));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().expect("lock") = Some(from);
                    let _ = back.send_to(&buf[..n], server).await;
                }
            })
        };
        let down = {
            let (front, back, client) = (Arc::clone(&front), Arc::clone(&back), Arc::clone(&client));
            let (dropped, passed) = (Arc::clone(&dropped), Arc::clone(&passed));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut rtp = 0u64;
                while let Ok((n, from)) = back.recv_from(&mut buf).await {
                    let to = *client.lock().expect("lock");
                    let (true, Some(to)) = (from == server, to) else { continue };
                    let d = &buf[..n];
                    // RTP (RFC 7983: first byte 128–191) that is not RTCP (packet types 192–223).
                    if n > 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]) {
                        rtp += 1;
                        if rtp.is_multiple_of(every) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        passed.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = front.send_to(d, to).await;
                }
            })
        };
        Lossy { front: front.local_addr().expect("addr"), dropped, passed, tasks: vec![up, down] }
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
