//! Only operators (and admins) command: a viewer's command is refused with `forbidden` on every
//! transport and never reaches the train; a viewer may still ask for a keyframe (its decoder's
//! way to recover). An operator's command is acked.

use serde_json::json;
use testkit::webrtc::RtcClient;
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

async fn command(client: &Client, id: &str, action: serde_json::Value) -> serde_json::Value {
    client.send_text(json!({"type": "command", "request_id": id, "command": action}).to_string()).await;
    client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_watch_operators_command() {
    let dir = scratch("auth_commands");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let viewer_ws = Client::connect(&server.ws_url_as(&rc, Some(server.token("viewer")))).await;
    let viewer_rtc = RtcClient::connect_as(&server, &rc, Some(server.token("viewer"))).await;
    let operator = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    viewer_ws.wait_frames(1).await;
    viewer_rtc.client.wait_frames(1).await;

    for (client, transport) in [(&viewer_ws, "websocket"), (&viewer_rtc.client, "webrtc")] {
        let e = command(client, &format!("speed-{transport}"), json!({"type": "set_speed", "kmh": 5})).await;
        assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("command_error"), Some("forbidden")), "{e}");
        assert!(e["message"].as_str().expect("message").contains("viewer"), "{e}");
        let e = command(client, &format!("kf-{transport}"), json!({"type": "request_keyframe"})).await;
        assert_eq!((e["type"].as_str(), e["ok"].as_bool()), (Some("command_ack"), Some(true)), "{e}");
    }
    let e = command(&operator, "op-speed", json!({"type": "set_speed", "kmh": 77})).await;
    assert_eq!((e["type"].as_str(), e["ok"].as_bool()), (Some("command_ack"), Some(true)), "{e}");
    // The train only ever ran at what the operator asked: the viewers' set_speed never reached it.
    operator.wait_event("telemetry at 77", |e| e["type"] == "telemetry" && e["telemetry"]["speed_kmh"] == 77.0).await;
    assert!(
        !operator.events().iter().any(|e| e["type"] == "telemetry" && e["telemetry"]["speed_kmh"] == 5.0),
        "a refused command changed the train"
    );
}
