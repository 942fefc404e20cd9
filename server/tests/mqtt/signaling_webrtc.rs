//! WebRTC signaling over MQTT topics: a webrtc-rs client offers with its session's credentials
//! (one of its candidates sent before the offer), gets the answer on its own topic, then frames
//! that match the simulator's manifest and command acks over the data channels. Its states are
//! listed; a second offer is refused; when the peer ends, its credentials are deleted.

use std::time::Duration;

use testkit::mqtt::Broker;
use testkit::mqtt_signaling::{refusals, SignalingClient};
use testkit::ws::verify;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offers_over_mqtt_and_gets_frames_and_acks() {
    let dir = scratch("mqtt_signaling_webrtc");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    testkit::mqtt::wait_connected(&server).await;
    let session = testkit::mqtt::create_session(&server, &rc).await;
    let id = session["session_id"].as_str().expect("id").to_owned();
    assert_eq!(session["signaling"]["offer"], format!("mobile/{id}/webrtc/offer"));

    let c = SignalingClient::offer(broker.port, &session).await;
    println!("mqtt signaling: offer → answer {:?}, offer → channels open {:?}", c.answered, c.setup);
    let welcome = c.client.wait_event("welcome", |e| e["type"] == "welcome").await;
    assert_eq!(welcome["transport"], "webrtc", "{welcome}");
    assert_eq!(welcome["remote_control_id"], rc.as_str(), "{welcome}");
    c.client.wait_frames(30).await;
    let checked = verify(&c.client.frames(), &sim.manifest());
    assert!(checked >= 30, "{checked} frames checked");
    let rtts = c.client.command_round_trips(3, Duration::from_secs(5), || broker.log()).await;
    println!("mqtt signaling: command round trips (ms): {rtts:?}");

    // Listed with its states, like every WebRTC session.
    let (_, list) = api("GET", &server.url("/api/webrtc/sessions"), None).await;
    let peers = list.as_array().expect("list").clone();
    assert_eq!(peers.len(), 1, "{list}");
    assert_eq!(peers[0]["state"], "connected", "{list}");
    assert_eq!(peers[0]["ice_state"], "connected", "{list}");
    assert_eq!(peers[0]["remote_control_id"], rc.as_str(), "{list}");
    println!("mqtt signaling: server setup_ms {}", peers[0]["setup_ms"]);
    // The server's candidates end with an empty one.
    assert!(
        c.signaler.server_candidates().iter().any(|v| v["candidate"] == ""),
        "{:?}",
        c.signaler.server_candidates()
    );

    // One offer per session: no renegotiation.
    let before = refusals(&server, "already_offered").await;
    c.signaler.offer("v=0").await;
    let err = c.signaler.wait_answer("already_offered", 1, |v| v["type"] == "error").await;
    assert_eq!(err["code"], "already_offered", "{err}");
    assert_eq!(refusals(&server, "already_offered").await, before + 1);
    assert_eq!(c.signaler.answers().iter().filter(|v| v["type"] == "answer").count(), 1);
    let frames = c.client.frames().len();
    c.client.wait_frames(frames + 10).await;

    // The answer names the WebRTC session as the REST API knows it.
    let answer = c.signaler.answers().into_iter().find(|v| v["type"] == "answer").expect("the answer");
    assert_eq!(answer["session_id"], peers[0]["session_id"], "{answer}");
    // Deleting the MQTT session ends the peer and deletes the credentials (the broker
    // disconnects them).
    let (status, v) = api("DELETE", &server.url(&format!("/api/mqtt/sessions/{id}")), None).await;
    assert_eq!(status, 204, "{v}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_c, mut rx) = testkit::mqtt::subscribe_raw(broker.port, &session, "x").await;
        let r = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("an answer").expect("a result");
        if r.is_err() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the credentials still log in after the peer ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    testkit::wait_no_webrtc_sessions(&server).await;
    let _ = c.pc.close().await;
}
