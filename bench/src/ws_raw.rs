//! A lean WebSocket client for the fan-out scenario's latency figures.
//!
//! tokio-tungstenite costs the tool about as much CPU per client as the server spends on it (a
//! message allocated per packet, and its read buffer zero-filled before every read;
//! docs/benchmarks-history.md, "Session 4: the WebSocket write path and the hub queue", item 4).
//! At 1,000 clients the tool then reads each frame late, and its own delay lands in the relay
//! latency it reports. This client does the opening handshake by hand and then parses the
//! server's frames (never masked, never fragmented: docs/wire-format.md) straight from one
//! reusable buffer, taking the receive time right after each read.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::stats::{FrameCounter, Window};
use crate::train::stopped;
use crate::ws_client::WsResult;

/// Bytes read at most per `read` (one 4 Mbit/s frame is about 17 KB).
const READ_CHUNK: usize = 64 * 1024;

pub struct RawWs {
    tcp: TcpStream,
    /// Bytes received and not parsed yet.
    buf: BytesMut,
}

/// Open `ws://host:port/path` and complete the handshake.
pub async fn connect(url: &str) -> anyhow::Result<RawWs> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow!("not a ws:// URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let handshake = async {
        let mut tcp = TcpStream::connect(host).await.with_context(|| format!("connect {host}"))?;
        tcp.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 16 * 1024 || tcp.read_buf(&mut buf).await? == 0 {
                bail!("no HTTP response to the WebSocket handshake");
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        // RFC 6455 §1.3: the accept value for this key.
        if !head.starts_with("HTTP/1.1 101") || !head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
            bail!("WebSocket upgrade refused: {}", head.lines().next().unwrap_or_default());
        }
        buf.advance(end);
        Ok(RawWs { tcp, buf })
    };
    tokio::time::timeout(Duration::from_secs(15), handshake)
        .await
        .map_err(|_| anyhow!("WebSocket connect timed out"))?
}

/// One frame's header: opcode, header length, payload length; `None` until it is all buffered.
fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (hlen, len) = match b1 & 0x7f {
        126 => (4, usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]))),
        127 => (10, usize::try_from(u64::from_be_bytes(b.get(2..10)?.try_into().ok()?)).ok()?),
        n => (2, usize::from(n)),
    };
    Some((b0, hlen, len))
}

/// Read until `stop`, counting video like [`crate::ws_client::run`].
pub async fn run(
    mut ws: RawWs,
    window: Arc<Window>,
    warm: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> WsResult {
    let mut r = WsResult { counter: FrameCounter::default(), events: 0, error: None };
    let stop_fut = stopped(&mut stop);
    tokio::pin!(stop_fut);
    'read: loop {
        // Parse every whole frame buffered.
        while let Some((b0, hlen, len)) = header(&ws.buf) {
            if ws.buf.len() < hlen + len {
                break;
            }
            if b0 & 0x80 == 0 || ws.buf[1] & 0x80 != 0 {
                r.error = Some("fragmented or masked frame from the server".into());
                break 'read;
            }
            let payload = &ws.buf[hlen..hlen + len];
            match b0 & 0x0f {
                0x2 => r.counter.packet_warming(payload, &window, &warm),
                0x1 => r.events += 1,
                0x8 => {
                    r.error = Some(format!("closed by the server: {}", String::from_utf8_lossy(payload)));
                    break 'read;
                }
                _ => {} // ping, pong
            }
            ws.buf.advance(hlen + len);
        }
        if ws.buf.capacity() - ws.buf.len() < READ_CHUNK / 2 {
            ws.buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            _ = &mut stop_fut => break,
            n = ws.tcp.read_buf(&mut ws.buf) => match n {
                Ok(0) => { r.error = Some("connection ended".into()); break }
                Ok(_) => {}
                Err(e) => { r.error = Some(e.to_string()); break }
            }
        }
    }
    // A masked, empty close frame (mask key 0), then end.
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.tcp.write_all(&[0x88, 0x80, 0, 0, 0, 0])).await;
    r
}

#[cfg(test)]
mod tests {
    use super::header;

    #[test]
    fn frame_headers() {
        assert_eq!(header(&[0x82]), None);
        assert_eq!(header(&[0x82, 5]), Some((0x82, 2, 5)));
        assert_eq!(header(&[0x82, 126, 0x04]), None);
        assert_eq!(header(&[0x82, 126, 0x04, 0x71]), Some((0x82, 4, 1137)));
        assert_eq!(header(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]), Some((0x82, 10, 65_536)));
    }
}
