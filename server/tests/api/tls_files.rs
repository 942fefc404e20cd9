//! The QUIC certificate: the fingerprint printed at start-up is the one served for pinning, and
//! certificate and key files are accepted (and a train pinning them connects).

use sha2::{Digest, Sha256};
use testkit::{api, scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

fn colon_hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_certificate_is_printed_and_served() {
    let dir = scratch("tls_generated");
    let server = Server::start(&dir, &[]).await;
    let (status, cert) = api("GET", &server.url("/api/quic/certificate"), None).await;
    assert_eq!(status, 200);
    assert_eq!(cert["sha256"], server.fingerprint.as_str());
    assert_eq!(cert["alpn"], "railcast/1");
    assert_eq!(cert["self_signed"], true);
    assert_eq!(cert["quic_port"].as_u64(), server.quic.rsplit(':').next().and_then(|p| p.parse().ok()));
    assert!(cert["pem"].as_str().expect("pem").starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_used_and_pinned() {
    let dir = scratch("tls_files");
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("generate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.key_pair.serialize_pem()).expect("write key");
    let want = colon_hex(&Sha256::digest(key.cert.der()));

    let server = Server::start(
        &dir,
        &["--tls-cert", cert_path.to_str().expect("utf8"), "--tls-key", key_path.to_str().expect("utf8")],
    )
    .await;
    assert_eq!(server.fingerprint, want);
    let (_, cert) = api("GET", &server.url("/api/quic/certificate"), None).await;
    assert_eq!(cert["self_signed"], false);

    // A train pinning the file's certificate connects over QUIC directly (no discovery).
    let quic = server.quic.clone();
    let _sim =
        Sim::start(&dir, &server, &[&["--trains", "1", "--quic", &quic, "--cert-sha256", &want], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;

    // A bad key file is refused at start-up with a message naming the file.
    let out = tokio::process::Command::new(testkit::bin("railcast-server"))
        .args(["--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&cert_path)
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cert.pem"), "{err}");
}
