//! One operator in control of a train across the cluster, through any node. The lease is held
//! on the node the train is connected to (its owner), for a session of any node: a session on
//! another node takes it through the owner, which then runs that node's commands and refuses
//! everyone else's (a raw NATS request too); every node shows the holder and its node. When
//! that session ends, the owner ends the lease and tells the train (`operator_lost`). When the
//! train moves to another node, the lease on the old one ends, that operator is told, the train
//! is told once (by its new node, or the old node through it), and a session on the old node
//! takes the lease through the new one. When the holder's node dies, its heartbeats stop and
//! the owner ends the lease. When the owner dies and the train fails over to the holder's node,
//! that node ends the lease and tells the train.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, RawTrain, Server};

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

fn holder_of(e: &Value) -> (Option<&str>, Option<&str>) {
    (e["holder"]["name"].as_str(), e["holder"]["node"].as_str())
}

/// The first `control_changed` event from the `from`-th on whose holder's node is `node`
/// (`None`: nobody holds it).
async fn control_changed(client: &Client, from: usize, node: Option<&str>) -> Value {
    event_after(client, from, "control_changed", |e| {
        e["type"] == "control_changed" && e["holder"]["node"].as_str() == node
    })
    .await
}

/// The `error` event with `code` answering a `take_control`.
async fn take_refused(client: &Client, code: &str) -> Value {
    let before = client.events().len();
    send(client, json!({"type": "take_control"})).await;
    let e = event_after(client, before, "take_control's answer", |e| e["type"] == "error").await;
    assert_eq!(e["code"], code, "{e}");
    e
}

fn operator_lost_count(train: &RawTrain) -> usize {
    let commands = train.commands.lock().expect("lock");
    commands.iter().filter(|c| matches!(c.command, railcast_protocol::Action::OperatorLost { .. })).count()
}

/// Wait until `train` has had more than `before` `operator_lost` commands.
async fn operator_lost_after(train: &RawTrain, before: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while operator_lost_count(train) == before {
        assert!(Instant::now() < deadline, "the train got no operator_lost {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_taken_through_any_node() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_control");
    let (nats, a, b) = crate::two_nodes(&dir).await;
    let old = RawTrain::connect(&a, "train-1", Duration::ZERO).await;
    wait_api(&b, "/api/trains/train-1", "train-1 mirrored on B", |s, v| s == 200 && v["owner_node"] == "node-a").await;
    let rc_a = remote_control(&a, Some("train-1")).await;
    let rc_b = remote_control(&b, Some("train-1")).await;
    let on_a = Client::connect(&a.ws_url_as(&rc_a, Some(a.token("operator")))).await;
    let on_b = Client::connect(&b.ws_url_as(&rc_b, Some(b.token("operator")))).await;
    let _beat_a = heartbeat(&on_a);
    let beat_b = heartbeat(&on_b);

    // Nobody holds it: B's session commands the train through A.
    assert_eq!(command(&on_b, "b-free", horn()).await["type"], "command_ack");

    // B's operator takes it through A: both nodes show the holder and its node, B's commands
    // run, A's are refused naming the holder, and so is a request naming no node; keyframe
    // requests pass.
    let (a_seen, b_seen) = (on_a.events().len(), on_b.events().len());
    let asked = Instant::now();
    send(&on_b, json!({"type": "take_control"})).await;
    let taken = control_changed(&on_b, b_seen, Some("node-b")).await;
    let take_ms = asked.elapsed().as_millis();
    assert_eq!((holder_of(&taken), taken["reason"].as_str()), ((Some("demo-operator"), Some("node-b")), Some("taken")));
    let shown = control_changed(&on_a, a_seen, Some("node-b")).await;
    assert_eq!(shown["holder"], taken["holder"], "{shown}");
    let (_, train) = api("GET", &a.url("/api/trains/train-1"), None).await;
    for k in ["name", "session", "since_us", "node"] {
        assert_eq!(train["control"][k], taken["holder"][k], "{k}: {train}");
    }
    assert_eq!(command(&on_b, "b-held", horn()).await["type"], "command_ack");
    let refused = command(&on_a, "a-refused", horn()).await;
    assert_eq!(refused["code"], "not_in_control", "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("demo-operator")), "{refused}");
    let raw = async_nats::connect(nats.url()).await.expect("connect to nats");
    let reply = raw
        .request("railcast.command.train-1", Bytes::from_static(b"{\"type\":\"horn\",\"duration_ms\":50}"))
        .await
        .expect("the owner answers");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(reply["error"], "not_in_control", "{reply}");
    assert_eq!(command(&on_a, "a-kf", json!({"type": "request_keyframe"})).await["type"], "command_ack");
    take_refused(&on_a, "control_held").await;
    // B's session's pings keep it, through A, past the heartbeat timeout (1 s).
    let b_seen = on_b.events().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!on_b.events()[b_seen..].iter().any(|e| e["type"] == "control_changed"), "{:?}", on_b.events());
    assert_eq!(command(&on_b, "b-kept", horn()).await["type"], "command_ack");

    // Given back through A: free everywhere; then A's operator holds it and B's is refused.
    let (a_seen, b_seen) = (on_a.events().len(), on_b.events().len());
    send(&on_b, json!({"type": "release_control"})).await;
    for (client, seen) in [(&on_a, a_seen), (&on_b, b_seen)] {
        let freed = control_changed(client, seen, None).await;
        assert_eq!(freed["reason"], "released", "{freed}");
    }
    let b_seen = on_b.events().len();
    send(&on_a, json!({"type": "take_control"})).await;
    control_changed(&on_b, b_seen, Some("node-a")).await;
    take_refused(&on_b, "control_held").await;
    assert_eq!(command(&on_b, "b-refused", horn()).await["code"], "not_in_control");
    let b_seen = on_b.events().len();
    send(&on_a, json!({"type": "release_control"})).await;
    control_changed(&on_b, b_seen, None).await;

    // B's operator takes it again, and B's session ends: A ends the lease and tells the train.
    let b_seen = on_b.events().len();
    send(&on_b, json!({"type": "take_control"})).await;
    control_changed(&on_b, b_seen, Some("node-b")).await;
    assert_eq!(operator_lost_count(&old), 0);
    let a_seen = on_a.events().len();
    beat_b.abort();
    let closed = Instant::now();
    drop(on_b);
    let lost = control_changed(&on_a, a_seen, None).await;
    assert!(lost["reason"].as_str().is_some_and(|r| r.contains("session ended")), "{lost}");
    operator_lost_after(&old, 0, "after the holder's session closed").await;
    let session_end_ms = closed.elapsed().as_millis();

    // A's operator holds it; the train moves to B while A's connection still stands: A closes
    // it, mirrors the train and ends its lease; the operator on A is told, and so is the train,
    // now through B.
    let a_seen = on_a.events().len();
    send(&on_a, json!({"type": "take_control"})).await;
    control_changed(&on_a, a_seen, Some("node-a")).await;
    let commands_before = old.commands.lock().expect("lock").len();
    let a_seen = on_a.events().len();
    let moved = Instant::now();
    let new = RawTrain::connect(&b, "train-1", Duration::ZERO).await;
    let lost = control_changed(&on_a, a_seen, None).await;
    assert!(lost["reason"].as_str().is_some_and(|r| r.contains("moved to another node")), "{lost}");
    operator_lost_after(&new, 0, "through B").await;
    let told = moved.elapsed();
    assert_eq!(old.commands.lock().expect("lock").len(), commands_before, "nothing more to the old connection");
    // A tells the train too, through B, which has told it already (or, had A's message come
    // first, passes it on instead of its own): one operator_lost for one move.
    let moved_lost = |e: &Value| {
        e["command"]["type"] == "operator_lost" && e["command"]["reason"].as_str().is_some_and(|r| r.contains("moved"))
    };
    let audit = wait_api(&a, "/api/audit?train=train-1&scope=node", "A's operator_lost of the move audited", |s, v| {
        s == 200 && v["entries"].as_array().is_some_and(|es| es.iter().any(moved_lost))
    })
    .await;
    assert_eq!(operator_lost_count(&new), 1, "one operator_lost for one move: {audit}");

    // Now B holds the lease, and A's operator takes it through B.
    wait_api(&a, "/api/trains/train-1", "train-1 owned by B", |s, v| s == 200 && v["owner_node"] == "node-b").await;
    let on_b2 = Client::connect(&b.ws_url_as(&rc_b, Some(b.token("viewer")))).await;
    let a_seen = on_a.events().len();
    send(&on_a, json!({"type": "take_control"})).await;
    let taken = control_changed(&on_a, a_seen, Some("node-a")).await;
    assert_eq!(taken["reason"], "taken", "{taken}");
    let (_, train) = api("GET", &b.url("/api/trains/train-1"), None).await;
    assert_eq!(train["control"]["node"], "node-a", "{train}");
    assert_eq!(command(&on_a, "a-after", horn()).await["type"], "command_ack");

    // The holder's node vanishes: its heartbeats stop, and B ends the lease and tells the train.
    let (told_before, b_seen) = (operator_lost_count(&new), on_b2.events().len());
    let mut a = a;
    let _ = a.child.kill().await;
    let killed = Instant::now();
    operator_lost_after(&new, told_before, "after the holder's node died").await;
    let node_lost_ms = killed.elapsed().as_millis();
    let lost = control_changed(&on_b2, b_seen, None).await;
    assert!(lost["reason"].as_str().is_some_and(|r| r.contains("nothing from demo-operator")), "{lost}");

    // The owner dies while a session of another node holds the lease, and the train fails over
    // to that node: the lease ends there and the train is told through it.
    let c = Server::start_sharing(&dir, &b, &["--cluster-nats-url", &nats.url(), "--cluster-node-id", "node-c"]).await;
    crate::wait_ready(&c).await;
    wait_api(&c, "/api/trains/train-1", "train-1 mirrored on C", |s, v| s == 200 && v["owner_node"] == "node-b").await;
    let rc_c = remote_control(&c, Some("train-1")).await;
    let on_c = Client::connect(&c.ws_url_as(&rc_c, Some(c.token("operator")))).await;
    let _beat_c = heartbeat(&on_c);
    let c_seen = on_c.events().len();
    send(&on_c, json!({"type": "take_control"})).await;
    control_changed(&on_c, c_seen, Some("node-c")).await;
    let c_seen = on_c.events().len();
    let mut b = b;
    let _ = b.child.kill().await;
    let failed_over = Instant::now();
    let newest = RawTrain::connect(&c, "train-1", Duration::ZERO).await;
    operator_lost_after(&newest, 0, "through the holder's node after the owner died").await;
    let owner_lost_ms = failed_over.elapsed().as_millis();
    let lost = control_changed(&on_c, c_seen, None).await;
    assert!(lost["reason"].as_str().is_some_and(|r| r.contains("connected to this node")), "{lost}");
    println!(
        "cluster: control taken through the other node in {take_ms} ms; the train told operator_lost \
         {session_end_ms} ms after the holder's session on the other node closed, {node_lost_ms} ms after \
         that node died; a train moved from A to B told operator_lost through B {} ms after it connected to B; \
         the owner killed, the train on the holder's node told {owner_lost_ms} ms after it connected there",
        told.as_millis()
    );
}
