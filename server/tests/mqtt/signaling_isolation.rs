//! Two clients offering over MQTT at once, each with its own session: each gets exactly one
//! answer, on its own topic, and its own frames; one client's credentials cannot subscribe to
//! the other's signaling topics (SUBACK failure), so answers never reach another viewer.

use std::time::Duration;

use rumqttc::{Packet, SubscribeReasonCode};
use testkit::mqtt::Broker;
use testkit::mqtt_signaling::SignalingClient;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simultaneous_clients_never_see_each_others_answers() {
    let dir = scratch("mqtt_signaling_isolation");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    testkit::mqtt::wait_connected(&server).await;
    let a = testkit::mqtt::create_session(&server, &rc).await;
    let b = testkit::mqtt::create_session(&server, &rc).await;

    let (ca, cb) = tokio::join!(SignalingClient::offer(broker.port, &a), SignalingClient::offer(broker.port, &b));
    println!("mqtt signaling, two at once: channels open after {:?} and {:?}", ca.setup, cb.setup);
    ca.client.wait_frames(20).await;
    cb.client.wait_frames(20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (c, s) in [(&ca, &a), (&cb, &b)] {
        let answers = c.signaler.answers();
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0]["type"], "answer");
        let id = s["session_id"].as_str().expect("id");
        assert!(
            c.signaler.received.lock().expect("lock").iter().all(|m| m.topic.starts_with(&format!("device/{id}/"))),
            "a message on another session's topic"
        );
    }
    let ufrag = |v: &serde_json::Value| {
        v["sdp"].as_str().expect("sdp").lines().find(|l| l.starts_with("a=ice-ufrag:")).expect("ufrag").to_owned()
    };
    assert_ne!(ufrag(&ca.answer), ufrag(&cb.answer), "two peers, two answers");

    // A's credentials (another connection would take A's client id over: use a session of its
    // own kind, C, with the same rights) cannot read B's signaling topics.
    let c = testkit::mqtt::create_session(&server, &rc).await;
    let b_id = b["session_id"].as_str().expect("id");
    for topic in [format!("device/{b_id}/#"), format!("device/{b_id}/webrtc/answer"), "device/#".to_owned()] {
        let (_client, mut rx) = testkit::mqtt::subscribe_raw(broker.port, &c, &topic).await;
        let code = loop {
            let p = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("SUBACK").expect("open");
            if let Ok(Packet::SubAck(ack)) = p {
                break ack.return_codes[0];
            }
        };
        assert!(matches!(code, SubscribeReasonCode::Failure), "{topic}: {code:?}");
    }
    assert_eq!(ca.signaler.answers().len(), 1);
    assert_eq!(cb.signaler.answers().len(), 1);
    let _ = ca.pc.close().await;
    let _ = cb.pc.close().await;
}
