//! With a configured certificate (`--tls-cert`, `--tls-key`), the WebTransport endpoint serves it:
//! `GET /api/webtransport` publishes no hashes (`self_signed` false, the console omits
//! `serverCertificateHashes`) and the certificate's own expiry, and a client that trusts that
//! certificate (here: pins its hash, standing in for a CA) opens a session.

use sha2::{Digest, Sha256};
use testkit::{remote_control, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_certificate_is_served_without_hashes() {
    let dir = scratch("wt_configured_certificate");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("generate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, generated.cert.pem()).expect("write cert");
    std::fs::write(&key_path, generated.key_pair.serialize_pem()).expect("write key");
    let server = Server::start(
        &dir,
        &["--tls-cert", cert_path.to_str().expect("utf8"), "--tls-key", key_path.to_str().expect("utf8")],
    )
    .await;
    let info = testkit::wt::info(&server).await;
    assert_eq!(info["certificate_hashes"], serde_json::json!([]), "{info}");
    assert_eq!(info["self_signed"], false, "{info}");
    // rcgen's simple certificates run to 4096-01-01.
    assert!(info["expires_at"].as_str().is_some_and(|t| t.starts_with("4096-01-01")), "{info}");

    let rc = remote_control(&server, None).await;
    let hash = hex::encode(Sha256::digest(generated.cert.der()));
    let client = testkit::wt::connect_url(&testkit::wt::url(&server, &rc), &[hash]).await.expect("session");
    let welcome = client.wait_event("welcome", |e| e["type"] == "welcome").await;
    assert_eq!(welcome["transport"], "webtransport");
}
