//! Garbage on a session's command topic gets a clear `error` event (and is counted), never a
//! panic: text that is not JSON, JSON that is no client message, invalid UTF-8, a message over
//! 16 KiB. A message over the broker's
//! `max_packet_size` costs its sender the broker connection. Another session's frames keep
//! flowing throughout, and the session itself still answers afterwards.

use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use testkit::mqtt::Broker;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_command_topic_gets_clear_errors() {
    let dir = scratch("mqtt_bad_input");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let (_, bystander) = testkit::mqtt::connect_rc(&server, &broker, &rc).await;
    let (_session, client) = testkit::mqtt::connect_rc(&server, &broker, &rc).await;
    client.wait_frames(3).await;
    bystander.wait_frames(3).await;
    let frames_before = bystander.frames().len();

    let errors = |code: &str| client.events().iter().filter(|e| e["type"] == "error" && e["code"] == code).count();
    client.send_text("not json").await;
    client.send_text(r#"{"type":"launch","t":1}"#).await;
    client.send_text(format!(r#"{{"type":"ping","t":"{}"}}"#, "x".repeat(20_000))).await;
    client.wait_event("bad_message", |e| e["code"] == "bad_message").await;
    client.wait_event("message_too_large", |e| e["code"] == "message_too_large").await;

    // Invalid UTF-8.
    client.publish_raw(vec![0xff, 0xfe, 0x00], false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while errors("bad_message") < 3 {
        assert!(tokio::time::Instant::now() < deadline, "bad_message errors: {:?}", client.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Over the broker's max_packet_size (128 KiB), from another session's credentials on its
    // own command topic: the broker drops that sender's connection.
    let other = testkit::mqtt::create_session(&server, &rc).await;
    let (big, mut el) = AsyncClient::new(testkit::mqtt::options(broker.port, &other), 8);
    let other_command = other["topics"]["command"].as_str().expect("topic").to_owned();
    big.publish(&other_command, QoS::AtMostOnce, false, vec![b'x'; 200_000]).await.expect("queue");
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if el.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the broker kept a client that sent 200 kB");

    // The session still answers, the bystander never stopped.
    client.command_round_trips(1, Duration::from_secs(10), || broker.log()).await;
    bystander.wait_frames(frames_before + 40).await;
    assert!(bystander.log.lock().expect("lock").closed.is_none());
    let refused = testkit::mqtt::metric(&server, r#"railcast_mqtt_refused_total{reason="bad_message"}"#).await;
    assert!(refused >= 3.0, "bad messages counted: {refused}");
}
