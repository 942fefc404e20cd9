//! An MQTT remote control gets exactly the train's frames, in order, packed in messages of at
//! most `mqtt_video_message` bytes (mosquitto's WebSocket listener crawls above ≈4 KB); a
//! mapping change takes effect live; a command is acked; the client's goodbye (an empty message)
//! ends the session with `closing`, and its credentials are deleted.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::mqtt::Broker;
use testkit::ws::verify;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_remap_commands_and_goodbye() {
    let dir = scratch("mqtt_frames");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "2"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-2", true).await;
    let rc = remote_control(&server, Some("train-1")).await;

    let info = testkit::mqtt::wait_connected(&server).await;
    assert_eq!(info["url"], broker.browser_url());

    let (session, client) = testkit::mqtt::connect_rc(&server, &broker, &rc).await;
    let welcome = client.wait_event("welcome", |e| e["type"] == "welcome").await;
    assert_eq!(welcome["transport"], "mqtt", "{welcome}");
    client.wait_event("pong to the first message", |e| e["type"] == "pong").await;
    client.wait_frames(30).await;

    // Commands go on the command topic; the ack comes back on events.
    let rtts = client.command_round_trips(3, Duration::from_secs(5), || broker.log()).await;
    println!("mqtt command round trips (ms): {rtts:?}");

    // Live remap.
    let before = client.frames().len();
    let switched = Instant::now();
    let (status, v) =
        api("PUT", &server.url(&format!("/api/remote-controls/{rc}/train")), Some(json!({"train_id": "train-2"})))
            .await;
    assert_eq!(status, 200, "{v}");
    client
        .wait_event("mapped_train_changed to train-2", |e| {
            e["type"] == "mapped_train_changed" && e["train_id"] == "train-2"
        })
        .await;
    client.wait_frames(before + 20).await;
    println!("mqtt remap: 20 frames of the new train {} ms after the PUT", switched.elapsed().as_millis());

    let frames = client.frames();
    let checked = verify(&frames, &sim.manifest());
    assert!(checked >= before + 20, "{checked} frames checked");
    // train-1's frames, then train-2's, never mixed.
    let switch = frames.iter().position(|f| f.train.as_deref() == Some("train-2")).expect("train-2 frames");
    assert!(switch >= before, "train-2 before the switch");
    assert!(frames[..switch].iter().all(|f| f.train.as_deref() == Some("train-1")));
    let after = &frames[switch..];
    assert!(after.len() >= 20 && after.iter().all(|f| f.train.as_deref() == Some("train-2")));
    assert!(after[0].keyframe, "the first frame after a switch is a keyframe");
    {
        let log = client.log.lock().expect("lock");
        println!(
            "mqtt: {} video messages, {} with several packets, largest {} B, {} packets",
            log.video_messages, log.multi_packet_messages, log.largest_video_message, log.packets
        );
        assert!(log.largest_video_message <= 4000, "a video message of {} B", log.largest_video_message);
        assert!(log.multi_packet_messages > 0, "packets were never packed together");
    }
    let welcomes = client.events().iter().filter(|e| e["type"] == "welcome").count();
    assert_eq!(welcomes, 1, "the client must not have reconnected");

    // The session is listed like every other.
    let (_, sessions) = api("GET", &server.url("/api/sessions"), None).await;
    assert!(
        sessions
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["transport"] == "mqtt" && s["remote_control_id"] == rc.as_str()),
        "{sessions}"
    );

    // Goodbye: an empty message on the command topic.
    client.send_text("").await;
    let closing = client.wait_event("closing", |e| e["type"] == "closing").await;
    assert!(closing["reason"].as_str().is_some_and(|r| r.contains("goodbye")), "{closing}");
    // Its credentials are gone: they cannot log in again.
    testkit::mqtt::wait_refused(broker.port, &session).await;
}
