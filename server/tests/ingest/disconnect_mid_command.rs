//! A client that disconnects while its command waits for the train's ack: the train still gets
//! the command and acks it, the server drops the answer quietly (nobody to send it to), the
//! session is gone, and the next client's commands work.

use std::time::Duration;

use serde_json::json;
use testkit::webrtc::RtcClient;
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, RawTrain, Server};

fn acked(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("railcast_commands_acked_total{result=\"ok\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_survive_their_sender() {
    let dir = scratch("disconnect_mid_command");
    let server = Server::start(&dir, &[]).await;
    let train = RawTrain::connect(&server, "train-1", Duration::from_millis(400)).await;
    let rc = remote_control(&server, Some("train-1")).await;

    // WebSocket: send, then drop the connection at once.
    let ws = Client::connect(&server.ws_url(&rc)).await;
    ws.wait_event("mapped", |e| e["type"] == "mapped_train_changed").await;
    ws.send_text(json!({"type": "command", "request_id": "gone-ws", "command": {"type": "horn"}}).to_string()).await;
    // WebRTC: the same, closing the peer connection.
    let rtc = RtcClient::connect(&server, &rc).await;
    rtc.client
        .send_text(json!({"type": "command", "request_id": "gone-rtc", "command": {"type": "horn"}}).to_string())
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(ws);
    let _ = rtc.pc.close().await;
    drop(rtc);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = api("GET", &server.url("/metrics"), None).await;
        let (n, acks) = (train.commands.lock().expect("lock").len(), acked(text.as_str().expect("metrics")));
        if n == 2 && acks >= 2 {
            println!("the train got both commands and the server took both acks after their senders left");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "commands {n}, acks {acks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    testkit::wait_no_webrtc_sessions(&server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, sessions) = api("GET", &server.url("/api/sessions"), None).await;
        if sessions.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "sessions left: {sessions}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next = Client::connect(&server.ws_url(&rc)).await;
    next.send_text(json!({"type": "command", "request_id": "next", "command": {"type": "horn"}}).to_string()).await;
    let ack = next.wait_event("next", |e| e["request_id"] == "next").await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
}
