//! NATS: a real `nats-server` (Debian's, scripts/setup.sh) on a free loopback port, for the
//! server's cluster (docs/cluster.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::mqtt::free_port;

/// Where Debian's package puts it; `nats-server` on the `PATH` otherwise.
pub fn binary() -> PathBuf {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// A `nats-server` process, killed when dropped.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Nats {
    /// Start it on a free port of 127.0.0.1 and wait until it accepts connections.
    pub async fn start(dir: &Path) -> Nats {
        let port = free_port();
        let log = dir.join(format!("nats-{port}.log"));
        let child = spawn(port, &log).await;
        Nats { child, port, log }
    }

    /// Start it again on the same port (after [`Nats::kill`]).
    pub async fn restart(&mut self) {
        self.child = spawn(self.port, &self.log).await;
    }

    /// The server's `--cluster-nats-url`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stop it now.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

async fn spawn(port: u16, log: &Path) -> Child {
    let open = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p).expect("nats log");
    let child = Command::new(binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(open(log))
        .stderr(open(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs nats-server ({}): run scripts/setup.sh ({e})", binary().display()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "nats-server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}
