//! The owner's part: announce the trains this node has through a real ingest, publish a train's
//! media while another node holds an interest lease on it, answer commands and keyframe requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_nats::{Client, Subject};
use futures_util::StreamExt;
use railcast_protocol::TrainId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::wire::{self, Announced, CommandReply, Presence};
use super::{rejected, send, Settings, INGEST, LEASE, METRICS, PRESENCE_INTERVAL};
use crate::hub::{Hub, SubItem, SubscriberCounters, TrainEvent};

/// Whether this node has `train` through a real ingest (not a mirror of another node's).
fn owns(hub: &Hub, train: &TrainId) -> bool {
    hub.stream(train).is_some_and(|s| {
        let snap = s.snapshot();
        snap.online && snap.ingest.is_some_and(|i| i != INGEST)
    })
}

/// What this node announces.
fn presence(hub: &Hub, node: &str) -> Presence {
    let trains = hub
        .streams()
        .into_iter()
        .filter_map(|s| {
            let snap = s.snapshot();
            (snap.online && snap.ingest.is_some_and(|i| i != INGEST)).then(|| Announced {
                train_id: snap.train_id.clone(),
                cameras: snap.cameras.iter().map(|c| c.info.clone()).collect(),
                audio: s.audio(),
                software: snap.software.clone(),
            })
        })
        .collect();
    Presence { node: node.to_owned(), trains }
}

pub async fn run(hub: Hub, client: Client, settings: Settings, mut shutdown: watch::Receiver<bool>) {
    let subscribe = async {
        Ok::<_, async_nats::SubscribeError>((
            client.subscribe(wire::WANT_ALL).await?,
            client.subscribe(wire::COMMAND_ALL).await?,
            client.subscribe(wire::KEYFRAME_ALL).await?,
        ))
    };
    let (mut wants, mut commands, mut keyframes) = match subscribe.await {
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
            _ = tick.tick() => {
                let body = wire::to_json(&presence(&hub, &settings.node));
                if !send(&client, wire::PRESENCE, body).await {
                    tracing::debug!("cluster: presence not published (NATS unreachable)");
                }
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
                tokio::spawn(answer_command(hub.clone(), client.clone(), msg));
            }
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

/// Carry out a command for another node's viewer and answer with the outcome.
async fn answer_command(hub: Hub, client: Client, msg: async_nats::Message) {
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
    let reply = match wire::parse_action(&msg.payload) {
        Err(e) => {
            rejected("command", &msg.subject, &e);
            CommandReply::Error { error: "bad_request".into(), message: e.to_string() }
        }
        Ok(action) => match hub.command(&train, action).await {
            Ok(out) => CommandReply::Ack {
                ok: out.ack.ok,
                message: out.ack.message,
                rtt_us: u64::try_from(out.rtt.as_micros()).unwrap_or(u64::MAX),
            },
            Err(e) => CommandReply::Error { error: e.code().into(), message: e.to_string() },
        },
    };
    if !send(&client, reply_to, wire::to_json(&reply)).await {
        tracing::warn!(train = %train, "cluster: command answer not sent (NATS unreachable)");
    }
}
