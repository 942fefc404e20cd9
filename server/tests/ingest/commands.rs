//! Commands: client → server → train → ack → the client that sent it. Commands without a mapping
//! or to an offline train fail with a clear error.

use std::time::Instant;

use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

async fn round_trip(client: &Client, id: &str, command: Value) -> (Value, u128) {
    let start = Instant::now();
    client.send_text(json!({"type": "command", "request_id": id, "command": command}).to_string()).await;
    let ev = client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await;
    (ev, start.elapsed().as_micros())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_round_trip_with_ack() {
    let dir = scratch("commands");
    let server = Server::start(&dir, &[]).await;
    let mut sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(1).await;

    let (ack, rtt) = round_trip(&client, "speed", json!({"type": "set_speed", "kmh": 90})).await;
    assert_eq!(ack["type"], "command_ack", "{ack}");
    assert_eq!(ack["ok"], true);
    assert!(ack["message"].as_str().expect("message").contains("90"), "{ack}");
    println!("set_speed round trip {rtt} µs (train leg {} µs)", ack["train_rtt_us"]);
    client
        .wait_event("telemetry at 90 km/h", |e| e["type"] == "telemetry" && e["telemetry"]["speed_kmh"] == 90.0)
        .await;

    let (ack, _) = round_trip(&client, "horn", json!({"type": "horn", "duration_ms": 300})).await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    let (ack, _) = round_trip(&client, "kf", json!({"type": "request_keyframe", "camera": 0})).await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    let (ack, _) = round_trip(&client, "kf9", json!({"type": "request_keyframe", "camera": 9})).await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(false)), "{ack}");

    // Acks go only to the client that sent the command.
    let other = Client::connect(&server.ws_url(&rc)).await;
    let (ack, _) = round_trip(&client, "only-me", json!({"type": "horn"})).await;
    assert_eq!(ack["type"], "command_ack");
    assert!(!other.events().iter().any(|e| e["request_id"] == "only-me"));

    // Not mapped.
    let unmapped = remote_control(&server, None).await;
    let lonely = Client::connect(&server.ws_url(&unmapped)).await;
    let (err, _) = round_trip(&lonely, "nomap", json!({"type": "horn"})).await;
    assert_eq!((err["type"].as_str(), err["code"].as_str()), (Some("command_error"), Some("not_mapped")), "{err}");

    // Offline train.
    sim.kill().await;
    client.wait_event("train_offline", |e| e["type"] == "train_offline").await;
    let (err, _) = round_trip(&client, "offline", json!({"type": "set_speed", "kmh": 10})).await;
    assert_eq!((err["type"].as_str(), err["code"].as_str()), (Some("command_error"), Some("train_offline")), "{err}");
    assert!(err["message"].as_str().expect("message").contains("offline"));
}
