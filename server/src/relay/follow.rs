//! [`Follower`] follows a remote control's mapping: it holds the hub subscription of the mapped
//! train, switches it when the mapping changes, and turns train events into [`ServerEvent`]s. It
//! also ends the session when the credential that opened it is revoked.

use std::sync::Arc;

use railcast_protocol::client::ServerEvent;
use railcast_protocol::TrainId;
use tokio::sync::watch;

use crate::auth::Principal;
use crate::core::Core;
use crate::hub::{Packet, SubItem, Subscription, TrainEvent};
use crate::remote::{Mapping, RemoteControl};
use crate::sessions::ClientSession;

/// The next thing a session must send.
#[derive(Debug)]
pub enum Item {
    Packet(Packet),
    Event(ServerEvent),
    /// The session must end (the remote control was deleted).
    Closed(String),
    /// The session must end: the token that opened it was removed from the credentials, or its
    /// name or role changed (a credentials reload).
    Revoked(String),
}

/// A remote control's view of the hub, following its mapping.
#[derive(Debug)]
pub struct Follower {
    app: Core,
    /// The session: whose token opened it, and the hub-side counters of its subscriptions.
    session: Arc<ClientSession>,
    /// The credentials revision last checked for the session's principal
    /// ([`crate::auth::Auth::revision`]).
    credentials_checked: u64,
    /// Set when the principal was already revoked as the session started.
    revoked: Option<String>,
    mapping: watch::Receiver<Mapping>,
    train: Option<TrainId>,
    sub: Option<Subscription>,
    /// An event owed before the next one from the train: who holds its control lease, for a
    /// session that just started following it (a lease taken earlier sends no event again).
    pending: Option<ServerEvent>,
}

impl Follower {
    /// Start following for `session`, whose principal's credential must stay in force; the
    /// returned event describes the initial mapping.
    pub fn new(app: &Core, rc: &RemoteControl, session: Arc<ClientSession>) -> (Self, ServerEvent) {
        let mut mapping = rc.watch();
        let train = mapping.borrow_and_update().train.clone();
        // A reload may have come between the token check of the request and now.
        let credentials_checked = app.auth.revision();
        let revoked = (!app.auth.in_force(&session.principal)).then(|| revoked_reason(&session.principal));
        let mut f = Self {
            app: app.clone(),
            session,
            credentials_checked,
            revoked,
            mapping,
            train: None,
            sub: None,
            pending: None,
        };
        f.follow(train);
        let ev = f.state_event();
        (f, ev)
    }

    pub fn train(&self) -> Option<&TrainId> {
        self.train.as_ref()
    }

    fn follow(&mut self, train: Option<TrainId>) {
        self.sub = None; // unsubscribe from the old train before anything of the new one is queued
        self.sub = train.as_ref().map(|t| self.app.hub.subscribe(t, Arc::clone(&self.session.hub)));
        // Read after subscribing: a lease taken from here on comes as an event anyway (at worst
        // the holder is told twice).
        self.pending = match (&train, self.sub.as_ref().and_then(|s| s.stream().control_holder())) {
            (Some(train_id), Some(holder)) => Some(ServerEvent::ControlChanged {
                train_id: train_id.clone(),
                holder: Some(Box::new(holder)),
                reason: "held".into(),
            }),
            _ => None,
        };
        self.train = train;
    }

    /// The current mapping as an event (also used to resynchronise after lost events).
    pub fn state_event(&self) -> ServerEvent {
        let (online, cameras, audio) = match &self.sub {
            Some(sub) => (sub.stream().is_online(), sub.stream().cameras(), sub.stream().audio()),
            None => (false, Vec::new(), Vec::new()),
        };
        ServerEvent::MappedTrainChanged { train_id: self.train.clone(), online, cameras, audio }
    }

    /// Move up to `max` packets already queued to `out`, without waiting (lets a transport
    /// batch its writes); returns how many.
    pub fn drain_packets(&mut self, out: &mut impl Extend<Packet>, max: usize) -> usize {
        self.sub.as_mut().map_or(0, |s| s.drain_packets(out, max))
    }

    /// Wait for the next packet, event or end. Cancel-safe: usable in `select!`.
    pub async fn next(&mut self) -> Item {
        if let Some(reason) = self.revoked.take() {
            return Item::Revoked(reason);
        }
        if let Some(ev) = self.pending.take() {
            return Item::Event(ev);
        }
        loop {
            let sub = self.sub.as_mut();
            tokio::select! {
                changed = self.mapping.changed() => {
                    let deleted = changed.is_err() || self.mapping.borrow().deleted;
                    if deleted {
                        return Item::Closed("remote control deleted".into());
                    }
                    // A credentials reload nudges every remote control's mapping (see
                    // `watch_credentials`): check the principal only then, so packets cost
                    // nothing more.
                    let revision = self.app.auth.revision();
                    if revision != self.credentials_checked {
                        self.credentials_checked = revision;
                        if !self.app.auth.in_force(&self.session.principal) {
                            return Item::Revoked(revoked_reason(&self.session.principal));
                        }
                    }
                    let train = self.mapping.borrow_and_update().train.clone();
                    if train != self.train {
                        self.follow(train);
                        return Item::Event(self.state_event());
                    }
                }
                item = next_of(sub) => match item {
                    SubItem::Packet(p) => return Item::Packet(p),
                    SubItem::Event(ev) => {
                        let Some(train_id) = self.train.clone() else { continue };
                        return Item::Event(match ev {
                            Ok(TrainEvent::Online { cameras, audio }) => ServerEvent::TrainOnline { train_id, cameras, audio },
                            Ok(TrainEvent::Offline { reason }) => ServerEvent::TrainOffline { train_id, reason },
                            Ok(TrainEvent::Telemetry(telemetry)) => ServerEvent::Telemetry { train_id, telemetry },
                            Ok(TrainEvent::Control { holder, reason }) => ServerEvent::ControlChanged { train_id, holder: holder.map(Box::new), reason },
                            // Events were lost: say where things stand now.
                            Err(_) => self.state_event(),
                        });
                    }
                },
            }
        }
    }
}

fn revoked_reason(principal: &Principal) -> String {
    format!("the credential of {} was revoked or changed (credentials reloaded)", principal.name)
}

/// After every credentials reload, wake every session (through its remote control's mapping) so
/// that each checks its principal is still in force. Runs until `auth` is gone.
pub async fn watch_credentials(auth: Arc<crate::auth::Auth>, remotes: Arc<crate::remote::RemoteControls>) {
    let mut changes = auth.changes();
    drop(auth);
    while changes.changed().await.is_ok() {
        for rc in remotes.list() {
            rc.nudge();
        }
    }
}

async fn next_of(sub: Option<&mut Subscription>) -> SubItem {
    let Some(sub) = sub else { return std::future::pending().await };
    sub.next().await
}
