//! The WebSocket opening handshake (RFC 6455 §4.2), server side.
//!
//! Done here rather than with axum's `WebSocketUpgrade` so that the session owns the raw
//! connection: video packets are written with one vectored write per batch, straight from the
//! hub's shared packet buffers (see [`super::video`]), instead of being copied into tungstenite's
//! write buffer once per client. Everything else (reading, events, ping/pong, close) still goes
//! through tokio-tungstenite on the same connection.

use std::future::Future;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::stall::StallLimit;
use crate::http::ApiError;

/// The upgraded connection.
pub type Socket = WebSocketStream<StallLimit<TokioIo<hyper::upgrade::Upgraded>>>;

/// Why a request is not a WebSocket opening handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRejection {
    #[error("a WebSocket handshake uses HTTP/1.1 GET")]
    NotGet,
    #[error("the `Connection` header must contain `upgrade`")]
    Connection,
    #[error("the `Upgrade` header must be `websocket`")]
    Upgrade,
    #[error("the `Sec-WebSocket-Version` header must be `13`")]
    Version,
    #[error("the `Sec-WebSocket-Key` header is missing")]
    Key,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl From<UpgradeRejection> for ApiError {
    fn from(r: UpgradeRejection) -> Self {
        let status = match r {
            UpgradeRejection::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            UpgradeRejection::Version => StatusCode::BAD_REQUEST,
            UpgradeRejection::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, "not_a_websocket_upgrade", r.to_string())
    }
}

impl axum::response::IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// A validated opening handshake, not answered yet.
#[derive(Debug)]
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET || parts.version != Version::HTTP_11 {
            return Err(UpgradeRejection::NotGet);
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(UpgradeRejection::Connection);
        }
        if !header_has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(UpgradeRejection::Upgrade);
        }
        if parts.headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
            return Err(UpgradeRejection::Version);
        }
        let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).ok_or(UpgradeRejection::Key)?.clone();
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(UpgradeRejection::NotUpgradable)?;
        Ok(Self { key, on_upgrade })
    }
}

impl WsUpgrade {
    /// Answer `101 Switching Protocols`; once hyper hands over the connection, run `callback`
    /// on it in a new task. A write that waits `write_timeout` for the client fails (see
    /// [`super::stall`]).
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, write_timeout: Duration, callback: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!("websocket upgrade failed: {e}");
                    return;
                }
            };
            let io = StallLimit::new(TokioIo::new(upgraded), write_timeout);
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            callback(socket).await;
        });
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).unwrap_or_else(|_| HeaderValue::from_static("")),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn connection_header_tokens() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(header_has_token(&h, header::CONNECTION, "upgrade"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!header_has_token(&h, header::CONNECTION, "upgrade"));
    }
}
