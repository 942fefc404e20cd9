//! The REST API under `/api` (JSON) over [`Core`] only, health checks and metrics, and this part's
//! fragment of the OpenAPI contract. Transports and signaling front-ends bring their own routes
//! and fragments; `lib.rs` merges them.

mod dto;
pub mod recordings;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use railcast_protocol::TrainId;
use utoipa::OpenApi;

pub use dto::*;

use crate::core::Core;
use crate::http::{Admin, ApiError, ApiJson, ApiPath, Caller, ErrorBody};

/// Longest remote-control name.
pub const MAX_NAME: usize = 100;

/// This part's fragment of the contract, and the contract's front matter.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "railcast", description = "Live train video relay: QUIC ingest, fan-out to remote controls over WebSocket, WebRTC data channels and WebTransport.\n\nEvery error response has the `ErrorBody` shape. Every `/api` route except `/api/quic/certificate` and `/api/openapi.json` needs `Authorization: Bearer <token>` (401 without a valid one); each says the role it needs (403 below it). Roles: viewer < operator < admin (docs/security.md)."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        me, list_trains, get_train, list_remote_controls, create_remote_control, get_remote_control,
        delete_remote_control, set_train, unset_train, list_sessions, audit, list_revocations, revoke, unrevoke,
        quic_certificate, metrics, healthz, readyz,
    ),
    components(schemas(Revoke, RevocationView, crate::audit::Entry, crate::audit::Page, ControlView, ErrorBody, Me, crate::auth::Role, Train, Camera, RemoteControlView, SessionView, CreateRemoteControl, SetTrain, QuicCertificate, Health)),
    tags(
        (name = "trains", description = "Trains connected over QUIC"),
        (name = "remote-controls", description = "Operators' consoles and their mapping to trains"),
        (name = "transports", description = "Video and command transports"),
        (name = "ops", description = "Health and server facts"),
        (name = "credentials", description = "Revoking tokens at run time (docs/security.md)"),
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
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A client token (docs/security.md); on /ws and on the WebTransport session URL (/wt) it may also be given as the access_token query parameter.")).build()),
        );
    }
}

/// The REST routes under `/api` (nest them there), without the contract's own route.
pub fn routes() -> Router<Core> {
    Router::new()
        .route("/me", get(me))
        .route("/trains", get(list_trains))
        .route("/trains/{id}", get(get_train))
        .route("/remote-controls", get(list_remote_controls).post(create_remote_control))
        .route("/remote-controls/{id}", get(get_remote_control).delete(delete_remote_control))
        .route("/remote-controls/{id}/train", put(set_train).delete(unset_train))
        .route("/sessions", get(list_sessions))
        .route("/audit", get(audit))
        .route("/revocations", get(list_revocations).post(revoke))
        .route("/revocations/{sha256}", axum::routing::delete(unrevoke))
        .route("/quic/certificate", get(quic_certificate))
}

/// The routes outside `/api`: health, the status page, and metrics unless they are served on an
/// address of their own (`metrics_addr`, [`metrics_router`]).
pub fn ops_routes(with_metrics: bool) -> Router<Core> {
    let routes =
        Router::new().route("/status", get(status_page)).route("/healthz", get(healthz)).route("/readyz", get(readyz));
    if with_metrics {
        routes.route("/metrics", get(metrics))
    } else {
        routes
    }
}

/// `/metrics` alone, for the listener of `metrics_addr`; anything else there is 404.
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(crate::http::not_found)
        .method_not_allowed_fallback(crate::http::method_not_allowed)
}

/// A small page for `/` when the console is not built.
pub async fn status_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("index.html"))
}

/// Who the token stands for. Any role.
#[utoipa::path(get, path = "/api/me", tag = "ops", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(caller: Caller) -> Json<Me> {
    Json(Me { name: caller.0.name, role: caller.0.role })
}

/// List every train the server knows, online or not. Any role.
#[utoipa::path(get, path = "/api/trains", tag = "trains", responses((status = 200, body = [Train]), (status = 401, body = ErrorBody)))]
async fn list_trains(_caller: Caller, State(app): State<Core>) -> Json<Vec<Train>> {
    Json(app.hub.streams().iter().map(|s| train_view(&app, s)).collect())
}

/// A train as the API shows it, with the cluster node that has it.
fn train_view(app: &Core, stream: &crate::hub::Stream) -> Train {
    let owner_node = app.cluster.as_ref().and_then(|c| c.owner_of(stream));
    Train { owner_node, ..Train::from(stream.snapshot()) }
}

/// One train. Any role.
#[utoipa::path(get, path = "/api/trains/{id}", tag = "trains",
    params(("id" = String, Path, description = "Train id")),
    responses((status = 200, body = Train), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_train(
    _caller: Caller,
    State(app): State<Core>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Train>, ApiError> {
    let stream =
        TrainId::new(id.clone()).ok().and_then(|t| app.hub.stream(&t)).ok_or_else(|| ApiError::train_not_found(&id))?;
    Ok(Json(train_view(&app, &stream)))
}

fn view(app: &Core, rc: &crate::remote::RemoteControl) -> RemoteControlView {
    RemoteControlView::new(rc, &app.sessions.of_remote_control(&rc.id))
}

/// List the remote controls the caller may use (an admin: all of them). Any role.
#[utoipa::path(get, path = "/api/remote-controls", tag = "remote-controls", responses((status = 200, body = [RemoteControlView]), (status = 401, body = ErrorBody)))]
async fn list_remote_controls(caller: Caller, State(app): State<Core>) -> Json<Vec<RemoteControlView>> {
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
    _admin: Admin,
    State(app): State<Core>,
    ApiJson(req): ApiJson<CreateRemoteControl>,
) -> Result<(StatusCode, Json<RemoteControlView>), ApiError> {
    check_name("name", req.name.as_deref())?;
    check_name("owner", req.owner.as_deref())?;
    let rc = app.remotes.create(req.name, req.owner).map_err(ApiError::limit)?;
    app.remotes.persist();
    Ok((StatusCode::CREATED, Json(view(&app, &rc))))
}

/// One remote control, with its live sessions and their counters. Any role that may use it.
#[utoipa::path(get, path = "/api/remote-controls/{id}", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_remote_control(
    caller: Caller,
    State(app): State<Core>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RemoteControlView>, ApiError> {
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    caller.may_use(&rc.id, rc.owner.as_deref())?;
    Ok(Json(view(&app, &rc)))
}

/// Delete a remote control; its sessions are closed. Admin.
#[utoipa::path(delete, path = "/api/remote-controls/{id}", tag = "remote-controls",
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_remote_control(
    _admin: Admin,
    State(app): State<Core>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.remotes.delete(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    app.remotes.persist();
    Ok(StatusCode::NO_CONTENT)
}

/// Map a remote control to a train. Live: connected sessions switch at once. The train must be
/// known (it has connected since start-up) or have a token configured (it may connect later).
/// Admin.
#[utoipa::path(put, path = "/api/remote-controls/{id}/train", tag = "remote-controls", request_body = SetTrain,
    params(("id" = String, Path, description = "Remote control id")),
    responses((status = 200, body = RemoteControlView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_train(
    _admin: Admin,
    State(app): State<Core>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SetTrain>,
) -> Result<Json<RemoteControlView>, ApiError> {
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
    responses((status = 200, body = RemoteControlView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unset_train(
    _admin: Admin,
    State(app): State<Core>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RemoteControlView>, ApiError> {
    let rc = app.remotes.get(&id).ok_or_else(|| ApiError::remote_control_not_found(&id))?;
    rc.set_train(None);
    app.remotes.persist();
    Ok(Json(view(&app, &rc)))
}

/// Every live transport session. Admin.
#[utoipa::path(get, path = "/api/sessions", tag = "transports", responses((status = 200, body = [SessionView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_sessions(_admin: Admin, State(app): State<Core>) -> Json<Vec<SessionView>> {
    Json(app.sessions.all().iter().map(|s| SessionView::from(&**s)).collect())
}

/// The command audit: every command any client sent (accepted or refused), oldest first, one
/// page at a time (`next` → `after`), or newest first with `order=newest` (`next` → `before`).
/// In a cluster, every node's entries merged by time (`cursor` → `cursor`; `resume` for what
/// comes later; `scope=node` for this node's alone). Admin.
#[utoipa::path(get, path = "/api/audit", tag = "ops", params(crate::audit::Query),
    responses((status = 200, body = crate::audit::Page), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn audit(
    _admin: Admin,
    State(app): State<Core>,
    crate::http::ApiQuery(q): crate::http::ApiQuery<crate::audit::Query>,
) -> Result<Json<crate::audit::Page>, ApiError> {
    // The contract's integers are signed 64-bit: refuse what it does not allow.
    let too_big = |v: Option<u64>| v.is_some_and(|v| v > i64::MAX as u64);
    if [q.since, q.until, q.after, q.before, q.limit.map(|l| l as u64)].into_iter().any(too_big) {
        return Err(ApiError::bad_request("bad_query", "since, until, after, before and limit are at most 2^63 - 1"));
    }
    let audit = std::sync::Arc::clone(&app.audit);
    let cluster = app.cluster.clone().filter(|_| q.scope != Some(crate::audit::Scope::Node));
    let Some(cluster) = cluster else {
        if q.cursor.is_some() {
            return Err(ApiError::bad_request(
                "bad_query",
                "cursor pages a cluster-wide query; this one reads one node's log (after, before)",
            ));
        }
        // Reading the files is blocking I/O.
        let page = tokio::task::spawn_blocking(move || audit.query(&q)).await;
        return Ok(Json(page.unwrap_or_else(|_| crate::audit::Page::of_node(Vec::new(), None))));
    };
    if q.after.is_some() || q.before.is_some() {
        return Err(ApiError::bad_request(
            "bad_query",
            "after and before name one node's seq: page a cluster-wide query with cursor, or ask scope=node",
        ));
    }
    let cursor = match q.cursor.as_deref() {
        Some(c) => crate::audit::parse_cursor(c).map_err(|e| ApiError::bad_request("bad_query", e.to_string()))?,
        None => Default::default(),
    };
    let request =
        crate::audit::ClusterRequest { query: crate::audit::Query { cursor: None, scope: None, ..q }, cursor };
    let node = cluster.node().to_owned();
    let (local, (answers, mut missing)) = tokio::join!(
        {
            let request = request.clone();
            tokio::task::spawn_blocking(move || audit.part(&node, &request))
        },
        cluster.ask_all(crate::cluster::wire::AUDIT, crate::cluster::wire::to_json(&request)),
    );
    let mut parts: Vec<crate::audit::NodePart> = local.into_iter().collect();
    for (from, body) in answers {
        match serde_json::from_slice::<crate::audit::NodePart>(&body) {
            Ok(part) if part.node == from => parts.push(part),
            Ok(part) => {
                crate::cluster::rejected(
                    "audit",
                    crate::cluster::wire::AUDIT,
                    &format!("{from} answered as {}", part.node),
                );
                missing.push(from);
            }
            Err(e) => {
                crate::cluster::rejected("audit", crate::cluster::wire::AUDIT, &e);
                missing.push(from);
            }
        }
    }
    Ok(Json(crate::audit::merge(&request, parts, missing)))
}

/// The credentials revoked at run time, oldest first. In a cluster: on every node. Admin.
#[utoipa::path(get, path = "/api/revocations", tag = "credentials",
    responses((status = 200, body = [RevocationView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_revocations(_admin: Admin, State(app): State<Core>) -> Json<Vec<RevocationView>> {
    let mut all = app.auth.revocations();
    all.sort_by(|a, b| a.revoked_at_ms.cmp(&b.revoked_at_ms).then_with(|| a.sha256.cmp(&b.sha256)));
    Json(all.into_iter().map(RevocationView::from).collect())
}

/// Revoke a client's or a train's token, by the token or its SHA-256. At once: requests with it
/// get 401, sessions it opened close (WebSocket code 4003), a train connected with it is
/// disconnected, and it cannot connect again. In a cluster, on every node. Revoking a token that
/// is revoked already answers 200 with the first revocation. Admin.
#[utoipa::path(post, path = "/api/revocations", tag = "credentials", request_body = Revoke,
    responses((status = 201, body = RevocationView), (status = 200, body = RevocationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn revoke(
    admin: Admin,
    State(app): State<Core>,
    ApiJson(req): ApiJson<Revoke>,
) -> Result<(StatusCode, Json<RevocationView>), ApiError> {
    check_name("note", req.note.as_deref())?;
    let sha256 = match (&req.token, &req.sha256) {
        (Some(token), None) if !token.is_empty() => crate::auth::token_sha256(token),
        (None, Some(hex)) => crate::auth::normalize_sha256(hex)
            .ok_or_else(|| ApiError::bad_request("bad_sha256", "sha256 must be 64 hex digits"))?,
        _ => return Err(ApiError::bad_request("bad_revocation", "give exactly one of token or sha256")),
    };
    let revocation = crate::auth::Revocation {
        sha256: sha256.clone(),
        revoked_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        by: admin.0 .0.name.clone(),
        note: req.note,
    };
    // Revoked already: the first revocation stands. (The digest was checked above.)
    let (standing, created) = app
        .auth
        .revoke(revocation)
        .ok_or_else(|| ApiError::bad_request("bad_sha256", "sha256 must be 64 hex digits"))?;
    let view = RevocationView::from(standing);
    if created {
        tracing::warn!(sha256 = %&sha256[..12], by = %view.by, "credential revoked");
    }
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)))
}

/// Lift a revocation: the token works again (if the credentials file still lists it). Admin.
#[utoipa::path(delete, path = "/api/revocations/{sha256}", tag = "credentials",
    params(("sha256" = String, Path, description = "SHA-256 of the revoked token, hex")),
    responses((status = 204, description = "Lifted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unrevoke(
    _admin: Admin,
    State(app): State<Core>,
    ApiPath(sha256): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "revocation_not_found", format!("{sha256:?} is not revoked"));
    let normal = crate::auth::normalize_sha256(&sha256).ok_or_else(not_found)?;
    if !app.auth.unrevoke(&normal) {
        return Err(not_found());
    }
    tracing::warn!(sha256 = %&normal[..12], "revocation lifted");
    Ok(StatusCode::NO_CONTENT)
}

/// The QUIC endpoint's certificate, for trains to pin. No token needed.
#[utoipa::path(get, path = "/api/quic/certificate", tag = "ops", security(()), responses((status = 200, body = QuicCertificate)))]
async fn quic_certificate(State(app): State<Core>) -> Json<QuicCertificate> {
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
async fn metrics() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: listeners are bound, the server is not shutting down (503 `shutting_down`) and, with
/// `cluster_nats_url`, it reaches NATS (503 `cluster_unreachable`) and has taken in the cluster's
/// shared state since it started (503 `cluster_state_pending`; docs/cluster.md).
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(app): State<Core>) -> Result<Json<Health>, ApiError> {
    if app.stopping() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down"));
    }
    if app.cluster.as_ref().is_some_and(|c| !c.connected()) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unreachable",
            "the cluster's NATS server is unreachable (cluster_nats_url)",
        ));
    }
    if app.cluster.as_ref().is_some_and(|c| !c.in_step()) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_state_pending",
            "the cluster's shared state (remote controls, revocations) is not taken in yet",
        ));
    }
    Ok(Json(Health { status: "ready".into() }))
}
