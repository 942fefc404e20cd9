//! [`Admission`]: one client session's rights and budget for commands, and [`parse`] of a
//! client's JSON message.

use std::sync::Arc;

use railcast_protocol::client::{ClientMessage, ServerEvent};
use railcast_protocol::Action;

use crate::auth::{Principal, Role};
use crate::limits::{Limit, LimitConfig, RateLimiter};

/// One client session's rights and budget: who it is, how many commands it may still send now,
/// how many may wait for an ack at once.
#[derive(Debug)]
pub struct Admission {
    pub principal: Principal,
    rate: RateLimiter,
    inflight: Arc<tokio::sync::Semaphore>,
    max_inflight: usize,
}

impl Admission {
    pub fn new(limits: &LimitConfig, principal: Principal) -> Self {
        let max_inflight = limits.max_inflight_commands;
        Self {
            principal,
            rate: RateLimiter::new(limits.command_rate, limits.command_burst),
            inflight: Arc::new(tokio::sync::Semaphore::new(max_inflight)),
            max_inflight,
        }
    }

    /// May this session send `action` now? Checks the role (a viewer may only ask for a keyframe,
    /// which a decoder needs to recover and which changes nothing else on the train), then the
    /// rate, then the commands in flight; the permit is held until the ack. `Err`: the refusal to
    /// send back.
    pub fn admit_command(
        &mut self,
        request_id: &str,
        action: &Action,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ServerEvent> {
        let refuse = |code: &str, message: String| ServerEvent::CommandError {
            request_id: request_id.to_owned(),
            code: code.into(),
            message,
        };
        if matches!(action, Action::OperatorLost { .. }) {
            return Err(refuse("forbidden", "operator_lost is sent by the server only".into()));
        }
        let watching = matches!(action, Action::RequestKeyframe { .. });
        if self.principal.role < Role::Operator && !watching {
            crate::metrics::METRICS.auth_refusals.with_label_values(&["client", "forbidden"]).inc();
            return Err(refuse(
                "forbidden",
                format!(
                    "{} is a {}: it may watch but not command (an operator token is needed)",
                    self.principal.name,
                    self.principal.role.name()
                ),
            ));
        }
        if !self.rate.try_take(std::time::Instant::now()) {
            let hit = Limit::CommandRate.refuse("too many commands: wait a moment (command_rate, command_burst)");
            return Err(refuse(hit.code(), hit.message));
        }
        Arc::clone(&self.inflight).try_acquire_owned().map_err(|_| {
            refuse("too_many_commands", format!("at most {} commands may be in flight per session", self.max_inflight))
        })
    }
}

/// Parse a client's JSON message. `Err`: the error event to send back; a message over
/// [`railcast_protocol::client::MAX_CLIENT_MESSAGE`] is counted as the `message_size` limit.
pub fn parse(text: &str) -> Result<ClientMessage, ServerEvent> {
    ClientMessage::parse(text).map_err(|e| {
        let code = if matches!(e, railcast_protocol::DecodeError::BodyTooLarge { .. }) {
            Limit::MessageSize.refuse("client message over the size limit").code()
        } else {
            "bad_message"
        };
        ServerEvent::Error { code: code.into(), message: e.to_string() }
    })
}
