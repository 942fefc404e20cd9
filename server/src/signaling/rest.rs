//! WebRTC signaling over REST, server as offerer: the first signaling front-end over
//! [`crate::transport::webrtc::Server`].
//!
//! 1. `POST /api/webrtc/offer {remote_control_id}` → `{session_id, type: "offer", sdp, ice_servers}`.
//!    The server has created the peer connection with the `video` and `command` data channels; the
//!    offer carries the server's host candidates, and `a=end-of-candidates` only if gathering was
//!    already over (no STUN/TURN server configured).
//! 2. `POST /api/webrtc/answer {session_id, type: "answer", sdp}`.
//! 3. `POST /api/webrtc/ice-candidate {session_id, candidate, sdpMid, sdpMLineIndex}` for each of the
//!    client's candidates; `candidate: null` or `""` marks the end of candidates.
//! 4. `GET /api/webrtc/sessions/{id}/candidates?after=N&wait_ms=M`: the server's candidates that
//!    the offer did not carry (STUN/TURN, found later), long-polled; `complete: true` is the end of
//!    them.
//! 5. `DELETE /api/webrtc/sessions/{id}` ends it; `GET /api/webrtc/sessions` lists them.

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::core::Core;
use crate::http::{forbidden, Admin, ApiError, ApiJson, ApiPath, ApiQuery, Caller, ErrorBody};
use crate::transport::webrtc::{self, PeerError, Server};

/// A STUN or TURN server for the client's `RTCPeerConnection`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[schema(example = json!({"urls": ["stun:stun.example.net:3478"]}))]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"remote_control_id": "rc-00c0ffee00c0ffee"}))]
pub struct OfferRequest {
    pub remote_control_id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "wrtc-5b1f0c2a9d3e4f60", "type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n…", "ice_servers": []}))]
pub struct OfferResponse {
    pub session_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
    pub ice_servers: Vec<IceServer>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "wrtc-5b1f0c2a9d3e4f60", "type": "answer", "sdp": "v=0\r\no=- 3 2 IN IP4 127.0.0.1\r\n…"}))]
pub struct AnswerRequest {
    pub session_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
}

/// One ICE candidate, as `RTCIceCandidate.toJSON()` gives it. `candidate` null or empty: the end
/// of the client's candidates.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "wrtc-5b1f0c2a9d3e4f60", "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50123 typ host", "sdpMid": "0", "sdpMLineIndex": 0}))]
pub struct IceCandidateRequest {
    pub session_id: String,
    #[serde(default)]
    pub candidate: Option<String>,
    #[serde(default, rename = "sdpMid")]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default, rename = "usernameFragment")]
    pub username_fragment: Option<String>,
}

/// A candidate of the server, for the client's `addIceCandidate`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMid")]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"candidates": [], "next": 0, "complete": true}))]
pub struct ServerCandidates {
    /// The server's candidates that its offer did not carry, from index `after` of that list.
    pub candidates: Vec<ServerCandidate>,
    /// Pass as `after` in the next call.
    pub next: usize,
    /// The server has gathered all its candidates, and none will follow: its end-of-candidates.
    /// (The offer itself carries `a=end-of-candidates` only if gathering was over when it was
    /// made.)
    pub complete: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CandidatesQuery {
    /// Return candidates after this many (the `next` of the previous call).
    #[serde(default)]
    pub after: usize,
    /// Wait up to this long (ms, at most 10,000) for a new candidate or the end of gathering.
    #[serde(default)]
    pub wait_ms: u64,
}

/// A WebRTC session, with its transport counters once its `video` channel is open.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "wrtc-5b1f0c2a9d3e4f60", "transport": "webrtc", "remote_control_id": "rc-00c0ffee00c0ffee", "state": "connected", "ice_state": "connected", "created_at": "2026-11-22T12:00:00.000Z", "setup_ms": 3.1, "counters": null}))]
pub struct SessionView {
    pub session_id: String,
    /// `webrtc` (data channels, this signaling) or `whep` (media tracks, WHEP signaling).
    pub transport: String,
    pub remote_control_id: String,
    /// Peer connection state: new, connecting, connected, disconnected, failed, closed.
    pub state: String,
    pub ice_state: String,
    pub created_at: String,
    /// Offer request → `video` channel open, ms.
    pub setup_ms: Option<f64>,
    pub counters: Option<crate::api::SessionView>,
}

impl From<webrtc::IceServer> for IceServer {
    fn from(s: webrtc::IceServer) -> Self {
        Self { urls: s.urls, username: s.username, credential: s.credential }
    }
}

impl From<webrtc::Candidate> for ServerCandidate {
    fn from(c: webrtc::Candidate) -> Self {
        Self { candidate: c.candidate, sdp_mid: c.sdp_mid, sdp_mline_index: c.sdp_mline_index }
    }
}

impl From<webrtc::PeerView> for SessionView {
    fn from(v: webrtc::PeerView) -> Self {
        Self {
            session_id: v.id,
            transport: v.transport.into(),
            remote_control_id: v.remote_control_id,
            state: v.state,
            ice_state: v.ice_state,
            created_at: crate::http::rfc3339(v.created_at),
            setup_ms: v.setup_ms,
            counters: v.session.map(|s| crate::api::SessionView::from(&*s)),
        }
    }
}

impl From<PeerError> for ApiError {
    fn from(e: PeerError) -> Self {
        use webrtc::NegotiationError as N;
        let (status, code) = match &e {
            PeerError::UnknownRemoteControl(_) => (StatusCode::NOT_FOUND, "remote_control_not_found"),
            PeerError::UnknownSession(_) => (StatusCode::NOT_FOUND, "webrtc_session_not_found"),
            PeerError::Closed(_) => (StatusCode::CONFLICT, "webrtc_session_closed"),
            PeerError::AlreadyAnswered(_) => (StatusCode::CONFLICT, "webrtc_already_answered"),
            PeerError::Negotiation(N::BadSdp(_)) => (StatusCode::BAD_REQUEST, "bad_sdp"),
            PeerError::Negotiation(N::BadCandidate(_)) => (StatusCode::BAD_REQUEST, "bad_candidate"),
            PeerError::Negotiation(N::NoMedia(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "no_media"),
            PeerError::Negotiation(N::Internal(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "webrtc_internal"),
            PeerError::Forbidden(message) => return forbidden(message.clone()),
            PeerError::Limit(hit) => return ApiError::limit(hit.clone()),
            // WHEP's (signaling::whep renders them); not reachable from this front-end.
            PeerError::PreconditionRequired => (StatusCode::PRECONDITION_REQUIRED, "precondition_required"),
            PeerError::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            PeerError::IceRestart(_) => (StatusCode::UNPROCESSABLE_ENTITY, "ice_restart_failed"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// This front-end's fragment of the OpenAPI contract.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(offer, answer, ice_candidate, server_candidates, list, get_one, delete),
    components(schemas(IceServer, OfferRequest, OfferResponse, AnswerRequest, IceCandidateRequest, ServerCandidate, ServerCandidates, SessionView)),
    tags((name = "webrtc", description = "WebRTC signaling, server as offerer: POST offer → POST answer → POST ice-candidate (trickle)")),
)]
pub struct ApiDoc;

/// The routes, under `/api/webrtc` (nest them under `/api`).
pub fn routes(server: &Arc<Server>) -> Router<Core> {
    Router::new()
        .route("/webrtc/offer", post(offer))
        .route("/webrtc/answer", post(answer))
        .route("/webrtc/ice-candidate", post(ice_candidate))
        .route("/webrtc/sessions", get(list))
        .route("/webrtc/sessions/{id}", get(get_one).delete(delete))
        .route("/webrtc/sessions/{id}/candidates", get(server_candidates))
        .layer(Extension(Arc::clone(server)))
}

/// Create a WebRTC session for a remote control; the server makes the offer. It carries the
/// server's host candidates, and `a=end-of-candidates` only if gathering is already over; the
/// candidates found later come from `GET /api/webrtc/sessions/{id}/candidates`. Any role that may
/// use the remote control.
#[utoipa::path(operation_id = "webrtc_offer", post, path = "/api/webrtc/offer", tag = "webrtc", request_body = OfferRequest,
    responses((status = 200, body = OfferResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn offer(
    caller: Caller,
    State(core): State<Core>,
    Extension(server): Extension<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiJson(req): ApiJson<OfferRequest>,
) -> Result<Json<OfferResponse>, ApiError> {
    let offer = server.offer(&core, &req.remote_control_id, &caller.0, peer.ip()).await?;
    Ok(Json(OfferResponse {
        session_id: offer.id,
        kind: "offer".into(),
        sdp: offer.sdp,
        ice_servers: offer.ice_servers.into_iter().map(IceServer::from).collect(),
    }))
}

/// Apply the client's answer. The client that asked for the offer, or an admin.
#[utoipa::path(post, path = "/api/webrtc/answer", tag = "webrtc", request_body = AnswerRequest,
    responses((status = 204, description = "Applied"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn answer(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> Result<StatusCode, ApiError> {
    if req.kind != "answer" {
        // Checked after the session exists and belongs to the caller, as before.
        server.view(&req.session_id, &caller.0)?;
        return Err(ApiError::bad_request(
            "bad_sdp_type",
            format!("expected \"type\": \"answer\", got {:?}", req.kind),
        ));
    }
    server.apply_answer(&req.session_id, req.sdp, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add one of the client's ICE candidates (trickle); `candidate` null or `""`: end of candidates.
/// The client that asked for the offer, or an admin.
#[utoipa::path(post, path = "/api/webrtc/ice-candidate", tag = "webrtc", request_body = IceCandidateRequest,
    responses((status = 204, description = "Added"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn ice_candidate(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiJson(req): ApiJson<IceCandidateRequest>,
) -> Result<StatusCode, ApiError> {
    let c = webrtc::ClientCandidate {
        candidate: req.candidate.unwrap_or_default(),
        sdp_mid: req.sdp_mid,
        sdp_mline_index: req.sdp_mline_index,
        username_fragment: req.username_fragment,
    };
    server.add_candidate(&req.session_id, c, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The server's candidates that its offer did not carry (STUN/TURN candidates found later),
/// long-polled until one arrives or gathering completes. The client that asked for the offer, or
/// an admin.
#[utoipa::path(get, path = "/api/webrtc/sessions/{id}/candidates", tag = "webrtc",
    params(("id" = String, Path, description = "Session id"), CandidatesQuery),
    responses((status = 200, body = ServerCandidates), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn server_candidates(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<CandidatesQuery>,
) -> Result<Json<ServerCandidates>, ApiError> {
    let wait = std::time::Duration::from_millis(q.wait_ms);
    let c = server.server_candidates(&id, q.after, wait, &caller.0).await?;
    Ok(Json(ServerCandidates {
        candidates: c.candidates.into_iter().map(ServerCandidate::from).collect(),
        next: c.next,
        complete: c.complete,
    }))
}

/// List WebRTC sessions with their state and counters. Admin.
#[utoipa::path(operation_id = "list_webrtc_sessions", get, path = "/api/webrtc/sessions", tag = "webrtc", responses((status = 200, body = [SessionView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(_admin: Admin, Extension(server): Extension<Arc<Server>>) -> Json<Vec<SessionView>> {
    Json(server.list().into_iter().map(SessionView::from).collect())
}

/// One WebRTC session. The client that asked for the offer, or an admin.
#[utoipa::path(operation_id = "get_webrtc_session", get, path = "/api/webrtc/sessions/{id}", tag = "webrtc",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(server.view(&id, &caller.0)?.into()))
}

/// End a WebRTC session. The client that asked for the offer, or an admin.
#[utoipa::path(operation_id = "delete_webrtc_session", delete, path = "/api/webrtc/sessions/{id}", tag = "webrtc",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Closing"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    caller: Caller,
    Extension(server): Extension<Arc<Server>>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    server.close(&id, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
