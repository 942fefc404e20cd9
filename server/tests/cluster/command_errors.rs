//! A command forwarded to the train's node fails there as it would on one node: the client on
//! the other node gets the same `command_error` code (here `train_lost`: the train's connection
//! ends while the command waits for its ack), not a refused ack.

use std::time::Duration;

use serde_json::json;
use testkit::ws::Client;
use testkit::{remote_control, scratch, RawTrain};

use crate::wait_api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_command_fails_with_the_same_error_as_on_one_node() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_command_errors");
    let (_nats, a, b) = crate::two_nodes(&dir).await;
    // A train that takes 3 s to ack.
    let train = RawTrain::connect(&a, "train-1", Duration::from_secs(3)).await;
    wait_api(&b, "/api/trains/train-1", "train-1 mirrored on B", |s, v| s == 200 && v["online"] == true).await;
    let rc = remote_control(&b, Some("train-1")).await;
    let on_b = Client::connect(&b.ws_url(&rc)).await;
    on_b.send_text(
        json!({"type": "command", "request_id": "h", "command": {"type": "horn", "duration_ms": 10}}).to_string(),
    )
    .await;
    // The command reached the train on A; then the train's connection ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while train.commands.lock().expect("lock").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the command never reached the train on A");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    train.conn.close(0u32.into(), b"gone");
    let ev = on_b.wait_event("the command's outcome", |e| e["request_id"] == "h").await;
    assert_eq!((ev["type"].as_str(), ev["code"].as_str()), (Some("command_error"), Some("train_lost")), "{ev}");
    // And for a train that is not there any more: the same code as on one node.
    wait_api(&b, "/api/trains/train-1", "train-1 offline on B", |s, v| s == 200 && v["online"] == false).await;
    on_b.send_text(
        json!({"type": "command", "request_id": "o", "command": {"type": "horn", "duration_ms": 10}}).to_string(),
    )
    .await;
    let ev = on_b.wait_event("the second outcome", |e| e["request_id"] == "o").await;
    assert_eq!((ev["type"].as_str(), ev["code"].as_str()), (Some("command_error"), Some("train_offline")), "{ev}");
}
