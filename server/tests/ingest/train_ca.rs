//! A train verifies the server's QUIC certificate against a CA (`--ca FILE`) instead of trusting
//! the fingerprint discovery returns: a certificate issued by that CA for the server's name is
//! accepted; one the train's CA did not issue, or one for another name, is refused with an error
//! that says which check failed, and that train never comes online. Without `--ca` or
//! `--cert-sha256` the simulator still connects by discovery (the demo) and warns that it is
//! trust on first use.

use std::time::Duration;

use testkit::tls::TestCa;
use testkit::{api, scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

async fn online(server: &Server, train: &str) -> bool {
    let (status, v) = api("GET", &server.url(&format!("/api/trains/{train}")), None).await;
    status == 200 && v["online"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_verifies_the_quic_certificate_against_its_ca() {
    let dir = scratch("train_ca");
    let ca = TestCa::new("railcast trains CA");
    let (cert, key) = ca.issue(&["relay.railcast.test", "127.0.0.1"]).write(&dir, "quic");
    let ca_file = ca.write(&dir, "ca.pem");
    let other_file = TestCa::new("someone else's CA").write(&dir, "other-ca.pem");
    let server =
        Server::start(&dir, &["--tls-cert", cert.to_str().expect("utf8"), "--tls-key", key.to_str().expect("utf8")])
            .await;
    let one = |n: &'static str| [&["--trains", "1", "--first", n][..], SMALL_VIDEO].concat();
    let arg = |p: &std::path::Path| p.to_str().expect("utf8").to_owned();

    // The train's CA issued the server's certificate; the name is the URL's host (127.0.0.1).
    let ca_path = arg(&ca_file);
    let good = Sim::start(&dir, &server, &[one("1"), vec!["--ca", &ca_path]].concat());
    wait_for_train(&server, "train-1", true).await;
    let log = good.wait_log("connected", Duration::from_secs(5)).await;
    assert!(!log.contains("trust on first use"), "{log}");

    // The same CA and a name given with --server-name, at a fixed QUIC address (no discovery).
    let named = Sim::start(
        &dir,
        &server,
        &[one("2"), vec!["--ca", &ca_path, "--server-name", "relay.railcast.test", "--quic", &server.quic]].concat(),
    );
    wait_for_train(&server, "train-2", true).await;
    drop(named);

    // Another CA: refused in the handshake, and the log says what was expected of the server.
    let other_path = arg(&other_file);
    let stranger = Sim::start(&dir, &server, &[one("3"), vec!["--ca", &other_path]].concat());
    let log = stranger.wait_log("cannot connect", Duration::from_secs(10)).await;
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(log.contains(&format!("issued by the CA in {other_path}")), "{log}");
    // A certificate from the right CA for another name: refused too.
    let misnamed =
        Sim::start(&dir, &server, &[one("4"), vec!["--ca", &ca_path, "--server-name", "elsewhere.test"]].concat());
    let log = misnamed.wait_log("cannot connect", Duration::from_secs(10)).await;
    assert!(log.contains("not valid for name \"elsewhere.test\""), "{log}");
    assert!(!online(&server, "train-3").await && !online(&server, "train-4").await, "a refused train is online");

    // The demo default (discovery over plain HTTP): connects, with the warning.
    let demo = Sim::start(&dir, &server, &one("5"));
    wait_for_train(&server, "train-5", true).await;
    demo.wait_log("trust on first use", Duration::from_secs(5)).await;

    // --quic without a way to check the certificate is refused at once.
    let out = tokio::process::Command::new(testkit::bin("railcast-train-sim"))
        .args(["--quic", &server.quic, "--duration", "1s"])
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--quic needs --ca or --cert-sha256"), "{err}");
}
