//! The reverse-proxy examples in `deploy/` work: nginx (`deploy/nginx.conf`, with the test's
//! certificate, port and upstream put in) passes `nginx -t`, then serves railcast's API over HTTPS
//! and carries a WebSocket session (`wss://` → `/ws`) to it; Caddy's `deploy/Caddyfile` passes
//! `caddy validate`. Both tools come from Debian (scripts/setup.sh); nothing needs root or network.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use testkit::tls::{https_get, tls_connect, TestCa};
use testkit::{remote_control, scratch, Server};

fn tool(name: &str) -> PathBuf {
    let found =
        ["/usr/sbin", "/usr/bin", "/usr/local/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} is missing: run scripts/setup.sh (it installs nginx-light and caddy)"))
}

fn deploy(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)).expect("deploy file")
}

/// `text` with `from` replaced by `to`; fails if `from` is not there (the example changed).
fn put(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replace(from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_example_proxies_https_and_websocket() {
    let nginx = tool("nginx");
    let dir = scratch("reverse_proxy_nginx");
    let ca = TestCa::new("railcast proxy test CA");
    let (cert, key) = ca.issue(&["localhost"]).write(&dir, "proxy");
    let server = Server::start(&dir, &[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();

    let conf = deploy("nginx.conf");
    let conf = put(conf, "/etc/ssl/railcast/fullchain.pem", cert.to_str().expect("utf8"));
    let conf = put(conf, "/etc/ssl/railcast/privkey.pem", key.to_str().expect("utf8"));
    let conf = put(conf, "listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"));
    let conf = put(conf, "server 127.0.0.1:8080;", &format!("server {};", server.http));
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).expect("prefix");
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write conf");
    let pid = format!("pid {};", prefix.join("nginx.pid").display());
    let args = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(&nginx);
        cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf_path).args(["-e", "stderr"]).args(extra);
        cmd
    };

    let check = args(&["-t", "-g", &pid]).output().await.expect("nginx -t");
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success() && said.contains("test is successful"), "nginx -t: {said}");

    // One process in the foreground (no master and workers): killed with the test, it leaves no
    // worker behind holding the test's pipes.
    let single = format!("daemon off; master_process off; {pid}");
    let log = std::fs::File::create(dir.join("nginx.log")).expect("log");
    let _nginx = args(&["-g", &single]).stdout(Stdio::null()).stderr(log).kill_on_drop(true).spawn().expect("nginx");
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        match https_get(&url("/healthz"), &ca.pem()).await {
            Ok(a) => break a,
            Err(e) => assert!(Instant::now() < deadline, "nginx did not answer: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.status, 200, "{health:?}");
    let api = https_get(&url("/api/openapi.json"), &ca.pem()).await.expect("API through nginx");
    assert_eq!(api.status, 200);

    // A WebSocket session through nginx: the upgrade passes and the welcome arrives.
    let rc = remote_control(&server, None).await;
    let stream = tls_connect("localhost", port, &ca.pem()).await.expect("TLS to nginx");
    let ws = format!("wss://localhost:{port}/ws?remote_control_id={rc}&access_token={}", server.token("admin"));
    let (mut socket, response) = tokio_tungstenite::client_async(ws, stream).await.expect("WebSocket through nginx");
    assert_eq!(response.status(), 101);
    let first = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("in time");
    let first = first.expect("a message").expect("no error").into_text().expect("text");
    assert!(first.contains("welcome"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_example_is_valid() {
    let caddy = tool("caddy");
    let dir = scratch("reverse_proxy_caddy");
    let ca = TestCa::new("railcast proxy test CA");
    let (cert, key) = ca.issue(&["railcast.example"]).write(&dir, "proxy");
    let conf = deploy("Caddyfile");
    let conf = put(conf, "/etc/ssl/railcast/fullchain.pem", cert.to_str().expect("utf8"));
    let conf = put(conf, "/etc/ssl/railcast/privkey.pem", key.to_str().expect("utf8"));
    let path = dir.join("Caddyfile");
    std::fs::write(&path, conf).expect("write");
    let out = tokio::process::Command::new(caddy)
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        // Caddy keeps state under HOME/XDG dirs; keep it in the scratch directory.
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .output()
        .await
        .expect("caddy validate");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("Valid configuration"), "caddy validate: {said}");
}
