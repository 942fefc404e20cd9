//! The control lease of a train: at most one client session controls it at a time. Sessions
//! take, release and keep it alive (heartbeats); the relay's watchdog ends a lease whose holder
//! fell silent and tells the train (`operator_lost`). Changes go to every session of the train
//! as [`TrainEvent::Control`].

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use railcast_protocol::client::ControlHolder;

use super::{Stream, TrainEvent};

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub holder: ControlHolder,
    /// The holder's last message.
    pub heartbeat: Instant,
    /// The holder's session ended; the lease waits (at most the heartbeat timeout) for another
    /// link of the same console.
    pub orphaned: bool,
}

/// Why `take_control` was refused: the holder.
#[derive(Debug, Clone)]
pub struct Held(pub ControlHolder);

/// What `take_control` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The train was free.
    Granted,
    /// This session held it already.
    AlreadyHeld,
    /// Another link of the same console held it (a transport switch): no gap.
    Resumed,
    /// An admin took it over from this holder.
    TakenOver(ControlHolder),
}

/// The lease slot of a stream.
#[derive(Debug, Default)]
pub struct ControlSlot(Mutex<Option<Lease>>);

impl ControlSlot {
    fn lock(&self) -> MutexGuard<'_, Option<Lease>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Stream {
    /// Tell every subscriber (and wake them: they wait on their packet queue's waker).
    fn control_changed(&self, holder: Option<ControlHolder>, reason: String) {
        self.emit_event(TrainEvent::Control { holder, reason });
    }

    /// Who controls the train now.
    pub fn control_holder(&self) -> Option<ControlHolder> {
        self.control.lock().as_ref().map(|l| l.holder.clone())
    }

    /// Take control for `holder` (see [`Taken`]); `force`: an admin takes it from another holder.
    pub fn take_control(&self, holder: ControlHolder, force: bool) -> Result<Taken, Held> {
        let mut slot = self.control.lock();
        let now = Instant::now();
        let outcome = match slot.as_ref() {
            None => Taken::Granted,
            Some(l) if l.holder.session == holder.session => {
                if let Some(l) = slot.as_mut() {
                    l.heartbeat = now;
                }
                return Ok(Taken::AlreadyHeld);
            }
            Some(l)
                if l.holder.name == holder.name
                    && l.holder.console_id.is_some()
                    && l.holder.console_id == holder.console_id =>
            {
                Taken::Resumed
            }
            Some(l) if force => Taken::TakenOver(l.holder.clone()),
            Some(l) => return Err(Held(l.holder.clone())),
        };
        let since_us = match (&outcome, slot.as_ref()) {
            (Taken::Resumed, Some(l)) => l.holder.since_us,
            _ => holder.since_us,
        };
        let holder = ControlHolder { since_us, ..holder };
        *slot = Some(Lease { holder: holder.clone(), heartbeat: now, orphaned: false });
        drop(slot);
        let reason = match &outcome {
            Taken::Granted => "taken".to_owned(),
            Taken::Resumed => "resumed".to_owned(),
            Taken::TakenOver(prev) => format!("taken over by {} from {}", holder.name, prev.name),
            Taken::AlreadyHeld => unreachable!("returned above"),
        };
        self.control_changed(Some(holder), reason);
        Ok(outcome)
    }

    /// Give control back; false when `session` did not hold it.
    pub fn release_control(&self, session: u64) -> bool {
        let mut slot = self.control.lock();
        if slot.as_ref().is_some_and(|l| l.holder.session == session) {
            *slot = None;
            drop(slot);
            self.control_changed(None, "released".into());
            true
        } else {
            false
        }
    }

    /// `session` is alive (any message from it): refresh the lease it holds.
    pub fn control_heartbeat(&self, session: u64) {
        if let Some(l) = self.control.lock().as_mut().filter(|l| l.holder.session == session) {
            l.heartbeat = Instant::now();
        }
    }

    /// Whether `session` holds the lease, or who does (`None`: nobody).
    pub fn control_check(&self, session: u64) -> Result<(), Option<ControlHolder>> {
        match self.control.lock().as_ref() {
            Some(l) if l.holder.session == session => Ok(()),
            Some(l) => Err(Some(l.holder.clone())),
            None => Err(None),
        }
    }

    /// `session` ended. A lease of its console waits for another link of that console (the
    /// watchdog ends it at the heartbeat timeout); any other lease of it ends now: returned, for
    /// the caller to tell the train.
    pub fn control_session_ended(&self, session: u64) -> Option<ControlHolder> {
        let mut slot = self.control.lock();
        let l = slot.as_mut().filter(|l| l.holder.session == session)?;
        if l.holder.console_id.is_some() {
            l.orphaned = true;
            return None;
        }
        let holder = l.holder.clone();
        *slot = None;
        drop(slot);
        self.control_changed(None, format!("operator lost: {}'s session ended", holder.name));
        Some(holder)
    }

    /// End `session`'s lease now, whatever its console (its remote control was remapped away):
    /// returned, for the caller to tell the train.
    pub fn control_end(&self, session: u64, why: &str) -> Option<ControlHolder> {
        let mut slot = self.control.lock();
        let holder = slot.as_ref().filter(|l| l.holder.session == session)?.holder.clone();
        *slot = None;
        drop(slot);
        self.control_changed(None, format!("operator lost: {why}"));
        Some(holder)
    }

    /// End the lease, whoever holds it: returned, for the caller to tell the train.
    pub fn control_end_any(&self, why: &str) -> Option<ControlHolder> {
        let holder = self.control.lock().take()?.holder;
        self.control_changed(None, format!("operator lost: {why}"));
        Some(holder)
    }

    /// End the lease if its holder has been silent for `timeout`: returned, with why, for the
    /// caller to tell the train.
    pub fn control_expire(&self, timeout: Duration, now: Instant) -> Option<(ControlHolder, String)> {
        let mut slot = self.control.lock();
        let l = slot.as_ref().filter(|l| now.saturating_duration_since(l.heartbeat) >= timeout)?;
        let why = if l.orphaned {
            format!("{}'s session ended and no other link of the console took over", l.holder.name)
        } else {
            format!("nothing from {} for {} ms", l.holder.name, timeout.as_millis())
        };
        let holder = l.holder.clone();
        *slot = None;
        drop(slot);
        self.control_changed(None, format!("operator lost: {why}"));
        Some((holder, why))
    }
}
