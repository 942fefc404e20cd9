//! A WebTransport remote control for `wt-fanout --wt-client-tasks` (the tool's default is
//! [`crate::wt_fleet`], which costs the tool a third less per client): web-transport-quinn's
//! client with testkit's configuration (pinning the hashes the API publishes) on a
//! [`StampedSocket`], which sends a `ping` first and then counts video from datagrams and
//! unidirectional streams like the WebSocket reader counts binary messages, each packet's
//! latency taken both when it is read and when the kernel received it.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::watch;

use crate::server::Api;
use crate::stamped_udp::{Stamp, StampedSocket};
use crate::stats::{FrameCounter, Window};
use crate::ws_client::WsResult;

/// The certificate hashes `GET /api/webtransport` publishes.
pub async fn hashes(api: &Api) -> anyhow::Result<Vec<String>> {
    let (status, v) = api.call("GET", "/api/webtransport", None).await?;
    anyhow::ensure!(status == 200, "GET /api/webtransport: {status} {v}");
    Ok(v["certificate_hashes"].as_array().into_iter().flatten().filter_map(|h| h.as_str().map(str::to_owned)).collect())
}

/// A session, its stream, and its socket's receive time.
pub type Conn =
    (web_transport_quinn::Session, web_transport_quinn::RecvStream, web_transport_quinn::SendStream, Arc<Stamp>);

/// Open a session and its stream, and send the first message.
pub async fn connect(url: &str, hashes: &[String]) -> anyhow::Result<Conn> {
    let hashes = hashes.iter().map(hex::decode).collect::<Result<Vec<_>, _>>()?;
    let (socket, stamp) = StampedSocket::bind()?;
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    let client = web_transport_quinn::Client::new(endpoint, testkit::wt::client_config(hashes));
    let session = client.connect(url::Url::parse(url)?).await?;
    let (mut send, recv) = session.open_bi().await?;
    send.write_all(b"{\"type\":\"ping\",\"t\":0}\n").await?;
    Ok((session, recv, send, stamp))
}

/// Count video until `stop`.
pub async fn run(
    (session, mut recv, _send, stamp): Conn,
    window: Arc<Window>,
    warm: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> WsResult {
    let mut r = WsResult { counter: FrameCounter::default(), events: 0, error: None };
    let mut reading = true;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            chunk = recv.read_chunk(64 * 1024, true), if reading => match chunk {
                Ok(Some(c)) => r.events += c.bytes.iter().filter(|&&b| b == b'\n').count() as u64,
                Ok(None) | Err(_) => reading = false,
            },
            d = session.read_datagram() => match d {
                Ok(d) => {
                    r.counter.packet_warming_at(&d, &window, &warm, stamp.get());
                    // The rest of a frame arrives with its first packet: take what is queued
                    // before polling every branch again (that polling was 15 % of the tool's core
                    // at 500 clients, and a busy tool adds to the latency it measures).
                    while let Some(d) = session.read_datagram().now_or_never() {
                        match d {
                            Ok(d) => r.counter.packet_warming_at(&d, &window, &warm, stamp.get()),
                            Err(e) => { r.error = Some(e.to_string()); break }
                        }
                    }
                    if r.error.is_some() { break }
                }
                Err(e) => { r.error = Some(e.to_string()); break }
            },
            s = session.accept_uni() => match s {
                Ok(mut s) => match s.read_to_end(70 * 1024).await {
                    Ok(p) => r.counter.packet_warming_at(&p, &window, &warm, stamp.get()),
                    Err(e) => { r.error = Some(e.to_string()); break }
                },
                Err(e) => { r.error = Some(e.to_string()); break }
            },
        }
    }
    session.close(0, b"done");
    r
}
