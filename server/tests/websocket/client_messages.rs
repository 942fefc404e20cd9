//! Malformed or oversized client messages are refused with a reason; the session survives what
//! it can, and a message over the hard limit closes it with 1009.

use std::time::Duration;

use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_messages_are_refused_with_reasons() {
    let dir = scratch("client_messages");
    let server = Server::start(&dir, &[]).await;
    let rc = remote_control(&server, None).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_event("welcome", |e| e["type"] == "welcome").await;

    let cases: [(&str, String, &str); 5] = [
        ("not json", "{{{".into(), "bad_message"),
        ("unknown type", r#"{"type":"teleport"}"#.into(), "bad_message"),
        ("unknown command", r#"{"type":"command","request_id":"a","command":{"type":"fly"}}"#.into(), "bad_message"),
        (
            "out of range",
            r#"{"type":"command","request_id":"a","command":{"type":"set_speed","kmh":-5}}"#.into(),
            "bad_message",
        ),
        ("too large", format!(r#"{{"type":"ping","t":1,"pad":"{}"}}"#, "x".repeat(20_000)), "message_too_large"),
    ];
    for (i, (what, text, code)) in cases.iter().enumerate() {
        client.send_text(text.clone()).await;
        let n = i + 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let err = loop {
            let errs: Vec<_> = client.events().into_iter().filter(|e| e["type"] == "error").collect();
            if errs.len() >= n {
                break errs[n - 1].clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: no error event");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(err["code"], *code, "{what}: {err}");
        assert!(!err["message"].as_str().unwrap_or("").is_empty(), "{what}: {err}");
        println!("{what}: {}", err["message"]);
    }
    client.send(Message::Binary(vec![1u8, 2, 3].into())).await;
    client.wait_event("unexpected_binary", |e| e["code"] == "unexpected_binary").await;

    // Still alive after all that.
    client.send_text(r#"{"type":"ping","t":42.5}"#).await;
    let pong = client.wait_event("pong", |e| e["type"] == "pong").await;
    assert_eq!(pong["t"], 42.5);
    assert!(pong["server_time_us"].as_u64().is_some());

    // Over the transport's hard limit (64 KiB): closed with 1009 and a reason.
    client.send_text("x".repeat(100_000)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let closed = loop {
        if let Some(c) = client.log.lock().expect("lock").closed.clone() {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "not closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("hard limit: closed with {closed:?}");
    assert_eq!(closed.0, 1009, "{closed:?}");
    assert!(!closed.1.is_empty());

    // Both refusals are counted as the message_size limit.
    let (_, text) = testkit::api("GET", &server.url("/metrics"), None).await;
    let n: u64 = text
        .as_str()
        .expect("metrics")
        .lines()
        .find_map(|l| l.strip_prefix("railcast_limit_refusals_total{limit=\"message_size\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(n, 2, "one message_too_large event and one 1009 close");
}
