//! `railcast-server healthcheck` (the container's HEALTHCHECK, no curl) against a real server:
//! it finds the HTTP listener from the same configuration as the server (flags, environment),
//! speaks TLS when http_tls_cert is set, exits 0 while the server answers `/healthz` with 200,
//! and 1 with one line on stderr once it is stopped, on another status, or when nothing answers
//! in time.

use std::time::{Duration, Instant};

use testkit::tls::TestCa;
use testkit::{scratch, Server};

/// `railcast-server ARGS` with no `RAILCAST_*` variable but `env`: exit code, stderr, duration.
async fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (i32, String, Duration) {
    let mut cmd = tokio::process::Command::new(testkit::bin("railcast-server"));
    cmd.args(args).kill_on_drop(true);
    for (_, var) in railcast_server::config::SETTINGS {
        cmd.env_remove(var);
    }
    cmd.env_remove("RAILCAST_CONFIG");
    cmd.envs(env.iter().copied());
    let start = Instant::now();
    let out = cmd.output().await.expect("run healthcheck");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    (out.status.code().unwrap_or(-1), stderr, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_follows_the_server() {
    let dir = scratch("healthcheck");
    let mut server = Server::start(&dir, &[]).await;
    let http = server.http.clone();

    let (code, err, took) = healthcheck(&["--http-addr", &http, "healthcheck"], &[]).await;
    assert_eq!(code, 0, "server up, flag: {err}");
    assert!(err.is_empty(), "nothing on stderr when healthy: {err}");
    println!("healthcheck, server up: exit 0 in {:.1} ms", took.as_secs_f64() * 1000.0);
    let (code, err, _) = healthcheck(&["healthcheck"], &[("RAILCAST_HTTP_ADDR", &http)]).await;
    assert_eq!(code, 0, "server up, environment: {err}");
    let (code, err, _) = healthcheck(&["healthcheck", "--path", "/readyz"], &[("RAILCAST_HTTP_ADDR", &http)]).await;
    assert_eq!(code, 0, "/readyz: {err}");
    let (code, err, _) = healthcheck(&["healthcheck", "--path", "/nowhere"], &[("RAILCAST_HTTP_ADDR", &http)]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("404") && err.lines().count() == 1, "one line naming the status: {err}");

    // A configuration the server would refuse: unhealthy (1), never 2, which Docker reserves.
    let (code, err, _) = healthcheck(&["healthcheck"], &[("RAILCAST_HTTP_ADDR", "nowhere")]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("RAILCAST_HTTP_ADDR"), "{err}");
    let (code, err, _) = healthcheck(&["healthcheck", "--path"], &[("RAILCAST_HTTP_ADDR", &http)]).await;
    assert_eq!(code, 1, "{err}");

    server.child.kill().await.expect("stop the server");
    let (code, err, _) = healthcheck(&["healthcheck"], &[("RAILCAST_HTTP_ADDR", &http)]).await;
    assert_eq!(code, 1, "server stopped: {err}");
    assert!(err.contains("cannot connect") && err.lines().count() == 1, "{err}");
    println!("healthcheck, server stopped: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_speaks_tls_when_the_listener_does() {
    let dir = scratch("healthcheck_tls");
    let ca = TestCa::new("railcast healthcheck CA");
    let (cert, key) = ca.issue(&["localhost"]).write(&dir, "http");
    let (cert, key) = (cert.to_str().expect("utf8"), key.to_str().expect("utf8"));
    let server = Server::start(&dir, &["--http-tls-cert", cert, "--http-tls-key", key]).await;
    assert!(server.https);
    let env = [
        ("RAILCAST_HTTP_ADDR", server.http.as_str()),
        ("RAILCAST_HTTP_TLS_CERT", cert),
        ("RAILCAST_HTTP_TLS_KEY", key),
    ];
    let (code, err, _) = healthcheck(&["healthcheck"], &env).await;
    assert_eq!(code, 0, "TLS, certificate not verified (issued for localhost, reached at 127.0.0.1): {err}");
    let (code, err, _) = healthcheck(&["healthcheck"], &env[..1]).await;
    assert_eq!(code, 1, "plain HTTP to an HTTPS listener: {err}");
    println!("healthcheck, plain HTTP to the HTTPS listener: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_gives_up_on_a_silent_listener() {
    // Accepts connections (the kernel's backlog does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let (code, err, took) = healthcheck(&["healthcheck", "--timeout", "500ms"], &[("RAILCAST_HTTP_ADDR", &addr)]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no answer") && err.contains("500ms"), "{err}");
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    let (code, err, took) = healthcheck(&["healthcheck"], &[("RAILCAST_HTTP_ADDR", &addr)]).await;
    assert_eq!(code, 1, "{err}");
    assert!((Duration::from_secs(3)..Duration::from_secs(6)).contains(&took), "the default timeout is 3 s: {took:?}");
    println!("healthcheck, silent listener: exit 1 after {:.2} s: {err}", took.as_secs_f64());
    drop(silent);
}
