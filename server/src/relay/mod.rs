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

use railcast_protocol::client::{ClientMessage, ControlHolder, ServerEvent};
use railcast_protocol::{Action, TrainId};
use tokio::sync::{mpsc, watch};

pub use admit::{parse, Admission};
pub use follow::{watch_credentials, Follower, Item};

use crate::auth::{Principal, Role};
use crate::cluster::wire::{ControlOp, ControlReply, TakenHow};
use crate::core::Core;
use crate::hub::{Held, Packet, Stream, Taken};
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
    /// The train whose control lease this session took (it may hold it still).
    controlled: Option<TrainId>,
    /// When this session's heartbeat was last sent to the node that holds its lease (a train
    /// of another node of the cluster).
    heartbeat_sent: Option<std::time::Instant>,
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
            controlled: None,
            heartbeat_sent: None,
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
                Item::Event(ev) => {
                    if let ServerEvent::MappedTrainChanged { train_id, .. } = &ev {
                        self.left_train(train_id.as_ref());
                    }
                    Next::Event(ev)
                }
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
        // Any message is the session's heartbeat for the lease it may hold.
        let stream = self.rc.train().and_then(|t| self.core.hub.stream(&t));
        if let Some(stream) = self.controlled.as_ref().and_then(|t| self.core.hub.stream(t)) {
            self.heartbeat(&stream);
        }
        if matches!(msg, ClientMessage::TakeControl { .. } | ClientMessage::ReleaseControl) {
            // Audited like a command: refused (the error), or done (the lease's change).
            let audit = self.audited("", serde_json::to_value(&msg).unwrap_or_default());
            let answer = match &msg {
                ClientMessage::TakeControl { console_id, force } => {
                    self.take_control(stream.as_deref(), console_id.clone(), *force).await
                }
                _ => self.release_control(stream.as_deref()).await,
            };
            self.controlled =
                stream.as_deref().filter(|s| s.control_check(self.info().id).is_ok()).map(|s| s.train_id().clone());
            let done = stream.as_deref().map(|s| ServerEvent::ControlChanged {
                train_id: s.train_id().clone(),
                holder: s.control_holder().map(Box::new),
                reason: s.control_reason(),
            });
            if let Some(outcome) = answer.as_ref().or(done.as_ref()) {
                self.core.audit.record(audit.entry(outcome));
            }
            return answer;
        }
        if let ClientMessage::Command { request_id, command: action } = &msg {
            self.info().commands.fetch_add(1, Ordering::Relaxed);
            let audit = self.audited(request_id, serde_json::to_value(action).unwrap_or_default());
            let admitted = self
                .admission
                .admit_command(request_id, action)
                .and_then(|permit| self.in_control(stream.as_deref(), request_id, action).map(|()| permit));
            let permit = match admitted {
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

impl Relay {
    /// What the audit needs of a client message (a command, or a control message), taken now.
    fn audited(&self, request_id: &str, command: serde_json::Value) -> Audited {
        let info = self.info();
        Audited {
            at_us: crate::now_us(),
            principal: info.principal.name.clone(),
            role: info.principal.role.name().into(),
            remote_control_id: info.remote_control_id.clone(),
            session: info.id,
            transport: info.transport.into(),
            train: self.rc.train().map(|t| t.to_string()),
            request_id: request_id.to_owned(),
            command,
        }
    }

    /// The holder as this session would be.
    fn holder(&self, console_id: Option<String>) -> ControlHolder {
        let info = self.info();
        ControlHolder {
            name: info.principal.name.clone(),
            role: info.principal.role.name().into(),
            session: info.id,
            transport: self.transport.into(),
            console_id,
            since_us: crate::now_us(),
            node: self.core.cluster.as_ref().map(|c| c.node().to_owned()),
        }
    }

    /// `take_control`: the answer to send now (a refusal, or the lease this session holds
    /// already); `None` when the change is told to every session of the train (this one too).
    /// A train of another node of the cluster: that node holds the lease, and takes it for
    /// this session.
    async fn take_control(
        &mut self,
        stream: Option<&Stream>,
        console_id: Option<String>,
        force: bool,
    ) -> Option<ServerEvent> {
        let refuse = |code: &str, message: String| Some(ServerEvent::Error { code: code.into(), message });
        let principal = &self.info().principal;
        if principal.role < Role::Operator {
            return refuse(
                "forbidden",
                format!("{} is a viewer: only operators and admins take control", principal.name),
            );
        }
        if force && principal.role < Role::Admin {
            return refuse("forbidden", "only an admin may take control over from another holder".into());
        }
        let Some(stream) = stream else {
            return refuse("not_mapped", "this remote control is not mapped to a known train".into());
        };
        let held = |h: ControlHolder| {
            refuse(
                "control_held",
                format!("{} ({}) controls {} (an admin may take over with force)", h.name, h.role, stream.train_id()),
            )
        };
        let already = |holder: Option<ControlHolder>| {
            Some(ServerEvent::ControlChanged {
                train_id: stream.train_id().clone(),
                holder: holder.map(Box::new),
                reason: "held".into(),
            })
        };
        if let Some(cluster) = self.core.cluster.as_ref().filter(|_| stream.mirrored()) {
            let op = ControlOp::Take { holder: self.holder(console_id), force };
            return match cluster.control(stream.train_id(), op).await {
                Ok(ControlReply::Taken { taken, holder }) => {
                    tracing::info!(session = self.info().id, train = %stream.train_id(), principal = %holder.name, ?taken, "control taken through the train's node");
                    self.heartbeat_sent = Some(std::time::Instant::now());
                    // Shown here now; the owner's presence brings the same lease.
                    let reason = match (taken, stream.control_holder()) {
                        (TakenHow::AlreadyHeld, _) => return already(Some(holder)),
                        (TakenHow::Granted, _) => "taken".to_owned(),
                        (TakenHow::Resumed, _) => "resumed".to_owned(),
                        (TakenHow::TakenOver, Some(prev)) => {
                            format!("taken over by {} from {}", holder.name, prev.name)
                        }
                        (TakenHow::TakenOver, None) => format!("taken over by {}", holder.name),
                    };
                    stream.control_mirror(Some(holder), &reason, cluster.node());
                    None
                }
                Ok(ControlReply::Held { holder }) => held(holder),
                Ok(ControlReply::Released { .. }) => {
                    refuse("control_unavailable", "the train's node answered amiss".into())
                }
                Err(e) => refuse("control_unavailable", e.to_string()),
            };
        }
        match stream.take_control(self.holder(console_id), force) {
            Ok(Taken::AlreadyHeld) => already(stream.control_holder()),
            Ok(taken) => {
                tracing::info!(session = self.info().id, train = %stream.train_id(), principal = %principal.name, ?taken, "control taken");
                None
            }
            Err(Held(h)) => held(*h),
        }
    }

    /// `release_control` (through the train's node, for a train of another node of the cluster).
    async fn release_control(&self, stream: Option<&Stream>) -> Option<ServerEvent> {
        let not_held = || {
            Some(ServerEvent::Error {
                code: "not_in_control".into(),
                message: "this session does not control its train".into(),
            })
        };
        let session = self.info().id;
        match stream {
            Some(s) if s.mirrored() && s.control_check(session).is_ok() => {
                let Some(cluster) = self.core.cluster.as_ref() else { return not_held() };
                let op = ControlOp::Release { session };
                match cluster.control(s.train_id(), op).await {
                    Ok(ControlReply::Released { ok: true }) => {
                        tracing::info!(session, train = %s.train_id(), "control released through the train's node");
                        s.control_mirror(None, "released", cluster.node());
                        None
                    }
                    Ok(_) => not_held(),
                    Err(e) => Some(ServerEvent::Error { code: "control_unavailable".into(), message: e.to_string() }),
                }
            }
            Some(s) if s.release_control(session) => {
                tracing::info!(session, train = %s.train_id(), "control released");
                None
            }
            _ => not_held(),
        }
    }

    /// Any message from this session keeps the lease it holds; for a train of another node of
    /// the cluster, that node is told at most every quarter of the heartbeat timeout.
    fn heartbeat(&mut self, stream: &Stream) {
        let session = self.info().id;
        let Some(cluster) = self.core.cluster.as_ref().filter(|_| stream.mirrored()) else {
            return stream.control_heartbeat(session);
        };
        let every = self.core.limits.control_heartbeat_timeout / 4;
        if stream.control_check(session).is_ok() && self.heartbeat_sent.is_none_or(|t| t.elapsed() >= every) {
            self.heartbeat_sent = Some(std::time::Instant::now());
            cluster.control_notify(stream.train_id(), ControlOp::Heartbeat { session });
        }
    }

    /// This session's lease on a train of another node of the cluster ends (`why`: now, its
    /// remote control was remapped; `None`: the session ended): tell that node, which tells the
    /// train. True when the train is another node's.
    fn end_elsewhere(&self, stream: &Stream, why: Option<String>) -> bool {
        let Some(cluster) = self.core.cluster.as_ref().filter(|_| stream.mirrored()) else { return false };
        let session = self.info().id;
        if stream.control_check(session).is_ok() {
            cluster.control_notify(stream.train_id(), ControlOp::Ended { session, why });
        }
        true
    }

    /// May this session command its train? The lease's holder may; with nobody holding it,
    /// anyone may unless `control_required`. A keyframe request never needs it. For a train
    /// connected to another node of a cluster, that node holds the lease and checks again (a
    /// command from a session of this node runs there while a session of this node holds it).
    fn in_control(&self, stream: Option<&Stream>, request_id: &str, action: &Action) -> Result<(), ServerEvent> {
        if matches!(action, Action::RequestKeyframe { .. }) {
            return Ok(());
        }
        let Some(stream) = stream else { return Ok(()) };
        let refuse = |message: String| ServerEvent::CommandError {
            request_id: request_id.to_owned(),
            code: "not_in_control".into(),
            message,
        };
        match stream.control_check(self.info().id) {
            Ok(()) => Ok(()),
            Err(Some(h)) => Err(refuse(format!("{} ({}) controls {}", h.name, h.role, stream.train_id()))),
            Err(None) if self.core.limits.control_required => {
                Err(refuse(format!("nobody controls {}: send take_control first", stream.train_id())))
            }
            Err(None) => Ok(()),
        }
    }
}

impl Relay {
    /// The remote control now follows `train`: a lease this session held on another train ends
    /// now (the operator no longer sees it), and that train is told.
    fn left_train(&mut self, train: Option<&TrainId>) {
        let Some(old) = self.controlled.clone().filter(|old| Some(old) != train) else { return };
        self.controlled = None;
        let Some(stream) = self.core.hub.stream(&old) else { return };
        let why = format!("{}'s remote control was remapped away from {old}", self.info().principal.name);
        if self.end_elsewhere(&stream, Some(why.clone())) {
            return;
        }
        if let Some(holder) = stream.control_end(self.info().id, &why) {
            tell_operator_lost(&self.core, old, holder, why);
        }
    }
}

impl Drop for Relay {
    /// The session ends: a lease it held ends too (or waits for another link of its console).
    fn drop(&mut self) {
        let Some(train) = self.controlled.clone() else { return };
        let Some(stream) = self.core.hub.stream(&train) else { return };
        if self.end_elsewhere(&stream, None) {
            return;
        }
        if let Some(holder) = stream.control_session_ended(self.info().id) {
            let why = format!("{}'s session ended", holder.name);
            tell_operator_lost(&self.core, train, holder, why);
        }
    }
}

/// Send `operator_lost` to `train` (the holder is gone): logged and audited.
pub fn tell_operator_lost(core: &Core, train: TrainId, holder: ControlHolder, why: String) {
    let core = core.clone();
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        tracing::warn!(train = %train, operator = %holder.name, "operator lost ({why}): telling the train");
        let action = Action::OperatorLost { operator: holder.name.clone(), reason: why.clone() };
        let audit = Audited {
            at_us: crate::now_us(),
            principal: "railcast".into(),
            role: "server".into(),
            remote_control_id: String::new(),
            session: holder.session,
            transport: holder.transport.clone(),
            train: Some(train.to_string()),
            request_id: String::new(),
            command: serde_json::to_value(&action).unwrap_or_default(),
        };
        let result = core.hub.command(&train, action).await;
        match &result {
            Ok(out) => {
                tracing::info!(train = %train, rtt_ms = out.rtt.as_secs_f64() * 1000.0, "operator_lost acked: {}", out.ack.message)
            }
            Err(e) => tracing::warn!(train = %train, "operator_lost not delivered: {e}"),
        }
        core.audit.record(audit.entry(&outcome_event(String::new(), result)));
    });
}

/// The watchdog: every 50 ms, end the leases whose holder fell silent for
/// `control_heartbeat_timeout` (or whose console did not come back), and those of trains now
/// connected to another node of the cluster (the lease is held where the train is), and tell
/// their trains.
pub async fn watch_control(core: Core) {
    let timeout = core.limits.control_heartbeat_timeout;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = core.shutdown.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::stopped(&mut stop) => return,
        }
        let now = std::time::Instant::now();
        for stream in core.hub.streams() {
            if stream.mirrored() {
                let moved = || format!("{} moved to another node of the cluster", stream.train_id());
                if let Some((holder, why)) = stream.control_end_local(moved) {
                    tell_operator_lost(&core, stream.train_id().clone(), holder, why);
                }
            } else if let Some((holder, why)) = stream.control_expire(timeout, now) {
                tell_operator_lost(&core, stream.train_id().clone(), holder, why);
            }
        }
    }
}

/// What the audit needs of a command, taken when it arrives.
struct Audited {
    at_us: u64,
    principal: String,
    role: String,
    remote_control_id: String,
    session: u64,
    transport: String,
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
            // A control message: refused, or done (the lease's change, `held` when it was held).
            ServerEvent::Error { code, message } => ("refused", None, Some(code.clone()), message.clone(), None, None),
            ServerEvent::ControlChanged { reason, .. } => ("done", None, None, reason.clone(), None, None),
            other => ("refused", None, Some("unexpected".into()), format!("{other:?}"), None, None),
        };
        crate::audit::Entry {
            seq: 0,
            at_us: self.at_us,
            principal: self.principal,
            role: self.role,
            remote_control_id: self.remote_control_id,
            session: self.session,
            transport: self.transport,
            train_id: self.train,
            request_id: self.request_id,
            command: self.command,
            result: result.into(),
            ok,
            code,
            message,
            command_id,
            rtt_us,
            node: None,
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
        // Handled by `Relay::on_text` before it gets here.
        ClientMessage::TakeControl { .. } | ClientMessage::ReleaseControl => {
            ServerEvent::Error { code: "internal".into(), message: "control messages are handled by the relay".into() }
        }
        ClientMessage::Ping { t } => ServerEvent::Pong { t, server_time_us: crate::now_us() },
        ClientMessage::Command { request_id, command } => {
            let Some(train) = rc.train() else {
                return ServerEvent::CommandError {
                    request_id,
                    code: "not_mapped".into(),
                    message: "this remote control is not mapped to a train".into(),
                };
            };
            outcome_event(request_id, core.hub.command(&train, command).await)
        }
    }
}

/// The event that tells a command's outcome (the train's ack, or why it was not answered).
fn outcome_event(
    request_id: String,
    result: Result<crate::hub::CommandOutcome, crate::hub::CommandError>,
) -> ServerEvent {
    match result {
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
