//! WebSocket remote controls (tokio-tungstenite). A client reads only the 26-byte header of each
//! binary message; text messages (events) are counted, not parsed, except when waiting for the
//! welcome.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::stats::{FrameCounter, Window};
use crate::train::stopped;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one client saw.
#[derive(Debug, Default)]
pub struct WsResult {
    pub counter: FrameCounter,
    pub events: u64,
    pub error: Option<String>,
}

/// Read buffer of a client. tungstenite zero-fills all of its spare read capacity before every
/// read (`FrameCodec::read_in`); at the default 128 KiB that memset was a large share of the
/// tool's CPU at 1,000 clients and delayed its reads (docs/benchmarks-history.md, "Session 4: the
/// WebSocket write path and the hub queue", item 4). One 4 Mbit/s frame (15 messages, ≈ 17 KB)
/// fits in 24 KiB.
const READ_BUFFER: usize = 24 * 1024;

pub async fn connect(url: &str) -> anyhow::Result<Ws> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let fut = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, resp) = tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| anyhow!("WebSocket connect timed out"))??;
    if resp.status().as_u16() != 101 {
        bail!("WebSocket upgrade: {}", resp.status());
    }
    Ok(ws)
}

/// Read until `stop`, counting video; `warm` is incremented at the first video packet.
pub async fn run(ws: Ws, window: Arc<Window>, warm: Arc<AtomicUsize>, stop: watch::Receiver<bool>) -> WsResult {
    run_observed(ws, window, warm, stop, |_| {}).await
}

/// [`run`], calling `observe` with the counts after each video packet (the soak's live figures).
pub async fn run_observed(
    mut ws: Ws,
    window: Arc<Window>,
    warm: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
    observe: impl Fn(&FrameCounter),
) -> WsResult {
    let mut r = WsResult::default();
    let stop_fut = stopped(&mut stop);
    tokio::pin!(stop_fut);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop_fut => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    r.counter.packet_warming(&b, &window, &warm);
                    observe(&r.counter);
                }
                Some(Ok(Message::Text(_))) => r.events += 1,
                Some(Ok(Message::Close(f))) => {
                    r.error = Some(format!("closed by the server: {f:?}"));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    r.error = Some(e.to_string());
                    break;
                }
                None => {
                    r.error = Some("connection ended".into());
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    r
}

/// Read until the server's `welcome` event (and, with `video`, the first video packet).
pub async fn wait_welcome(ws: &mut Ws, video: bool) -> anyhow::Result<()> {
    let (mut welcome, mut got_video) = (false, !video);
    let read = async {
        while !(welcome && got_video) {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => welcome |= t.as_str().contains("\"welcome\""),
                Some(Ok(Message::Binary(_))) => got_video = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{e}"),
                None => bail!("connection ended before the welcome"),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.map_err(|_| anyhow!("no welcome within 10 s"))?
}

/// Close politely and wait (briefly) for the server's close.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
