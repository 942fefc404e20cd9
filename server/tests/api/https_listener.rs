//! HTTPS on the HTTP listener (`http_tls_cert`, `http_tls_key`): the banner says `https`, a
//! client trusting the certificate's CA gets answers over TLS with ALPN http/1.1, a client
//! trusting another CA is refused in the handshake, plain HTTP to the port gets a 400 that says to
//! use https, a stalled handshake is cut at `http_header_timeout`, and SIGHUP swaps in a renewed
//! certificate for new connections while a bad file leaves the old one in force.

use std::time::{Duration, Instant};

use testkit::tls::{https_get, TestCa};
use testkit::{scratch, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends until it closes the connection (at most 10 s), and how long that took.
async fn until_closed(tcp: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server held the connection for 10 s");
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

/// Poll `https_get` until the server presents `want` (the certificate's SHA-256), for 10 s.
async fn wait_for_certificate(server: &Server, ca: &TestCa, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = https_get(&server.url("/healthz"), &ca.pem()).await;
        if got.as_ref().is_ok_and(|a| a.peer_sha256 == want) {
            return;
        }
        assert!(Instant::now() < deadline, "the server does not present {want} after SIGHUP: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_serves_refuses_and_reloads() {
    let dir = scratch("https_listener");
    let ca = TestCa::new("railcast test CA");
    let first = ca.issue(&["localhost", "127.0.0.1"]);
    let (cert, key) = first.write(&dir, "http");
    let server = Server::start(
        &dir,
        &[
            "--http-tls-cert",
            cert.to_str().expect("utf8"),
            "--http-tls-key",
            key.to_str().expect("utf8"),
            "--http-header-timeout",
            "500ms",
        ],
    )
    .await;
    assert!(server.https, "the banner says `listening https`");
    assert!(server.url("/").starts_with("https://"), "{}", server.url("/"));
    assert!(server.ws_url("rc").starts_with("wss://"), "{}", server.ws_url("rc"));

    // Trusting the CA: an answer over TLS, HTTP/1.1 by ALPN, with the configured certificate.
    let ok = https_get(&server.url("/healthz"), &ca.pem()).await.expect("GET /healthz over https");
    assert_eq!((ok.status, ok.alpn.as_deref()), (200, Some("http/1.1")), "{ok:?}");
    assert!(ok.body.contains("ok"), "{ok:?}");
    assert_eq!(ok.peer_sha256, first.sha256());
    // The API too, with the IP address as the name (the certificate has it).
    let api = https_get(&server.url("/api/openapi.json"), &ca.pem()).await.expect("GET /api/openapi.json");
    assert_eq!(api.status, 200);

    // Trusting another CA: the handshake fails on the client's side.
    let stranger = TestCa::new("another CA");
    let err = https_get(&server.url("/healthz"), &stranger.pem()).await.expect_err("another CA");
    assert!(err.contains("UnknownIssuer") || err.contains("invalid peer certificate"), "{err}");

    // Plain HTTP to the HTTPS port: a 400 in plain HTTP that says what to do, then closed.
    let mut tcp = TcpStream::connect(&server.http).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: railcast\r\n\r\n").await.expect("write");
    let (got, _) = until_closed(&mut tcp).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("https_required") && got.contains("https://"), "{got}");

    // A handshake that never completes (one byte of a TLS record): closed at the header timeout.
    let mut tcp = TcpStream::connect(&server.http).await.expect("connect");
    tcp.write_all(&[0x16]).await.expect("write");
    let (got, took) = until_closed(&mut tcp).await;
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(got, "");

    // A renewed certificate, then SIGHUP: new connections get it.
    let second = ca.issue(&["localhost", "127.0.0.1"]);
    second.write(&dir, "http");
    server.signal("HUP");
    wait_for_certificate(&server, &ca, &second.sha256()).await;

    // A key that does not match the certificate, then SIGHUP: an error in the log, and the
    // second certificate stays in force.
    let third = ca.issue(&["localhost"]);
    std::fs::write(&key, &third.key_pem).expect("write key");
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&server.log).unwrap_or_default().contains("HTTPS certificate not reloaded") {
        assert!(Instant::now() < deadline, "no error logged for the bad key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = https_get(&server.url("/healthz"), &ca.pem()).await.expect("still serving");
    assert_eq!((still.status, still.peer_sha256.as_str()), (200, second.sha256().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_https_files_are_refused_at_start_up() {
    let dir = scratch("https_listener_bad");
    let ca = TestCa::new("railcast test CA");
    let (cert, _) = ca.issue(&["localhost"]).write(&dir, "http");
    let run = |args: Vec<std::ffi::OsString>| async move {
        let out = tokio::process::Command::new(testkit::bin("railcast-server"))
            .args(["--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"])
            .args(args)
            .output()
            .await
            .expect("run");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The certificate as its own key: the setting and the file are named.
    let err =
        run(vec!["--http-tls-cert".into(), cert.clone().into(), "--http-tls-key".into(), cert.clone().into()]).await;
    assert!(err.contains("http_tls_cert") && err.contains("http.pem"), "{err}");
    // One without the other.
    let err = run(vec!["--http-tls-cert".into(), cert.into()]).await;
    assert!(err.contains("http_tls_key"), "{err}");
}
