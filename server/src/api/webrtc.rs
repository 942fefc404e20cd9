//! WebRTC signaling over REST, server as offerer.
//!
//! 1. `POST /api/webrtc/offer {remote_control_id}` → `{session_id, type: "offer", sdp, ice_servers}`.
//!    The server has created the peer connection with the `video` and `command` data channels; the
//!    offer carries the server's host candidates.
//! 2. `POST /api/webrtc/answer {session_id, type: "answer", sdp}`.
//! 3. `POST /api/webrtc/ice-candidate {session_id, candidate, sdpMid, sdpMLineIndex}` for each of the
//!    client's candidates; `candidate: null` or `""` marks the end of candidates.
//! 4. `GET /api/webrtc/sessions/{id}/candidates?after=N&wait_ms=M`: the server's candidates found
//!    after the offer (STUN/TURN), long-polled.
//! 5. `DELETE /api/webrtc/sessions/{id}` ends it; `GET /api/webrtc/sessions` lists them.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
    pub candidates: Vec<ServerCandidate>,
    /// Pass as `after` in the next call.
    pub next: usize,
    /// The server has gathered all its candidates.
    pub complete: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CandidatesQuery {
    /// Return candidates after this many (the `next` of the previous call).
    #[serde(default)]
    pub after: usize,
    /// Wait up to this long (ms, at most 10,000) for a new candidate.
    #[serde(default)]
    pub wait_ms: u64,
}

/// A WebRTC session, with its transport counters once its `video` channel is open.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "wrtc-5b1f0c2a9d3e4f60", "remote_control_id": "rc-00c0ffee00c0ffee", "state": "connected", "ice_state": "connected", "created_at": "2026-11-22T12:00:00.000Z", "setup_ms": 3.1, "counters": null}))]
pub struct SessionView {
    pub session_id: String,
    pub remote_control_id: String,
    /// Peer connection state: new, connecting, connected, disconnected, failed, closed.
    pub state: String,
    pub ice_state: String,
    pub created_at: String,
    /// Offer request → `video` channel open, ms.
    pub setup_ms: Option<f64>,
    pub counters: Option<super::Session>,
}

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, ApiJson, Caller, ErrorBody};
use crate::auth::Role;
use crate::state::AppState;
use crate::webrtc::SignalingError;

impl From<SignalingError> for ApiError {
    fn from(e: SignalingError) -> Self {
        let (status, code) = match &e {
            SignalingError::UnknownRemoteControl(_) => (StatusCode::NOT_FOUND, "remote_control_not_found"),
            SignalingError::UnknownSession(_) => (StatusCode::NOT_FOUND, "webrtc_session_not_found"),
            SignalingError::Closed(_) => (StatusCode::CONFLICT, "webrtc_session_closed"),
            SignalingError::AlreadyAnswered(_) => (StatusCode::CONFLICT, "webrtc_already_answered"),
            SignalingError::BadType(_) => (StatusCode::BAD_REQUEST, "bad_sdp_type"),
            SignalingError::BadSdp(_) => (StatusCode::BAD_REQUEST, "bad_sdp"),
            SignalingError::BadCandidate(_) => (StatusCode::BAD_REQUEST, "bad_candidate"),
            SignalingError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "webrtc_internal"),
            SignalingError::Forbidden(message) => return super::caller::forbidden(message.clone()),
            SignalingError::Limit(hit) => return ApiError::limit(hit.clone()),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Create a WebRTC session for a remote control; the server makes the offer. Any role that may
/// use the remote control.
#[utoipa::path(post, path = "/api/webrtc/offer", tag = "webrtc", request_body = OfferRequest,
    responses((status = 200, body = OfferResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn offer(
    caller: Caller,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiJson(req): ApiJson<OfferRequest>,
) -> Result<Json<OfferResponse>, ApiError> {
    Ok(Json(app.webrtc.offer(&app, &req.remote_control_id, &caller.0, peer.ip()).await?))
}

/// Apply the client's answer. The client that asked for the offer, or an admin.
#[utoipa::path(post, path = "/api/webrtc/answer", tag = "webrtc", request_body = AnswerRequest,
    responses((status = 204, description = "Applied"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn answer(
    caller: Caller,
    State(app): State<AppState>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> Result<StatusCode, ApiError> {
    app.webrtc.answer(req, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add one of the client's ICE candidates (trickle); `candidate` null or `""`: end of candidates.
/// The client that asked for the offer, or an admin.
#[utoipa::path(post, path = "/api/webrtc/ice-candidate", tag = "webrtc", request_body = IceCandidateRequest,
    responses((status = 204, description = "Added"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn ice_candidate(
    caller: Caller,
    State(app): State<AppState>,
    ApiJson(req): ApiJson<IceCandidateRequest>,
) -> Result<StatusCode, ApiError> {
    app.webrtc.candidate(req, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The server's candidates found after the offer (STUN/TURN), long-polled. The client that asked
/// for the offer, or an admin.
#[utoipa::path(get, path = "/api/webrtc/sessions/{id}/candidates", tag = "webrtc",
    params(("id" = String, Path, description = "Session id"), CandidatesQuery),
    responses((status = 200, body = ServerCandidates), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn server_candidates(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<CandidatesQuery>,
) -> Result<Json<ServerCandidates>, ApiError> {
    let wait = std::time::Duration::from_millis(q.wait_ms);
    Ok(Json(app.webrtc.server_candidates(&id, q.after, wait, &caller.0).await?))
}

/// List WebRTC sessions with their state and counters. Admin.
#[utoipa::path(get, path = "/api/webrtc/sessions", tag = "webrtc", responses((status = 200, body = [SessionView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(caller: Caller, State(app): State<AppState>) -> Result<Json<Vec<SessionView>>, ApiError> {
    caller.require(Role::Admin, "listing WebRTC sessions")?;
    Ok(Json(app.webrtc.list()))
}

/// One WebRTC session. The client that asked for the offer, or an admin.
#[utoipa::path(get, path = "/api/webrtc/sessions/{id}", tag = "webrtc",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(app.webrtc.view(&id, &caller.0)?))
}

/// End a WebRTC session. The client that asked for the offer, or an admin.
#[utoipa::path(delete, path = "/api/webrtc/sessions/{id}", tag = "webrtc",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Closing"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.webrtc.close(&id, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
