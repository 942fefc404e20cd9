//! The HTTP edge every part of the server shares: the one error shape ([`ApiError`]), the
//! extractors whose rejections use it, and who is calling ([`Caller`]). A leaf: it imports
//! no transport, so transports and signaling front-ends can use it.

mod access;
mod caller;
mod error;
mod serve;

use std::time::SystemTime;

pub use access::access_log;
pub use caller::{forbidden, Admin, Caller, UpgradeCaller};
pub use error::{method_not_allowed, not_found, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
pub use serve::{is_body_timeout, serve, BodyTimedOut, MaxBody, ServeSettings};

/// A time as the API shows it: RFC 3339, milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
