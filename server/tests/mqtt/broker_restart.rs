//! The broker dies (SIGKILL) mid-stream and comes back on the same port: the server reconnects,
//! sets up its access control and subscriptions again, and the session goes on by itself — the
//! client (which reconnects and subscribes again, as MQTT.js does) gets the train's frames again,
//! still exact and in order, with no new session.

use std::time::{Duration, Instant};

use testkit::mqtt::Broker;
use testkit::ws::verify;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_recovers_by_itself() {
    let dir = scratch("mqtt_broker_restart");
    let mut broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let (_session, client) = testkit::mqtt::connect_rc(&server, &broker, &rc).await;
    client.wait_frames(20).await;
    let connects = testkit::mqtt::metric(&server, "railcast_mqtt_connects_total").await;

    broker.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = client.frames().len();
    let restarted = Instant::now();
    broker.restart().await;
    client.wait_frames(before + 30).await;
    println!("mqtt broker restart: 30 frames again {} ms after the broker came back", restarted.elapsed().as_millis());

    let frames = client.frames();
    verify(&frames, &sim.manifest());
    assert_eq!(client.events().iter().filter(|e| e["type"] == "welcome").count(), 1, "one session throughout");
    assert!(client.log.lock().expect("lock").closed.is_none());
    assert_eq!(testkit::mqtt::metric(&server, "railcast_mqtt_connected").await, 1.0);
    assert!(testkit::mqtt::metric(&server, "railcast_mqtt_connects_total").await > connects);
    // Commands work again too, once the server has subscribed again (a command published
    // before that is lost: MQTT keeps nothing for a topic nobody subscribes to).
    testkit::mqtt::wait_connected(&server).await;
    client.command_round_trips(1, Duration::from_secs(5), || broker.log()).await;
}
