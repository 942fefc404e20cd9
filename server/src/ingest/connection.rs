//! One train connection.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use railcast_protocol::control::{ErrorMessage, Welcome};
use railcast_protocol::{ControlDecoder, ControlMessage, DecodeError, Secret};
use tokio::sync::{mpsc, oneshot, watch};

use super::{close_code, Gate, IngestConfig};
use crate::hub::{Hub, Publisher};
use crate::metrics::METRICS;

/// Capacity of the queue of control frames waiting to be written to one train.
const CONTROL_QUEUE: usize = 256;
/// How often rejected packets of one connection are summarised in the log.
const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// At most this many datagrams received together go to the hub as one batch (a 4 Mbit/s frame
/// at 30 fps is 15; the stream's lock is held for a whole batch).
const MAX_DATAGRAMS_PER_PUBLISH: usize = 64;
/// How long an `error` frame may take to reach the train (the frame written after the one being
/// written, the stream finished, the train's acknowledgement of it) before the connection is
/// closed anyway: a train that does not read or acknowledge cannot hold its task longer.
const ERROR_GRACE: Duration = Duration::from_millis(500);
/// Longest message of an `error` frame (and close reason) the server sends; a decode error can
/// quote the train's input.
const ERROR_MESSAGE_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("handshake: {0}")]
    Connect(#[from] quinn::ConnectionError),
    #[error("no hello within {0:?}")]
    HelloTimeout(Duration),
    #[error("control stream: {}", read_detail(.0))]
    Read(#[from] quinn::ReadError),
    #[error("control stream: {}", write_detail(.0))]
    Write(#[from] quinn::WriteError),
    #[error("control stream closed before the hello")]
    ClosedBeforeHello,
    #[error("bad control frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("expected a hello, got {0}")]
    NotHello(&'static str),
    #[error("{found} frame from the train after its hello: {why}")]
    UnexpectedFrame { found: &'static str, why: &'static str },
    #[error("train {train}: {reason}")]
    Unauthorized { train: String, reason: crate::auth::TrainAuthError },
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitHit),
}

/// quinn says only "connection lost"; the reason (timed out, closed by peer, reset) is what an
/// operator needs, and it must not depend on which of the train's streams noticed first.
fn read_detail(e: &quinn::ReadError) -> String {
    match e {
        quinn::ReadError::ConnectionLost(cause) => format!("connection lost: {cause}"),
        other => other.to_string(),
    }
}

fn write_detail(e: &quinn::WriteError) -> String {
    match e {
        quinn::WriteError::ConnectionLost(cause) => format!("connection lost: {cause}"),
        other => other.to_string(),
    }
}

impl ConnectionError {
    /// The QUIC application close code for this end of a connection (docs/wire-format.md §3.1).
    fn close_code(&self) -> u32 {
        match self {
            Self::HelloTimeout(_) => close_code::HELLO_TIMEOUT,
            Self::Decode(_) | Self::NotHello(_) | Self::UnexpectedFrame { .. } => close_code::PROTOCOL_ERROR,
            Self::Read(quinn::ReadError::Reset(_)) => close_code::PROTOCOL_ERROR,
            Self::Unauthorized { .. } => close_code::UNAUTHORIZED,
            Self::Limit(_) => close_code::LIMIT,
            _ => close_code::NORMAL,
        }
    }

    /// The `error` frame that explains a fatal control-stream error after the hello, or `None`
    /// when the connection is simply gone (docs/wire-format.md §3.2).
    fn frame(&self) -> Option<ErrorMessage> {
        let code = match self {
            Self::Decode(e) => e.label(),
            Self::UnexpectedFrame { .. } => "unexpected_frame",
            Self::Read(quinn::ReadError::Reset(_)) => "stream_reset",
            _ => return None,
        };
        Some(ErrorMessage { code: code.into(), message: clip(self.to_string()) })
    }
}

/// `message` cut to [`ERROR_MESSAGE_MAX`] bytes at a character boundary.
fn clip(mut message: String) -> String {
    if message.len() > ERROR_MESSAGE_MAX {
        let mut end = ERROR_MESSAGE_MAX - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// Reads control frames off the control stream.
#[derive(Debug)]
struct FrameReader {
    recv: quinn::RecvStream,
    decoder: ControlDecoder,
}

impl FrameReader {
    /// `Ok(None)` at a clean end of stream.
    async fn next(&mut self) -> Result<Option<ControlMessage>, ConnectionError> {
        loop {
            if let Some(msg) = self.decoder.next_frame()? {
                return Ok(Some(msg));
            }
            let mut chunk = [0u8; 4096];
            match self.recv.read(&mut chunk).await? {
                Some(n) => self.decoder.push(&chunk[..n]),
                None if self.decoder.buffered() == 0 => return Ok(None),
                None => {
                    let held = self.decoder.buffered();
                    return Err(
                        DecodeError::Truncated { what: "control frame", needed: held + 1, available: held }.into()
                    );
                }
            }
        }
    }
}

/// One train's connection: hello, then video datagrams and control frames until it ends.
#[derive(Debug)]
pub struct Connection {
    hub: Hub,
    config: IngestConfig,
    gate: Gate,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    pub fn new(hub: Hub, config: IngestConfig, gate: Gate, shutdown: watch::Receiver<bool>) -> Self {
        Self { hub, config, gate, shutdown }
    }

    pub async fn run(self, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let conn = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%remote, "train handshake failed: {e}");
                return;
            }
        };
        if let Err(e) = self.serve(&conn).await {
            tracing::info!(%remote, "train connection ended: {e}");
            let code = e.close_code();
            let reason = if code == close_code::NORMAL { String::new() } else { clip(e.to_string()) };
            conn.close(code.into(), reason.as_bytes());
        }
    }

    async fn serve(mut self, conn: &quinn::Connection) -> Result<(), ConnectionError> {
        let remote = conn.remote_address();
        // Before anything else: a flood of connections from one address is closed at once (the
        // close reason says why).
        let _slot = self.gate.addresses.acquire(remote.ip())?;
        let hello_timeout = self.config.hello_timeout;
        let (mut send, recv) = tokio::time::timeout(hello_timeout, conn.accept_bi())
            .await
            .map_err(|_| ConnectionError::HelloTimeout(hello_timeout))??;
        let mut reader = FrameReader { recv, decoder: ControlDecoder::new(self.config.max_control_body) };
        let hello = match tokio::time::timeout(hello_timeout, reader.next()).await {
            Err(_) => return Err(ConnectionError::HelloTimeout(hello_timeout)),
            Ok(Err(e)) => {
                refuse(send, "bad_hello", &e.to_string()).await;
                return Err(e);
            }
            Ok(Ok(None)) => return Err(ConnectionError::ClosedBeforeHello),
            Ok(Ok(Some(ControlMessage::Hello(h)))) => h,
            Ok(Ok(Some(other))) => {
                refuse(send, "expected_hello", "the first control frame must be a hello").await;
                return Err(ConnectionError::NotHello(other.name()));
            }
        };
        let train = hello.train_id.clone();
        if let Err(reason) = self.gate.auth.train(&train, hello.token.as_ref()) {
            METRICS.auth_refusals.with_label_values(&["train", reason.reason()]).inc();
            tracing::warn!(%remote, %train, "train refused: {reason}");
            refuse(send, "unauthorized", &reason.to_string()).await;
            return Err(ConnectionError::Unauthorized { train: train.to_string(), reason });
        }
        if self.hub.stream(&train).is_none() && self.hub.train_count() >= self.gate.max_trains {
            let hit = crate::limits::Limit::Trains
                .refuse(format!("{} trains are known already (max_trains)", self.gate.max_trains));
            refuse(send, hit.code(), &hit.message).await;
            return Err(hit.into());
        }
        tracing::info!(%remote, %train, cameras = hello.cameras.len(), audio = hello.audio.len(), "train online");
        let welcome = ControlMessage::Welcome(Welcome {
            server_time_us: crate::now_us(),
            max_payload: self.hub.config().max_payload as u32,
        });
        send.write_all(&welcome.to_bytes()).await?;

        // Kept to check it again after each credentials reload.
        let token = hello.token.clone();
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let mut publisher = self.hub.connect_train(hello, control_tx);
        let (stop_writer, writer_stop) = oneshot::channel();
        let mut writer = tokio::spawn(write_control(send, control_rx, writer_stop));
        let (frames_tx, mut frames) = mpsc::channel(64);
        let reader_task = tokio::spawn(async move {
            loop {
                let item = reader.next().await;
                let end = !matches!(item, Ok(Some(_)));
                if frames_tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });

        let result = self.pump(conn, &mut publisher, &mut frames, token.as_ref()).await;
        reader_task.abort();
        match &result {
            Ok(reason) => publisher.set_offline_reason(reason.clone()),
            Err(e) => publisher.set_offline_reason(e.to_string()),
        }
        tracing::info!(%remote, %train, "train offline");
        // Offline first: the train's clients and pending commands do not wait for the goodbye.
        drop(publisher);
        if let Some(error) = result.as_ref().err().and_then(ConnectionError::frame) {
            // A fatal control-stream error is explained with an `error` frame before `run`
            // closes the connection: the writer finishes the frame it is writing and hands the
            // stream back, the frame goes last, and the close waits for the train to acknowledge
            // it, bounded by ERROR_GRACE.
            let _ = stop_writer.send(());
            let code = error.code.clone();
            let explained = tokio::time::timeout(ERROR_GRACE, async {
                match (&mut writer).await {
                    Ok(Some(send)) => explain(send, error).await,
                    _ => false,
                }
            })
            .await
            .unwrap_or(false);
            if !explained {
                tracing::debug!(%remote, %train, %code, "the error frame was not acknowledged within {ERROR_GRACE:?}");
            }
        }
        writer.abort();
        result.map(|_| ())
    }

    /// The connection's main loop; returns why it ended.
    async fn pump(
        &mut self,
        conn: &quinn::Connection,
        publisher: &mut Publisher,
        frames: &mut mpsc::Receiver<Result<Option<ControlMessage>, ConnectionError>>,
        token: Option<&Secret>,
    ) -> Result<String, ConnectionError> {
        let mut rejected = 0u64;
        let mut datagrams = Vec::with_capacity(MAX_DATAGRAMS_PER_PUBLISH);
        let mut last_reject_log: Option<Instant> = None;
        let mut credentials = self.gate.auth.changes();
        let mut reloads_open = true;
        loop {
            tokio::select! {
                reloaded = credentials.changed(), if reloads_open => {
                    if reloaded.is_err() {
                        reloads_open = false;
                    } else if let Err(reason) = self.gate.auth.train(publisher.train_id(), token) {
                        // The token that let this train in was revoked or replaced.
                        METRICS.auth_refusals.with_label_values(&["train", reason.reason()]).inc();
                        tracing::warn!(train = %publisher.train_id(), "credentials reloaded, closing the train's connection: {reason}");
                        conn.close(close_code::UNAUTHORIZED.into(), b"the train's token is no longer in force (credentials reloaded)");
                        return Ok(format!("token no longer in force: {reason}"));
                    }
                }
                dgram = conn.read_datagram() => {
                    let dgram = match dgram {
                        Ok(d) => d,
                        Err(e) => return Ok(format!("connection lost: {e}")),
                    };
                    // With the datagrams already received (a frame's chunks, typically): the hub
                    // hands them to each subscriber at once. An error is read again next time.
                    datagrams.push(dgram);
                    while datagrams.len() < MAX_DATAGRAMS_PER_PUBLISH {
                        match conn.read_datagram().now_or_never() {
                            Some(Ok(d)) => datagrams.push(d),
                            _ => break,
                        }
                    }
                    publisher.publish_batch(datagrams.drain(..), |e| {
                        rejected += 1;
                        let now = Instant::now();
                        if last_reject_log.is_none_or(|t| now.duration_since(t) >= REJECT_LOG_INTERVAL) {
                            tracing::warn!(train = %publisher.train_id(), rejected, "dropping invalid packet: {e}");
                            last_reject_log = Some(now);
                            rejected = 0;
                        }
                    });
                }
                frame = frames.recv() => match frame {
                    Some(Ok(Some(ControlMessage::CommandAck(ack)))) => publisher.ack(ack),
                    Some(Ok(Some(ControlMessage::Telemetry(t)))) => publisher.telemetry(t),
                    Some(Ok(Some(ControlMessage::Status(s)))) => publisher.status(s),
                    Some(Ok(Some(ControlMessage::Error(ErrorMessage { code, message })))) => {
                        tracing::warn!(train = %publisher.train_id(), %code, "train reports an error: {message}");
                    }
                    Some(Ok(Some(ControlMessage::Hello(_)))) => {
                        return Err(ConnectionError::UnexpectedFrame {
                            found: "hello",
                            why: "a train says hello once per connection",
                        });
                    }
                    Some(Ok(Some(other))) => {
                        // welcome, command, keyframe_request: frames only the server sends.
                        return Err(ConnectionError::UnexpectedFrame {
                            found: other.name(),
                            why: "only the server sends this kind",
                        });
                    }
                    Some(Ok(None)) | None => {
                        conn.close(close_code::NORMAL.into(), b"control stream finished");
                        return Ok("control stream finished".into());
                    }
                    // Closed by `run` once the error frame is out (`serve`).
                    Some(Err(e)) => return Err(e),
                },
                _ = publisher.replaced() => {
                    conn.close(close_code::REPLACED.into(), b"replaced by a newer connection for the same train id");
                    return Ok("replaced by a newer connection".into());
                }
                _ = crate::stopped(&mut self.shutdown) => {
                    conn.close(close_code::SHUTDOWN.into(), b"server shutting down");
                    return Ok("server shutting down".into());
                }
            }
        }
    }
}

/// Writes the hub's control frames (commands, keyframe requests) to the train, one whole frame at
/// a time. On `stop`, or when the hub lets go of the queue, it returns the stream between two
/// frames, so that an `error` frame can follow without cutting one in half; `None` if a write
/// failed.
async fn write_control(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<ControlMessage>,
    mut stop: oneshot::Receiver<()>,
) -> Option<quinn::SendStream> {
    loop {
        let msg = tokio::select! {
            biased;
            _ = &mut stop => return Some(send),
            msg = rx.recv() => msg,
        };
        let Some(msg) = msg else { return Some(send) };
        if let Err(e) = send.write_all(&msg.to_bytes()).await {
            tracing::debug!("control stream write failed: {e}");
            return None;
        }
    }
}

/// Write `error` as the last frame of the stream, finish it, and wait until the train has
/// acknowledged every byte, so that closing the connection right after does not discard the
/// explanation. True when it did. Callers bound the wait.
async fn explain(mut send: quinn::SendStream, error: ErrorMessage) -> bool {
    let frame = ControlMessage::Error(error).to_bytes();
    if send.write_all(&frame).await.is_err() || send.finish().is_err() {
        return false;
    }
    matches!(send.stopped().await, Ok(None))
}

/// Refuse a hello: an `error` frame, bounded by [`ERROR_GRACE`]; the caller's error closes.
async fn refuse(send: quinn::SendStream, code: &str, message: &str) {
    let error = ErrorMessage { code: code.into(), message: clip(message.into()) };
    let _ = tokio::time::timeout(ERROR_GRACE, explain(send, error)).await;
}
