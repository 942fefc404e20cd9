//! Which self-signed certificates Chromium accepts through `serverCertificateHashes`, so that the
//! server's generator stays inside the rule: an ECDSA P-256 certificate whose whole validity is
//! 11 days (1 h back-dated, as the generator makes them) opens a session; the same certificate
//! shape valid 15 days is refused, and so is a hash that is not the certificate's. Each server
//! is given the certificate as its configured one (`--tls-cert`), and the page pins its SHA-256.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use testkit::{remote_control, scratch, Server};

/// A self-signed ECDSA P-256 certificate for 127.0.0.1 valid from 1 h ago for `days` days in all,
/// written as PEM files; its DER's SHA-256 in hex.
fn certificate(dir: &Path, name: &str, days: u64) -> (String, String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).expect("params");
    let start = SystemTime::now() - Duration::from_secs(3600);
    params.not_before = time::OffsetDateTime::from(start);
    params.not_after = time::OffsetDateTime::from(start + Duration::from_secs(days * 86_400));
    let cert = params.self_signed(&key).expect("certificate");
    let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let sha = testkit::sha256_hex(cert.der());
    (cert_path.display().to_string(), key_path.display().to_string(), sha)
}

/// The page's result for a session to `server` pinned to `hash`.
async fn open(server: &Server, hash: &str) -> Value {
    let browser_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser"));
    let rc = remote_control(server, None).await;
    let wt_port = server.webtransport.as_deref().expect("webtransport enabled").rsplit(':').next().expect("port");
    let http_port = server.http.rsplit(':').next().expect("port");
    let url = format!(
        "http://localhost:{http_port}/status?port={wt_port}&rc={rc}&token={}&hash={hash}",
        server.token("admin")
    );
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("run-page.mjs"))
        .arg(&url)
        .arg("")
        .arg("60000")
        .arg(browser_dir.join("webtransport-cert-test.js"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("node");
    assert!(out.status.success(), "browser run failed: {}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).expect("result JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pins_only_certificates_of_at_most_14_days() {
    let _serial = testkit::serial().await;
    let dir = scratch("webtransport_certificates");
    for (days, accepted) in [(11, true), (15, false)] {
        let (cert, key, sha) = certificate(&dir, &format!("wt-{days}d"), days);
        let server = Server::start(&dir, &["--tls-cert", &cert, "--tls-key", &key]).await;
        let r = open(&server, &sha).await;
        println!("{days}-day certificate: {r}");
        if accepted {
            assert_eq!(r["ok"], true, "{days}-day certificate refused: {r}");
            assert_eq!(r["first"]["type"], "welcome", "{r}");
            assert_eq!(r["first"]["transport"], "webtransport", "{r}");
            let wrong = "00".repeat(32);
            let r = open(&server, &wrong).await;
            assert_eq!(r["ok"], false, "a hash that is not the certificate's was accepted: {r}");
        } else {
            assert_eq!(r["ok"], false, "{days}-day certificate accepted: {r}");
        }
    }
}
