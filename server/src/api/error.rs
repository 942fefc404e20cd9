//! `ApiError`: every 4xx/5xx of the HTTP API, rendered as one JSON shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({"code": "remote_control_not_found", "message": "remote control 'rc-1' does not exist"}))]
pub struct ErrorBody {
    /// Stable, machine-readable code (snake_case).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    pub fn remote_control_not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "remote_control_not_found", format!("remote control '{id}' does not exist"))
    }
    pub fn train_not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "train_not_found", format!("train '{id}' is not known to this server"))
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 429 for a limit that was hit (already counted).
    pub fn limit(hit: crate::limits::LimitHit) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, hit.code(), hit.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "request failed: {}", self.message);
        }
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let body = ErrorBody { code: self.code.into(), message: self.message };
        let mut response = (self.status, axum::Json(body)).into_response();
        if unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"railcast\""),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let hit = crate::limits::LimitHit::new("body_size", "the request body is larger than max_body");
            return Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("{hit}: {}", r.body_text()));
        }
        let code = match r {
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            JsonRejection::JsonSyntaxError(_) => "bad_json",
            JsonRejection::JsonDataError(_) => "invalid_body",
            _ => "bad_request",
        };
        Self::new(r.status(), code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_query", r.body_text())
    }
}

/// `axum::Json`, with rejections rendered as [`ApiError`].
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that method")
}
