//! A WebSocket remote control that reassembles frames with the protocol crate's assembler and
//! records them with their latency, attributed to the train it was mapped to when they arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use railcast_protocol::assembler::Assembler;
use railcast_protocol::VideoPacket;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{now_us, Manifest};

#[derive(Debug, Clone)]
pub struct Received {
    pub train: Option<String>,
    pub camera: u16,
    pub seq: u32,
    pub keyframe: bool,
    pub sha256: String,
    pub capture_us: u64,
    /// Capture timestamp → complete frame received by this client, µs.
    pub latency_us: u64,
    /// Video: the NAL unit types of the frame's Annex B access unit, in order (a decodable
    /// keyframe starts 7, 8, 5: SPS, PPS, IDR); empty for audio.
    pub nal_types: Vec<u8>,
    /// The frame itself, when the client keeps frames ([`Client::keep_data`]; off by default:
    /// load tests hold thousands of frames).
    pub data: Option<bytes::Bytes>,
}

#[derive(Debug, Default)]
pub struct Log {
    pub frames: Vec<Received>,
    /// Keep each frame's bytes in [`Received::data`].
    pub keep_data: bool,
    pub events: Vec<Value>,
    pub packets: u64,
    pub bytes: u64,
    /// Packets that are a frame's first chunk.
    pub frame_starts: u64,
    pub closed: Option<(u16, String)>,
    /// Per-packet latency (capture → packet received), µs.
    pub packet_latency_us: Vec<u64>,
    /// Data-channel `video` messages (docs/wire-format.md §2.6): how many, how many held more
    /// than one packet, and the largest, bytes.
    pub video_messages: u64,
    pub multi_packet_messages: u64,
    pub largest_video_message: usize,
    /// WebTransport: packets that came as datagrams, and alone on a unidirectional stream.
    pub datagrams: u64,
    pub stream_packets: u64,
}

/// Turns what a client receives into the [`Log`], the same for every transport.
#[derive(Default)]
pub struct Recorder {
    asm: Assembler,
    train: Option<String>,
    /// Whether the first `mapped_train_changed` has arrived. Over WebRTC the `video` channel is
    /// not ordered with `command`, so video may arrive first; it waits for the mapping.
    mapped: bool,
    early: Vec<(u64, bytes::Bytes)>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("train", &self.train)
            .field("mapped", &self.mapped)
            .field("early", &self.early.len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A message of the `video` data channel: one or more whole packets (§2.6), each recorded
    /// as [`Recorder::binary`] records a WebSocket message.
    pub fn video_message(&mut self, log: &Mutex<Log>, m: bytes::Bytes) {
        let mut n = 0;
        for p in railcast_protocol::message::split_bytes(&m) {
            self.binary(log, p.expect("server sent a malformed video message"));
            n += 1;
        }
        let mut log = log.lock().expect("lock");
        log.video_messages += 1;
        log.multi_packet_messages += u64::from(n > 1);
        log.largest_video_message = log.largest_video_message.max(m.len());
    }

    pub fn binary(&mut self, log: &Mutex<Log>, b: bytes::Bytes) {
        if !self.mapped {
            self.early.push((now_us(), b));
            return;
        }
        self.record(log, now_us(), b);
    }

    fn record(&mut self, log: &Mutex<Log>, now: u64, b: bytes::Bytes) {
        let pkt = VideoPacket::parse(b, 65_535).expect("server sent a malformed packet");
        let mut log = log.lock().expect("lock");
        log.packets += 1;
        log.bytes += pkt.bytes.len() as u64;
        log.frame_starts += u64::from(pkt.header.starts_frame());
        log.packet_latency_us.push(now.saturating_sub(pkt.header.capture_us));
        if let Some(f) = self.asm.push(&pkt) {
            let keep = log.keep_data;
            log.frames.push(Received {
                train: self.train.clone(),
                camera: f.camera.0,
                seq: f.seq.0,
                keyframe: f.keyframe,
                sha256: hex::encode(Sha256::digest(&f.data)),
                capture_us: f.capture_us,
                latency_us: now.saturating_sub(f.capture_us),
                nal_types: if f.codec.is_audio() {
                    Vec::new()
                } else {
                    railcast_protocol::h264::nal_units(&f.data).iter().map(|n| n.nal_type()).collect()
                },
                data: keep.then(|| bytes::Bytes::from(f.data)),
            });
        }
    }

    pub fn text(&mut self, log: &Mutex<Log>, t: &str) {
        let v: Value = serde_json::from_str(t).expect("server sent invalid JSON");
        // A new mapping or a new train session restarts sequence numbers.
        let first_mapping = v["type"] == "mapped_train_changed" && !self.mapped;
        if v["type"] == "mapped_train_changed" {
            self.train = v["train_id"].as_str().map(str::to_owned);
            self.asm.reset();
            self.mapped = true;
        } else if v["type"] == "train_online" {
            self.asm.reset();
        }
        log.lock().expect("lock").events.push(v);
        if first_mapping {
            for (at, b) in std::mem::take(&mut self.early) {
                if self.train.is_some() {
                    self.record(log, at, b);
                }
            }
        }
    }
}

/// How a client sends its JSON messages.
pub enum Outbox {
    Ws(mpsc::Sender<Message>),
    DataChannel(Arc<dyn webrtc::data_channel::DataChannel>),
    /// Lines for a WebTransport session's stream (the newline is added).
    WebTransport(mpsc::Sender<String>),
    /// Messages for an MQTT session's command topic (payload, retain flag).
    Mqtt(mpsc::Sender<(Vec<u8>, bool)>),
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outbox::Ws(_) => "Outbox::Ws",
            Outbox::DataChannel(_) => "Outbox::DataChannel",
            Outbox::WebTransport(_) => "Outbox::WebTransport",
            Outbox::Mqtt(_) => "Outbox::Mqtt",
        })
    }
}

#[derive(Debug)]
pub struct Client {
    pub log: Arc<Mutex<Log>>,
    pub out: Outbox,
    /// The WebSocket reader task: aborted on drop, so dropping a client drops its connection
    /// (without a close frame, as when a browser tab dies).
    pub reader: Option<tokio::task::AbortHandle>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connect");
        let (mut sink, mut stream) = ws.split();
        let log = Arc::new(Mutex::new(Log::default()));
        let (out, mut out_rx) = mpsc::channel::<Message>(16);
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let l = Arc::clone(&log);
        let reader = tokio::spawn(async move {
            let mut rec = Recorder::default();
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else { break };
                match msg {
                    Message::Binary(b) => rec.binary(&l, b),
                    Message::Text(t) => rec.text(&l, t.as_str()),
                    Message::Close(frame) => {
                        l.lock().expect("lock").closed = Some(
                            frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new())),
                        );
                        break;
                    }
                    _ => {}
                }
            }
            let mut log = l.lock().expect("lock");
            if log.closed.is_none() {
                log.closed = Some((1006, "connection dropped".into()));
            }
        });
        Client { log, out: Outbox::Ws(out), reader: Some(reader.abort_handle()) }
    }

    pub async fn send_text(&self, text: impl Into<String>) {
        match &self.out {
            Outbox::Ws(tx) => tx.send(Message::Text(text.into().into())).await.expect("send"),
            Outbox::DataChannel(dc) => dc.send_text(&text.into()).await.expect("send on command channel"),
            Outbox::WebTransport(tx) => tx.send(text.into()).await.expect("send on the WebTransport stream"),
            Outbox::Mqtt(tx) => tx.send((text.into().into_bytes(), false)).await.expect("publish on the command topic"),
        }
    }

    /// MQTT: publish any bytes on the command topic, retained or not.
    pub async fn publish_raw(&self, payload: Vec<u8>, retain: bool) {
        match &self.out {
            Outbox::Mqtt(tx) => tx.send((payload, retain)).await.expect("publish on the command topic"),
            _ => panic!("raw publishes need an MQTT client"),
        }
    }

    pub async fn send(&self, msg: Message) {
        match &self.out {
            Outbox::Ws(tx) => tx.send(msg).await.expect("send"),
            Outbox::DataChannel(_) | Outbox::WebTransport(_) | Outbox::Mqtt(_) => {
                panic!("raw WebSocket messages need a WebSocket client")
            }
        }
    }

    pub fn frames(&self) -> Vec<Received> {
        self.log.lock().expect("lock").frames.clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.log.lock().expect("lock").events.clone()
    }

    /// Wait (at most 10 s) until the server closed the session; returns its close code and reason.
    pub async fn wait_closed(&self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self.log.lock().expect("lock").closed.clone() {
                return c;
            }
            assert!(tokio::time::Instant::now() < deadline, "the session was not closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until an event satisfies `pred`; returns it.
    pub async fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self.events().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {what} event; got {:?}", self.events());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send `n` commands (a short horn), one after the other 200 ms apart; each must be acked
    /// within `within`, or the test fails saying so and what `context` returns. The round trips,
    /// in ms.
    pub async fn command_round_trips(&self, n: usize, within: Duration, context: impl Fn() -> String) -> Vec<u128> {
        let mut rtts = Vec::new();
        for i in 0..n {
            let id = format!("rt-{i}");
            let start = std::time::Instant::now();
            let cmd = serde_json::json!({"type": "command", "request_id": id, "command": {"type": "horn", "duration_ms": 50}});
            self.send_text(cmd.to_string()).await;
            let ack = loop {
                if let Some(e) = self.events().into_iter().find(|e| e["request_id"] == id.as_str()) {
                    break e;
                }
                assert!(
                    start.elapsed() < within,
                    "no answer to command {id} within {within:?} ({}; acks so far: {rtts:?} ms)",
                    context()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            assert_eq!(ack["type"], "command_ack", "{ack}");
            rtts.push(start.elapsed().as_millis());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rtts
    }

    /// Wait until at least `n` frames arrived.
    /// Keep the bytes of every frame from now on ([`Received::data`]).
    pub fn keep_data(&self) {
        self.log.lock().expect("lock").keep_data = true;
    }

    pub async fn wait_frames(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.frames().len() < n {
            assert!(tokio::time::Instant::now() < deadline, "only {} frames arrived", self.frames().len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Check every frame against the manifest: attributed to the right train, SHA-256 equal, and in
/// increasing sequence order per camera. Returns the number of frames checked.
pub fn verify(frames: &[Received], manifest: &Manifest) -> usize {
    let mut last: std::collections::HashMap<(String, u16), u32> = Default::default();
    for f in frames {
        let train = f.train.as_deref().expect("frame received while unmapped");
        let e = manifest
            .get(train, f.camera, f.seq)
            .unwrap_or_else(|| panic!("frame {train}/{}/{} is not in the manifest", f.camera, f.seq));
        assert_eq!(
            e.sha256, f.sha256,
            "frame {train}/{}/{}: SHA-256 differs from what the train sent",
            f.camera, f.seq
        );
        assert_eq!(e.capture_us, f.capture_us);
        let key = (train.to_owned(), f.camera);
        if let Some(prev) = last.get(&key) {
            assert!(f.seq > *prev, "frame {train}/{}/{} after {prev}: out of order", f.camera, f.seq);
        }
        last.insert(key, f.seq);
    }
    frames.len()
}

/// A WebSocket client that completes the handshake with a 4 KiB receive buffer and then never
/// reads: its socket fills within a second of video.
pub async fn stalled(url: &str, server_addr: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket.connect(server_addr.parse().expect("addr")).await.expect("connect");
    tokio_tungstenite::client_async(url, tcp).await.expect("handshake").0
}
