//! The HTTP access log (`access_log`): one line per request at info, target `railcast::access`,
//! with the method, the path and query (secret parameters redacted), the status, the time to the
//! response's header, the principal named by the request's token (`-` without a valid one) and
//! the peer address. A WebSocket's line is its upgrade (status 101), written when it is accepted.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::core::Core;

/// The middleware: log `request` once its response's header is ready.
pub async fn access_log(State(core): State<Core>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path_and_query().map_or_else(|| request.uri().path().to_owned(), |p| p.to_string());
    let path = crate::logging::redact(&path).into_owned();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let principal = super::caller::token_of(request.headers(), request.uri())
        .and_then(|token| core.auth.client(&token))
        .map_or_else(|| "-".to_owned(), |p| p.name.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
    tracing::info!(
        target: "railcast::access",
        %method,
        path = %path,
        status,
        duration_ms = format_args!("{duration_ms:.2}"),
        principal = %principal,
        peer = %peer,
        "request"
    );
    response
}
