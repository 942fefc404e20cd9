//! A credentials reload (SIGHUP) ends what a revoked token opened: a WebSocket session closes
//! with code 4003 after a `closing` event, a WebRTC session gets the same event and ends, a train
//! whose token was replaced is disconnected (QUIC close code 5) and cannot come back with the old
//! one. Sessions of tokens still in force go on receiving video, and a role change counts as a
//! revocation.

use std::time::Duration;

use railcast_server::auth::{demo_credentials, Role};
use serde_json::{json, Value};
use testkit::webrtc::RtcClient;
use testkit::ws::Client;
use testkit::{api_as, client_token, scratch, wait_for_train_as, write_credentials, Server, Sim, SMALL_VIDEO};

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn train(server: &Server, admin: &str) -> Value {
    api_as(Some(admin), "GET", &server.url("/api/trains/train-1"), None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_ends_the_sessions_and_trains_of_revoked_tokens() {
    let dir = scratch("token_revocation");
    let path = dir.join("credentials.toml");
    let mut creds = demo_credentials(1);
    write_credentials(&path, &creds);
    let mut server = Server::start(&dir, &["--auth-file", path.to_str().expect("utf8")]).await;
    server.credentials = Some(path.clone());
    let (admin, operator, viewer) = (
        client_token(&creds, "demo-admin"),
        client_token(&creds, "demo-operator"),
        client_token(&creds, "demo-viewer"),
    );
    let mut sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train_as(&server, Some(&admin), "train-1", true).await;
    let (s, rc) = api_as(Some(&admin), "POST", &server.url("/api/remote-controls"), Some(json!({}))).await;
    assert_eq!(s, 201, "{rc}");
    let rc = rc["id"].as_str().expect("id").to_owned();
    let (s, v) = api_as(
        Some(&admin),
        "PUT",
        &server.url(&format!("/api/remote-controls/{rc}/train")),
        Some(json!({"train_id": "train-1"})),
    )
    .await;
    assert!((200..300).contains(&s), "{v}");

    let watcher = Client::connect(&server.ws_url_as(&rc, Some(&viewer))).await;
    let admin_ws = Client::connect(&server.ws_url_as(&rc, Some(&admin))).await;
    let driver = RtcClient::connect_as(&server, &rc, Some(&operator)).await;
    watcher.wait_frames(3).await;
    admin_ws.wait_frames(3).await;
    driver.client.wait_frames(3).await;

    // 1. The viewer's token is removed and the operator becomes a viewer.
    creds.clients.retain(|c| c.name != "demo-viewer");
    for c in &mut creds.clients {
        if c.name == "demo-operator" {
            c.role = Role::Viewer;
        }
    }
    write_credentials(&path, &creds);
    server.signal("HUP");

    let closing = watcher.wait_event("closing", |e| e["type"] == "closing").await;
    let reason = closing["reason"].as_str().expect("reason");
    assert!(reason.contains("demo-viewer") && reason.contains("revoked"), "{closing}");
    until("the viewer's close frame", || watcher.log.lock().expect("lock").closed.is_some()).await;
    let closed = watcher.log.lock().expect("lock").closed.clone().expect("closed");
    assert_eq!(closed.0, 4003, "{closed:?}");
    let closing = driver.client.wait_event("closing", |e| e["type"] == "closing").await;
    assert!(closing["reason"].as_str().is_some_and(|r| r.contains("demo-operator")), "{closing}");
    // Gone from the session list; the admin's own session stays.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, sessions) = api_as(Some(&admin), "GET", &server.url("/api/sessions"), None).await;
        assert_eq!(s, 200, "{sessions}");
        let names: Vec<String> = sessions
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x["client"].as_str().unwrap_or_default().to_owned())
            .collect();
        if names == ["demo-admin"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "sessions left: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The revoked token is refused from now on; the changed one has its new role.
    let (s, _) = api_as(Some(&viewer), "GET", &server.url("/api/me"), None).await;
    assert_eq!(s, 401);
    let (s, me) = api_as(Some(&operator), "GET", &server.url("/api/me"), None).await;
    assert_eq!((s, me["role"].as_str()), (200, Some("viewer")), "{me}");
    let before = admin_ws.frames().len();
    admin_ws.wait_frames(before + 5).await;
    assert!(admin_ws.log.lock().expect("lock").closed.is_none(), "the admin's session is untouched");

    // 2. The train's token is replaced: its connection ends, and the old token no longer gets in.
    creds.trains.insert("train-1".into(), railcast_server::auth::generate_token());
    write_credentials(&path, &creds);
    server.signal("HUP");
    let offline = admin_ws.wait_event("train_offline", |e| e["type"] == "train_offline").await;
    assert!(offline["reason"].as_str().is_some_and(|r| r.contains("no longer in force")), "{offline}");
    tokio::time::sleep(Duration::from_secs(2)).await; // the simulator retries meanwhile
    let t = train(&server, &admin).await;
    assert_eq!(t["online"], false, "{t}");
    assert_eq!(t["connections"], 1, "the old token did not get back in: {t}");
    sim.kill().await;
}
