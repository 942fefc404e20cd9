//! Several relay nodes as one service over real nats-servers (docs/cluster.md).
//!
//! Two nodes on one NATS server: the train on node A, viewers and commands on node B — exact
//! frames, commands acked across nodes, the control lease held on the train's node, the train
//! going offline on B when it leaves A, a NATS restart, bad messages on its subjects. Three nodes on a cluster of three NATS servers: shared
//! remote controls and mappings, revocations on every node, ownership by epoch, a node killed,
//! a NATS server killed.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod audit;
mod bad_input;
mod command_errors;
mod commands;
mod control;
mod failover;
mod late_join;
mod media;
mod mirror_gop;
mod nats_node_lost;
mod nats_restart;
mod offline;
mod ownership;
mod revocation;
mod spread;
mod three_nodes;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testkit::nats::Nats;
use testkit::{api, Server, Sim, SMALL_VIDEO};

/// One nats-server, node A (the train's) and node B, and the simulator (1 train) on A. Both nodes
/// take the same credentials.
#[derive(Debug)]
pub struct Nodes {
    pub nats: Nats,
    pub a: Server,
    pub b: Server,
    pub sim: Sim,
}

impl Nodes {
    pub async fn start(dir: &Path) -> Nodes {
        let (nats, a, b) = two_nodes(dir).await;
        let sim = Sim::start(dir, &a, &[&["--trains", "1"], SMALL_VIDEO].concat());
        Nodes { nats, a, b, sim }
    }
}

/// One nats-server and nodes A and B sharing the credentials, both ready; no train.
pub async fn two_nodes(dir: &Path) -> (Nats, Server, Server) {
    let nats = Nats::start(dir).await;
    let url = nats.url();
    let a = Server::start(dir, &["--cluster-nats-url", &url, "--cluster-node-id", "node-a"]).await;
    let b = Server::start_sharing(dir, &a, &["--cluster-nats-url", &url, "--cluster-node-id", "node-b"]).await;
    for node in [&a, &b] {
        wait_ready(node).await;
    }
    (nats, a, b)
}

/// Three nats-servers routed into one cluster, relay nodes A, B and C connected to all three
/// (the shared state kept in three copies), one set of credentials.
#[derive(Debug)]
pub struct Three {
    pub nats: Vec<Nats>,
    pub a: Server,
    pub b: Server,
    pub c: Server,
}

impl Three {
    pub async fn start(dir: &Path) -> Three {
        let nats = Nats::cluster(dir, 3).await;
        let urls = Nats::urls(&nats);
        let node =
            |id: &'static str| ["--cluster-nats-url", &urls, "--cluster-node-id", id, "--cluster-kv-replicas", "3"];
        let a = Server::start(dir, &node("node-a")).await;
        let b = Server::start_sharing(dir, &a, &node("node-b")).await;
        let c = Server::start_sharing(dir, &a, &node("node-c")).await;
        let started = std::time::Instant::now();
        for node in [&a, &b, &c] {
            wait_ready(node).await;
        }
        println!(
            "cluster: three nodes ready (shared state taken in) {} ms after they started",
            started.elapsed().as_millis()
        );
        Three { nats, a, b, c }
    }
}

/// Wait until `/readyz` says the node has reached NATS and taken in the shared state.
pub async fn wait_ready(node: &Server) {
    wait_api(node, "/readyz", "ready", |s, _| s == 200).await;
}

/// Create a remote control on `on` and wait until `also` has it too (the shared state).
pub async fn shared_remote_control(on: &Server, also: &[&Server]) -> String {
    let (status, rc) = api("POST", &on.url("/api/remote-controls"), Some(serde_json::json!({}))).await;
    assert_eq!(status, 201, "{rc}");
    let id = rc["id"].as_str().expect("id").to_owned();
    for node in also {
        wait_api(node, &format!("/api/remote-controls/{id}"), "the remote control", |s, _| s == 200).await;
    }
    id
}

/// Poll `path` on `node` (as the admin) until `done(status, body)`, for up to 20 s.
pub async fn wait_api(node: &Server, path: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = api("GET", &node.url(path), None).await;
        if done(status, &v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} on {}: {status} {v}", node.http);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
