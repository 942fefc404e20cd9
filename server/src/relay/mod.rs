//! What every transport does for a client, whatever carries the bytes: one place instead of one
//! copy per transport.
//!
//! A transport accepts a connection, then opens a [`Relay`] for it. The relay registers the
//! session, follows the remote control's mapping ([`Follower`]), says welcome, parses and admits
//! the client's messages, runs its commands and hands back their answers, and says why the
//! session must end. The transport keeps only its own I/O loop and back-pressure: it waits on
//! [`Relay::next`] (video and train events while it has room for them, command answers, the end)
//! beside its socket, and feeds the client's text to [`Relay::on_text`].
//!
//! Dependencies: transports → relay → hub; the relay knows no transport.

mod admit;
mod follow;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use railcast_protocol::client::{ClientMessage, ServerEvent};
use tokio::sync::{mpsc, watch};

pub use admit::{parse, Admission};
pub use follow::{watch_credentials, Follower, Item};

use crate::auth::Principal;
use crate::core::Core;
use crate::hub::Packet;
use crate::remote::RemoteControl;
use crate::sessions::{ClientSession, Registration};

/// Command answers waiting for the transport, per session.
const ANSWERS: usize = 64;

/// Where command tasks leave their answers. Made on the session's first command: an idle session
/// (most of them) keeps no channel, whose first block holds 32 events.
type Answers = Option<(mpsc::Sender<ServerEvent>, mpsc::Receiver<ServerEvent>)>;

/// Why a session must end, with the `closing` event the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The remote control was deleted.
    Deleted(String),
    /// The credential that opened the session was revoked or changed.
    Revoked(String),
    /// The server is shutting down.
    Shutdown,
}

/// The close codes of the transports that close with one (WebSocket, WebTransport): the same
/// numbers on both (docs/wire-format.md §4).
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const TOO_BIG: u16 = 1009;
    /// Application code: the remote control was deleted.
    pub const DELETED: u16 = 4001;
    /// Application code: the token that opened the session is no longer in force (revoked, or
    /// its name or role changed by a credentials reload).
    pub const REVOKED: u16 = 4003;
}

impl End {
    /// The close code that goes with this end.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Deleted(_) => close_code::DELETED,
            Self::Revoked(_) => close_code::REVOKED,
            Self::Shutdown => close_code::GOING_AWAY,
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Self::Deleted(r) | Self::Revoked(r) => r.clone(),
            Self::Shutdown => "server shutting down".into(),
        }
    }

    /// The last event the client gets.
    pub fn closing(&self) -> ServerEvent {
        ServerEvent::Closing { reason: self.reason() }
    }
}

/// The next thing a session must send, or its end.
#[derive(Debug)]
pub enum Next {
    Packet(Packet),
    /// A train event or a change of mapping.
    Event(ServerEvent),
    /// The answer of a command in flight (its ack, or why it failed).
    Answer(ServerEvent),
    End(End),
}

/// One client session's relay logic (see the module docs).
#[derive(Debug)]
pub struct Relay {
    core: Core,
    rc: Arc<RemoteControl>,
    transport: &'static str,
    registration: Registration,
    follower: Follower,
    admission: Admission,
    answers: Answers,
    shutdown: watch::Receiver<bool>,
}

impl Relay {
    /// Register a session of `principal` for `rc` over `transport` (its name in the API and
    /// metrics) from `peer`, and follow the mapping. Returns the relay and the two events every
    /// session starts with: `welcome`, then the current mapping.
    pub fn open(
        core: &Core,
        rc: Arc<RemoteControl>,
        principal: Principal,
        transport: &'static str,
        peer: String,
    ) -> (Self, [ServerEvent; 2]) {
        let registration = core.sessions.register(&rc.id, principal.clone(), transport, peer);
        let (follower, mapping) = Follower::new(core, &rc, Arc::clone(&registration.info));
        let welcome = ServerEvent::Welcome {
            remote_control_id: rc.id.clone(),
            transport: transport.into(),
            train_id: follower.train().cloned(),
            server_time_us: crate::now_us(),
            // What the hub accepts from trains, so the most a client is ever sent.
            max_payload: core.hub.config().max_payload as u32,
        };
        let relay = Self {
            admission: Admission::new(&core.limits, principal),
            core: core.clone(),
            rc,
            transport,
            registration,
            follower,
            answers: None,
            shutdown: core.shutdown.clone(),
        };
        (relay, [welcome, mapping])
    }

    /// The session as the registry shows it (counters to update).
    pub fn info(&self) -> &Arc<ClientSession> {
        &self.registration.info
    }

    /// Count one event handed to the transport.
    pub fn event_sent(&self) {
        self.info().events_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The next thing to send, or the end of the session (deleted, revoked, shutting down).
    /// With `video` false (the transport has no room for more now), packets and train events
    /// wait in the hub; command answers and the end still come. Cancel-safe.
    pub async fn next(&mut self, video: bool) -> Next {
        let answers = self.answers.as_mut().map(|(_, rx)| rx);
        tokio::select! {
            item = self.follower.next(), if video => match item {
                Item::Packet(p) => Next::Packet(p),
                Item::Event(ev) => Next::Event(ev),
                Item::Closed(reason) => Next::End(End::Deleted(reason)),
                Item::Revoked(reason) => {
                    let info = &self.registration.info;
                    tracing::info!(session = info.id, transport = self.transport, principal = %info.principal.name, "credential revoked: closing the session");
                    Next::End(End::Revoked(reason))
                }
            },
            // The relay holds a sender: `None` never comes.
            Some(ev) = recv(answers) => Next::Answer(ev),
            _ = crate::stopped(&mut self.shutdown) => Next::End(End::Shutdown),
        }
    }

    /// Move up to `max` packets already queued to `out`, without waiting; returns how many.
    pub fn drain_packets(&mut self, out: &mut impl Extend<Packet>, max: usize) -> usize {
        self.follower.drain_packets(out, max)
    }

    /// An answer already waiting, if any.
    pub fn try_answer(&mut self) -> Option<ServerEvent> {
        self.answers.as_mut().and_then(|(_, rx)| rx.try_recv().ok())
    }

    /// Handle one JSON text message from the client: parse it, admit it, run it. Returns the
    /// reply to send now (a pong, an error, a refusal), or `None` for an admitted command, whose
    /// answer comes from [`Relay::answer`] once the train has acked it.
    pub async fn on_text(&mut self, text: &str) -> Option<ServerEvent> {
        let msg = match parse(text) {
            Ok(m) => m,
            Err(refusal) => return Some(refusal),
        };
        if let ClientMessage::Command { request_id, command: action } = &msg {
            self.info().commands.fetch_add(1, Ordering::Relaxed);
            let at_us = crate::now_us();
            let audit = Audited {
                at_us,
                session: Arc::clone(self.info()),
                train: self.rc.train().map(|t| t.to_string()),
                request_id: request_id.clone(),
                command: serde_json::to_value(action).unwrap_or_default(),
            };
            let permit = match self.admission.admit_command(request_id, action) {
                Ok(p) => p,
                Err(refusal) => {
                    self.core.audit.record(audit.entry(&refusal));
                    return Some(refusal);
                }
            };
            let out = self.answers.get_or_insert_with(|| mpsc::channel(ANSWERS)).0.clone();
            let (core, rc) = (self.core.clone(), Arc::clone(&self.rc));
            tokio::spawn(async move {
                let ev = answer(&core, &rc, msg).await;
                core.audit.record(audit.entry(&ev));
                let _ = out.send(ev).await;
                drop(permit);
            });
            None
        } else {
            Some(answer(&self.core, &self.rc, msg).await)
        }
    }
}

/// What the audit needs of a command, taken when it arrives.
struct Audited {
    at_us: u64,
    session: Arc<ClientSession>,
    train: Option<String>,
    request_id: String,
    command: serde_json::Value,
}

impl Audited {
    /// The audit entry of this command, ended by `outcome` (its ack, or why it failed or was
    /// refused).
    fn entry(self, outcome: &ServerEvent) -> crate::audit::Entry {
        let (result, ok, code, message, command_id, rtt_us) = match outcome {
            ServerEvent::CommandAck { command_id, ok, message, train_rtt_us, .. } => {
                ("acked", Some(*ok), None, message.clone(), Some(*command_id), Some(*train_rtt_us))
            }
            ServerEvent::CommandError { code, message, .. } => {
                // Sent to the train and not answered, or refused before it.
                let sent = matches!(code.as_str(), "command_timeout" | "train_lost");
                (if sent { "failed" } else { "refused" }, None, Some(code.clone()), message.clone(), None, None)
            }
            other => ("refused", None, Some("unexpected".into()), format!("{other:?}"), None, None),
        };
        let s = &self.session;
        crate::audit::Entry {
            seq: 0,
            at_us: self.at_us,
            principal: s.principal.name.clone(),
            role: s.principal.role.name().into(),
            remote_control_id: s.remote_control_id.clone(),
            session: s.id,
            transport: s.transport.into(),
            train_id: self.train,
            request_id: self.request_id,
            command: self.command,
            result: result.into(),
            ok,
            code,
            message,
            command_id,
            rtt_us,
        }
    }
}

/// The next event on `rx`; pending forever without one.
async fn recv(rx: Option<&mut mpsc::Receiver<ServerEvent>>) -> Option<ServerEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Answer one client message. Commands go to the remote control's mapped train.
async fn answer(core: &Core, rc: &RemoteControl, msg: ClientMessage) -> ServerEvent {
    match msg {
        ClientMessage::Ping { t } => ServerEvent::Pong { t, server_time_us: crate::now_us() },
        ClientMessage::Command { request_id, command } => {
            let Some(train) = rc.train() else {
                return ServerEvent::CommandError {
                    request_id,
                    code: "not_mapped".into(),
                    message: "this remote control is not mapped to a train".into(),
                };
            };
            match core.hub.command(&train, command).await {
                Ok(out) => ServerEvent::CommandAck {
                    request_id,
                    command_id: out.command_id,
                    ok: out.ack.ok,
                    message: out.ack.message,
                    train_rtt_us: out.rtt.as_micros() as u64,
                },
                Err(e) => ServerEvent::CommandError { request_id, code: e.code().into(), message: e.to_string() },
            }
        }
    }
}
