//! The operator console in Chromium over MQTT: MQTT.js connects to a real mosquitto's WebSocket
//! listener with the credentials of `POST /api/mqtt/sessions`, two cameras at 640×480, 30 fps
//! decode onto canvases from the video topic, the overlay shows glass-to-glass latency, and a
//! command gets its ack through the broker.

use testkit::mqtt::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_streams_over_mqtt() {
    let _serial = testkit::serial().await;
    let dir = testkit::scratch("console_mqtt_broker");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    testkit::console::stream_over_with(
        "console_mqtt",
        "mqtt",
        "console over MQTT (mosquitto, 640×480, 30 fps, 2 cameras)",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
}
