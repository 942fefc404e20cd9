//! The mirror's part: trains other nodes announce go online here (ingest `cluster`); while one
//! has subscribers here its media comes over NATS into this node's hub, and commands and keyframe
//! requests go to its owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Subscriber};
use dashmap::DashMap;
use futures_util::StreamExt;
use railcast_protocol::control::Command;
use railcast_protocol::{CommandAck, ControlMessage, TrainId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::wire::{self, Announced, CommandReply, Presence};
use super::{rejected, send, Claims, Settings, INGEST, PRESENCE_TIMEOUT, SEND_TIMEOUT, WANT_INTERVAL};
use crate::hub::{CommandError, Hub};

/// How often a mirror checks whether it has subscribers (a new viewer waits at most this long
/// before the lease is asked for).
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Commands and keyframe requests queued for a mirror's forwarding.
const CONTROL_QUEUE: usize = 64;

/// A train another node announced.
#[derive(Debug, Clone, PartialEq)]
struct Remote {
    owner: String,
    train: Announced,
}

/// A running mirror: its view of the remote train, and its task.
struct Mirror {
    remote: watch::Sender<Remote>,
    task: JoinHandle<()>,
}

/// Mirrored trains → their owner node (`GET /api/trains`: `owner_node`).
pub type Owners = Arc<DashMap<TrainId, String>>;

pub async fn run(
    hub: Hub,
    client: Client,
    settings: Settings,
    claims: Claims,
    owners: Owners,
    peers: super::Peers,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut presence = match client.subscribe(wire::PRESENCE).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cluster: cannot subscribe to presence, no other node's train is shown here: {e}");
            return;
        }
    };
    // Train → (what its owner announced, when).
    let mut known: HashMap<TrainId, (Remote, Instant)> = HashMap::new();
    let mut mirrors: HashMap<TrainId, Mirror> = HashMap::new();
    let mut tick = tokio::time::interval(WATCH_INTERVAL * 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(msg) = presence.next() => {
                let p = match Presence::parse(&msg.payload) {
                    Ok(p) => p,
                    Err(e) => {
                        rejected("presence", &msg.subject, &e);
                        continue;
                    }
                };
                if p.node == settings.node {
                    continue;
                }
                let now = Instant::now();
                peers.insert(p.node.clone(), now);
                // A train its owner no longer lists left it: offline here at once.
                known.retain(|t, (r, _)| r.owner != p.node || p.trains.iter().any(|a| &a.train_id == t));
                for train in p.trains {
                    // Of two nodes announcing one train, the higher epoch owns it (the other
                    // closes its connection when it hears of it).
                    let newer = known.get(&train.train_id).is_none_or(|(r, _)| r.owner == p.node || r.train.epoch < train.epoch);
                    if newer {
                        known.insert(train.train_id.clone(), (Remote { owner: p.node.clone(), train }, now));
                    }
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        known.retain(|_, (_, seen)| seen.elapsed() < PRESENCE_TIMEOUT);
        peers.retain(|_, seen| seen.elapsed() < super::FORGET_NODE);
        reconcile(&hub, &client, &settings, &claims, &known, &mut mirrors);
        owners.retain(|t, _| mirrors.contains_key(t));
        super::METRICS.mirrored.set(mirrors.len() as i64);
        for (t, m) in &mirrors {
            let owner = m.remote.borrow().owner.clone();
            if owners.get(t).is_none_or(|o| *o != owner) {
                owners.insert(t.clone(), owner);
            }
        }
    }
    owners.clear();
    // Dropping the senders ends the mirrors; their trains go offline.
    let tasks: Vec<_> = mirrors.into_values().map(|m| m.task).collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// Start, update and end mirrors to match what the other nodes announce.
fn reconcile(
    hub: &Hub,
    client: &Client,
    settings: &Settings,
    claims: &Claims,
    known: &HashMap<TrainId, (Remote, Instant)>,
    mirrors: &mut HashMap<TrainId, Mirror>,
) {
    mirrors.retain(|train, m| known.contains_key(train) && !m.task.is_finished());
    for (train, (remote, _)) in known {
        if let Some(m) = mirrors.get(train) {
            m.remote.send_if_modified(|r| {
                let changed = r != remote;
                if changed {
                    *r = remote.clone();
                }
                changed
            });
            continue;
        }
        // A train this node has through its own ingest stays its own unless the other node's
        // claim is newer (a higher epoch): then the mirror takes over here, which closes the
        // local connection (the hub's newest-wins rule), as the train has moved.
        let local = hub.stream(train).and_then(|s| super::local_connection(&s));
        if let Some(connection) = local {
            let claim = claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(train).copied();
            // Not claimed yet: its claim, about to be made, will be the newer.
            let older = claim.is_some_and(|c| c.connection == connection && c.epoch < remote.train.epoch);
            if !older {
                continue;
            }
            tracing::warn!(
                train = %train, owner = %remote.owner, epoch = remote.train.epoch,
                "cluster: the train connected to another node since (a newer claim): closing its connection here"
            );
        }
        let (tx, rx) = watch::channel(remote.clone());
        tracing::info!(train = %train, owner = %remote.owner, epoch = remote.train.epoch, "cluster: mirroring a train of another node");
        let task =
            tokio::spawn(mirror(hub.clone(), client.clone(), settings.node.clone(), settings.command_timeout, rx));
        mirrors.insert(train.clone(), Mirror { remote: tx, task });
    }
}

/// The next message of an optional subscription (pending without one).
async fn next_of(sub: &mut Option<Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// One mirrored train: online here while its owner announces it.
async fn mirror(
    hub: Hub,
    client: Client,
    here: String,
    command_timeout: Duration,
    mut remote: watch::Receiver<Remote>,
) {
    let here = here.as_str();
    let train = remote.borrow().train.train_id.clone();
    let (control_tx, mut control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (acks_tx, mut acks) = mpsc::channel::<Outcome>(CONTROL_QUEUE);
    let mut publisher = hub.connect_train_via(remote.borrow().train.hello(), control_tx.clone(), INGEST);
    let mut announced = remote.borrow().train.clone();
    publisher.mirror_control(announced.control.clone(), &announced.control_reason, here);
    let mut media: Option<Subscriber> = None;
    let mut telemetry: Option<Subscriber> = None;
    let mut last_want: Option<Instant> = None;
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = remote.changed() => {
                if changed.is_err() {
                    let owner = remote.borrow().owner.clone();
                    publisher.set_offline_reason(format!("left node {owner} (or that node is unreachable)"));
                    break;
                }
                let now = remote.borrow_and_update().train.clone();
                if !now.same_connection(&announced) {
                    // The owner's train reconnected (a new claim, maybe another hello): go
                    // online again with it.
                    publisher.set_offline_reason("reconnected on its node");
                    publisher = hub.connect_train_via(now.hello(), control_tx.clone(), INGEST);
                }
                publisher.mirror_control(now.control.clone(), &now.control_reason, here);
                announced = now;
            }
            _ = publisher.replaced() => {
                tracing::info!(train = %train, "cluster: a local connection took over the train, mirror ended");
                return;
            }
            Some(msg) = control_rx.recv() => forward(&client, &train, here, msg, command_timeout, &acks_tx).await,
            Some(outcome) = acks.recv() => match outcome {
                Outcome::Ack(ack) => publisher.ack(ack),
                Outcome::Failed(command_id, error) => publisher.fail_command(command_id, error),
            },
            msg = next_of(&mut media) => match msg {
                Some(m) => {
                    if let Err(e) = publisher.publish(m.payload) {
                        rejected("media", &m.subject, &e);
                    }
                }
                None => media = None,
            },
            msg = next_of(&mut telemetry) => match msg {
                Some(m) => match serde_json::from_slice(&m.payload) {
                    Ok(t) => publisher.telemetry(t),
                    Err(e) => rejected("telemetry", &m.subject, &e),
                },
                None => telemetry = None,
            },
            _ = tick.tick() => {
                let watched = hub.stream(&train).is_some_and(|s| s.snapshot().subscribers > 0);
                if !watched {
                    // Unsubscribing ends the lease at the owner within its timeout. What the hub
                    // cached goes stale from now on: the next viewer here starts with the
                    // owner's GOP, which the owner sends first when media is wanted again.
                    if media.take().is_some() {
                        publisher.forget_gops();
                    }
                    telemetry = None;
                    last_want = None;
                    continue;
                }
                if media.is_none() {
                    // Subscribed before the lease is asked for: the owner's first packets (its
                    // cached GOP) are not missed.
                    let subscribe = |subject: String| tokio::time::timeout(SEND_TIMEOUT, client.subscribe(subject));
                    match subscribe(wire::media(&train)).await {
                        Ok(Ok(s)) => media = Some(s),
                        Ok(Err(e)) => tracing::warn!(train = %train, "cluster: cannot subscribe to media: {e}"),
                        Err(_) => tracing::debug!(train = %train, "cluster: media not subscribed (NATS unreachable)"),
                    }
                    telemetry = subscribe(wire::telemetry(&train)).await.ok().and_then(Result::ok);
                }
                if media.is_some() && last_want.is_none_or(|t| t.elapsed() >= WANT_INTERVAL) {
                    let body = bytes::Bytes::from(remote.borrow().owner.clone());
                    if send(&client, wire::want(&train), body).await {
                        last_want = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// What the owner answered for a forwarded command.
enum Outcome {
    /// The train's ack.
    Ack(CommandAck),
    /// No ack, for this reason (the owner's hub said so, as this node's would for a local train).
    Failed(u64, CommandError),
}

/// Send a command or keyframe request to the owner. A command's outcome comes back on `acks`
/// (the train's ack, or the owner's error: the client gets the same `command_error` as for a
/// local train) unless it timed out: then the hub's own timeout answers the client, with the
/// error a local train's silence gives.
async fn forward(
    client: &Client,
    train: &TrainId,
    here: &str,
    msg: ControlMessage,
    timeout: Duration,
    acks: &mpsc::Sender<Outcome>,
) {
    match msg {
        ControlMessage::KeyframeRequest(r) => {
            let _ = send(client, wire::keyframe(train), wire::to_json(&r)).await;
        }
        ControlMessage::Command(Command { command_id, command }) => {
            let (client, train, acks) = (client.clone(), train.clone(), acks.clone());
            let headers = wire::from_node_headers(here);
            tokio::spawn(async move {
                let request =
                    async_nats::Request::new().payload(wire::to_json(&command)).headers(headers).timeout(Some(timeout));
                let ack = |ok: bool, message: String| Outcome::Ack(CommandAck { command_id, ok, message });
                let answer = match client.send_request(wire::command(&train), request).await {
                    Ok(reply) => match serde_json::from_slice::<CommandReply>(&reply.payload) {
                        Ok(CommandReply::Ack { ok, message, .. }) => Some(ack(ok, message)),
                        // The hub's own timeout answers (the same error, from here).
                        Ok(CommandReply::Error { error, .. }) if error == "command_timeout" => None,
                        Ok(CommandReply::Error { error, message }) => {
                            Some(match CommandError::from_code(&error, &message, &train, timeout) {
                                Some(e) => Outcome::Failed(command_id, e),
                                None => ack(false, format!("{error}: {message}")),
                            })
                        }
                        Err(e) => {
                            rejected("command", &reply.subject, &e);
                            Some(ack(false, "the owner node's answer was malformed".into()))
                        }
                    },
                    Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                        Some(Outcome::Failed(command_id, CommandError::TrainOffline(train.clone())))
                    }
                    Err(e) => {
                        tracing::debug!(train = %train, command_id, "cluster: command not answered: {e}");
                        None
                    }
                };
                if let Some(a) = answer {
                    let _ = acks.send(a).await;
                }
            });
        }
        _ => {}
    }
}
