//! End to end: server on ephemeral ports, 2 simulated trains, 3 WebSocket clients mapped to
//! different trains. Every client reassembles complete frames whose SHA-256 match the simulator's
//! manifest, in order, for its own train only. Prints delivered frames/s and relay latency.

use std::time::Duration;

use testkit::ws::{verify, Client};
use testkit::{pct, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_two_trains_get_exact_frames_of_their_own_train() {
    let dir = scratch("ws_fanout");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "2", "--cameras", "2"], SMALL_VIDEO].concat());

    let plan = [("a", "train-1"), ("b", "train-2"), ("c", "train-1")];
    let mut clients = Vec::new();
    for (name, train) in plan {
        let rc = remote_control(&server, Some(train)).await;
        clients.push((name, train, Client::connect(&server.ws_url(&rc)).await));
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
        // Frames the train sent since this client's first frame, per camera: nearly all arrive.
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
        let mut plat = log.packet_latency_us.clone();
        plat.sort_unstable();
        println!(
            "client {name} ({train}): {checked} frames verified of {expected} sent since its first, {:.1} frames/s, {} packets; \
             frame latency p50 {} µs p99 {} µs max {} µs; packet latency p50 {} µs p99 {} µs",
            checked as f64 / window.as_secs_f64(),
            log.packets,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(0),
            pct(&plat, 0.5),
            pct(&plat, 0.99),
        );
        // Frames still in flight at the moment we stopped may be missing (≤ 3 per camera).
        assert!(checked + 6 >= expected, "client {name}: {checked} of {expected} frames");
        assert!(log.events.iter().any(|e| e["type"] == "welcome"));
    }
}
