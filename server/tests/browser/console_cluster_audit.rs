//! The console's command history in a cluster, in Chromium: the train on node A, a WebSocket
//! client on A sends a horn (audited on A), the console on node B sends one (audited on B); the
//! history shows both, each row naming its node, none twice, and no node missing.

use std::time::Duration;

use serde_json::json;
use testkit::console::{artifacts, web_root, Console};
use testkit::nats::Nats;
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_shows_every_nodes_commands() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_cluster_audit");
    let root = web_root();
    let nats = Nats::start(&dir).await;
    let url = nats.url();
    let a = Server::start(&dir, &["--cluster-nats-url", &url, "--cluster-node-id", "node-a"]).await;
    let b = Server::start_sharing(
        &dir,
        &a,
        &["--cluster-nats-url", &url, "--cluster-node-id", "node-b", "--web-root", &root],
    )
    .await;
    let _sim = Sim::start(&dir, &a, &[&["--trains", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&b, "train-1", true).await;

    let rc = remote_control(&a, Some("train-1")).await;
    let on_a = Client::connect(&a.ws_url(&rc)).await;
    on_a.send_text(
        json!({"type": "command", "request_id": "a0", "command": {"type": "horn", "duration_ms": 20}}).to_string(),
    )
    .await;
    let ack = on_a.wait_event("a0", |e| e["type"] == "command_ack" && e["request_id"] == "a0").await;
    assert_eq!(ack["ok"], true, "{ack}");

    let port = b.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        "cluster-audit",
        &artifacts("console_cluster_audit"),
        b.token("admin"),
        &[("AUDIT_NODES", "node-a,node-b")],
    );
    let r = console.finish(Duration::from_secs(90)).await;
    println!(
        "cluster history in the console: both nodes' horns shown {} ms after the console's ack: {}",
        r["history_ms"], r["history"]
    );
    let rows = r["history"].as_array().expect("history rows");
    for node in ["node-a", "node-b"] {
        assert!(rows.iter().any(|row| row["node"] == node && row["command"] == "horn"), "{node}'s horn: {r}");
    }
    drop(nats);
}
