//! The console over HTTPS: the server's HTTP listener and its QUIC endpoint present certificates
//! issued by a test CA; the train verifies both against that CA (`--ca`: discovery over HTTPS,
//! then QUIC); Chromium, trusting the CA through `--ignore-certificate-errors-spki-list` (no CA
//! installed anywhere), opens `https://localhost:PORT/` and plays video over the WebSocket
//! transport (`wss://`): pictures painted, latency measured, a command acked.

use std::time::Duration;

use testkit::console::{artifacts, report, web_root, Console};
use testkit::tls::TestCa;
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_plays_over_https_with_a_test_ca() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_https");
    let root = web_root();
    let ca = TestCa::new("railcast console test CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]).write(&dir, "server");
    let (cert, key) = (cert.to_str().expect("utf8"), key.to_str().expect("utf8"));
    let server = Server::start(
        &dir,
        &["--web-root", &root, "--http-tls-cert", cert, "--http-tls-key", key, "--tls-cert", cert, "--tls-key", key],
    )
    .await;
    assert!(server.https);
    let ca_path = ca_file.to_str().expect("utf8");
    let _sim =
        Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "1", "--ca", ca_path], SMALL_VIDEO].concat());
    let port = server.http.rsplit(':').next().expect("port");
    let spki = format!("--ignore-certificate-errors-spki-list={}", ca.spki_sha256_base64());
    let console = Console::spawn(
        &format!("https://localhost:{port}"),
        "websocket",
        &artifacts("console_https"),
        server.token("admin"),
        &[("MEASURE_MS", "3000"), ("CHROMIUM_ARGS", &spki), ("NODE_EXTRA_CA_CERTS", ca_path)],
    );
    let r = console.finish(Duration::from_secs(120)).await;
    report("console over HTTPS (wss, 320×240, 15 fps)", &r);
    assert_eq!(r["transport"], "websocket");
    assert_eq!(r["ack_transport"], "websocket", "{r}");
    assert_eq!(r["cameras"].as_array().map(Vec::len), Some(1), "the camera painted: {r}");
    assert!(r["base_url"].as_str().is_some_and(|u| u.starts_with("https://")), "{r}");
}
