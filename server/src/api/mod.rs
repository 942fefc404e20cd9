//! The HTTP API under `/api` (JSON), health checks, the WebSocket route and the OpenAPI contract.

mod dto;
mod error;
pub mod webrtc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use railcast_protocol::TrainId;
use utoipa::OpenApi;

pub use dto::*;
pub use error::{ApiError, ApiJson, ErrorBody};

use crate::state::AppState;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest remote-control name.
pub const MAX_NAME: usize = 100;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "railcast", description = "Live train video relay: QUIC ingest, fan-out to remote controls over WebSocket and WebRTC data channels.\n\nEvery error response has the `ErrorBody` shape."),
    paths(
        list_trains, get_train, list_remote_controls, create_remote_control, get_remote_control,
        delete_remote_control, set_train, unset_train, list_sessions, quic_certificate, metrics, healthz, readyz,
        crate::ws::upgrade, webrtc::offer, webrtc::answer, webrtc::ice_candidate, webrtc::server_candidates,
        webrtc::list, webrtc::get_one, webrtc::delete,
    ),
    components(schemas(ErrorBody, Train, Camera, RemoteControlView, Session, CreateRemoteControl, SetTrain, QuicCertificate, Health,
        webrtc::IceServer, webrtc::OfferRequest, webrtc::OfferResponse, webrtc::AnswerRequest, webrtc::IceCandidateRequest,
        webrtc::ServerCandidate, webrtc::ServerCandidates, webrtc::SessionView)),
    tags(
        (name = "trains", description = "Trains connected over QUIC"),
        (name = "remote-controls", description = "Operators' consoles and their mapping to trains"),
        (name = "transports", description = "Video and command transports"),
        (name = "webrtc", description = "WebRTC signaling, server as offerer: POST offer → POST answer → POST ice-candidate (trickle)"),
        (name = "ops", description = "Health and server facts"),
    )
)]
pub struct ApiDoc;

/// The contract as served at `/api/openapi.json` and committed as `openapi/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}

/// The whole HTTP surface. `web_root`: the built console, served for every path not routed here.
pub fn router(state: AppState, web_root: Option<&std::path::Path>) -> Router {
    let api = Router::new()
        .route("/trains", get(list_trains))
        .route("/trains/{id}", get(get_train))
        .route("/remote-controls", get(list_remote_controls).post(create_remote_control))
        .route("/remote-controls/{id}", get(get_remote_control).delete(delete_remote_control))
        .route("/remote-controls/{id}/train", put(set_train).delete(unset_train))
        .route("/sessions", get(list_sessions))
        .route("/quic/certificate", get(quic_certificate))
        .route("/webrtc/offer", axum::routing::post(webrtc::offer))
        .route("/webrtc/answer", axum::routing::post(webrtc::answer))
        .route("/webrtc/ice-candidate", axum::routing::post(webrtc::ice_candidate))
        .route("/webrtc/sessions", get(webrtc::list))
        .route("/webrtc/sessions/{id}", get(webrtc::get_one).delete(webrtc::delete))
        .route("/webrtc/sessions/{id}/candidates", get(webrtc::server_candidates))
        .route(
            "/openapi.json",
            get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    let status_page = || async { axum::response::Html(include_str!("index.html")) };
    let router = Router::new()
        .nest("/api", api)
        .route("/status", get(status_page))
        .route("/webrtc-test.html", get(|| async { axum::response::Html(include_str!("webrtc-test.html")) }))
        .route("/ws", get(crate::ws::upgrade))
        .route("/metrics", get(metrics))
        // The UI reads the contract from /api/openapi.json (served above), so it registers no route of its own.
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/api/openapi.json")))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .method_not_allowed_fallback(error::method_not_allowed);
    let router = match web_root {
        // Revalidate on every load (ServeDir answers If-Modified-Since): a rebuilt console is
        // picked up without a hard reload.
        Some(root) => router.fallback_service(tower_http::set_header::SetResponseHeader::if_not_present(
            tower_http::services::ServeDir::new(root),
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-cache"),
        )),
        None => router.route("/", get(status_page)),
    };
    router.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)).with_state(state)
}

/// List every train the server knows, online or not.
#[utoipa::path(get, path = "/api/trains", tag = "trains", responses((status = 200, body = [Train])))]
async fn list_trains(State(app): State<AppState>) -> Json<Vec<Train>> {
    Json(app.hub.streams().iter().map(|s| Train::from(s.snapshot())).collect())
}

/// One train.
#[utoipa::path(get, path = "/api/trains/{id}", tag = "trains",
    params(("id" = String, Path, description = "Train id")),
    responses((status = 200, body = Train), (status = 404, body = ErrorBody)))]
async fn get_train(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Train>, ApiError> {
    let stream =
        TrainId::new(id.clone()).ok().and_then(|t| app.hub.stream(&t)).ok_or_else(|| ApiError::train_not_found(&id))?;
    Ok(Json(Train::from(stream.snapshot())))
}

fn view(app: &AppState, rc: &crate::remote::RemoteControl) -> RemoteControlView {
    RemoteControlView::new(rc, &app.sessions.of_remote_control(&rc.id))
}

/// List remote controls.
#[utoipa::path(get, path = "/api/remote-controls", tag = "remote-controls", responses((status = 200, body = [RemoteControlView])))]
async fn list_remote_controls(State(app): State<AppState>) -> Json<Vec<RemoteControlView>> {
    Json(app.remotes.list().iter().map(|rc| view(&app, rc)).collect())
}

/// Create a remote control (not mapped to any train yet).
#[utoipa::path(post, path = "/api/remote-controls", tag = "remote-controls", request_body = CreateRemoteControl,
    responses((status = 201, body = RemoteControlView), (status = 400, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_remote_control(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<CreateRemoteControl>,
) -> Result<(StatusCode, Json<RemoteControlView>), ApiError> {
    if let Some(name) = &req.name {
        if name.trim().is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request("bad_name", format!("name must be 1..={MAX_NAME} printable characters")));
        }
    }
    let rc = app.remotes.create(req.name);
    Ok((StatusCode::CREATED, Json(view(&app, &rc))))
}

/// One remote control, with its live sessions and their counters.
#[utoipa::path(get, path = "/api/remote-controls/{id}", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 404, body = ErrorBody)))]
async fn get_remote_control(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RemoteControlView>, ApiError> {
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    Ok(Json(view(&app, &rc)))
}

/// Delete a remote control; its sessions are closed.
#[utoipa::path(delete, path = "/api/remote-controls/{id}", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
async fn delete_remote_control(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    app.remotes.delete(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Map a remote control to a train. Live: connected sessions switch at once.
#[utoipa::path(put, path = "/api/remote-controls/{id}/train", tag = "remote-controls", request_body = SetTrain,
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_train(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetTrain>,
) -> Result<Json<RemoteControlView>, ApiError> {
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    let train = TrainId::new(req.train_id.clone())
        .map_err(|e| ApiError::bad_request("bad_train_id", format!("train_id: {e}")))?;
    if app.hub.stream(&train).is_none() {
        return Err(ApiError::train_not_found(&req.train_id));
    }
    rc.set_train(Some(train));
    Ok(Json(view(&app, &rc)))
}

/// Unmap a remote control: its sessions stop receiving video.
#[utoipa::path(delete, path = "/api/remote-controls/{id}/train", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 404, body = ErrorBody)))]
async fn unset_train(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<RemoteControlView>, ApiError> {
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    rc.set_train(None);
    Ok(Json(view(&app, &rc)))
}

/// Every live transport session.
#[utoipa::path(get, path = "/api/sessions", tag = "transports", responses((status = 200, body = [Session])))]
async fn list_sessions(State(app): State<AppState>) -> Json<Vec<Session>> {
    Json(app.sessions.all().iter().map(|s| Session::from(&**s)).collect())
}

/// The QUIC endpoint's certificate, for trains to pin.
#[utoipa::path(get, path = "/api/quic/certificate", tag = "ops", responses((status = 200, body = QuicCertificate)))]
async fn quic_certificate(State(app): State<AppState>) -> Json<QuicCertificate> {
    Json(QuicCertificate {
        alpn: String::from_utf8_lossy(railcast_protocol::ALPN).into_owned(),
        quic_port: app.info.quic_addr.port(),
        sha256: app.info.cert_sha256.clone(),
        pem: app.info.cert_pem.clone(),
        self_signed: app.info.self_signed,
    })
}

/// Prometheus metrics in the text exposition format (README lists them).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String,
        example = "railcast_trains_connected 2\nrailcast_packets_in_total{transport=\"quic\"} 12345\n")))]
async fn metrics(State(app): State<AppState>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&app))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: listeners are bound and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    if *app.shutdown.borrow() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"));
    }
    Ok(Json(Health { status: "ready".into() }))
}
