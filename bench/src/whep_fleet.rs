//! `whep-fanout`'s WHEP viewers, all driven by one thread: webrtc-rs's sans-IO peer
//! connections (`rtc`) without the async wrapper's tasks.
//!
//! As [`crate::wt_fleet`] for WebTransport: with webrtc-rs's async peer connection each viewer
//! is a driver task woken through tokio for every GRO batch, and at 500 viewers the tool's one
//! core spent as much on that as on SRTP, so the figure taken when a packet is read included
//! the tool's own queueing. Here one thread waits on every viewer's socket with `epoll`, hands
//! each datagram to the viewer's `RTCPeerConnection` (ICE, DTLS, SRTP: the same code as the
//! async peer runs), counts the RTP it decrypted and sends what the connection has to send,
//! in one pass. Each viewer keeps its own socket, ICE agent, DTLS session and SRTP keys.
//!
//! The viewer is the async one's ([`crate::whep_client`]) in every other respect: a player's
//! codecs, one receive-only video transceiver, no interceptors, a host candidate on 127.0.0.1
//! in the offer (no trickle); the WHEP POST and DELETE are made by the caller.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use bytes::BytesMut;
use quinn::udp::UdpSocketState;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::{oneshot, watch};

use crate::fleet::{self, Poller, RECV_BUF};
use crate::stamped_udp::Stamp;
use crate::stats::{FrameCounter, Window};
use crate::whep_client::{RtpCounter, RtpLoss};

/// What a viewer counted: whole frames and latency, RTP loss, the first error.
pub type Viewed = (FrameCounter, RtpLoss, Option<String>);

/// The viewers' thread. Dropping it stops the thread and answers every viewer.
pub struct Fleet {
    cmds: Option<mpsc::Sender<Cmd>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Cmd {
    /// A new viewer: its offer, and its index for [`Cmd::Answer`].
    Offer(oneshot::Sender<anyhow::Result<(usize, String)>>),
    /// The server's answer to viewer `usize`; the receiver gets what it counted at the end.
    Answer(usize, String, oneshot::Sender<anyhow::Result<()>>, oneshot::Sender<Viewed>),
}

impl Fleet {
    /// A thread whose viewers count into `window` until `stop` turns true.
    pub fn start(window: Arc<Window>, warm: Arc<AtomicUsize>, stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let (cmds, rx) = mpsc::channel();
        let poller = Poller::new()?;
        let thread = std::thread::Builder::new()
            .name("whep-fleet".into())
            .spawn(move || Driver { poller, viewers: Vec::new() }.run(rx, &window, &warm, &stop))?;
        Ok(Self { cmds: Some(cmds), thread: Some(thread) })
    }

    fn send(&self, cmd: Cmd) -> anyhow::Result<()> {
        self.cmds
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the fleet has stopped"))?
            .send(cmd)
            .map_err(|_| anyhow::anyhow!("the fleet's thread has ended"))
    }

    /// A new viewer's offer (SDP with its host candidate) and its index.
    pub async fn offer(&self) -> anyhow::Result<(usize, String)> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Offer(tx))?;
        rx.await.map_err(|_| anyhow::anyhow!("the fleet's thread has ended"))?
    }

    /// Apply the server's answer to viewer `i`; the receiver answers when the fleet stops.
    pub async fn answer(&self, i: usize, sdp: String) -> anyhow::Result<oneshot::Receiver<Viewed>> {
        let (applied, applied_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        self.send(Cmd::Answer(i, sdp, applied, done))?;
        applied_rx.await.map_err(|_| anyhow::anyhow!("the fleet's thread has ended"))??;
        Ok(done_rx)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.cmds = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Viewer {
    socket: std::net::UdpSocket,
    udp: UdpSocketState,
    local: SocketAddr,
    pc: RTCPeerConnection,
    stamp: Stamp,
    counter: RtpCounter,
    error: Option<String>,
    timeout: Option<Instant>,
    done: Option<oneshot::Sender<Viewed>>,
}

struct Driver {
    poller: Poller,
    viewers: Vec<Viewer>,
}

impl Driver {
    fn run(mut self, cmds: mpsc::Receiver<Cmd>, window: &Window, warm: &AtomicUsize, stop: &watch::Receiver<bool>) {
        let mut ready = Vec::new();
        let mut rx = vec![0u8; RECV_BUF];
        loop {
            loop {
                match cmds.try_recv() {
                    Ok(Cmd::Offer(reply)) => {
                        let _ = reply.send(self.add());
                    }
                    Ok(Cmd::Answer(i, sdp, applied, done)) => {
                        let r = self.answer(i, sdp, done);
                        if r.is_ok() {
                            self.drive(i, window, warm);
                        }
                        let _ = applied.send(r);
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return self.close_all(),
                }
            }
            if *stop.borrow() {
                return self.close_all();
            }
            if let Err(e) = self.poller.wait(&mut ready) {
                for v in &mut self.viewers {
                    v.error.get_or_insert_with(|| format!("epoll: {e}"));
                }
                return self.close_all();
            }
            for &i in &ready {
                self.receive(i, &mut rx);
                self.drive(i, window, warm);
            }
            let now = Instant::now();
            while let Some(i) = self.poller.due(now, |i| self.viewers[i].timeout) {
                self.viewers[i].timeout = None;
                if let Err(e) = self.viewers[i].pc.handle_timeout(now) {
                    self.viewers[i].error.get_or_insert_with(|| format!("timeout: {e}"));
                }
                self.drive(i, window, warm);
            }
        }
    }

    /// A viewer: its socket, its peer connection with one receive-only video transceiver, its
    /// offer with the socket's host candidate.
    fn add(&mut self) -> anyhow::Result<(usize, String)> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimestampns, &true)?;
        // GRO (the server sends a frame's RTP as one GSO batch), as the async viewer's socket.
        let udp = UdpSocketState::new((&socket).into())?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(testkit::whep::player_media_engine())
            .with_interceptor(Box::new(rtc::interceptor::NoopInterceptor::new()))
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
                    .build(),
            )
            .build(now)?;
        pc.add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )?;
        let offer = pc.create_offer(None)?;
        pc.set_local_description(now, offer)?;
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&host).to_json()?)?;
        pc.add_local_candidate(Default::default())?;
        let sdp = pc.local_description().ok_or_else(|| anyhow::anyhow!("no local description"))?.sdp;
        anyhow::ensure!(sdp.contains("a=candidate"), "the offer has no host candidate");
        let i = self.viewers.len();
        self.poller.add(&socket, i)?;
        self.viewers.push(Viewer {
            socket,
            udp,
            local,
            pc,
            stamp: Stamp::default(),
            counter: RtpCounter::default(),
            error: None,
            timeout: None,
            done: None,
        });
        Ok((i, sdp))
    }

    fn answer(&mut self, i: usize, sdp: String, done: oneshot::Sender<Viewed>) -> anyhow::Result<()> {
        let v = self.viewers.get_mut(i).ok_or_else(|| anyhow::anyhow!("no viewer {i}"))?;
        v.pc.set_remote_description(Instant::now(), RTCSessionDescription::answer(sdp)?)?;
        v.done = Some(done);
        Ok(())
    }

    /// Read what viewer `i`'s socket holds and hand it to its connection.
    fn receive(&mut self, i: usize, rx: &mut [u8]) {
        let v = &mut self.viewers[i];
        loop {
            let (peer_addr, len, stride) = match fleet::recv(&v.socket, &v.stamp, rx) {
                Ok(Some(g)) => (g.addr, g.len, g.stride),
                Ok(None) => return,
                Err(e) => {
                    v.error.get_or_insert_with(|| format!("recv: {e}"));
                    return;
                }
            };
            let now = Instant::now();
            let transport = TransportContext {
                local_addr: v.local,
                peer_addr,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            };
            for d in rx[..len].chunks(stride) {
                if let Err(e) = v.pc.handle_read(TaggedBytesMut { now, transport, message: BytesMut::from(d) }) {
                    v.error.get_or_insert_with(|| format!("read: {e}"));
                }
            }
        }
    }

    /// After an input: the connection's events, the RTP it decrypted, what it sends, its timer.
    fn drive(&mut self, i: usize, window: &Window, warm: &AtomicUsize) {
        let v = &mut self.viewers[i];
        while let Some(ev) = v.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Failed) = ev {
                v.error.get_or_insert_with(|| "peer connection failed".into());
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = v.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, p) = message {
                if v.counter.packets_any() == 0 {
                    warm.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let h = &p.header;
                v.counter.packet(h.sequence_number, h.timestamp, h.marker, p.payload.len() + 12, window, v.stamp.get());
            }
        }
        while let Some(msg) = v.pc.poll_write() {
            let transmit = quinn::udp::Transmit {
                destination: msg.transport.peer_addr,
                ecn: None,
                contents: &msg.message,
                segment_size: None,
                src_ip: None,
            };
            // A full socket buffer drops it; ICE, DTLS and RTCP retry or do not need it.
            let _ = v.udp.send((&v.socket).into(), &transmit);
        }
        let next = v.pc.poll_timeout();
        self.poller.file(i, &mut v.timeout, next);
    }

    /// `stop`: close every peer connection (its DTLS close goes out) and answer every viewer.
    fn close_all(&mut self) {
        for v in &mut self.viewers {
            let _ = v.pc.close();
            while let Some(msg) = v.pc.poll_write() {
                let _ = v.socket.send_to(&msg.message, msg.transport.peer_addr);
            }
            let counter = std::mem::take(&mut v.counter);
            if let Some(done) = v.done.take() {
                let (counter, loss) = counter.finish();
                let _ = done.send((counter, loss, v.error.take()));
            }
        }
    }
}

/// A viewer of remote control `rc` on `fleet`: its offer POSTed to the server's WHEP endpoint
/// and the answer applied. The session's URL (`Location`, for the DELETE) and what it counted.
pub async fn connect(
    fleet: &Fleet,
    api: &crate::server::Api,
    rc: &str,
) -> anyhow::Result<(String, oneshot::Receiver<Viewed>)> {
    let (i, sdp) = fleet.offer().await?;
    let url = format!("{}/api/whep/remote-controls/{rc}", api.base);
    let (status, headers, answer) =
        testkit::whep::http("POST", &url, api.token.as_deref(), &[("content-type", "application/sdp")], &sdp).await;
    anyhow::ensure!(status == 201, "WHEP POST: {status} {answer}");
    let location =
        headers.get("location").and_then(|v| v.to_str().ok()).ok_or_else(|| anyhow::anyhow!("no Location"))?;
    let session = format!("{}{location}", api.base);
    let done = fleet.answer(i, answer).await?;
    Ok((session, done))
}
