//! A WHIP publisher for a train id that is online over QUIC takes it over when it goes online:
//! the QUIC connection is closed with code 2 (replaced), the train lists `"ingest": "whip"` and
//! its WHIP cameras, and the viewer gets `train_offline` then `train_online`. A command then goes to
//! the WHIP publisher, not the QUIC train.

use std::time::Duration;

use serde_json::json;
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, RawTrain, Server};

use crate::whip_aiortc::Aiortc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_takes_a_train_over_from_quic() {
    let dir = scratch("whip_takes_over_quic");
    let server = Server::start(&dir, &[]).await;
    let quic = RawTrain::connect(&server, "train-2", Duration::ZERO).await;
    let rc = remote_control(&server, Some("train-2")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    quic.send_frame(1, true, testkit::now_us(), &[1u8; 2000], None);
    client.wait_frames(1).await;
    let (_, train) = api("GET", &server.url("/api/trains/train-2"), None).await;
    assert_eq!(train["ingest"], "quic", "{train}");

    let token = server.train_token("train-2");
    let publisher = Aiortc::start(&server, "train-2", &token, &["--cameras", "1"]).await;
    match tokio::time::timeout(Duration::from_secs(10), quic.conn.closed()).await.expect("QUIC connection closed") {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(2), "replaced");
        }
        other => panic!("unexpected close {other}"),
    }
    let offline = client.wait_event("train_offline", |e| e["type"] == "train_offline").await;
    assert!(offline["reason"].as_str().unwrap_or_default().contains("replaced"), "{offline}");
    client.wait_event("train_online", |e| e["type"] == "train_online").await;
    let (_, train) = api("GET", &server.url("/api/trains/train-2"), None).await;
    assert_eq!((train["ingest"].as_str(), train["cameras"][0]["width"].as_u64()), (Some("whip"), Some(320)), "{train}");

    client.send_text(json!({"type": "command", "request_id": "h", "command": {"type": "horn"}}).to_string()).await;
    let ack = client.wait_event("horn ack", |e| e["request_id"] == "h").await;
    assert_eq!(ack["message"], "done by aiortc", "{ack}");
    assert!(quic.commands.lock().expect("lock").is_empty(), "the replaced QUIC train got no command");
    let report = publisher.stop().await;
    assert_eq!(report["delete"], 204, "{report}");
}
