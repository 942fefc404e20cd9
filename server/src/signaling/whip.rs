//! WHIP (RFC 9725) over [`crate::ingest::whip::Server`]: a train publishes its cameras and audio
//! as WebRTC media (docs/whip.md).
//!
//! - `POST /api/whip/trains/{id}` (`id`: the train id) with an `application/sdp` offer and `Authorization: Bearer
//!   <the train's token>` (the token its QUIC hello would carry) → `201 Created`, `Location:
//!   /api/whip/sessions/{session}`, `ETag`, the answer (`application/sdp`, with the server's host
//!   candidates), one `Link: <url>; rel="ice-server"` per configured STUN/TURN URL. The train id
//!   is in the path, so one token never publishes as another train.
//! - `PATCH /api/whip/sessions/{session}` (`application/trickle-ice-sdpfrag`, `If-Match`): the
//!   publisher's candidates → `204`; new `ice-ufrag`/`ice-pwd` restart ICE → `200` with the
//!   server's new credentials and candidates and a new `ETag` (as WHEP's PATCH).
//! - `DELETE /api/whip/sessions/{session}` → `204`: the train goes offline.
//! - `OPTIONS` on either → `204`, `Accept-Post`/`Accept-Patch`, CORS.
//!
//! A POST for a train id that is online already (over QUIC or WHIP) takes it over, as a second
//! QUIC hello with the right token does ("newest wins", docs/architecture.md "Train identity"):
//! the old connection ends and viewers see `train_offline` then `train_online`.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use railcast_protocol::TrainId;

use super::whep::{cors, links, require_type, utf8, Body, SDP, SDPFRAG};
use crate::auth::TrainAuthError;
use crate::core::Core;
use crate::http::{ApiError, ApiPath, ErrorBody};
use crate::ingest::whip::{OfferError, Server, WhipError};
use crate::transport::webrtc::{NegotiationError, Patched};

/// This front-end's fragment of the OpenAPI contract.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(publish, publish_options, patch, delete, session_options),
    tags((name = "whip", description = "WHIP ingest (RFC 9725): a train POSTs an SDP offer of H.264 (and Opus) tracks with its train token and becomes a train like a QUIC one; PATCH trickle ICE; DELETE ends it (docs/whip.md)")),
)]
pub struct ApiDoc;

/// The routes, under `/api/whip` (nest them under `/api`).
pub fn routes(server: &Arc<Server>) -> Router<Core> {
    Router::new()
        .route("/whip/trains/{id}", post(publish).options(publish_options))
        .route("/whip/sessions/{id}", axum::routing::patch(patch).delete(delete).options(session_options))
        .layer(axum::middleware::from_fn(cors))
        .layer(Extension(Arc::clone(server)))
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}

fn error(e: WhipError) -> ApiError {
    let message = e.to_string();
    match e {
        WhipError::Unauthorized { train, reason: TrainAuthError::UnknownTrain } => ApiError::new(
            StatusCode::NOT_FOUND,
            "train_not_found",
            format!("no token is configured for train '{train}', so it cannot publish (docs/security.md)"),
        ),
        WhipError::Unauthorized { .. } => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
        WhipError::Offer(OfferError::NotSdp(_)) => ApiError::bad_request("bad_sdp", message),
        WhipError::Offer(OfferError::NoH264(_)) => ApiError::bad_request("no_h264", message),
        WhipError::Offer(OfferError::TooManyCameras { .. }) => ApiError::bad_request("too_many_cameras", message),
        WhipError::UnknownSession(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "whip_session_not_found",
            format!("WHIP session '{id}' does not exist"),
        ),
        WhipError::PreconditionRequired => {
            ApiError::new(StatusCode::PRECONDITION_REQUIRED, "precondition_required", message)
        }
        WhipError::PreconditionFailed(_) => {
            ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", message)
        }
        WhipError::IceRestart(_) => ApiError::unprocessable("ice_restart_failed", message),
        WhipError::Negotiation(NegotiationError::BadSdp(_)) => ApiError::bad_request("bad_sdp", message),
        WhipError::Negotiation(NegotiationError::BadCandidate(_)) => ApiError::bad_request("bad_candidate", message),
        WhipError::Negotiation(NegotiationError::NoMedia(_)) => ApiError::bad_request("no_h264", message),
        WhipError::Negotiation(NegotiationError::Internal(_)) => {
            tracing::warn!("WHIP negotiation failed: {message}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the peer connection could not be set up")
        }
        WhipError::Limit(hit) => ApiError::limit(hit),
        WhipError::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
    }
}

/// A train publishes: the body is its SDP offer, whose H.264 video sections become its cameras
/// (camera `i` is the i-th, in m-line order), its first Opus section its audio, and its
/// data-channel section the `command` channel it opens. The bearer token is the train's (the one
/// its QUIC hello would carry). A train online already is taken over (newest wins).
#[utoipa::path(operation_id = "whip_publish", post, path = "/api/whip/trains/{id}", tag = "whip", security(()),
    params(("id" = String, Path, description = "Train id (1–64 of A–Z a–z 0–9 . _ -)"),
        ("Authorization" = String, Header, description = "Bearer <the train's token>")),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer: sendonly H.264 video (and Opus audio), optionally a data channel"),
    responses(
        (status = 201, description = "The SDP answer; headers Location, ETag, Link (ice-server), Accept-Patch", content_type = "application/sdp", body = String),
        (status = 400, description = "bad_train_id, bad_sdp, no_h264, too_many_cameras", body = ErrorBody),
        (status = 401, description = "The token is missing or not the train's", body = ErrorBody),
        (status = 404, description = "No token is configured for this train id", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn publish(
    Extension(server): Extension<Arc<Server>>,
    ApiPath(train): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let train =
        TrainId::new(&train).map_err(|e| ApiError::bad_request("bad_train_id", format!("train id {train:?}: {e}")))?;
    // The train and its token first: a caller without them learns nothing about the body.
    if let Err(e) = server.authorize(&train, bearer(&headers)) {
        crate::ingest::whip::METRICS.publications.with_label_values(&["unauthorized"]).inc();
        return Err(error(e));
    }
    require_type(&headers, SDP)?;
    let offer = utf8(body)?;
    let published = server.publish(train, bearer(&headers), offer).await.map_err(error)?;
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&format!("/api/whip/sessions/{}", published.id)) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&published.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    for link in links(&published.ice_servers) {
        h.append(header::LINK, link);
    }
    Ok((StatusCode::CREATED, h, published.sdp).into_response())
}

fn options_response(methods: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::ALLOW, HeaderValue::from_static(methods));
    h.insert("accept-post", HeaderValue::from_static(SDP));
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    (StatusCode::NO_CONTENT, h).into_response()
}

/// What the WHIP endpoint accepts (`Accept-Post: application/sdp`) and the CORS preflight; 404
/// for a train id that has no token (it could not publish).
#[utoipa::path(options, path = "/api/whip/trains/{id}", tag = "whip", security(()),
    params(("id" = String, Path, description = "Train id")),
    responses((status = 204, description = "Accept-Post, CORS headers"), (status = 404, description = "No token is configured for this train id", body = ErrorBody)))]
async fn publish_options(Extension(server): Extension<Arc<Server>>, ApiPath(train): ApiPath<String>) -> Response {
    if !server.knows_train(&train) {
        let reason = TrainAuthError::UnknownTrain;
        return error(WhipError::Unauthorized { train, reason }).into_response();
    }
    options_response("POST, OPTIONS")
}

/// The CORS preflight of a WHIP session (PATCH, DELETE); 404 for an unknown session.
#[utoipa::path(operation_id = "whip_session_options", options, path = "/api/whip/sessions/{id}", tag = "whip", security(()),
    params(("id" = String, Path, description = "WHIP session id")),
    responses((status = 204, description = "Accept-Patch, CORS headers"), (status = 404, body = ErrorBody)))]
async fn session_options(Extension(server): Extension<Arc<Server>>, ApiPath(id): ApiPath<String>) -> Response {
    if !server.exists(&id) {
        return error(WhipError::UnknownSession(id)).into_response();
    }
    options_response("PATCH, DELETE, OPTIONS")
}

/// Trickle ICE for a publication (RFC 8840 fragment, `If-Match` with its ETag or `*`); new
/// credentials restart ICE (200 with the server's fragment and a new ETag). The train's token.
#[utoipa::path(operation_id = "patch_whip_session", patch, path = "/api/whip/sessions/{id}", tag = "whip", security(()),
    params(("id" = String, Path, description = "WHIP session id"), ("If-Match" = String, Header, description = "The session's ETag, or *"),
        ("Authorization" = String, Header, description = "Bearer <the train's token>")),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "Candidates, end-of-candidates"),
    responses((status = 204, description = "Applied"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 428, body = ErrorBody),
        (status = 200, description = "ICE restarted: the server's new credentials and candidates; header ETag", content_type = "application/trickle-ice-sdpfrag", body = String)))]
async fn patch(
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !server.exists(&id) {
        return Err(error(WhipError::UnknownSession(id)));
    }
    require_type(&headers, SDPFRAG)?;
    let if_match = headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or("\u{0}"));
    let fragment = utf8(body)?;
    match server.patch(&id, bearer(&headers), if_match, &fragment).await.map_err(error)? {
        Patched::Applied => Ok(StatusCode::NO_CONTENT.into_response()),
        Patched::Restarted { etag, fragment } => {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            Ok((StatusCode::OK, h, fragment).into_response())
        }
    }
}

/// End a publication: the train goes offline. The train's token.
#[utoipa::path(operation_id = "delete_whip_session", delete, path = "/api/whip/sessions/{id}", tag = "whip", security(()),
    params(("id" = String, Path, description = "WHIP session id"),
        ("Authorization" = String, Header, description = "Bearer <the train's token>")),
    responses((status = 204, description = "Ended"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    server.delete(&id, bearer(&headers)).map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc "));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer xyz"));
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
