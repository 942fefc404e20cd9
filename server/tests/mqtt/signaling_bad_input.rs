//! Bad input on the MQTT signaling topics: malformed JSON, an offer with garbage SDP, a bad
//! candidate, an oversized message, an offer for a session the MQTT transport holds, a retained
//! offer replayed when the server subscribes again. Each gets its error reply where one can be
//! sent, or is ignored; each is counted; a concurrent session keeps its frames flowing.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use testkit::mqtt::{Broker, ADMIN};
use testkit::mqtt_signaling::{refusals, Signaler, SignalingClient};
use testkit::ws::verify;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signaling_input_is_refused_and_disturbs_nothing() {
    let dir = scratch("mqtt_signaling_bad_input");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    testkit::mqtt::wait_connected(&server).await;
    let good = SignalingClient::offer(broker.port, &testkit::mqtt::create_session(&server, &rc).await).await;
    good.client.wait_frames(10).await;
    let frames_before = good.client.frames().len();

    let b = testkit::mqtt::create_session(&server, &rc).await;
    let s = Signaler::connect(broker.port, &b).await;
    let mut replies = 0;
    let mut expect = async |what: &str, key: &str, qos: QoS, payload: Vec<u8>| {
        let before = refusals(&server, what).await;
        s.publish_raw(key, qos, false, payload).await;
        let err = s.wait_answer(what, replies, |v| v["type"] == "error").await;
        replies = s.answers().len();
        assert_eq!(err["code"], what, "{err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{err}");
        assert_eq!(refusals(&server, what).await, before + 1, "{what} counted");
    };
    expect("bad_json", "offer", QoS::AtLeastOnce, b"{not json".to_vec()).await;
    expect("bad_offer", "offer", QoS::AtLeastOnce, br#"{"type":"answer","sdp":"v=0"}"#.to_vec()).await;
    expect("bad_json", "candidate", QoS::AtMostOnce, b"\xff\xfe".to_vec()).await;
    expect(
        "bad_candidate",
        "candidate",
        QoS::AtMostOnce,
        br#"{"candidate":"candidate:1 1 udp 1 attacker.example 5 typ host","sdpMid":"0"}"#.to_vec(),
    )
    .await;
    let mut big = br#"{"type":"offer","sdp":""#.to_vec();
    big.resize(70 * 1024, b'a');
    big.extend_from_slice(br#""}"#);
    expect("too_large", "offer", QoS::AtLeastOnce, big).await;
    // Garbage SDP takes the session; another offer may follow (refused here too).
    expect("bad_sdp", "offer", QoS::AtLeastOnce, br#"{"type":"offer","sdp":"garbage"}"#.to_vec()).await;
    expect("bad_sdp", "offer", QoS::AtLeastOnce, br#"{"type":"offer","sdp":"v=0\r\n"}"#.to_vec()).await;

    // A session the MQTT transport holds (its first command message claimed it): an offer for
    // it is ignored and counted, with no reply.
    let t = testkit::mqtt::create_session(&server, &rc).await;
    let ts = Signaler::connect(broker.port, &t).await;
    let command = t["topics"]["command"].as_str().expect("command topic");
    ts.client.publish(command, QoS::AtLeastOnce, false, br#"{"type":"ping","t":1}"#.to_vec()).await.expect("ping");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = refusals(&server, "unknown_session").await;
    ts.offer("v=0\r\n").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while refusals(&server, "unknown_session").await == before {
        assert!(tokio::time::Instant::now() < deadline, "the offer for a used session was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ts.answers().is_empty(), "{:?}", ts.answers());

    // A retained message is stored by the broker and replayed with the retain flag when the
    // server subscribes again (here: the broker drops its connection, and it reconnects): ignored,
    // counted.
    s.publish_raw("offer", QoS::AtLeastOnce, true, b"retained, stale".to_vec()).await;
    s.wait_answer("the live copy's bad_json", replies, |v| v["code"] == "bad_json").await;
    let before = refusals(&server, "retained").await;
    // mosquitto disconnects every client of a user whose roles change: the server's among them.
    let mut o = MqttOptions::new("test-kick", "127.0.0.1", broker.port);
    o.set_credentials(ADMIN, broker.password.clone());
    let (admin, mut el) = AsyncClient::new(o, 8);
    let kick = serde_json::json!({"commands": [
        {"command": "createRole", "rolename": "test-kick"},
        {"command": "addClientRole", "username": ADMIN, "rolename": "test-kick"},
    ]});
    admin.publish("$CONTROL/dynamic-security/v1", QoS::AtLeastOnce, false, kick.to_string()).await.expect("publish");
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while el.poll().await.is_ok() {} }).await;
    drop(el);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while refusals(&server, "retained").await == before {
        assert!(tokio::time::Instant::now() < deadline, "the replayed retained offer was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answers = s.answers().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.answers().len(), answers, "a retained offer was answered: {:?}", s.answers());

    // The good session never noticed.
    good.client.wait_frames(frames_before + 30).await;
    let checked = verify(&good.client.frames(), &sim.manifest());
    assert!(checked >= frames_before + 30, "{checked} frames checked");
    let rtts = good.client.command_round_trips(2, Duration::from_secs(5), || broker.log()).await;
    println!("mqtt signaling bad input: the good session's command round trips (ms): {rtts:?}");
    let _ = good.pc.close().await;
}
