//! A hand-driven train for protocol-level tests: the simulator's pinned QUIC client
//! (`railcast_train_sim::connect`), hellos built here, control frames read and frames sent as the
//! test says.

use std::time::Duration;

use crate::Server;

/// A hand-driven QUIC train connection (pinned like the simulator's), for protocol-level tests.
pub async fn raw_train(server: &Server) -> (quinn::Endpoint, quinn::Connection) {
    let target = railcast_train_sim::connect::discover(&server.url("")).await.expect("discover");
    let endpoint = railcast_train_sim::connect::endpoint(target.addr).expect("endpoint");
    let cfg = railcast_train_sim::connect::client_config(target.sha256, Duration::from_secs(5)).expect("config");
    let conn = endpoint.connect_with(cfg, target.addr, "localhost").expect("connect").await.expect("handshake");
    (endpoint, conn)
}

/// Read one control frame; `None` at the end of the stream. Reads exactly the frame's bytes (the
/// 8-byte header, then the body length it gives), so a frame that follows in the same chunk of
/// the stream is left for the next call instead of being lost.
pub async fn read_control(recv: &mut quinn::RecvStream) -> Option<railcast_protocol::ControlMessage> {
    let mut header = [0u8; 8];
    recv.read_exact(&mut header).await.ok()?;
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut frame = header.to_vec();
    frame.resize(8 + len.min(65_536), 0);
    recv.read_exact(&mut frame[8..]).await.ok()?;
    let mut d = railcast_protocol::ControlDecoder::new(65_536);
    d.push(&frame);
    Some(d.next_frame().expect("valid frame").expect("a whole frame"))
}

/// A hello for one 320×240 camera, with the train's token.
pub fn hello(server: &Server, train_id: &str) -> railcast_protocol::ControlMessage {
    hello_with(train_id, Some(server.train_token(train_id)))
}

/// A hello for one 320×240 camera with `token` (none: no token).
pub fn hello_with(train_id: &str, token: Option<String>) -> railcast_protocol::ControlMessage {
    use railcast_protocol::control::{CameraInfo, Hello};
    railcast_protocol::ControlMessage::Hello(Hello {
        train_id: railcast_protocol::TrainId::new(train_id).expect("id"),
        cameras: vec![CameraInfo {
            id: railcast_protocol::CameraId(0),
            codec: "h264".into(),
            width: 320,
            height: 240,
            fps: 15,
        }],
        audio: Vec::new(),
        software: None,
        token: token.map(railcast_protocol::Secret),
    })
}

/// A hand-driven train: says hello with its token, sends frames you give it as datagrams, and
/// records (and acks, after `ack_delay`) every command it receives.
#[derive(Debug)]
pub struct RawTrain {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub commands: std::sync::Arc<std::sync::Mutex<Vec<railcast_protocol::control::Command>>>,
}

impl RawTrain {
    pub async fn connect(server: &Server, id: &str, ack_delay: Duration) -> RawTrain {
        let (endpoint, conn) = raw_train(server).await;
        Self::hello(server, id, ack_delay, endpoint, conn).await
    }

    /// Connect through `via` (a relay in front of the server's QUIC port).
    pub async fn connect_via(server: &Server, id: &str, via: std::net::SocketAddr) -> RawTrain {
        let target = railcast_train_sim::connect::discover(&server.url("")).await.expect("discover");
        let endpoint = railcast_train_sim::connect::endpoint(via).expect("endpoint");
        let cfg = railcast_train_sim::connect::client_config(target.sha256, Duration::from_secs(5)).expect("config");
        let conn = endpoint.connect_with(cfg, via, "localhost").expect("connect").await.expect("handshake");
        Self::hello(server, id, Duration::ZERO, endpoint, conn).await
    }

    async fn hello(
        server: &Server,
        id: &str,
        ack_delay: Duration,
        endpoint: quinn::Endpoint,
        conn: quinn::Connection,
    ) -> RawTrain {
        let (mut send, mut recv) = conn.open_bi().await.expect("bi");
        send.write_all(&hello(server, id).to_bytes()).await.expect("hello");
        match read_control(&mut recv).await {
            Some(railcast_protocol::ControlMessage::Welcome(_)) => {}
            other => panic!("{id}: expected a welcome, got {other:?}"),
        }
        let commands = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&commands);
        tokio::spawn(async move {
            let mut d = railcast_protocol::ControlDecoder::new(65_536);
            let mut buf = [0u8; 4096];
            loop {
                while let Ok(Some(m)) = d.next_frame() {
                    if let railcast_protocol::ControlMessage::Command(c) = m {
                        seen.lock().expect("lock").push(c.clone());
                        tokio::time::sleep(ack_delay).await;
                        let ack = railcast_protocol::ControlMessage::CommandAck(railcast_protocol::CommandAck {
                            command_id: c.command_id,
                            ok: true,
                            message: "done".into(),
                        });
                        if send.write_all(&ack.to_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
                match recv.read(&mut buf).await {
                    Ok(Some(n)) => d.push(&buf[..n]),
                    _ => return,
                }
            }
        });
        RawTrain { endpoint, conn, commands }
    }

    /// Send one frame of `payload` on camera 0 (all chunks, or only the first `only` of them).
    pub fn send_frame(&self, seq: u32, keyframe: bool, capture_us: u64, payload: &[u8], only: Option<usize>) -> usize {
        use railcast_protocol::packet::{packetize, Codec, FrameMeta};
        let meta = FrameMeta {
            keyframe,
            codec: Codec::H264AnnexB,
            camera: railcast_protocol::CameraId(0),
            seq: railcast_protocol::FrameSeq(seq),
            capture_us,
        };
        let packets = packetize(meta, payload, 1150).expect("packetize");
        let n = only.unwrap_or(packets.len()).min(packets.len());
        for p in packets.into_iter().take(n) {
            self.conn.send_datagram(p).expect("datagram");
        }
        n
    }
}
