//! The HTTP API under `/api` (JSON), health checks, the WebSocket route and the OpenAPI contract.

mod caller;
mod dto;
mod error;
pub mod webrtc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use railcast_protocol::TrainId;
use utoipa::OpenApi;

pub use caller::Caller;
pub use dto::*;
pub use error::{ApiError, ApiJson, ErrorBody};

use crate::auth::Role;
use crate::state::AppState;
/// Longest remote-control name.
pub const MAX_NAME: usize = 100;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "railcast", description = "Live train video relay: QUIC ingest, fan-out to remote controls over WebSocket and WebRTC data channels.\n\nEvery error response has the `ErrorBody` shape. Every `/api` route except `/api/quic/certificate` and `/api/openapi.json` needs `Authorization: Bearer <token>` (401 without a valid one); each says the role it needs (403 below it). Roles: viewer < operator < admin (docs/security.md)."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        me, list_trains, get_train, list_remote_controls, create_remote_control, get_remote_control,
        delete_remote_control, set_train, unset_train, list_sessions, quic_certificate, metrics, healthz, readyz,
        crate::ws::upgrade, webrtc::offer, webrtc::answer, webrtc::ice_candidate, webrtc::server_candidates,
        webrtc::list, webrtc::get_one, webrtc::delete,
    ),
    components(schemas(ErrorBody, Me, crate::auth::Role, Train, Camera, RemoteControlView, Session, CreateRemoteControl, SetTrain, QuicCertificate, Health,
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

/// Declares the bearer-token scheme of the contract.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A client token (docs/security.md); on /ws it may also be given as the access_token query parameter.")).build()),
        );
    }
}

/// The contract as served at `/api/openapi.json` and committed as `openapi/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}

/// The whole HTTP surface. `web_root`: the built console, served for every path not routed here.
pub fn router(state: AppState, web_root: Option<&std::path::Path>, max_body: usize) -> Router {
    let api = Router::new()
        .route("/me", get(me))
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
    router.layer(axum::extract::DefaultBodyLimit::max(max_body)).with_state(state)
}

/// Who the token stands for. Any role.
#[utoipa::path(get, path = "/api/me", tag = "ops", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(caller: Caller) -> Json<Me> {
    Json(Me { name: caller.0.name, role: caller.0.role })
}

/// List every train the server knows, online or not. Any role.
#[utoipa::path(get, path = "/api/trains", tag = "trains", responses((status = 200, body = [Train]), (status = 401, body = ErrorBody)))]
async fn list_trains(_caller: Caller, State(app): State<AppState>) -> Json<Vec<Train>> {
    Json(app.hub.streams().iter().map(|s| Train::from(s.snapshot())).collect())
}

/// One train. Any role.
#[utoipa::path(get, path = "/api/trains/{id}", tag = "trains",
    params(("id" = String, Path, description = "Train id")),
    responses((status = 200, body = Train), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_train(
    _caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Train>, ApiError> {
    let stream =
        TrainId::new(id.clone()).ok().and_then(|t| app.hub.stream(&t)).ok_or_else(|| ApiError::train_not_found(&id))?;
    Ok(Json(Train::from(stream.snapshot())))
}

fn view(app: &AppState, rc: &crate::remote::RemoteControl) -> RemoteControlView {
    RemoteControlView::new(rc, &app.sessions.of_remote_control(&rc.id))
}

/// List the remote controls the caller may use (an admin: all of them). Any role.
#[utoipa::path(get, path = "/api/remote-controls", tag = "remote-controls", responses((status = 200, body = [RemoteControlView]), (status = 401, body = ErrorBody)))]
async fn list_remote_controls(caller: Caller, State(app): State<AppState>) -> Json<Vec<RemoteControlView>> {
    Json(
        app.remotes.list().iter().filter(|rc| caller.0.may_use(rc.owner.as_deref())).map(|rc| view(&app, rc)).collect(),
    )
}

fn check_name(field: &'static str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.trim().is_empty() || v.chars().count() > MAX_NAME || v.chars().any(char::is_control) => {
            Err(ApiError::bad_request("bad_name", format!("{field} must be 1..={MAX_NAME} printable characters")))
        }
        _ => Ok(()),
    }
}

/// Create a remote control (not mapped to any train yet). Admin.
#[utoipa::path(post, path = "/api/remote-controls", tag = "remote-controls", request_body = CreateRemoteControl,
    responses((status = 201, body = RemoteControlView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn create_remote_control(
    caller: Caller,
    State(app): State<AppState>,
    ApiJson(req): ApiJson<CreateRemoteControl>,
) -> Result<(StatusCode, Json<RemoteControlView>), ApiError> {
    caller.require(Role::Admin, "creating a remote control")?;
    check_name("name", req.name.as_deref())?;
    check_name("owner", req.owner.as_deref())?;
    let rc = app.remotes.create(req.name, req.owner).map_err(ApiError::limit)?;
    app.remotes.persist();
    Ok((StatusCode::CREATED, Json(view(&app, &rc))))
}

/// One remote control, with its live sessions and their counters. Any role that may use it.
#[utoipa::path(get, path = "/api/remote-controls/{id}", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_remote_control(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RemoteControlView>, ApiError> {
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    caller.may_use(&rc.id, rc.owner.as_deref())?;
    Ok(Json(view(&app, &rc)))
}

/// Delete a remote control; its sessions are closed. Admin.
#[utoipa::path(delete, path = "/api/remote-controls/{id}", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_remote_control(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin, "deleting a remote control")?;
    app.remotes.delete(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    app.remotes.persist();
    Ok(StatusCode::NO_CONTENT)
}

/// Map a remote control to a train. Live: connected sessions switch at once. The train must be
/// known (it has connected since start-up) or have a token configured (it may connect later).
/// Admin.
#[utoipa::path(put, path = "/api/remote-controls/{id}/train", tag = "remote-controls", request_body = SetTrain,
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_train(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetTrain>,
) -> Result<Json<RemoteControlView>, ApiError> {
    caller.require(Role::Admin, "mapping a remote control")?;
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    let train = TrainId::new(req.train_id.clone())
        .map_err(|e| ApiError::bad_request("bad_train_id", format!("train_id: {e}")))?;
    if app.hub.stream(&train).is_none() && !app.auth.knows_train(train.as_str()) {
        return Err(ApiError::train_not_found(&req.train_id));
    }
    rc.set_train(Some(train));
    app.remotes.persist();
    Ok(Json(view(&app, &rc)))
}

/// Unmap a remote control: its sessions stop receiving video. Admin.
#[utoipa::path(delete, path = "/api/remote-controls/{id}/train", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unset_train(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RemoteControlView>, ApiError> {
    caller.require(Role::Admin, "unmapping a remote control")?;
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    rc.set_train(None);
    app.remotes.persist();
    Ok(Json(view(&app, &rc)))
}

/// Every live transport session. Admin.
#[utoipa::path(get, path = "/api/sessions", tag = "transports", responses((status = 200, body = [Session]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_sessions(caller: Caller, State(app): State<AppState>) -> Result<Json<Vec<Session>>, ApiError> {
    caller.require(Role::Admin, "listing sessions")?;
    Ok(Json(app.sessions.all().iter().map(|s| Session::from(&**s)).collect()))
}

/// The QUIC endpoint's certificate, for trains to pin. No token needed.
#[utoipa::path(get, path = "/api/quic/certificate", tag = "ops", security(()), responses((status = 200, body = QuicCertificate)))]
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
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String,
        example = "railcast_trains_connected 2\nrailcast_packets_in_total{transport=\"quic\"} 12345\n")))]
async fn metrics(State(app): State<AppState>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&app))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: listeners are bound and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    if *app.shutdown.borrow() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"));
    }
    Ok(Json(Health { status: "ready".into() }))
}
