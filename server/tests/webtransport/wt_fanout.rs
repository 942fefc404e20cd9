//! End to end over WebTransport: 2 simulated trains, 3 clients mapped to different trains, each
//! pinning the certificate hash the API publishes. Every client reassembles complete frames whose
//! SHA-256 match the simulator's manifest, in order per camera, for its own train only; video came
//! as datagrams; a command is acked on the client's stream. The welcome names the transport.

use std::time::Duration;

use testkit::ws::verify;
use testkit::{pct, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_two_trains_get_exact_frames_and_acks() {
    let dir = scratch("wt_fanout");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "2", "--cameras", "2"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-2", true).await;

    let plan = [("a", "train-1"), ("b", "train-2"), ("c", "train-1")];
    let mut clients = Vec::new();
    for (name, train) in plan {
        let rc = remote_control(&server, Some(train)).await;
        clients.push((name, train, testkit::wt::connect(&server, &rc).await));
    }
    let window = Duration::from_secs(6);
    tokio::time::sleep(window).await;

    // What the clients got before what the train sent: a frame sent after the manifest is read
    // would be in no manifest.
    let received: Vec<_> = clients.iter().map(|(_, _, client)| client.frames()).collect();
    let manifest = sim.manifest();
    for ((name, train, client), frames) in clients.iter().zip(received) {
        let checked = verify(&frames, &manifest);
        assert!(frames.iter().all(|f| f.train.as_deref() == Some(*train)), "client {name} got another train's frame");
        let mut expected = 0;
        for cam in 0..2u16 {
            let Some(first) = frames.iter().find(|f| f.camera == cam) else {
                panic!("client {name}: no frame of camera {cam}")
            };
            let last_sent = manifest.of_train(train).filter(|e| e.camera == cam).map(|e| e.seq).max().unwrap_or(0);
            expected += (last_sent - first.seq + 1) as usize;
        }
        let mut lat: Vec<u64> = frames.iter().map(|f| f.latency_us).collect();
        lat.sort_unstable();
        let log = client.log.lock().expect("lock");
        println!(
            "client {name} ({train}): {checked} frames verified of {expected} sent since its first; {} packets \
             ({} datagrams, {} on streams); frame latency p50 {} µs p99 {} µs",
            log.packets,
            log.datagrams,
            log.stream_packets,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
        );
        assert!(checked + 6 >= expected, "client {name}: {checked} of {expected} frames");
        assert!(log.datagrams > 0 && log.datagrams == log.packets, "video as datagrams");
        let welcome = log.events.iter().find(|e| e["type"] == "welcome").expect("welcome");
        assert_eq!(welcome["transport"], "webtransport");
        assert_eq!(log.events.first().map(|e| e["type"].clone()), Some("welcome".into()), "the welcome comes first");
        assert!(log.events.iter().any(|e| e["type"] == "pong"), "the first message (a ping) is answered");
    }

    // A command goes to the train and its ack comes back on the client's stream.
    let (_, _, client) = &clients[0];
    let rtts = client.command_round_trips(3, Duration::from_secs(5), String::new).await;
    println!("command round trips over WebTransport: {rtts:?} ms");

    // The session is listed with its transport.
    let (status, sessions) = testkit::api("GET", &server.url("/api/sessions"), None).await;
    assert_eq!(status, 200, "{sessions}");
    let listed = sessions.as_array().expect("list").iter().filter(|s| s["transport"] == "webtransport").count();
    assert_eq!(listed, 3, "{sessions}");
}
