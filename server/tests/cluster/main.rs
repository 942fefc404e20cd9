//! Several relay nodes as one service over a real nats-server (docs/cluster.md): two nodes, the
//! train on node A, viewers and commands on node B — exact frames, commands acked across nodes,
//! the train going offline on B when it leaves A, a NATS restart, bad messages on its subjects.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod bad_input;
mod commands;
mod media;
mod nats_restart;
mod offline;

use std::path::Path;

use testkit::nats::Nats;
use testkit::{Server, Sim, SMALL_VIDEO};

/// One nats-server, node A (the train's) and node B, and the simulator (1 train) on A.
#[derive(Debug)]
pub struct Nodes {
    pub nats: Nats,
    pub a: Server,
    pub b: Server,
    pub sim: Sim,
}

impl Nodes {
    pub async fn start(dir: &Path) -> Nodes {
        let nats = Nats::start(dir).await;
        let url = nats.url();
        let a = Server::start(dir, &["--cluster-nats-url", &url, "--cluster-node-id", "node-a"]).await;
        let b = Server::start(dir, &["--cluster-nats-url", &url, "--cluster-node-id", "node-b"]).await;
        let sim = Sim::start(dir, &a, &[&["--trains", "1"], SMALL_VIDEO].concat());
        Nodes { nats, a, b, sim }
    }
}
