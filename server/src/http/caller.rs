//! [`Caller`]: the authenticated client of a request, from its bearer token; [`Admin`]: one that
//! must be an admin; [`UpgradeCaller`]: one that may give its token in the query string.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::ApiError;
use crate::auth::{Principal, Role};
use crate::core::Core;
use crate::metrics::METRICS;

/// The client making the request. Extracting it refuses the request with 401 when the token is
/// missing or unknown. The token comes from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// A [`Caller`] whose token may also come from the `access_token` query parameter: for
/// transports a browser opens without being able to set headers (a WebSocket).
#[derive(Debug, Clone)]
pub struct UpgradeCaller(pub Caller);

/// A [`Caller`] with the admin role; others get 403. Extracted before the request's body, so a
/// caller without the role learns that first, whatever it sent.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl Caller {
    /// Refuse with 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role, what: &str) -> Result<(), ApiError> {
        if self.0.role >= role {
            return Ok(());
        }
        Err(forbidden(format!("{what} needs the {} role; {} is {}", role.name(), self.0.name, self.0.role.name())))
    }

    /// Refuse with 403 unless the caller may use a remote control owned by `owner`.
    pub fn may_use(&self, rc_id: &str, owner: Option<&str>) -> Result<(), ApiError> {
        if self.0.may_use(owner) {
            return Ok(());
        }
        Err(forbidden(format!("remote control '{rc_id}' belongs to another client; {} may not use it", self.0.name)))
    }
}

/// 403, counted.
pub fn forbidden(message: String) -> ApiError {
    METRICS.auth_refusals.with_label_values(&["client", "forbidden"]).inc();
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn unauthorized(reason: &'static str, message: &str) -> ApiError {
    METRICS.auth_refusals.with_label_values(&["client", reason]).inc();
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The token a request carries, from its `Authorization` header or its `access_token` parameter.
pub(super) fn token_of(headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    bearer_of(headers).map(str::to_owned).or_else(|| query_token_of(uri))
}

fn bearer(parts: &Parts) -> Option<&str> {
    bearer_of(&parts.headers)
}

fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn query_token(parts: &Parts) -> Option<String> {
    query_token_of(&parts.uri)
}

fn query_token_of(uri: &axum::http::Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let v = kv.strip_prefix("access_token=")?;
        Some(percent_decode(v))
    })
}

/// Tokens are hex, but decode `%XX` in case a client escaped anything.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())) {
            (b'%', Some(h)) if u8::from_str_radix(h, 16).is_ok() => {
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'%'));
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const MISSING: &str = "this endpoint needs a token: send `Authorization: Bearer <token>` (docs/security.md)";

fn authenticate(core: &Core, token: Option<&str>) -> Result<Caller, ApiError> {
    let Some(token) = token else { return Err(unauthorized("missing", MISSING)) };
    match core.auth.client(token) {
        Some(p) => Ok(Caller(p)),
        None => Err(unauthorized("invalid", "the token is not valid (unknown, mistyped or revoked)")),
    }
}

impl FromRequestParts<Core> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<Self, ApiError> {
        authenticate(core, bearer(parts))
    }
}

impl FromRequestParts<Core> for UpgradeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<Self, ApiError> {
        let token = bearer(parts).map(str::to_owned).or_else(|| query_token(parts));
        authenticate(core, token.as_deref()).map(UpgradeCaller)
    }
}

impl FromRequestParts<Core> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, core).await?;
        let what = format!("{} {}", parts.method, parts.uri.path());
        caller.require(Role::Admin, &what)?;
        Ok(Admin(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("ab%2Fc"), "ab/c");
        assert_eq!(percent_decode("abc%"), "abc%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
