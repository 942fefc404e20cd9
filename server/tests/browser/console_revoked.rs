//! The console in Chromium when its token is revoked while it streams: after the credentials
//! reload (SIGHUP) the server ends the session (its `closing` event reaches the console's event
//! log), the video stops, and the token prompt shows the server's own 401 message. Over WebRTC
//! (Auto) and over WebSocket.

use std::time::Duration;

use railcast_server::auth::{demo_credentials, ClientEntry, Role};
use testkit::console::{artifacts, web_root, Console};
use testkit::{api_as, client_token, scratch, wait_for_train_as, write_credentials, Server, Sim, SMALL_VIDEO};

async fn revoked_while_streaming(scenario: &str) {
    let dir = scratch(&format!("console_revoked_{scenario}"));
    let root = web_root();
    let path = dir.join("credentials.toml");
    // The harness keeps demo-admin; the console signs in as a second admin, "desk", which is revoked.
    let mut creds = demo_credentials(1);
    let desk = railcast_server::auth::generate_token();
    creds.clients.push(ClientEntry { name: "desk".into(), role: Role::Admin, token: Some(desk.clone()), sha256: None });
    write_credentials(&path, &creds);
    let mut server = Server::start(&dir, &["--web-root", &root, "--auth-file", path.to_str().expect("utf8")]).await;
    server.credentials = Some(path.clone());
    let admin = client_token(&creds, "demo-admin");
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train_as(&server, Some(&admin), "train-1", true).await;
    let port = server.http.rsplit(':').next().expect("port");
    let mut console = Console::spawn(
        &format!("http://localhost:{port}"),
        scenario,
        &artifacts(&format!("console_revoked_{scenario}")),
        &desk,
        &[],
    );
    console.wait_line("READY_FOR_REVOKE", Duration::from_secs(90)).await;
    creds.clients.retain(|c| c.name != "desk");
    write_credentials(&path, &creds);
    server.signal("HUP");
    let r = console.finish(Duration::from_secs(60)).await;
    println!(
        "{scenario}: streamed over {}; event log: {}; token prompt {} ms after the revocation: {}; \
         frames painted after it: {}",
        r["transport"], r["closing_logged"], r["revoked_prompt_ms"], r["auth_error"], r["frames_painted_after_prompt"]
    );
    assert_eq!(r["server_status_after"], 401, "{r}");
    assert_eq!(r["frames_painted_after_prompt"], 0, "{r}");
    let (s, sessions) = api_as(Some(&admin), "GET", &server.url("/api/sessions"), None).await;
    assert_eq!(s, 200);
    assert_eq!(sessions.as_array().map(Vec::len), Some(0), "the revoked console's session is gone: {sessions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_webrtc() {
    let _serial = testkit::serial().await;
    revoked_while_streaming("revoke").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket() {
    let _serial = testkit::serial().await;
    revoked_while_streaming("revoke-websocket").await;
}
