//! A command from a client on node B reaches the train on node A; the train's ack comes back to
//! that client, and the train's telemetry follows.

use std::time::Instant;

use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{pct, remote_control, scratch};

use crate::Nodes;

async fn round_trip(client: &Client, id: &str, command: Value) -> (Value, u64) {
    let start = Instant::now();
    client.send_text(json!({"type": "command", "request_id": id, "command": command}).to_string()).await;
    let ev = client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await;
    (ev, start.elapsed().as_micros() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_from_another_node_is_acked_by_the_train() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_commands");
    let nodes = Nodes::start(&dir).await;
    let rc_b = remote_control(&nodes.b, Some("train-1")).await;
    let rc_a = remote_control(&nodes.a, Some("train-1")).await;
    let on_b = Client::connect(&nodes.b.ws_url(&rc_b)).await;
    let on_a = Client::connect(&nodes.a.ws_url(&rc_a)).await;
    on_b.wait_frames(1).await;

    let (ack, _) = round_trip(&on_b, "speed", json!({"type": "set_speed", "kmh": 90})).await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    assert!(ack["message"].as_str().expect("message").contains("90"), "{ack}");
    on_b.wait_event("telemetry at 90 km/h on B", |e| e["type"] == "telemetry" && e["telemetry"]["speed_kmh"] == 90.0)
        .await;
    let (ack, _) = round_trip(&on_b, "kf9", json!({"type": "request_keyframe", "camera": 9})).await;
    assert_eq!(
        (ack["type"].as_str(), ack["ok"].as_bool()),
        (Some("command_ack"), Some(false)),
        "the train's refusal: {ack}"
    );

    let (mut via_b, mut via_a) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let (ack, rtt) = round_trip(&on_b, &format!("b{i}"), json!({"type": "horn", "duration_ms": 50})).await;
        assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
        via_b.push(rtt);
        let (ack, rtt) = round_trip(&on_a, &format!("a{i}"), json!({"type": "horn", "duration_ms": 50})).await;
        assert_eq!(ack["type"], "command_ack", "{ack}");
        via_a.push(rtt);
    }
    via_b.sort_unstable();
    via_a.sort_unstable();
    println!(
        "cluster: horn round trip from a client on B p50 {} µs max {} µs; on A p50 {} µs max {} µs",
        pct(&via_b, 0.5),
        via_b.last().copied().unwrap_or(0),
        pct(&via_a, 0.5),
        via_a.last().copied().unwrap_or(0),
    );
}
