//! WebRTC data channels end to end: a webrtc-rs client follows the REST flow (offer from the
//! server, answer, trickled candidates), receives frames whose SHA-256 match the simulator's
//! manifest on `video`, round-trips a command on `command`, while the same remote control also
//! watches over WebSocket. DELETE ends the session.

use std::time::Duration;

use serde_json::json;
use testkit::webrtc::RtcClient;
use testkit::ws::{verify, Client};
use testkit::{api, pct, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_channels_carry_verified_frames_and_commands() {
    let dir = scratch("webrtc_flow");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let rtc = RtcClient::connect(&server, &rc).await;
    let ws = Client::connect(&server.ws_url(&rc)).await;
    println!("setup (offer request → both channels open, client side): {:.1} ms", rtc.setup.as_secs_f64() * 1000.0);
    let c = &rtc.client;
    let welcome = c.wait_event("welcome", |e| e["type"] == "welcome").await;
    assert_eq!(welcome["transport"], "webrtc");
    c.wait_frames(30).await;

    c.send_text(
        json!({"type": "command", "request_id": "dc-1", "command": {"type": "set_speed", "kmh": 42}}).to_string(),
    )
    .await;
    let ack = c.wait_event("ack", |e| e["request_id"] == "dc-1").await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    c.send_text(r#"{"type":"ping","t":7}"#).await;
    c.wait_event("pong", |e| e["type"] == "pong" && e["t"] == 7.0).await;
    c.send_text("not json").await;
    c.wait_event("error", |e| e["type"] == "error" && e["code"] == "bad_message").await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (frames, ws_frames) = (c.frames(), ws.frames());
    let manifest = sim.manifest();
    let checked = verify(&frames, &manifest);
    let mut lat: Vec<u64> = frames.iter().map(|f| f.latency_us).collect();
    lat.sort_unstable();
    println!("webrtc: {checked} frames verified, latency p50 {} µs p99 {} µs", pct(&lat, 0.5), pct(&lat, 0.99));
    for cam in 0..2u16 {
        let first = frames.iter().find(|f| f.camera == cam).expect("frames of every camera").seq;
        let sent = manifest.of_train("train-1").filter(|e| e.camera == cam && e.seq >= first).count();
        let got = frames.iter().filter(|f| f.camera == cam).count();
        assert!(got + 3 >= sent, "camera {cam}: {got} of {sent} frames over the data channel");
    }
    verify(&ws_frames, &manifest);
    assert!(ws.frames().len() >= 30, "the WebSocket session of the same remote control streams too");

    let (_, sessions) = api("GET", &server.url("/api/webrtc/sessions"), None).await;
    let s = &sessions[0];
    assert_eq!(s["session_id"], rtc.session_id.as_str());
    assert_eq!(s["state"], "connected", "{s}");
    assert!(s["setup_ms"].as_f64().is_some(), "{s}");
    println!("server-side setup {} ms", s["setup_ms"]);
    let (_, view) = api("GET", &server.url(&format!("/api/remote-controls/{rc}")), None).await;
    let transports: Vec<&str> =
        view["sessions"].as_array().expect("sessions").iter().filter_map(|s| s["transport"].as_str()).collect();
    assert!(transports.contains(&"webrtc") && transports.contains(&"websocket"), "{view}");

    let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{}", rtc.session_id)), None).await;
    assert_eq!(status, 204);
    c.wait_event("closing", |e| e["type"] == "closing").await;
    testkit::wait_no_webrtc_sessions(&server).await;
    let _ = rtc.pc.close().await;
}
