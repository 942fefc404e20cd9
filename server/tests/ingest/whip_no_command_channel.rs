//! A WHIP publisher that opens no `command` data channel (a plain camera): its video is relayed,
//! and a command to it fails at once (`ok: false`, "no open command data channel"), not after the
//! 5 s command timeout.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};

use crate::whip_aiortc::Aiortc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_a_publisher_without_channel_fails_at_once() {
    let dir = scratch("whip_no_command_channel");
    let server = Server::start(&dir, &[]).await;
    let token = server.train_token("train-9");
    let publisher = Aiortc::start(&server, "train-9", &token, &["--cameras", "1", "--no-channel"]).await;
    let rc = remote_control(&server, Some("train-9")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(10).await;
    let sent = Instant::now();
    client.send_text(json!({"type": "command", "request_id": "h", "command": {"type": "horn"}}).to_string()).await;
    let ack = client.wait_event("horn answer", |e| e["request_id"] == "h").await;
    let took = sent.elapsed();
    println!("{ack} after {} ms", took.as_millis());
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(false)), "{ack}");
    assert!(ack["message"].as_str().unwrap_or_default().contains("no open command data channel"), "{ack}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    let report = publisher.stop().await;
    assert_eq!(report["delete"], 204, "{report}");
}
