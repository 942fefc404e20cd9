//! WHEP (draft-ietf-wish-whep) over [`crate::transport::webrtc::Server`]: the client offers, the
//! server answers with RTP media tracks ([`crate::transport::webrtc::tracks`]).
//!
//! - `POST /api/whep/remote-controls/{id}` with an `application/sdp` offer of receive-only video
//!   transceivers (one per camera; the client learns the cameras from `GET /api/trains/{id}`),
//!   optionally a receive-only audio transceiver (the train's audio, Opus) and a data-channel
//!   m-line for `command` → `201 Created`, `Location:
//!   /api/whep/sessions/{session}`, `ETag`, the answer (`application/sdp`, with the server's host
//!   candidates: it waits for them as the REST offer does) and one `Link: <url>; rel="ice-server"`
//!   per configured STUN/TURN URL.
//! - `PATCH /api/whep/sessions/{session}` with `application/trickle-ice-sdpfrag` and `If-Match`:
//!   the client's candidates (and end-of-candidates) → `204`. No `If-Match` → `428`, a stale one →
//!   `412`. An ICE restart (other `ice-ufrag`/`ice-pwd`) → `200` with the server's new
//!   credentials and candidates (`application/trickle-ice-sdpfrag`) and a new `ETag`: the client's
//!   last offer is applied again with its new credentials, which is how webrtc-rs restarts ICE.
//! - `DELETE /api/whep/sessions/{session}` → `204`; unknown → `404`.
//! - `OPTIONS` on either path → `204` with `Accept-Post: application/sdp` (and `Accept-Patch`),
//!   the CORS preflight answers, and, for a caller with a valid token, the `Link` headers (a TURN
//!   server's credentials are not for anonymous callers).
//!
//! Viewers use WHEP as they use the other transports: through a remote control an admin assigned
//! to them (`owner`); there is no separate per-train WHEP resource. Every response carries
//! `Access-Control-Allow-Origin` when the request has an `Origin`, and exposes `Location`, `ETag`,
//! `Link`, `Accept-Post` and `Accept-Patch` to scripts.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};

use crate::core::Core;
use crate::http::{ApiError, ApiPath, Caller, ErrorBody};
use crate::transport::webrtc::{IceServer, NegotiationError, Patched, PeerError, Server};

pub(crate) const SDP: &str = "application/sdp";
pub(crate) const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
const EXPOSED: &str = "Location, ETag, Link, Accept-Post, Accept-Patch";

/// This front-end's fragment of the OpenAPI contract.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(offer, offer_options, patch, delete, session_options),
    tags((name = "whep", description = "WHEP (draft-ietf-wish-whep): POST an SDP offer of receive-only video transceivers, get an answer with one H.264 track per camera; PATCH trickle ICE; DELETE ends it")),
)]
pub struct ApiDoc;

/// The routes, under `/api/whep` (nest them under `/api`).
pub fn routes(server: &Arc<Server>) -> Router<Core> {
    Router::new()
        .route("/whep/remote-controls/{id}", post(offer).options(offer_options))
        .route("/whep/sessions/{id}", axum::routing::patch(patch).delete(delete).options(session_options))
        .layer(axum::middleware::from_fn(cors))
        .layer(Extension(Arc::clone(server)))
}

/// CORS for WHEP players on other origins: the origin is echoed (the bearer token, not a cookie,
/// is the credential) and the headers a player reads are exposed.
pub(crate) async fn cors(req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = next.run(req).await;
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// `Link: <url>; rel="ice-server"` per STUN/TURN URL (RFC 9725 §4.6), with the TURN credentials.
pub(crate) fn links(servers: &[IceServer]) -> Vec<HeaderValue> {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    servers
        .iter()
        .flat_map(|s| {
            s.urls.iter().filter_map(move |url| {
                let mut v = format!("<{url}>; rel=\"ice-server\"");
                if let (true, Some(user), Some(credential)) = (url.starts_with("turn"), &s.username, &s.credential) {
                    v.push_str(&format!(
                        "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                        quote(user),
                        quote(credential)
                    ));
                }
                HeaderValue::from_str(&v).ok()
            })
        })
        .collect()
}

/// The media type of a request, lower case, without parameters.
fn content_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

pub(crate) fn require_type(headers: &HeaderMap, wanted: &str) -> Result<(), ApiError> {
    match content_type(headers) {
        Some(t) if t == wanted => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type: {wanted}, got {}", other.as_deref().unwrap_or("none")),
        )),
    }
}

pub(crate) type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// The body as text; its rejections in the API's error shape.
pub(crate) fn utf8(body: Body) -> Result<String, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let hit = crate::limits::Limit::BodySize.refuse("the request body is larger than max_body");
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("{hit}: {}", r.body_text()))
        } else {
            ApiError::new(r.status(), "bad_request", r.body_text())
        }
    })?;
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("bad_sdp", "the body is not UTF-8 text"))
}

fn error(e: PeerError) -> ApiError {
    match e {
        PeerError::UnknownSession(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "whep_session_not_found",
            format!("WHEP session '{id}' does not exist"),
        ),
        PeerError::PreconditionRequired => {
            ApiError::new(StatusCode::PRECONDITION_REQUIRED, "precondition_required", e.to_string())
        }
        PeerError::PreconditionFailed(_) => {
            ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", e.to_string())
        }
        PeerError::IceRestart(_) => ApiError::unprocessable("ice_restart_failed", e.to_string()),
        PeerError::Negotiation(NegotiationError::BadCandidate(_)) => {
            ApiError::bad_request("bad_candidate", e.to_string())
        }
        other => other.into(),
    }
}

/// Headers of an answer: the session's ETag and where it lives, and the ICE servers.
fn answer_headers(id: &str, etag: &str, servers: &[IceServer]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&format!("/api/whep/sessions/{id}")) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    for link in links(servers) {
        h.append(header::LINK, link);
    }
    h
}

/// Start a WHEP session for a remote control: the body is the client's SDP offer with one
/// receive-only video m-line per camera it wants (the i-th carries the train's i-th camera; more
/// than the train has are answered inactive), optionally a data-channel m-line for the `command`
/// channel. The answer carries the server's host candidates. Any role that may use the remote
/// control.
#[utoipa::path(operation_id = "whep_offer", post, path = "/api/whep/remote-controls/{id}", tag = "whep",
    params(("id" = String, Path, description = "Remote control id")),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    responses(
        (status = 201, description = "The SDP answer; headers Location, ETag, Link (ice-server), Accept-Patch", content_type = "application/sdp", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn offer(
    caller: Caller,
    State(core): State<Core>,
    Extension(server): Extension<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let rc = core.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    caller.may_use(&rc.id, rc.owner.as_deref())?;
    require_type(&headers, SDP)?;
    let offer = utf8(body)?;
    let answer = server.media(&core, &id, &caller.0, peer.ip(), offer).await.map_err(error)?;
    let headers = answer_headers(&answer.id, &answer.etag, &answer.ice_servers);
    Ok((StatusCode::CREATED, headers, answer.sdp).into_response())
}

/// The CORS and WHEP headers of an `OPTIONS` request: what may be posted and patched, and, for
/// a caller with a valid token, the ICE servers.
fn options_response(core: &Core, server: &Server, headers: &HeaderMap, methods: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::ALLOW, HeaderValue::from_static(methods));
    h.insert("accept-post", HeaderValue::from_static(SDP));
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if let Some(token) = token {
        if core.auth.client(token).is_none() {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the token is not valid").into_response();
        }
        for link in links(&server.settings().ice_servers.issue("whep")) {
            h.append(header::LINK, link);
        }
    }
    (StatusCode::NO_CONTENT, h).into_response()
}

/// What a WHEP endpoint accepts (`Accept-Post: application/sdp`), the CORS preflight, and, with a
/// valid token, the ICE servers as `Link` headers. No token needed; 404 for an unknown remote
/// control.
#[utoipa::path(options, path = "/api/whep/remote-controls/{id}", tag = "whep", security(()),
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 204, description = "Accept-Post, Link (with a token), CORS headers"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn offer_options(
    State(core): State<Core>,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    if core.remotes.get(&id).is_none() {
        return ApiError::remote_control_not_found(&id).into_response();
    }
    options_response(&core, &server, &headers, "POST, OPTIONS")
}

/// The CORS preflight of a WHEP session (PATCH, DELETE). No token needed; 404 for an unknown
/// session.
#[utoipa::path(operation_id = "whep_session_options", options, path = "/api/whep/sessions/{id}", tag = "whep", security(()),
    params(("id" = String, Path, description = "WHEP session id")),
    responses((status = 204, description = "Accept-Patch, Link (with a token), CORS headers"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn session_options(
    State(core): State<Core>,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    if !server.has_media(&id) {
        return error(PeerError::UnknownSession(id)).into_response();
    }
    options_response(&core, &server, &headers, "PATCH, DELETE, OPTIONS")
}

/// Trickle ICE: the client's candidates as an SDP fragment (RFC 8840). `If-Match` must carry the
/// session's ETag (or `*`). A fragment with new `ice-ufrag`/`ice-pwd` restarts ICE: 200 with the
/// server's new credentials and candidates as a fragment, and the new ICE session's ETag (422
/// `ice_restart_failed` if webrtc-rs could not apply it). The client that started the session, or
/// an admin.
#[utoipa::path(operation_id = "patch_whep_session", patch, path = "/api/whep/sessions/{id}", tag = "whep",
    params(("id" = String, Path, description = "WHEP session id"), ("If-Match" = String, Header, description = "The session's ETag, or *")),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "Candidates, end-of-candidates"),
    responses((status = 204, description = "Applied"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 412, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 428, body = ErrorBody),
        (status = 200, description = "ICE restarted: the server's new credentials and candidates; header ETag", content_type = "application/trickle-ice-sdpfrag", body = String)))]
async fn patch(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    server.view_media(&id, &caller.0).map_err(error)?;
    require_type(&headers, SDPFRAG)?;
    let if_match = headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or("\u{0}"));
    let fragment = utf8(body)?;
    match server.patch(&id, &caller.0, if_match, &fragment).await.map_err(error)? {
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

/// End a WHEP session. The client that started it, or an admin.
#[utoipa::path(operation_id = "delete_whep_session", delete, path = "/api/whep/sessions/{id}", tag = "whep",
    params(("id" = String, Path, description = "WHEP session id")),
    responses((status = 204, description = "Closing"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    server.close_media(&id, &caller.0).map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_as_link_headers() {
        let servers = vec![IceServer {
            urls: vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478?transport=udp".into()],
            username: Some("u\"1".into()),
            credential: Some("p".into()),
        }];
        let got: Vec<_> = links(&servers).iter().map(|v| v.to_str().expect("ascii").to_owned()).collect();
        assert_eq!(
            got,
            [
                "<stun:127.0.0.1:3478>; rel=\"ice-server\"",
                "<turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; username=\"u\\\"1\"; credential=\"p\"; credential-type=\"password\"",
            ]
        );
    }
}
