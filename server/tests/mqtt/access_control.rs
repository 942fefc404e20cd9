//! A session's credentials reach only that session's topics (mosquitto's dynamic security,
//! managed by the server): another session's video, events and command topics are refused, and
//! so is a client id other than the session's. Credentials never used expire. The session names
//! the ICE servers for WebRTC signaled over MQTT.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use testkit::mqtt::Broker;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_and_writes_only_its_own_topics() {
    let dir = scratch("mqtt_access_control");
    let broker = Broker::start(&dir).await;
    let mut args = broker.server_args();
    args.extend(["--mqtt-claim-timeout".into(), "2s".into()]);
    // Handed to clients that signal WebRTC over MQTT.
    args.extend(["--webrtc-ice-servers".into(), "stun:127.0.0.1:3478".into()]);
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let (a, client_a) = testkit::mqtt::connect_rc(&server, &broker, &rc).await;
    client_a.wait_frames(5).await;
    let b = testkit::mqtt::create_session(&server, &rc).await;
    assert_eq!(b["ice_servers"], serde_json::json!([{"urls": ["stun:127.0.0.1:3478"]}]), "{b}");

    // B's credentials: subscriptions to A's topics and to wildcards are refused; its own are not.
    let (client, mut eventloop) = AsyncClient::new(testkit::mqtt::options(broker.port, &b), 64);
    let mut codes = Vec::new();
    let mut published = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while codes.len() < 6 {
        let ev =
            tokio::time::timeout_at(deadline, eventloop.poll()).await.expect("answers in time").expect("connected");
        match ev {
            Event::Incoming(Packet::ConnAck(_)) => {
                for t in [
                    a["topics"]["video"].as_str().expect("string"),
                    a["topics"]["events"].as_str().expect("string"),
                    "railcast/v1/#",
                    "#",
                    b["topics"]["video"].as_str().expect("string"),
                    b["topics"]["events"].as_str().expect("string"),
                ] {
                    client.subscribe(t, QoS::AtMostOnce).await.expect("subscribe");
                }
                // Publishing on A's command topic: mosquitto 2.0 drops it silently (QoS 0).
                client
                    .publish(
                        a["topics"]["command"].as_str().expect("string"),
                        QoS::AtMostOnce,
                        false,
                        r#"{"type":"ping","t":7}"#,
                    )
                    .await
                    .expect("publish");
                published = true;
            }
            Event::Incoming(Packet::SubAck(ack)) => codes.extend(ack.return_codes),
            _ => {}
        }
    }
    assert!(published);
    let refused = |c: &SubscribeReasonCode| matches!(c, SubscribeReasonCode::Failure);
    assert!(codes[..4].iter().all(refused), "{codes:?}");
    assert!(!codes[4..].iter().any(refused), "{codes:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !client_a.events().iter().any(|e| e["type"] == "pong" && e["t"] == 7),
        "a ping published by another session's client reached A's session"
    );

    // Another client id with A's credentials is refused.
    let mut o = testkit::mqtt::options(broker.port, &a);
    o.set_client_id("someone-else".into());
    let (_c, mut el) = AsyncClient::new(o, 8);
    let r = tokio::time::timeout(Duration::from_secs(5), el.poll()).await.expect("answer");
    assert!(r.is_err(), "a foreign client id logged in: {r:?}");

    // B never sent a first message: its credentials expire (mqtt_claim_timeout 2 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut o = MqttOptions::new(b["client_id"].as_str().expect("string"), "127.0.0.1", broker.port);
    o.set_credentials(b["username"].as_str().expect("string"), b["password"].as_str().expect("string"));
    let (_c, mut el) = AsyncClient::new(o, 8);
    let r = tokio::time::timeout(Duration::from_secs(5), el.poll()).await.expect("answer");
    assert!(r.is_err(), "expired credentials logged in: {r:?}");
    let (_, sessions) = api("GET", &server.url("/api/sessions"), None).await;
    let mqtt = sessions.as_array().into_iter().flatten().filter(|s| s["transport"] == "mqtt").count();
    assert_eq!(mqtt, 1, "{sessions}");
}
