//! One incoming connection up to its session: the QUIC and HTTP/3 handshakes, then the CONNECT
//! request checked as `GET /ws` checks an upgrade (the same extractors, in the same order), and
//! the answer: 200 and a [`Session`], or the refusal's status (HTTP/3 CONNECT responses carry no
//! body here; the log says why).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use serde::Deserialize;

use super::Session;
use crate::core::Core;
use crate::http::{ApiError, ApiQuery, UpgradeCaller};

/// How long a refused connection waits for the client to read the refusal and close.
const REFUSAL_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// The session URL's query: as `GET /ws`'s.
#[derive(Debug, Deserialize)]
struct WtQuery {
    remote_control_id: String,
    #[serde(default)]
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// Complete the handshakes of `incoming` and answer its CONNECT request. `None`: refused or
/// failed (logged).
pub async fn accept(core: &Core, incoming: quinn::Incoming) -> Option<Session> {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, "webtransport QUIC handshake failed: {e}");
            return None;
        }
    };
    let request = match web_transport_quinn::Request::accept(conn).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%peer, "webtransport HTTP/3 handshake failed: {e}");
            return None;
        }
    };
    match admit(core, &request, peer).await {
        Ok((rc, principal, slot)) => match request.ok().await {
            Ok(session) => Some(Session::new(core.clone(), rc, principal, peer.to_string(), slot, session)),
            Err(e) => {
                tracing::debug!(%peer, "webtransport CONNECT not answered: {e}");
                None
            }
        },
        Err(refusal) => {
            tracing::info!(%peer, status = refusal.status.as_u16(), code = refusal.code, "webtransport session refused: {}", refusal.message);
            // The response must reach the client before the connection closes (closing it
            // discards what is unsent): wait for the client to close, briefly.
            let conn = request.conn().clone();
            if request.reject(refusal.status).await.is_ok() {
                let _ = tokio::time::timeout(REFUSAL_LINGER, conn.closed()).await;
            }
            conn.close(0u32.into(), b"refused");
            None
        }
    }
}

/// Check a CONNECT request as the WebSocket upgrade is checked: token (401), query (400), remote
/// control (404), its owner (403), the per-address limit (429); and the path (404) and shutdown
/// (503) first.
async fn admit(
    core: &Core,
    request: &web_transport_quinn::Request,
    peer: std::net::SocketAddr,
) -> Result<(Arc<crate::remote::RemoteControl>, crate::auth::Principal, crate::limits::AddressGuard), ApiError> {
    if core.stopping() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"));
    }
    let url = &request.url;
    if url.path() != super::PATH {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such path: {}", url.path())));
    }
    let uri = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut req = axum::http::Request::builder()
        .method(axum::http::Method::CONNECT)
        .uri(uri)
        .body(())
        .map_err(|e| ApiError::bad_request("bad_request", e.to_string()))?;
    *req.headers_mut() = request.headers.clone();
    let (mut parts, ()) = req.into_parts();
    let UpgradeCaller(caller) = UpgradeCaller::from_request_parts(&mut parts, core).await?;
    let ApiQuery(q) = ApiQuery::<WtQuery>::from_request_parts(&mut parts, core).await?;
    let rc = core
        .remotes
        .get(&q.remote_control_id)
        .ok_or_else(|| ApiError::remote_control_not_found(&q.remote_control_id))?;
    caller.may_use(&rc.id, rc.owner.as_deref())?;
    let slot = core.client_addresses.acquire(peer.ip()).map_err(ApiError::limit)?;
    Ok((rc, caller.0, slot))
}
