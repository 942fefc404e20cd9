//! `ApiError`: every 4xx/5xx of the HTTP surface, rendered as one JSON shape, and the extractors
//! whose rejections render as it ([`ApiJson`], [`ApiQuery`]).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
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
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
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
        if super::is_body_timeout(&r) {
            return Self::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", r.body_text());
        }
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let hit = crate::limits::Limit::BodySize.refuse("the request body is larger than max_body");
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

/// A JSON object body (`axum::Json`), with rejections rendered as [`ApiError`]. Every request body
/// of the API is an object: anything else (an array, a string) is refused with 422 before serde
/// sees it, since serde would read a struct from an array too.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let announced =
            req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let (Some(super::MaxBody(max)), Some(n)) = (req.extensions().get::<super::MaxBody>(), announced) {
            if n > *max as u64 {
                let hit = crate::limits::Limit::BodySize.refuse("the request body is larger than max_body");
                let message = format!("{hit}: Content-Length {n} is over {max} bytes");
                return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message));
            }
        }
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::unprocessable("invalid_body", "the request body must be a JSON object"));
        }
        serde_json::from_value(value).map(ApiJson).map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))
    }
}

/// `axum::extract::Path`, with rejections rendered as [`ApiError`] (400, `bad_path`): a path
/// segment that is not valid UTF-8 once decoded (`/api/remote-controls/%00%ff`), say.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(p)) => Ok(Self(p)),
            Err(r) => Err(ApiError::bad_request("bad_path", r.body_text())),
        }
    }
}

/// `axum::extract::Query`, with rejections rendered as [`ApiError`] (400, `bad_query`).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(q) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(q))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that method")
}
