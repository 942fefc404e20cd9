//! The HTTP listener's accept loop: the router on hyper's HTTP/1.1 connections, with what
//! `axum::serve` does not offer: a time limit on each request's header and on its whole body,
//! and a cap on open connections per address. A client that trickles bytes, announces a body it
//! never sends or opens connection after connection cannot hold the server's sockets.
//!
//! With a certificate configured ([`ServeSettings::tls`]) every connection speaks TLS: the
//! handshake runs in the connection's own task, within `http_header_timeout` like a request's
//! header, so a client that stalls in the handshake holds nothing longer than one that stalls in
//! its header. A client that speaks plain HTTP to it gets a plain 400 that says to use https.
//!
//! Refusals are counted in `railcast_limit_refusals_total` (`http_header_timeout`,
//! `http_body_timeout`, `body_size`, `http_connections_per_address`); `docs/security.md` lists the defaults.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::limits::{Limit, PerAddress};

/// How the HTTP listener guards itself.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// A request's header (and, on a kept-alive connection, the wait for the next one) must
    /// arrive within this; then the connection is closed.
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this, counted from its header; then the
    /// request is answered 408 and the connection closed.
    pub body_timeout: Duration,
    /// Largest request body, bytes: a request announcing more (`Content-Length`) gets 413 at
    /// once, before anything of its body is read ([`MaxBody`]).
    pub max_body: usize,
    /// HTTP connections open at once from one IP address (a WebSocket stops counting once
    /// upgraded: its session counts in the client sessions instead).
    pub max_per_address: usize,
    /// TLS on every connection (`http_tls_cert`, `http_tls_key`); `None`: plain HTTP.
    pub tls: Option<Arc<crate::tls::HttpTls>>,
}

/// Serve `router` on `listener` until `stop` turns true; then stop accepting, ask every connection
/// to finish its request in flight, and return when all have closed. `tune` sets socket options
/// on each accepted connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    tune: impl Fn(&TcpStream) + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    let addresses = PerAddress::new(
        settings.max_per_address,
        "HTTP connections",
        Limit::HttpConnectionsPerAddress,
        "max_http_connections_per_address",
    );
    // Every connection task holds a clone of `open`; `closed()` resolves when all are gone.
    let (open_tx, open_rx) = watch::channel(());
    let settings = Arc::new(settings);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset while queued: wait a little, as
                    // a busy loop would not free anything.
                    tracing::debug!("HTTP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::stopped(&mut stop) => break,
        };
        let slot = match addresses.acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(hit) => {
                tokio::spawn(refuse(tcp, "429 Too Many Requests", hit.code(), hit.to_string()));
                continue;
            }
        };
        tune(&tcp);
        let router = router.clone();
        let settings = Arc::clone(&settings);
        let mut stop = stop.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            match settings.tls.clone() {
                None => connection(TokioIo::new(tcp), peer, router, &settings, &mut stop).await,
                Some(tls) => {
                    let handshake = tokio::select! {
                        r = tokio::time::timeout(settings.header_timeout, handshake(tcp, &tls)) => r,
                        _ = crate::stopped(&mut stop) => Ok(Err(Handshake::Stopped)),
                    };
                    match handshake {
                        Ok(Ok(tls)) => connection(TokioIo::new(tls), peer, router, &settings, &mut stop).await,
                        Ok(Err(Handshake::PlainHttp(tcp))) => {
                            refuse(
                                tcp,
                                "400 Bad Request",
                                "https_required",
                                "this port speaks HTTPS only: open the same address with https://".into(),
                            )
                            .await
                        }
                        Ok(Err(Handshake::Failed(e))) => tracing::debug!(%peer, "TLS handshake: {e}"),
                        Ok(Err(Handshake::Stopped)) => {}
                        Err(_) => {
                            Limit::HeaderTimeout.refuse(format!("{peer}: no TLS handshake within http_header_timeout"));
                        }
                    }
                }
            }
            drop(slot);
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

/// Why a connection on the TLS listener did not become a TLS stream.
enum Handshake {
    /// The client's first byte is not a TLS handshake record: it speaks plain HTTP.
    PlainHttp(TcpStream),
    Failed(std::io::Error),
    Stopped,
}

/// The server side of a TLS handshake with the certificate in force, ALPN http/1.1.
async fn handshake(
    tcp: TcpStream,
    tls: &crate::tls::HttpTls,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, Handshake> {
    // A TLS connection opens with a handshake record (content type 22); `GET `, `POST` … do not.
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => return Err(Handshake::Failed(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(_) if first[0] != 0x16 => return Err(Handshake::PlainHttp(tcp)),
        Ok(_) => {}
        Err(e) => return Err(Handshake::Failed(e)),
    }
    tokio_rustls::TlsAcceptor::from(tls.config()).accept(tcp).await.map_err(Handshake::Failed)
}

/// Serve HTTP/1.1 on one connection (plain or TLS) until it closes, or `stop` turns true and the
/// request in flight is answered.
async fn connection<I>(
    io: TokioIo<I>,
    peer: std::net::SocketAddr,
    router: Router,
    settings: &ServeSettings,
    stop: &mut watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (body_timeout, max_body) = (settings.body_timeout, settings.max_body);
    // Requests this connection carried: a header timeout after one is (most likely) a kept-alive
    // connection left idle, closed as it should be, not a refusal.
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = Arc::clone(&served);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(MaxBody(max_body));
        let req = req.map(|body| Body::new(Deadline::new(body, body_timeout)));
        let mut router = router.clone();
        async move { Ok::<_, Infallible>(tower_service_call(&mut router, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(settings.header_timeout);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = crate::stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() && served.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            Limit::HeaderTimeout.refuse(format!("{peer}: no complete request header within http_header_timeout"));
        } else if e.is_timeout() {
            tracing::trace!(%peer, "HTTP connection idle for http_header_timeout: closed");
        } else {
            tracing::trace!(%peer, "HTTP connection: {e}");
        }
    }
}

/// `max_body`, in each request's extensions: [`super::ApiJson`] answers 413 at once when
/// `Content-Length` announces more, without reading any of the body (after the caller's
/// credentials are checked, as extractors run in order).
#[derive(Debug, Clone, Copy)]
pub struct MaxBody(pub usize);

/// Route one request (the router is always ready).
async fn tower_service_call(router: &mut Router, req: Request<Body>) -> axum::response::Response {
    use tower_service::Service;
    match router.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Answer a connection with `status` in plain HTTP and close it, without reading its request
/// (over the per-address cap: 429; plain HTTP on the TLS listener: 400): a short drain first, so
/// that closing with unread bytes does not reset the connection before the client reads the
/// answer.
async fn refuse(mut tcp: TcpStream, status: &'static str, code: &'static str, message: String) {
    let body = super::ErrorBody { code: code.into(), message };
    let body = serde_json::to_string(&body).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut buf = [0u8; 4096];
        while tcp.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// A request body that must arrive whole by a deadline.
struct Deadline {
    inner: Incoming,
    timeout: Duration,
    /// None for a request without a body.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        use hyper::body::Body as _;
        let sleep = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        Self { inner, timeout, sleep, expired: false }
    }
}

/// The request body did not arrive whole within `http_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within http_body_timeout ({})", humantime::format_duration(*.0))]
pub struct BodyTimedOut(pub Duration);

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let Some(sleep) = self.sleep.as_mut() else { return Poll::Pending };
        ready!(sleep.as_mut().poll(cx));
        self.expired = true;
        Limit::BodyTimeout.refuse("a request body did not arrive within http_body_timeout");
        Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` (or one of its sources) is a [`BodyTimedOut`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cur) = e {
        if cur.is::<BodyTimedOut>() {
            return true;
        }
        e = cur.source();
    }
    false
}

impl IntoResponse for BodyTimedOut {
    fn into_response(self) -> axum::response::Response {
        super::ApiError::new(axum::http::StatusCode::REQUEST_TIMEOUT, "body_timeout", self.to_string()).into_response()
    }
}
