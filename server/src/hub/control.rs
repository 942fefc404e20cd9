//! The control lease of a train: at most one client session controls it at a time. Sessions
//! take, release and keep it alive (heartbeats); the relay's watchdog ends a lease whose holder
//! fell silent and tells the train (`operator_lost`). Changes go to every session of the train
//! as [`TrainEvent::Control`].
//!
//! In a cluster the lease is held on the node the train is connected to (the owner), for a
//! session of any node: a session of another node takes, keeps and gives it back through that
//! node (`via`). A node that mirrors the train keeps a copy of the owner's lease (`remote`),
//! announced with the owner's presence, so that its sessions see the holder; the copy matches a
//! session of the mirror only when the owner holds the lease for that session (`mine`). The
//! watchdog leaves copies alone. A copy is dropped when the train goes offline here; when the
//! train connects here it ends, and the watchdog tells the train (its old owner may be dead);
//! the old owner's own `operator_lost` for it then finds the train told (one per move).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use railcast_protocol::client::ControlHolder;
use tokio::sync::Notify;

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
    /// A copy of the lease held on the train's owner node (a cluster's mirror).
    pub remote: bool,
    /// A copy (`remote`) of a lease the owner holds for a session of this node.
    pub mine: bool,
    /// Held here for a session of that other node of the cluster.
    pub via: Option<String>,
    /// The lease is to end now, for this reason (the watchdog ends it and tells the train).
    pub ending: Option<String>,
    /// Ending because the train connected here while another node held the lease: that node,
    /// if alive, tells the train too ([`Stream::control_lost_elsewhere`]).
    pub moved: bool,
}

impl Lease {
    fn new(holder: ControlHolder, via: Option<String>) -> Self {
        Self {
            holder,
            heartbeat: Instant::now(),
            orphaned: false,
            remote: false,
            mine: false,
            via,
            ending: None,
            moved: false,
        }
    }

    /// Held by `session` of this node (here, or a copy of the owner's lease for it).
    fn of(&self, session: u64) -> bool {
        self.holder.session == session && if self.remote { self.mine } else { self.via.is_none() }
    }

    /// Held here (not a copy) by `session` of this node.
    fn here(&self, session: u64) -> bool {
        !self.remote && self.via.is_none() && self.holder.session == session
    }

    /// Held here for `session` of another node, `node`.
    fn of_node(&self, node: &str, session: u64) -> bool {
        !self.remote && self.via.as_deref() == Some(node) && self.holder.session == session
    }
}

/// Why `take_control` was refused: the holder.
#[derive(Debug, Clone)]
pub struct Held(pub Box<ControlHolder>);

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

/// The lease slot of a stream, and the reason of its last change.
#[derive(Debug)]
pub struct ControlSlot {
    lease: Mutex<Option<Lease>>,
    reason: Mutex<String>,
    /// The holder's name of the last moved lease ([`Lease::moved`]) whose end this node told
    /// the train, until the old node's own message about it comes.
    told_moved: Mutex<Option<String>>,
    /// The hub's, notified at every change.
    changes: Arc<Notify>,
}

impl ControlSlot {
    pub(super) fn new(changes: Arc<Notify>) -> Self {
        Self { lease: Mutex::default(), reason: Mutex::default(), told_moved: Mutex::default(), changes }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Lease>> {
        self.lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn told_moved(&self) -> MutexGuard<'_, Option<String>> {
        self.told_moved.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Stream {
    /// Tell every subscriber (and wake them: they wait on their packet queue's waker).
    fn control_changed(&self, holder: Option<ControlHolder>, reason: String) {
        reason.clone_into(&mut self.control.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.emit_event(TrainEvent::Control { holder, reason });
        self.control.changes.notify_one();
    }

    /// What a cluster's owner announces: the holder of the lease held here (not a copy), and
    /// the reason of the last change.
    pub fn control_announced(&self) -> (Option<ControlHolder>, String) {
        let holder = self.control.lock().as_ref().filter(|l| !l.remote && l.ending.is_none()).map(|l| l.holder.clone());
        (holder, self.control_reason())
    }

    /// The reason of the lease's last change (`taken`, `released`, …; empty before any).
    pub fn control_reason(&self) -> String {
        self.control.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A mirror: the lease its owner node announced (`here`: this node's id, which marks a
    /// lease held for a session of this node). A change is told to the sessions here with the
    /// owner's reason. A lease held here (the train just moved away) is left for the watchdog
    /// to end.
    pub fn control_mirror(&self, holder: Option<ControlHolder>, reason: &str, here: &str) {
        let mut slot = self.control.lock();
        if slot.as_ref().is_some_and(|l| !l.remote) || slot.as_ref().map(|l| &l.holder) == holder.as_ref() {
            return;
        }
        *slot = holder.clone().map(|holder| Lease {
            mine: holder.node.as_deref() == Some(here),
            remote: true,
            ..Lease::new(holder, None)
        });
        drop(slot);
        self.control_changed(holder, reason.to_owned());
    }

    /// Drop the copy of another node's lease: the train went offline here.
    pub(super) fn control_forget_remote(&self, why: &str) {
        let mut slot = self.control.lock();
        if slot.as_ref().is_some_and(|l| l.remote) {
            *slot = None;
            drop(slot);
            self.control_changed(None, why.to_owned());
        }
    }

    /// The train connected here while another node held its lease (that node may be dead: the
    /// train failed over): the lease ends here, at the watchdog's next tick, which tells the
    /// train `operator_lost` through this node (the old node, if alive, ends its own too, and
    /// its message finds the train told: [`Stream::control_lost_elsewhere`]).
    pub(super) fn control_end_remote(&self, why: String) {
        // What this node told the train about an earlier move is no answer to a later one's
        // message: better told twice than not at all.
        self.control.told_moved().take();
        let mut slot = self.control.lock();
        if let Some(l) = slot.as_mut().filter(|l| l.remote) {
            // No session here matches it any more: its holder was another node's, or took it
            // through the node the train has left.
            l.remote = false;
            l.via = Some(l.holder.node.clone().unwrap_or_default());
            l.ending = Some(why);
            l.moved = true;
        }
    }

    /// Who controls the train now (a lease that is ending: nobody).
    pub fn control_holder(&self) -> Option<ControlHolder> {
        self.control.lock().as_ref().filter(|l| l.ending.is_none()).map(|l| l.holder.clone())
    }

    /// Take control for `holder`, a session of this node (see [`Taken`]); `force`: an admin
    /// takes it from another holder.
    pub fn take_control(&self, holder: ControlHolder, force: bool) -> Result<Taken, Held> {
        self.take_control_for(None, holder, force)
    }

    /// Take control for `holder`, a session of `via` (another node of the cluster; `None`: this
    /// one). The same console's other link resumes the lease whatever its node.
    pub fn take_control_for(&self, via: Option<&str>, holder: ControlHolder, force: bool) -> Result<Taken, Held> {
        let mut slot = self.control.lock();
        let now = Instant::now();
        // A copy of another node's lease is not held here (the relay forwards on a mirror); a
        // lease that is ending is free (someone controls the train again: nobody is lost).
        if slot.as_ref().is_some_and(|l| l.remote || l.ending.is_some()) {
            *slot = None;
        }
        let outcome = match slot.as_ref() {
            None => Taken::Granted,
            Some(l) if l.holder.session == holder.session && l.via.as_deref() == via => {
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
            Some(l) => return Err(Held(Box::new(l.holder.clone()))),
        };
        let since_us = match (&outcome, slot.as_ref()) {
            (Taken::Resumed, Some(l)) => l.holder.since_us,
            _ => holder.since_us,
        };
        let holder = ControlHolder { since_us, ..holder };
        *slot = Some(Lease::new(holder.clone(), via.map(str::to_owned)));
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

    /// `node`'s session `session` gives control back (held here for it); false when it did not
    /// hold it.
    pub fn release_control_for(&self, node: &str, session: u64) -> bool {
        let mut slot = self.control.lock();
        if slot.as_ref().is_some_and(|l| l.of_node(node, session) && l.ending.is_none()) {
            *slot = None;
            drop(slot);
            self.control_changed(None, "released".into());
            true
        } else {
            false
        }
    }

    /// `node`'s session `session` is alive: refresh the lease held here for it.
    pub fn control_heartbeat_for(&self, node: &str, session: u64) {
        if let Some(l) = self.control.lock().as_mut().filter(|l| l.of_node(node, session)) {
            l.heartbeat = Instant::now();
        }
    }

    /// `node`'s session `session` ended (`why`: `None`), or must give the lease up now (`why`:
    /// its remote control was remapped away). A lease of its console waits for another link
    /// of that console, as for a session of this node; otherwise the watchdog ends it at its
    /// next tick and tells the train.
    pub fn control_ended_for(&self, node: &str, session: u64, why: Option<String>) {
        let mut slot = self.control.lock();
        let Some(l) = slot.as_mut().filter(|l| l.of_node(node, session)) else { return };
        match why {
            Some(why) => l.ending = Some(why),
            None if l.holder.console_id.is_some() => l.orphaned = true,
            None => l.ending = Some(format!("{}'s session ended", l.holder.name)),
        }
    }

    /// The node whose session holds the lease held here (`None`: nobody, or a session of this
    /// node, or a copy).
    pub fn control_via(&self) -> Option<String> {
        self.control.lock().as_ref().filter(|l| !l.remote && l.ending.is_none()).and_then(|l| l.via.clone())
    }

    /// Give control back; false when `session` did not hold it.
    pub fn release_control(&self, session: u64) -> bool {
        let mut slot = self.control.lock();
        if slot.as_ref().is_some_and(|l| l.here(session)) {
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
        if let Some(l) = self.control.lock().as_mut().filter(|l| l.here(session)) {
            l.heartbeat = Instant::now();
        }
    }

    /// Whether `session` holds the lease, or who does (`None`: nobody).
    pub fn control_check(&self, session: u64) -> Result<(), Option<Box<ControlHolder>>> {
        match self.control.lock().as_ref().filter(|l| l.ending.is_none()) {
            Some(l) if l.of(session) => Ok(()),
            Some(l) => Err(Some(Box::new(l.holder.clone()))),
            None => Err(None),
        }
    }

    /// `session` ended. A lease of its console waits for another link of that console (the
    /// watchdog ends it at the heartbeat timeout); any other lease of it ends now: returned, for
    /// the caller to tell the train.
    pub fn control_session_ended(&self, session: u64) -> Option<ControlHolder> {
        let mut slot = self.control.lock();
        let l = slot.as_mut().filter(|l| l.here(session))?;
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
        self.control_end_if(|l| l.here(session).then(|| why.to_owned())).map(|(holder, _)| holder)
    }

    /// End the lease held here, whoever holds it (not a copy of another node's): returned with
    /// `why()` (made only then), for the caller to tell the train.
    pub fn control_end_local(&self, why: impl FnOnce() -> String) -> Option<(ControlHolder, String)> {
        self.control_end_if(|l| (!l.remote).then(why))
    }

    /// End the lease if its holder has been silent for `timeout`, or another node said its
    /// session ended: returned, with why, for the caller to tell the train.
    pub fn control_expire(&self, timeout: Duration, now: Instant) -> Option<(ControlHolder, String)> {
        self.control_end_if(|l| {
            if l.remote {
                return None;
            }
            if let Some(why) = &l.ending {
                return Some(why.clone());
            }
            (now.saturating_duration_since(l.heartbeat) >= timeout).then(|| {
                if l.orphaned {
                    format!("{}'s session ended and no other link of the console took over", l.holder.name)
                } else {
                    format!("nothing from {} for {} ms", l.holder.name, timeout.as_millis())
                }
            })
        })
    }

    /// Another node is telling the train that `operator`'s lease there ended because the train
    /// moved here (its `operator_lost`, `why`): whether this node told the train already, so
    /// that the train gets one `operator_lost` for one move. A lease of `operator` this node has
    /// yet to end for that move ends now, for the other node's message to be the one told.
    pub fn control_lost_elsewhere(&self, operator: &str, why: &str) -> bool {
        let ended = self.control_end_if(|l| (l.moved && l.holder.name == operator).then(|| why.to_owned()));
        let mut told = self.control.told_moved();
        if ended.is_some() {
            *told = None;
            return false;
        }
        if told.as_deref() == Some(operator) {
            *told = None;
            return true;
        }
        false
    }

    /// End the lease when `ends` gives a reason for it: the holder and the reason, and the
    /// sessions are told `operator lost: <reason>`.
    fn control_end_if(&self, ends: impl FnOnce(&Lease) -> Option<String>) -> Option<(ControlHolder, String)> {
        let mut slot = self.control.lock();
        let why = ends(slot.as_ref()?)?;
        let lease = slot.take()?;
        let holder = lease.holder;
        if lease.moved {
            *self.control.told_moved() = Some(holder.name.clone());
        }
        drop(slot);
        self.control_changed(None, format!("operator lost: {why}"));
        Some((holder, why))
    }
}

/// An operator "alice" on a WebSocket session `session`, for tests.
#[cfg(test)]
pub(crate) fn test_holder(session: u64) -> ControlHolder {
    ControlHolder {
        name: "alice".into(),
        role: "operator".into(),
        session,
        transport: "websocket".into(),
        console_id: None,
        since_us: 1,
        node: None,
    }
}

#[cfg(test)]
mod tests {
    use railcast_protocol::TrainId;

    use super::test_holder as holder;
    use super::*;
    use crate::hub::HubConfig;

    #[test]
    fn a_copy_of_another_nodes_lease_is_shown_but_never_held_here() {
        let stream = Stream::new(TrainId::new("t").expect("id"), HubConfig::default(), Arc::default());
        let mut events = stream.events.subscribe();
        stream.control_mirror(Some(holder(9)), "taken", "here");
        assert!(
            matches!(events.try_recv(), Ok(TrainEvent::Control { holder: Some(h), reason }) if h.session == 9 && reason == "taken")
        );
        stream.control_mirror(Some(holder(9)), "taken", "here");
        assert!(events.try_recv().is_err(), "the same holder again: no event");
        assert_eq!(stream.control_holder().map(|h| h.session), Some(9));
        // Session 9 of this node is not the owner's session 9.
        assert_eq!(stream.control_check(9), Err(Some(Box::new(holder(9)))));
        assert!(!stream.release_control(9));
        assert_eq!(stream.control_session_ended(9), None);
        assert_eq!(stream.control_end(9, "remapped"), None);
        // The watchdog leaves it alone: the owner's watchdog ends the real one.
        let later = Instant::now() + Duration::from_secs(60);
        assert!(stream.control_expire(Duration::from_secs(1), later).is_none());
        assert_eq!(stream.control_end_local(|| "moved".into()), None);
        assert_eq!(stream.control_announced(), (None, "taken".to_owned()));
        stream.control_mirror(None, "released", "here");
        assert!(matches!(events.try_recv(), Ok(TrainEvent::Control { holder: None, reason }) if reason == "released"));

        // A lease held here is not overwritten by an announcement (the watchdog ends it first).
        stream.take_control(holder(4), false).expect("granted");
        stream.control_mirror(Some(holder(9)), "taken", "here");
        assert_eq!(stream.control_holder().map(|h| h.session), Some(4));
        assert_eq!(stream.control_end_local(|| "moved".into()).map(|(h, _)| h.session), Some(4));
    }

    #[test]
    fn a_lease_held_here_for_another_nodes_session_ends_when_that_node_says() {
        let stream = Stream::new(TrainId::new("t").expect("id"), HubConfig::default(), Arc::default());
        let timeout = Duration::from_secs(1);
        // Node b's session 5 holds it: this node's session 5 does not.
        assert_eq!(stream.take_control_for(Some("b"), holder(5), false).expect("granted"), Taken::Granted);
        assert_eq!(stream.take_control_for(Some("b"), holder(5), false).expect("again"), Taken::AlreadyHeld);
        assert_eq!(stream.control_via().as_deref(), Some("b"));
        assert!(stream.control_check(5).is_err());
        assert!(!stream.release_control(5));
        assert_eq!(stream.control_session_ended(5), None);
        assert!(!stream.release_control_for("c", 5));
        // Its heartbeats keep it; silence ends it.
        let later = Instant::now() + Duration::from_millis(800);
        stream.control_heartbeat_for("b", 5);
        assert!(stream.control_expire(timeout, later).is_none());
        assert!(stream.control_expire(timeout, later + timeout).is_some_and(|(h, _)| h.session == 5));

        // Its session ended: the watchdog ends the lease at once (the train is told by it).
        stream.take_control_for(Some("b"), holder(6), false).expect("granted");
        stream.control_ended_for("c", 6, None);
        assert!(stream.control_expire(timeout, Instant::now()).is_none(), "another node's session 6");
        stream.control_ended_for("b", 6, None);
        assert_eq!(stream.control_via(), None, "ending");
        let (h, why) = stream.control_expire(timeout, Instant::now()).expect("ended");
        assert_eq!((h.session, why.as_str()), (6, "alice's session ended"));

        // A console's lease waits for another link of it, on any node.
        let console = |session| ControlHolder { console_id: Some("tab".into()), ..holder(session) };
        stream.take_control_for(Some("b"), console(7), false).expect("granted");
        stream.control_ended_for("b", 7, None);
        assert!(stream.control_expire(timeout, Instant::now()).is_none(), "orphaned, waiting");
        assert_eq!(stream.take_control(console(2), false).expect("resumed here"), Taken::Resumed);
        assert!(stream.control_check(2).is_ok());
        assert!(stream.release_control(2));

        // Remapped away: ends now with the reason given.
        stream.take_control_for(Some("b"), holder(8), false).expect("granted");
        stream.control_ended_for("b", 8, Some("remapped".into()));
        assert_eq!(stream.control_expire(timeout, Instant::now()).map(|(_, why)| why).as_deref(), Some("remapped"));
    }

    #[test]
    fn a_train_that_moved_here_is_told_once_whichever_node_tells_first() {
        let stream = Stream::new(TrainId::new("t").expect("id"), HubConfig::default(), Arc::default());
        let timeout = Duration::from_secs(1);
        let on_a = || ControlHolder { node: Some("a".into()), ..holder(4) };
        let now = Instant::now;

        // This node tells first (its watchdog); the old node's message then finds it told.
        stream.control_mirror(Some(on_a()), "taken", "b");
        stream.control_end_remote("train t connected to this node".into());
        assert!(stream.control_expire(timeout, now()).is_some_and(|(h, _)| h.name == "alice"));
        assert!(!stream.control_lost_elsewhere("bob", "moved"), "another operator's lease");
        assert!(stream.control_lost_elsewhere("alice", "moved"), "told already");
        assert!(!stream.control_lost_elsewhere("alice", "moved"), "only the one message of the move");

        // The old node's message comes first: it ends the lease here, and the watchdog has
        // nothing more to tell.
        let mut events = stream.events.subscribe();
        stream.control_mirror(Some(on_a()), "taken", "b");
        stream.control_end_remote("train t connected to this node".into());
        assert!(!stream.control_lost_elsewhere("alice", "t moved to another node"), "to be told now");
        let reason = |e| matches!(e, Ok(TrainEvent::Control { holder: None, reason }) if reason == "operator lost: t moved to another node");
        assert!(matches!(events.try_recv(), Ok(TrainEvent::Control { holder: Some(_), .. })));
        assert!(reason(events.try_recv()));
        assert!(stream.control_expire(timeout, now()).is_none());
        assert!(!stream.control_lost_elsewhere("alice", "moved"));

        // Told here, and the train connected here again before the old node's message came:
        // that message passes (the record belongs to the earlier connection).
        stream.control_mirror(Some(on_a()), "taken", "b");
        stream.control_end_remote("train t connected to this node".into());
        assert!(stream.control_expire(timeout, now()).is_some());
        stream.control_end_remote("train t connected to this node".into());
        assert!(!stream.control_lost_elsewhere("alice", "moved"));

        // A lease that ended otherwise leaves another node's message alone.
        stream.take_control(holder(5), false).expect("granted");
        assert!(stream.control_end_local(|| "moved".into()).is_some());
        assert!(!stream.control_lost_elsewhere("alice", "moved"));
    }

    #[test]
    fn a_copy_of_a_lease_held_for_a_session_of_this_node_is_that_sessions() {
        let stream = Stream::new(TrainId::new("t").expect("id"), HubConfig::default(), Arc::default());
        let on = |node: &str| ControlHolder { node: Some(node.into()), ..holder(4) };
        stream.control_mirror(Some(on("a")), "taken", "b");
        assert!(stream.control_check(4).is_err(), "session 4 of node a");
        stream.control_mirror(Some(on("b")), "taken", "b");
        assert!(stream.control_check(4).is_ok());
        assert!(stream.control_check(3).is_err());
        // Given back through the owner, not here.
        assert!(!stream.release_control(4));
        assert_eq!(stream.control_session_ended(4), None);
        assert!(stream.control_expire(Duration::from_secs(1), Instant::now() + Duration::from_secs(9)).is_none());
    }
}
