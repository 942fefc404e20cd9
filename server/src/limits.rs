//! Resource limits: how many trains, remote controls, WebRTC sessions and connections per address
//! the server accepts, and how fast one client may send commands.
//!
//! Every refusal is counted in `railcast_limit_refusals_total{limit}` and answered with a reason:
//! HTTP 429 (413 for bodies) with the JSON error shape, an `error` frame for trains, a
//! `command_error` event for commands. `docs/security.md` lists the defaults.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;

use crate::metrics::METRICS;

/// The configured limits.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// Trains known to the server (online or not). A new train id beyond it is refused.
    pub max_trains: usize,
    pub max_remote_controls: usize,
    /// WebRTC sessions alive at once (signaling and open).
    pub max_webrtc_sessions: usize,
    /// Client sessions (WebSocket + WebRTC) from one IP address at once; the same number
    /// again for train connections from one address.
    pub max_connections_per_address: usize,
    /// Commands per second one client session may send, sustained …
    pub command_rate: f64,
    /// … and in a burst.
    pub command_burst: u32,
    /// Commands one client session may have waiting for an ack at once.
    pub max_inflight_commands: usize,
    /// Commands (but `request_keyframe`) need the control lease even when nobody holds it.
    pub control_required: bool,
    /// A lease whose holder sends nothing for this long ends, and the train gets `operator_lost`.
    pub control_heartbeat_timeout: std::time::Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            max_trains: 1_000,
            max_remote_controls: 10_000,
            max_webrtc_sessions: 1_000,
            max_connections_per_address: 2_048,
            command_rate: 20.0,
            command_burst: 40,
            max_inflight_commands: 16,
            control_required: false,
            control_heartbeat_timeout: std::time::Duration::from_secs(1),
        }
    }
}

/// A resource limit (the `limit` label of `railcast_limit_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Trains,
    RemoteControls,
    WebRtcSessions,
    /// MQTT sessions (credentials handed out) at once.
    MqttSessions,
    ConnectionsPerAddress,
    BodySize,
    MessageSize,
    CommandRate,
    /// HTTP connections from one address.
    HttpConnectionsPerAddress,
    /// An HTTP request's header did not arrive within `http_header_timeout`.
    HeaderTimeout,
    /// An HTTP request's body did not arrive within `http_body_timeout`.
    BodyTimeout,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 11] = [
        Self::Trains,
        Self::RemoteControls,
        Self::WebRtcSessions,
        Self::MqttSessions,
        Self::ConnectionsPerAddress,
        Self::BodySize,
        Self::MessageSize,
        Self::CommandRate,
        Self::HttpConnectionsPerAddress,
        Self::HeaderTimeout,
        Self::BodyTimeout,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Trains => "trains",
            Self::RemoteControls => "remote_controls",
            Self::WebRtcSessions => "webrtc_sessions",
            Self::MqttSessions => "mqtt_sessions",
            Self::ConnectionsPerAddress => "connections_per_address",
            Self::BodySize => "body_size",
            Self::MessageSize => "message_size",
            Self::CommandRate => "command_rate",
            Self::HttpConnectionsPerAddress => "http_connections_per_address",
            Self::HeaderTimeout => "http_header_timeout",
            Self::BodyTimeout => "http_body_timeout",
        }
    }

    /// The error code shown to clients.
    pub fn code(self) -> &'static str {
        match self {
            Self::Trains => "limit_trains",
            Self::RemoteControls => "limit_remote_controls",
            Self::WebRtcSessions => "limit_webrtc_sessions",
            Self::MqttSessions => "limit_mqtt_sessions",
            Self::ConnectionsPerAddress => "limit_connections_per_address",
            Self::BodySize => "body_too_large",
            Self::MessageSize => "message_too_large",
            Self::CommandRate => "rate_limited",
            Self::HttpConnectionsPerAddress => "limit_http_connections_per_address",
            Self::HeaderTimeout => "header_timeout",
            Self::BodyTimeout => "body_timeout",
        }
    }

    /// Refuse something because of this limit: counts the refusal in
    /// `railcast_limit_refusals_total` and returns the explanation to send back.
    pub fn refuse(self, message: impl Into<String>) -> LimitHit {
        METRICS.limit_refusals.with_label_values(&[self.label()]).inc();
        tracing::debug!(limit = self.label(), "limit hit");
        LimitHit { limit: self, message: message.into() }
    }
}

/// A refusal by a limit (already counted: see [`Limit::refuse`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LimitHit {
    pub limit: Limit,
    pub message: String,
}

impl LimitHit {
    /// The error code shown to clients.
    pub fn code(&self) -> &'static str {
        self.limit.code()
    }
}

/// Connections per IP address, held by guards.
#[derive(Debug)]
pub struct PerAddress {
    max: usize,
    what: &'static str,
    limit: Limit,
    setting: &'static str,
    live: DashMap<IpAddr, usize>,
}

impl PerAddress {
    /// `max` `what` per address, refused as `limit`, configured by `setting`.
    pub fn new(max: usize, what: &'static str, limit: Limit, setting: &'static str) -> Arc<Self> {
        Arc::new(Self { max, what, limit, setting, live: DashMap::new() })
    }

    /// Take one slot for `ip`, released when the guard drops.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<AddressGuard, LimitHit> {
        let mut n = self.live.entry(ip).or_insert(0);
        if *n >= self.max {
            return Err(self.limit.refuse(format!("{ip} already has {} {} open ({})", *n, self.what, self.setting)));
        }
        *n += 1;
        Ok(AddressGuard { owner: Arc::clone(self), ip })
    }
}

/// One connection's slot in a [`PerAddress`].
#[derive(Debug)]
pub struct AddressGuard {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        self.owner.live.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate, burst, tokens: burst, last: Instant::now() }
    }

    /// Take one token at `now`; false when none is left.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 5);
        assert_eq!((0..8).filter(|_| r.try_take(t0)).count(), 5);
        assert!(!r.try_take(t0 + Duration::from_millis(50)));
        assert!(r.try_take(t0 + Duration::from_millis(110)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| r.try_take(later)).count(), 5);
    }

    #[test]
    fn per_address_slots_are_released() {
        let p = PerAddress::new(2, "sessions", Limit::ConnectionsPerAddress, "max_connections_per_address");
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = p.acquire(ip).expect("1");
        let _b = p.acquire(ip).expect("2");
        let err = p.acquire(ip).expect_err("3");
        assert_eq!(err.code(), "limit_connections_per_address");
        assert!(p.acquire([127, 0, 0, 2].into()).is_ok(), "other addresses are not affected");
        drop(a);
        let _c = p.acquire(ip).expect("freed");
        assert!(p.acquire(ip).is_err(), "full again");
    }
}
