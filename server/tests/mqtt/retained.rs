//! A retained message on a command topic is stale by the time anyone new subscribes: a server
//! (re)starting on the same broker gets it flagged retained and ignores it (counted), instead of
//! running an old command. Published live, the same message was an ordinary command.

use std::time::Duration;

use serde_json::json;
use testkit::mqtt::Broker;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_command_is_never_run_again() {
    let dir = scratch("mqtt_retained");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = Server::start(&dir, &args).await;
    let _sim = Sim::start(&dir, &first, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&first, Some("train-1")).await;
    let (_session, client) = testkit::mqtt::connect_rc(&first, &broker, &rc).await;
    client.wait_frames(3).await;
    let horn = json!({"type": "command", "request_id": "stale", "command": {"type": "horn", "duration_ms": 50}});
    client.publish_raw(horn.to_string().into_bytes(), true).await;
    client.wait_event("the live ack", |e| e["type"] == "command_ack" && e["request_id"] == "stale").await;

    first.signal("KILL");
    let _ = first.child.wait().await;
    let second = Server::start(&dir, &args).await;
    testkit::mqtt::wait_connected(&second).await;
    let key = r#"railcast_mqtt_refused_total{reason="retained"}"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while testkit::mqtt::metric(&second, key).await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the retained command was not seen and ignored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unknown = testkit::mqtt::metric(&second, r#"railcast_mqtt_refused_total{reason="unknown_session"}"#).await;
    assert_eq!(unknown, 0.0, "the retained message got as far as the session lookup");
}
