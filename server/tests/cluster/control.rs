//! One operator in control of a train across the cluster. The lease is held on the node the
//! train is connected to: there an operator takes it, and a session on another node gets
//! `control_elsewhere` when it asks, sees the holder (`control_changed`, `GET /api/trains`) and
//! gets `not_in_control` (naming the holder) for its commands while the lease is held, though
//! its keyframe requests still pass; the owner refuses such a command itself too (a raw NATS
//! request). When the train moves to another node, the lease on the old one ends, that operator
//! is told, and the train is told through its new node (`operator_lost`); the lease can then be
//! taken on the new node only, and the other node shows its holder.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, RawTrain};

use crate::wait_api;

async fn send(client: &Client, msg: Value) {
    client.send_text(msg.to_string()).await;
}

async fn command(client: &Client, id: &str, command: Value) -> Value {
    send(client, json!({"type": "command", "request_id": id, "command": command})).await;
    client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await
}

fn horn() -> Value {
    json!({"type": "horn", "duration_ms": 50})
}

/// Ping every 200 ms: the holder's heartbeat.
fn heartbeat(client: &Client) -> tokio::task::JoinHandle<()> {
    let testkit::ws::Outbox::Ws(tx) = &client.out else { panic!("a WebSocket client") };
    let tx = tx.clone();
    tokio::spawn(async move {
        for t in 0u64.. {
            let ping = json!({"type": "ping", "t": t}).to_string();
            if tx.send(tokio_tungstenite::tungstenite::Message::Text(ping.into())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The first event from the `from`-th on that satisfies `pred`.
async fn event_after(client: &Client, from: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(e) = client.events().get(from..).and_then(|new| new.iter().find(|e| pred(e)).cloned()) {
            return e;
        }
        assert!(Instant::now() < deadline, "no {what} event; got {:?}", client.events());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `error` event with `code` answering a `take_control`.
async fn take_refused(client: &Client, code: &str) -> Value {
    let before = client.events().len();
    send(client, json!({"type": "take_control"})).await;
    let e = event_after(client, before, "take_control's answer", |e| e["type"] == "error").await;
    assert_eq!(e["code"], code, "{e}");
    e
}

fn got_operator_lost(train: &RawTrain) -> bool {
    let commands = train.commands.lock().expect("lock");
    commands.iter().any(|c| matches!(c.command, railcast_protocol::Action::OperatorLost { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_held_where_the_train_is() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_control");
    let (nats, a, b) = crate::two_nodes(&dir).await;
    let old = RawTrain::connect(&a, "train-1", Duration::ZERO).await;
    wait_api(&b, "/api/trains/train-1", "train-1 mirrored on B", |s, v| s == 200 && v["owner_node"] == "node-a").await;
    let rc_a = remote_control(&a, Some("train-1")).await;
    let rc_b = remote_control(&b, Some("train-1")).await;
    let on_a = Client::connect(&a.ws_url_as(&rc_a, Some(a.token("operator")))).await;
    let on_b = Client::connect(&b.ws_url_as(&rc_b, Some(b.token("operator")))).await;
    let _beat = heartbeat(&on_a);

    // Nobody holds it: B's session may command through A, but not take the lease on B.
    let refused = take_refused(&on_b, "control_elsewhere").await;
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("train-1")), "{refused}");
    assert_eq!(command(&on_b, "b-free", horn()).await["type"], "command_ack");

    // An operator on A takes it: B's sessions see the holder with A's next presence, and B's
    // commands are refused with the holder's name, except keyframe requests; A's run.
    let (a_seen, b_seen) = (on_a.events().len(), on_b.events().len());
    send(&on_a, json!({"type": "take_control"})).await;
    let taken = event_after(&on_a, a_seen, "control taken on A", |e| e["type"] == "control_changed").await;
    assert_eq!(taken["holder"]["name"], "demo-operator", "{taken}");
    let taken_at = Instant::now();
    let shown = event_after(&on_b, b_seen, "the holder shown on B", |e| e["type"] == "control_changed").await;
    assert_eq!((&shown["holder"], shown["reason"].as_str()), (&taken["holder"], Some("taken")), "{shown}");
    let shown_after = taken_at.elapsed();
    let (_, train) = api("GET", &b.url("/api/trains/train-1"), None).await;
    for k in ["name", "session", "since_us"] {
        assert_eq!(train["control"][k], taken["holder"][k], "{k}: {train}");
    }
    // The owner refuses too, whatever the asking node believes.
    let raw = async_nats::connect(nats.url()).await.expect("connect to nats");
    let reply = raw
        .request("railcast.command.train-1", Bytes::from_static(b"{\"type\":\"horn\",\"duration_ms\":50}"))
        .await
        .expect("the owner answers");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(reply["error"], "not_in_control", "{reply}");
    assert!(reply["message"].as_str().is_some_and(|m| m.contains("demo-operator")), "{reply}");
    let held = command(&on_b, "b-held", horn()).await;
    assert_eq!(
        (held["type"].as_str(), held["code"].as_str()),
        (Some("command_error"), Some("not_in_control")),
        "{held}"
    );
    assert!(held["message"].as_str().is_some_and(|m| m.contains("demo-operator")), "{held}");
    let kf = command(&on_b, "b-kf", json!({"type": "request_keyframe"})).await;
    assert_eq!(kf["type"], "command_ack", "{kf}");
    assert_eq!(command(&on_a, "a-held", horn()).await["type"], "command_ack");
    let commands_before = old.commands.lock().expect("lock").len();
    assert!(!got_operator_lost(&old));

    // The train moves to B while A's connection still stands: A closes it, mirrors the train,
    // and ends its lease; the operator on A is told, and so is the train, now through B.
    let a_seen = on_a.events().len();
    let moved = Instant::now();
    let new = RawTrain::connect(&b, "train-1", Duration::ZERO).await;
    let lost = event_after(&on_a, a_seen, "the lease ends on A", |e| e["type"] == "control_changed").await;
    assert!(lost["holder"].is_null(), "{lost}");
    assert!(lost["reason"].as_str().is_some_and(|r| r.contains("moved to another node")), "{lost}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got_operator_lost(&new) {
        assert!(Instant::now() < deadline, "the train on B got no operator_lost");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let told = moved.elapsed();
    assert_eq!(old.commands.lock().expect("lock").len(), commands_before, "nothing more to the old connection");

    // Now B holds leases for the train, and A refers operators to it.
    wait_api(&a, "/api/trains/train-1", "train-1 owned by B", |s, v| s == 200 && v["owner_node"] == "node-b").await;
    take_refused(&on_a, "control_elsewhere").await;
    let _beat_b = heartbeat(&on_b);
    let (a_seen, b_seen) = (on_a.events().len(), on_b.events().len());
    send(&on_b, json!({"type": "take_control"})).await;
    let taken =
        event_after(&on_b, b_seen, "control taken on B", |e| e["type"] == "control_changed" && !e["holder"].is_null())
            .await;
    assert_eq!(taken["reason"], "taken", "{taken}");
    event_after(&on_a, a_seen, "B's holder shown on A", |e| {
        e["type"] == "control_changed" && e["holder"] == taken["holder"]
    })
    .await;
    let held = command(&on_a, "a-after", horn()).await;
    assert_eq!(held["code"], "not_in_control", "{held}");
    assert_eq!(command(&on_b, "b-after", horn()).await["type"], "command_ack");
    println!(
        "cluster: a lease taken on A shown on B {} ms later; a train moved from A to B was told \
         operator_lost through B {} ms after it connected to B",
        shown_after.as_millis(),
        told.as_millis()
    );
}
