//! The owner's part: announce the trains this node has through a real ingest, publish a train's
//! media while another node holds an interest lease on it, answer commands and keyframe requests.
//! A train's control lease is held here only: another node's session takes, keeps and gives it
//! back through `railcast.control.<train>`, and a command from another node runs while a
//! session of that node holds the lease, or while nobody holds it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_nats::{Client, Subject};
use futures_util::StreamExt;
use railcast_protocol::{Action, TrainId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::state::{self, Buckets};
use super::wire::{self, Announced, CommandReply, ControlOp, ControlReply, ControlRequest, Presence, TakenHow};
use super::{rejected, send, Claim, Claims, Settings, LEASE, METRICS, PRESENCE_INTERVAL};
use crate::hub::{Held, Hub, SubItem, SubscriberCounters, Taken, TrainEvent};

/// How often the owner looks for trains that connected here and claims them.
const CLAIM_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether this node has `train` through a real ingest (not a mirror of another node's).
fn owns(hub: &Hub, train: &TrainId) -> bool {
    hub.stream(train).is_some_and(|s| super::local_connection(&s).is_some())
}

/// What this node announces: its trains that it has claimed (for their current connection).
fn presence(hub: &Hub, node: &str, claims: &Claims) -> Presence {
    let claims = claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let trains = hub
        .streams()
        .into_iter()
        .filter_map(|s| {
            let connection = super::local_connection(&s)?;
            let claim = claims.get(s.train_id()).filter(|c| c.connection == connection)?;
            let snap = s.snapshot();
            let (control, control_reason) = s.control_announced();
            Some(Announced {
                train_id: snap.train_id,
                cameras: snap.cameras.into_iter().map(|c| c.info).collect(),
                audio: s.audio(),
                software: snap.software,
                epoch: claim.epoch,
                control,
                control_reason,
            })
        })
        .collect();
    Presence { node: node.to_owned(), trains }
}

/// Publish this node's presence.
async fn announce(hub: &Hub, client: &Client, node: &str, claims: &Claims) {
    if !send(client, wire::PRESENCE, wire::to_json(&presence(hub, node, claims))).await {
        tracing::debug!("cluster: presence not published (NATS unreachable)");
    }
}

/// Claim every train that connected to this node (each new connection anew) in the owners
/// bucket: the revision of the claim is the train's epoch, higher than every claim before it on
/// any node. A train is announced only once claimed.
pub async fn claim(hub: Hub, buckets: Buckets, node: String, claims: Claims, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CLAIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = bytes::Bytes::from(serde_json::to_vec(&wire::OwnerClaim { node: node.clone() }).expect("serialises"));
    let mut quiet = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let local: Vec<(TrainId, u64)> = hub
            .streams()
            .into_iter()
            .filter_map(|s| Some((s.train_id().clone(), super::local_connection(&s)?)))
            .collect();
        let unclaimed: Vec<(TrainId, u64)> = {
            let mut claims = claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            claims.retain(|t, _| local.iter().any(|(l, _)| l == t));
            local.into_iter().filter(|(t, c)| claims.get(t).is_none_or(|claim| claim.connection != *c)).collect()
        };
        if unclaimed.is_empty() {
            continue;
        }
        let store = match buckets.get(state::TRAINS).await {
            Ok(s) => s,
            Err(e) => {
                if !std::mem::replace(&mut quiet, true) {
                    tracing::warn!("cluster: cannot claim trains yet (they are not shared until then): {e}");
                }
                continue;
            }
        };
        for (train, connection) in unclaimed {
            let put = tokio::time::timeout(super::SEND_TIMEOUT, store.put(state::key_of(train.as_str()), body.clone()));
            match put.await {
                Ok(Ok(epoch)) => {
                    quiet = false;
                    tracing::info!(train = %train, epoch, "cluster: train claimed by this node");
                    claims
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(train, Claim { connection, epoch });
                }
                Ok(Err(e)) => tracing::debug!(train = %train, "cluster: claim failed: {e}"),
                Err(_) => tracing::debug!(train = %train, "cluster: claim timed out"),
            }
        }
    }
}

pub async fn run(
    hub: Hub,
    client: Client,
    buckets: Buckets,
    settings: Settings,
    claims: Claims,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(claim(hub.clone(), buckets, settings.node.clone(), Arc::clone(&claims), shutdown.clone()));
    let subscribe = async {
        Ok::<_, async_nats::SubscribeError>((
            client.subscribe(wire::WANT_ALL).await?,
            client.subscribe(wire::COMMAND_ALL).await?,
            client.subscribe(wire::KEYFRAME_ALL).await?,
            client.subscribe(wire::CONTROL_ALL).await?,
        ))
    };
    let (mut wants, mut commands, mut keyframes, mut control) = match subscribe.await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cluster: cannot subscribe, this node's trains are not shared: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(PRESENCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Trains whose media this node publishes: the lease's last renewal, and the publishing task.
    let mut leases: HashMap<TrainId, (watch::Sender<Instant>, JoinHandle<()>)> = HashMap::new();
    loop {
        tokio::select! {
            // A lease changed: tell the mirrors now rather than at the next tick.
            () = hub.control_changed() => announce(&hub, &client, &settings.node, &claims).await,
            _ = tick.tick() => {
                announce(&hub, &client, &settings.node, &claims).await;
                leases.retain(|_, (_, task)| !task.is_finished());
            }
            Some(msg) = wants.next() => {
                let train = match wire::train_of_want(&msg.subject) {
                    Ok(t) => t,
                    Err(e) => {
                        rejected("want", &msg.subject, &e);
                        continue;
                    }
                };
                if !owns(&hub, &train) {
                    continue; // another node's train, or one that just left
                }
                match leases.get(&train) {
                    Some((renew, task)) if !task.is_finished() => {
                        let _ = renew.send(Instant::now());
                    }
                    _ => {
                        let (renew, lease) = watch::channel(Instant::now());
                        tracing::info!(train = %train, by = %String::from_utf8_lossy(&msg.payload), "cluster: publishing media");
                        let task = tokio::spawn(publish_media(hub.clone(), client.clone(), train.clone(), lease, shutdown.clone()));
                        leases.insert(train, (renew, task));
                    }
                }
            }
            Some(msg) = commands.next() => {
                tokio::spawn(answer_command(hub.clone(), client.clone(), settings.control_required, msg));
            }
            Some(msg) = control.next() => answer_control(&hub, &client, msg).await,
            Some(msg) = keyframes.next() => {
                match wire::train_of_keyframe(&msg.subject).and_then(|t| Ok((t, wire::parse_keyframe(&msg.payload)?))) {
                    Ok((train, request)) if owns(&hub, &train) => {
                        hub.request_keyframe(&train, request.camera);
                    }
                    Ok(_) => {}
                    Err(e) => rejected("keyframe", &msg.subject, &e),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Subscribe to this node's hub for `train`, like a viewer, and publish every packet until the
/// lease lapses. A slow NATS connection makes `publish` wait; the hub's queue then drops whole
/// frames for this subscriber as for any slow one, and the train's fan-out never waits.
async fn publish_media(
    hub: Hub,
    client: Client,
    train: TrainId,
    lease: watch::Receiver<Instant>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sub = hub.subscribe(&train, Arc::new(SubscriberCounters::default()));
    let media = Subject::from(wire::media(&train));
    let telemetry = Subject::from(wire::telemetry(&train));
    let mut check = tokio::time::interval(LEASE / 4);
    loop {
        tokio::select! {
            item = sub.next() => match item {
                SubItem::Packet(p) => {
                    if send(&client, media.clone(), p.bytes).await {
                        METRICS.media_out.inc();
                    } else {
                        // NATS is away: stop; a mirror asks again once it is back.
                        tracing::info!(train = %train, "cluster: media not published (NATS unreachable), stopped");
                        break;
                    }
                }
                SubItem::Event(Ok(TrainEvent::Telemetry(t))) => {
                    let _ = send(&client, telemetry.clone(), wire::to_json(&t)).await;
                }
                SubItem::Event(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                SubItem::Event(_) => {}
            },
            _ = check.tick() => {
                if lease.borrow().elapsed() > LEASE {
                    tracing::info!(train = %train, "cluster: no node watches any more, media stopped");
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Why a command from another node's session (of node `from`, when the request says) may not
/// run: someone holds the lease who is not a session of that node, or nobody does and
/// `control_required`. A keyframe request always runs; `operator_lost` (a lease that ended on a
/// node the train left) runs unless a new holder has the train.
fn refusal(hub: &Hub, train: &TrainId, action: &Action, control_required: bool, from: Option<&str>) -> Option<String> {
    if matches!(action, Action::RequestKeyframe { .. }) {
        return None;
    }
    let stream = hub.stream(train)?;
    match stream.control_holder() {
        Some(_) if from.is_some() && stream.control_via().as_deref() == from => None,
        Some(h) => Some(format!("{} ({}) controls {train}", h.name, h.role)),
        None if control_required && !matches!(action, Action::OperatorLost { .. }) => {
            Some(format!("nobody controls {train}: send take_control first"))
        }
        None => None,
    }
}

/// A request about a train's control lease from a session of another node: carried out on the
/// lease held here, and a take or a release answered.
async fn answer_control(hub: &Hub, client: &Client, msg: async_nats::Message) {
    let train = match wire::train_of_control(&msg.subject) {
        Ok(t) => t,
        Err(e) => return rejected("control", &msg.subject, &e),
    };
    let Some(stream) = hub.stream(&train).filter(|_| owns(hub, &train)) else {
        return; // the owner answers; a node that is not stays silent
    };
    let request = match ControlRequest::parse(&msg.payload) {
        Ok(r) => r,
        Err(e) => return rejected("control", &msg.subject, &e),
    };
    let node = request.node.as_str();
    let reply = match request.op {
        ControlOp::Take { holder, force } => {
            let (name, session) = (holder.name.clone(), holder.session);
            let reply = match stream.take_control_for(Some(node), holder, force) {
                Ok(taken) => {
                    tracing::info!(train = %train, %node, session, principal = %name, ?taken, "control taken from another node");
                    let taken = match taken {
                        Taken::Granted => TakenHow::Granted,
                        Taken::AlreadyHeld => TakenHow::AlreadyHeld,
                        Taken::Resumed => TakenHow::Resumed,
                        Taken::TakenOver(_) => TakenHow::TakenOver,
                    };
                    stream.control_holder().map(|holder| ControlReply::Taken { taken, holder })
                }
                Err(Held(holder)) => Some(ControlReply::Held { holder: *holder }),
            };
            match reply {
                Some(r) => r,
                None => return,
            }
        }
        ControlOp::Release { session } => ControlReply::Released { ok: stream.release_control_for(node, session) },
        ControlOp::Heartbeat { session } => return stream.control_heartbeat_for(node, session),
        ControlOp::Ended { session, why } => return stream.control_ended_for(node, session, why),
    };
    if let Some(reply_to) = msg.reply {
        if !send(client, reply_to, wire::to_json(&reply)).await {
            tracing::warn!(train = %train, "cluster: control answer not sent (NATS unreachable)");
        }
    }
}

/// The owner's answer to another node's `operator_lost` for a lease the owner has told the
/// train about already (the train moved here).
const TOLD_ALREADY: &str = "the train was told by its new node already";

/// Carry out a command for another node's viewer and answer with the outcome.
async fn answer_command(hub: Hub, client: Client, control_required: bool, msg: async_nats::Message) {
    let Some(reply_to) = msg.reply.clone() else {
        rejected("command", &msg.subject, &"a command without a reply subject");
        return;
    };
    let train = match wire::train_of_command(&msg.subject) {
        Ok(t) => t,
        Err(e) => return rejected("command", &msg.subject, &e),
    };
    if !owns(&hub, &train) {
        return; // the owner answers; a node that is not stays silent
    }
    let from = wire::from_node(msg.headers.as_ref());
    let reply = match wire::parse_action(&msg.payload) {
        Err(e) => {
            rejected("command", &msg.subject, &e);
            CommandReply::Error { error: "bad_request".into(), message: e.to_string() }
        }
        // The train moved here from the node telling it, and this node told it already.
        Ok(Action::OperatorLost { operator, reason })
            if hub.stream(&train).is_some_and(|s| s.control_lost_elsewhere(&operator, &reason)) =>
        {
            CommandReply::Ack { ok: true, message: TOLD_ALREADY.into(), rtt_us: 0 }
        }
        Ok(action) => match refusal(&hub, &train, &action, control_required, from.as_deref()) {
            Some(message) => CommandReply::Error { error: "not_in_control".into(), message },
            None => match hub.command(&train, action).await {
                Ok(out) => CommandReply::Ack {
                    ok: out.ack.ok,
                    message: out.ack.message,
                    rtt_us: u64::try_from(out.rtt.as_micros()).unwrap_or(u64::MAX),
                },
                Err(e) => CommandReply::Error { error: e.code().into(), message: e.to_string() },
            },
        },
    };
    if !send(&client, reply_to, wire::to_json(&reply)).await {
        tracing::warn!(train = %train, "cluster: command answer not sent (NATS unreachable)");
    }
}

#[cfg(test)]
mod tests {
    use railcast_protocol::Hello;

    use super::*;
    use crate::hub::{test_holder as holder, HubConfig};

    #[test]
    fn another_nodes_command_runs_while_its_session_or_nobody_holds_the_lease() {
        let hub = Hub::new(HubConfig::default());
        let train = TrainId::new("t").expect("id");
        let hello =
            || Hello { train_id: train.clone(), cameras: Vec::new(), audio: Vec::new(), software: None, token: None };
        let (tx, _rx) = tokio::sync::mpsc::channel(4);
        let _publisher = hub.connect_train(hello(), tx);
        let horn = Action::Horn { duration_ms: 10 };
        let keyframe = Action::RequestKeyframe { camera: None };
        let lost = Action::OperatorLost { operator: "bob".into(), reason: "moved".into() };

        assert_eq!(refusal(&hub, &train, &horn, false, None), None, "free, not required");
        assert!(refusal(&hub, &train, &horn, true, None).is_some_and(|m| m.contains("nobody controls t")));
        assert_eq!(refusal(&hub, &train, &keyframe, true, None), None);
        assert_eq!(refusal(&hub, &train, &lost, true, None), None, "operator_lost of a lease ended elsewhere");

        let stream = hub.stream(&train).expect("stream");
        stream.take_control(holder(3), false).expect("granted");
        for action in [&horn, &lost] {
            let why = refusal(&hub, &train, action, false, None).expect("refused while held");
            assert!(why.contains("alice (operator) controls t"), "{why}");
        }
        assert_eq!(refusal(&hub, &train, &keyframe, false, None), None);

        // Held here for a session of node b: b's commands run (b checked the session), not
        // another node's, nor a raw request naming no node.
        assert!(stream.release_control(3));
        stream.take_control_for(Some("b"), holder(5), false).expect("granted to b's session");
        assert_eq!(refusal(&hub, &train, &horn, true, Some("b")), None);
        assert!(refusal(&hub, &train, &horn, false, Some("c")).is_some());
        assert!(refusal(&hub, &train, &horn, false, None).is_some());
        assert!(!stream.release_control(5), "not this node's session 5");
        assert!(stream.release_control_for("b", 5));
        stream.take_control(holder(3), false).expect("granted");

        // A copy of another node's lease (this node mirrored the train before it came here)
        // ends when the train connects here (the watchdog tells the train): it refuses nothing.
        assert!(stream.release_control(3));
        stream.control_mirror(Some(holder(9)), "taken", "here");
        assert_eq!(stream.control_holder().map(|h| h.session), Some(9));
        assert_eq!(stream.control_announced().0, None, "a copy is not announced");
        let (tx, _rx2) = tokio::sync::mpsc::channel(4);
        let _again = hub.connect_train(hello(), tx);
        assert_eq!(stream.control_holder(), None);
        assert_eq!(refusal(&hub, &train, &horn, false, None), None);
        assert_eq!(stream.control_announced().0, None);
        let (ended, why) = stream.control_expire(std::time::Duration::from_secs(1), Instant::now()).expect("ends now");
        assert_eq!(ended.session, 9);
        assert!(why.contains("connected to this node"), "{why}");
    }
}
