//! `/metrics` after an end-to-end run: the counters match what the clients received, what the
//! API reports and what the simulator sent.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use testkit::ws::Client;
use testkit::{api, get_text, raw, remote_control, scratch, Server, Sim, SMALL_VIDEO};

async fn scrape(server: &Server) -> HashMap<String, f64> {
    let (status, ct, text) = get_text(&server.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    samples(&text)
}

/// Every sample of a scrape, by name and labels as written.
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN))))
        .collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("metric {key} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_what_clients_received() {
    let dir = scratch("metrics");
    let server = Server::start(&dir, &[]).await;
    let mut sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let mut clients = Vec::new();
    for _ in 0..2 {
        let rc = remote_control(&server, Some("train-1")).await;
        clients.push(Client::connect(&server.ws_url(&rc)).await);
    }
    clients[0].wait_frames(10).await;
    clients[0].send_text(json!({"type": "command", "request_id": "m1", "command": {"type": "horn"}}).to_string()).await;
    clients[0].wait_event("ack", |e| e["type"] == "command_ack").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.kill().await;
    clients[0].wait_event("offline", |e| e["type"] == "train_offline").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let the last packets drain

    let m = scrape(&server).await;
    let received: u64 = clients.iter().map(|c| c.log.lock().expect("lock").packets).sum();
    let frames_started: u64 = clients.iter().map(|c| c.log.lock().expect("lock").frame_starts).sum();
    let out = get(&m, r#"railcast_packets_out_total{transport="websocket"}"#);
    println!(
        "packets out {out}, received by clients {received}; frames out {}",
        get(&m, r#"railcast_frames_out_total{transport="websocket"}"#)
    );
    assert_eq!(out as u64, received, "every packet handed to WebSocket reached a client");
    assert_eq!(get(&m, r#"railcast_frames_out_total{transport="websocket"}"#) as u64, frames_started);
    assert_eq!(get(&m, r#"railcast_relay_latency_seconds_count{transport="websocket"}"#) as u64, received);
    let bytes: u64 = clients.iter().map(|c| c.log.lock().expect("lock").bytes).sum();
    assert_eq!(get(&m, r#"railcast_bytes_out_total{transport="websocket"}"#) as u64, bytes);

    let (_, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(
        get(&m, r#"railcast_packets_in_total{transport="quic"}"#) as u64,
        train["packets_in"].as_u64().expect("n")
    );
    assert_eq!(
        get(&m, r#"railcast_frames_in_total{transport="quic"}"#) as u64,
        train["frames_in"].as_u64().expect("n")
    );
    let sent = sim.manifest().entries.len() as u64;
    let frames_in = get(&m, r#"railcast_frames_in_total{transport="quic"}"#) as u64;
    // Frames queued in QUIC when the simulator was killed may be in the manifest but never sent.
    assert!(frames_in <= sent && frames_in + 4 >= sent, "frames in {frames_in}, manifest {sent}");

    // Each client got every frame that arrived while it was subscribed, minus the drops counted.
    let (_, sessions) = api("GET", &server.url("/api/sessions"), None).await;
    let dropped: u64 =
        sessions.as_array().expect("list").iter().map(|s| s["frames_dropped"].as_u64().expect("n")).sum();
    let dropped_metric: f64 =
        m.iter().filter(|(k, _)| k.starts_with("railcast_frames_dropped_total")).map(|(_, v)| v).sum();
    assert_eq!(dropped_metric as u64, dropped);
    let queued: u64 = sessions.as_array().expect("list").iter().map(|s| s["packets_queued"].as_u64().expect("n")).sum();
    assert_eq!(queued, received);

    assert_eq!(get(&m, "railcast_commands_sent_total"), 1.0);
    assert_eq!(get(&m, r#"railcast_commands_acked_total{result="ok"}"#), 1.0);
    assert_eq!(get(&m, "railcast_trains_connected"), 0.0);
    assert_eq!(get(&m, "railcast_trains_known"), 1.0);
    assert_eq!(get(&m, "railcast_remote_controls"), 2.0);
    assert_eq!(get(&m, r#"railcast_sessions{transport="websocket"}"#), 2.0);
    assert_eq!(get(&m, "railcast_train_connections_total"), 1.0);
    assert_eq!(get(&m, "railcast_command_rtt_seconds_count"), 1.0, "the ack's round trip");
    assert_eq!(get(&m, r#"railcast_commands_failed_total{reason="command_timeout"}"#), 0.0, "known reasons start at 0");

    // The train's own series agree with the API and the totals.
    let t = |name: &str| get(&m, &format!(r#"{name}{{train="train-1"}}"#));
    assert_eq!(t("railcast_train_frames_in_total") as u64, train["frames_in"].as_u64().expect("n"));
    assert_eq!(t("railcast_train_bytes_in_total") as u64, train["bytes_in"].as_u64().expect("n"));
    assert_eq!(t("railcast_train_frames_dropped_total") as u64, dropped);
    assert_eq!(t("railcast_train_subscribers"), 2.0);
    assert_eq!(t("railcast_train_online"), 0.0);
    assert_eq!(t("railcast_train_bitrate_bits_per_second"), 0.0, "offline");

    // Which build, and the process.
    let info = m.keys().find(|k| k.starts_with("railcast_build_info{")).expect("build info");
    assert!(info.contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))), "{info}");
    assert!(!info.contains(r#"commit="""#), "{info}");
    assert!(get(&m, "process_resident_memory_bytes") > 1e6);
    assert!(get(&m, "process_open_fds") > 5.0);
    assert!(get(&m, "process_cpu_seconds_total") >= 0.0);

    // The endpoint stays available after the run.
    let (status, _) = raw("GET", &server.url("/metrics"), None, b"").await;
    assert_eq!(status, 200);
}
