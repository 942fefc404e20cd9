//! Every limit refuses with its code and is counted in `railcast_limit_refusals_total{limit}`:
//! trains, remote controls, WebRTC sessions, client sessions per address, request body size,
//! command rate. Each test sets the limit low on its own server.

use std::time::Duration;

use railcast_protocol::ControlMessage;
use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{api, raw_train, read_control, remote_control, scratch, RawTrain, Server};

async fn refusals(server: &Server, limit: &str) -> u64 {
    let (_, text) = api("GET", &server.url("/metrics"), None).await;
    let key = format!("railcast_limit_refusals_total{{limit=\"{limit}\"}} ");
    text.as_str()
        .expect("metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn assert_error(status: u16, body: &Value, want: u16, code: &str) {
    assert_eq!((status, body["code"].as_str()), (want, Some(code)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_trains() {
    let dir = scratch("limit_trains");
    let server = Server::start(&dir, &["--max-trains", "2"]).await;
    let _a = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let _b = RawTrain::connect(&server, "train-2", Duration::ZERO).await;
    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&testkit::hello(&server, "train-3").to_bytes()).await.expect("hello");
    match read_control(&mut recv).await {
        Some(ControlMessage::Error(e)) => assert_eq!(e.code, "limit_trains", "{e:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(refusals(&server, "trains").await, 1);
    // A known train may still reconnect.
    let _a2 = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_remote_controls() {
    let dir = scratch("limit_remote_controls");
    let server = Server::start(&dir, &["--max-remote-controls", "2"]).await;
    let first = remote_control(&server, None).await;
    remote_control(&server, None).await;
    let (s, b) = api("POST", &server.url("/api/remote-controls"), Some(json!({}))).await;
    assert_error(s, &b, 429, "limit_remote_controls");
    assert_eq!(refusals(&server, "remote_controls").await, 1);
    let (s, _) = api("DELETE", &server.url(&format!("/api/remote-controls/{first}")), None).await;
    assert_eq!(s, 204);
    let (s, _) = api("POST", &server.url("/api/remote-controls"), Some(json!({}))).await;
    assert_eq!(s, 201, "room again after a delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_webrtc_sessions() {
    let dir = scratch("limit_webrtc_sessions");
    let server = Server::start(&dir, &["--max-webrtc-sessions", "2"]).await;
    let rc = remote_control(&server, None).await;
    let url = server.url("/api/webrtc/offer");
    let offer = || api("POST", &url, Some(json!({"remote_control_id": rc})));
    let (s1, o1) = offer().await;
    let (s2, _) = offer().await;
    assert_eq!((s1, s2), (200, 200));
    let (s, b) = offer().await;
    assert_error(s, &b, 429, "limit_webrtc_sessions");
    assert_eq!(refusals(&server, "webrtc_sessions").await, 1);
    let sid = o1["session_id"].as_str().expect("sid");
    api("DELETE", &server.url(&format!("/api/webrtc/sessions/{sid}")), None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _) = offer().await;
        if s == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed session's place was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_address() {
    let dir = scratch("limit_connections_per_address");
    let server = Server::start(&dir, &["--max-connections-per-address", "2"]).await;
    let rc = remote_control(&server, None).await;
    let a = Client::connect(&server.ws_url(&rc)).await;
    let (s, o) = api("POST", &server.url("/api/webrtc/offer"), Some(json!({"remote_control_id": rc}))).await;
    assert_eq!(s, 200, "{o}");
    // A third session from 127.0.0.1, by either transport, is refused.
    let (s, b) = api("POST", &server.url("/api/webrtc/offer"), Some(json!({"remote_control_id": rc}))).await;
    assert_error(s, &b, 429, "limit_connections_per_address");
    match tokio_tungstenite::connect_async(server.ws_url(&rc)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| "connected")),
    }
    assert!(refusals(&server, "connections_per_address").await >= 2);
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(server.ws_url(&rc)).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("the closed session's place was never freed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body() {
    let dir = scratch("limit_body");
    let server = Server::start(&dir, &["--max-body", "4096"]).await;
    let big = json!({"name": "x".repeat(5000)});
    let (s, b) = api("POST", &server.url("/api/remote-controls"), Some(big)).await;
    assert_error(s, &b, 413, "body_too_large");
    let rc = remote_control(&server, None).await;
    let sdp = format!("v=0\r\n{}", "a=x\r\n".repeat(2000));
    let (s, b) =
        api("POST", &server.url("/api/webrtc/answer"), Some(json!({"session_id": rc, "type": "answer", "sdp": sdp})))
            .await;
    assert_error(s, &b, 413, "body_too_large");
    assert_eq!(refusals(&server, "body_size").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_rate() {
    let dir = scratch("limit_command_rate");
    let server = Server::start(&dir, &["--command-rate", "2", "--command-burst", "3"]).await;
    let _train = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    for i in 0..6 {
        client
            .send_text(
                json!({"type": "command", "request_id": format!("r{i}"), "command": {"type": "horn"}}).to_string(),
            )
            .await;
    }
    let mut outcomes = Vec::new();
    for i in 0..6 {
        let id = format!("r{i}");
        let e = client.wait_event(&id, |e| e["request_id"] == id.as_str()).await;
        outcomes.push(e["code"].as_str().unwrap_or(e["type"].as_str().unwrap_or("")).to_owned());
    }
    println!("six commands at once, burst 3: {outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "command_ack").count(), 3, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "rate_limited").count(), 3, "{outcomes:?}");
    assert_eq!(refusals(&server, "command_rate").await, 3);
    // The budget refills at the rate.
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.send_text(json!({"type": "command", "request_id": "later", "command": {"type": "horn"}}).to_string()).await;
    let e = client.wait_event("later", |e| e["request_id"] == "later").await;
    assert_eq!(e["type"], "command_ack", "{e}");
    // Another session has its own budget.
    let other = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    other.send_text(json!({"type": "command", "request_id": "o", "command": {"type": "horn"}}).to_string()).await;
    let e = other.wait_event("o", |e| e["request_id"] == "o").await;
    assert_eq!(e["type"], "command_ack", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_train_connections_per_address() {
    let dir = scratch("limit_train_connections");
    let server = Server::start(&dir, &["--max-connections-per-address", "1"]).await;
    let _one = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    // A second QUIC connection from 127.0.0.1 is closed at once, before its hello.
    let (_ep, conn) = raw_train(&server).await;
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.expect("closed in time") {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(6), "close code LIMIT");
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            assert!(reason.contains("max_connections_per_address"), "{reason}");
        }
        other => panic!("unexpected close {other}"),
    }
    assert_eq!(refusals(&server, "connections_per_address").await, 1);
}
