//! The operator console in Chromium over WebRTC data channels signaled over MQTT topics
//! (`?signaling=mqtt`): the console gets credentials from `POST /api/mqtt/sessions`, MQTT.js
//! connects to a real mosquitto's WebSocket listener, the console offers both channels on
//! `mobile/ID/webrtc/offer`, trickles its candidates and applies the server's answer and
//! candidates from `device/ID/webrtc/…`; then two cameras at 640×480, 30 fps paint, the overlay
//! shows glass-to-glass latency and a command gets its ack over the `command` channel.

use testkit::mqtt::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_streams_over_webrtc_signaled_over_mqtt() {
    let _serial = testkit::serial().await;
    let dir = testkit::scratch("console_mqtt_signaling_broker");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let r = testkit::console::stream_scenario(
        "console_mqtt_signaling",
        "webrtc-mqtt",
        "webrtc",
        "console over WebRTC, MQTT signaling (mosquitto, 640×480, 30 fps, 2 cameras)",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(r["signaling"], "mqtt", "the WebRTC link signaled over MQTT: {r}");
    let m = &r["mqtt_signaling"];
    assert_eq!(m["state"], "done (broker connection closed)", "signaling ended once the channels opened: {r}");
    assert!(m["session"].as_str().is_some_and(|s| !s.is_empty()), "an MQTT session: {r}");
    assert!(m["candidates_sent"].as_u64().unwrap_or(0) > 0, "the console trickled its candidates: {r}");
    println!(
        "mqtt signaling: setup {} ms in the console (server: {} ms offer → video open) · first frames {} ms · \
         candidates sent {} · server candidates {} · session {}",
        r["webrtc_setup_ms"],
        r["server_setup_ms"],
        r["first_frames_ms"],
        m["candidates_sent"],
        m["server_candidates"],
        m["session"]
    );
}
