//! The server's logs: no colour codes off a terminal, JSON lines on request, an access log that
//! names each request's principal, and no token in any line, whatever logged it.

use std::time::Duration;

use serde_json::Value;
use testkit::ws::Client;
use testkit::{api_as, raw, remote_control, scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

/// The server's stderr so far.
fn log(server: &Server) -> String {
    std::fs::read_to_string(&server.log).expect("server log")
}

/// Waits until the log has a line containing `text`, and returns that line.
async fn log_line(server: &Server, text: &str) -> String {
    for _ in 0..100 {
        if let Some(line) = log(server).lines().find(|l| l.contains(text)) {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log line with {text:?} in:\n{}", log(server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_no_colour_codes_off_a_terminal() {
    let dir = scratch("logs_plain");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;
    let (status, _) = raw("GET", &server.url("/api/nope"), None, b"").await;
    assert_eq!(status, 404);
    let line = log_line(&server, "railcast server running").await;
    let text = log(&server);
    assert!(!text.contains('\u{1b}'), "an escape sequence in a log written to a file:\n{text}");
    assert!(line.contains(" INFO ") && line.contains("http_addr="), "{line}");
    let sim_log = std::fs::read_to_string(&sim.log).expect("simulator log");
    assert!(sim_log.contains(" INFO "), "{sim_log}");
    assert!(!sim_log.contains('\u{1b}'), "an escape sequence in the simulator's log:\n{sim_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = scratch("logs_json");
    let server = Server::start(&dir, &["--log-format", "json"]).await;
    // A refused request, logged by the server at debug.
    let (status, _) = api_as(Some("not-a-token"), "GET", &server.url("/api/trains"), None).await;
    assert_eq!(status, 401);
    log_line(&server, "railcast server running").await;
    let text = log(&server);
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(v.get(key).is_some(), "no {key}: {line}");
        }
        lines += 1;
    }
    assert!(lines >= 2, "{text}");
    let running = text.lines().find(|l| l.contains("railcast server running")).expect("line");
    let v: Value = serde_json::from_str(running).expect("json");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["http_addr"], server.http.as_str(), "fields stay structured: {running}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_names_the_principal_and_never_a_token() {
    let dir = scratch("logs_access");
    let config = dir.join("railcast.toml");
    std::fs::write(&config, "access_log = true\n").expect("write config");
    let server = Server::start(&dir, &["--config", config.to_str().expect("utf8")]).await;
    let admin = server.token("admin").to_owned();
    let viewer = server.token("viewer").to_owned();

    let (status, me) = api_as(Some(&viewer), "GET", &server.url("/api/me"), None).await;
    assert_eq!(status, 200);
    let viewer_name = me["name"].as_str().expect("name").to_owned();
    let line = log_line(&server, "path=/api/me").await;
    assert!(line.contains("method=GET") && line.contains("status=200"), "{line}");
    assert!(line.contains(&format!("principal={viewer_name}")), "{line}");
    assert!(line.contains("duration_ms=") && line.contains("peer=127.0.0.1:"), "{line}");

    // A token in the query string (a browser's WebSocket): the path is logged without it.
    let rc = remote_control(&server, None).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_event("welcome", |e| e["type"] == "welcome").await;
    let line = log_line(&server, "path=/ws?").await;
    assert!(line.contains("access_token=***") && line.contains("status=101"), "{line}");
    assert!(line.contains("principal=") && !line.contains("principal=-"), "{line}");

    // An unknown token: refused, and not written either.
    let bogus = "bogus0123456789secret";
    let (status, _) = api_as(None, "GET", &server.url(&format!("/api/trains?access_token={bogus}")), None).await;
    assert_eq!(status, 401);
    let line = log_line(&server, "status=401").await;
    assert!(line.contains("principal=-"), "{line}");
    drop(client);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = log(&server);
    for secret in [admin.as_str(), viewer.as_str(), bogus] {
        assert!(!text.contains(secret), "a token in the log:\n{text}");
    }
}
