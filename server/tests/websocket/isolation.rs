//! Trains are isolated from each other: a remote control's commands reach only the train it is
//! mapped to, and its sessions receive only that train's video, whatever the transport.

use std::time::Duration;

use serde_json::json;
use testkit::webrtc::RtcClient;
use testkit::ws::Client;
use testkit::{remote_control, scratch, sha256_hex, RawTrain, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_train_sees_another_trains_commands_and_no_client_another_trains_video() {
    let dir = scratch("isolation");
    let server = Server::start(&dir, &[]).await;
    let one = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let two = RawTrain::connect(&server, "train-2", Duration::ZERO).await;
    let rc1 = remote_control(&server, Some("train-1")).await;
    let rc2 = remote_control(&server, Some("train-2")).await;
    let op = server.token("operator");
    let ws1 = Client::connect(&server.ws_url_as(&rc1, Some(op))).await;
    let ws2 = Client::connect(&server.ws_url_as(&rc2, Some(op))).await;
    let rtc2 = RtcClient::connect_as(&server, &rc2, Some(op)).await;
    ws1.wait_event("mapped", |e| e["type"] == "mapped_train_changed").await;
    ws2.wait_event("mapped", |e| e["type"] == "mapped_train_changed").await;

    // Each train sends frames only it could have sent.
    let (mut sums1, mut sums2) = (Vec::new(), Vec::new());
    for seq in 1..=20u32 {
        let f1 = vec![0x11u8 ^ seq as u8; 3000];
        let f2 = vec![0x22u8 ^ seq as u8; 3000];
        one.send_frame(seq, true, testkit::now_us(), &f1, None);
        two.send_frame(seq, true, testkit::now_us(), &f2, None);
        sums1.push(sha256_hex(&f1));
        sums2.push(sha256_hex(&f2));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ws1.wait_frames(10).await;
    ws2.wait_frames(10).await;
    rtc2.client.wait_frames(10).await;
    for f in ws1.frames() {
        assert!(sums1.contains(&f.sha256) && !sums2.contains(&f.sha256), "client of train-1 got a foreign frame");
    }
    for f in ws2.frames().iter().chain(rtc2.client.frames().iter()) {
        assert!(sums2.contains(&f.sha256) && !sums1.contains(&f.sha256), "client of train-2 got a foreign frame");
    }

    // Commands: from each remote control, over each transport, to its own train only.
    for (i, client) in [&ws1, &ws2, &rtc2.client].into_iter().enumerate() {
        let id = format!("c{i}");
        client.send_text(json!({"type": "command", "request_id": id, "command": {"type": "horn"}}).to_string()).await;
        let ack = client.wait_event(&id, |e| e["request_id"] == id.as_str()).await;
        assert_eq!(ack["type"], "command_ack", "{ack}");
    }
    let (c1, c2) = (one.commands.lock().expect("lock").len(), two.commands.lock().expect("lock").len());
    println!(
        "commands received: train-1 {c1}, train-2 {c2}; frames: {} / {} / {}",
        ws1.frames().len(),
        ws2.frames().len(),
        rtc2.client.frames().len()
    );
    assert_eq!((c1, c2), (1, 2), "each train got exactly its own remote controls' commands");
}
