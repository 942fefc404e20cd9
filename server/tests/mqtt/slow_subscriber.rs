//! A subscriber that stops reading stalls nobody: its session's video backs up in the broker
//! (which drops beyond `max_queued_messages`) while another session of the same train gets every
//! frame on time, and the server keeps publishing.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::sync::Arc;
use testkit::mqtt::Broker;

use testkit::{remote_control, scratch, RawTrain, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_stalls_nobody() {
    let dir = scratch("mqtt_slow_subscriber");
    let broker = Broker::start(&dir).await;
    let args = broker.server_args();
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // 30 frames of 30 kB a second, 7.2 Mbit/s: more than loopback's socket buffers take in the
    // test's 10 s, so the broker's queue for the stalled client fills and overflows.
    let train = Arc::new(RawTrain::connect(&server, "train-1", Duration::ZERO).await);
    let rc = remote_control(&server, Some("train-1")).await;
    let sender = Arc::clone(&train);
    let feed = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for seq in 1..=600u32 {
            tick.tick().await;
            let payload: Vec<u8> = (0..30_000u32).map(|i| i.wrapping_mul(seq) as u8).collect();
            sender.send_frame(seq, seq % 30 == 1, testkit::now_us(), &payload, None);
        }
    });
    let (_, healthy) = testkit::mqtt::connect_rc(&server, &broker, &rc).await;
    healthy.wait_frames(10).await;

    // The stalled one: subscribes, says its first message, then never reads its socket again
    // (a keep-alive long enough that the broker does not drop it during the test).
    let stalled = testkit::mqtt::create_session(&server, &rc).await;
    let mut o = testkit::mqtt::options(broker.port, &stalled);
    o.set_keep_alive(Duration::from_secs(120));
    let (c, mut el) = AsyncClient::new(o, 8);
    let video = stalled["topics"]["video"].as_str().expect("topic").to_owned();
    let command = stalled["topics"]["command"].as_str().expect("topic").to_owned();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), el.poll()).await.expect("broker answers").expect("ok") {
            Event::Incoming(Packet::ConnAck(_)) => c.subscribe(&video, QoS::AtMostOnce).await.expect("subscribe"),
            Event::Incoming(Packet::SubAck(_)) => {
                c.publish(&command, QoS::AtLeastOnce, false, br#"{"type":"ping","t":1}"#.to_vec()).await.expect("ping")
            }
            Event::Incoming(Packet::PubAck(_)) => break,
            _ => {}
        }
    }
    // From here `el` is never polled: nothing is read from the socket.
    let start_frames = healthy.frames().len();
    let start_bytes = healthy.log.lock().expect("lock").bytes;
    let rss_before = broker.rss_kib();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let got = healthy.frames().len() - start_frames;
    let mbit = (healthy.log.lock().expect("lock").bytes - start_bytes) as f64 * 8.0 / 10.0 / 1e6;
    let rss_after = broker.rss_kib();
    let late = {
        let log = healthy.log.lock().expect("lock");
        let recent: Vec<u64> = log.frames[start_frames..].iter().map(|f| f.latency_us).collect();
        let mut sorted = recent.clone();
        sorted.sort_unstable();
        testkit::pct(&sorted, 0.99)
    };
    let full = testkit::mqtt::metric(&server, "railcast_mqtt_publish_full_total").await;
    println!(
        "mqtt slow subscriber: the healthy client got {got} frames in 10 s ({mbit:.1} Mbit/s), p99 latency {} ms; \
         broker RSS {rss_before} → {rss_after} KiB; server publishes deferred: {full}",
        late / 1000
    );
    // 30 fps for 10 s = 300 frames.
    assert!(got >= 285, "the healthy session got only {got} frames in 10 s");
    assert!(mbit > 6.0, "the test did not load the broker: {mbit:.1} Mbit/s");
    assert!(late < 200_000, "p99 latency {} ms", late / 1000);
    // A loose bound (catches runaway growth only): mosquitto holds at most max_queued_bytes
    // (8 MiB) for the stalled client, beside what the socket buffers took.
    assert!(rss_after < rss_before + 32 * 1024, "broker RSS {rss_before} → {rss_after} KiB");
    drop(el);
    feed.abort();
}
