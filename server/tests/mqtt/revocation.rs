//! A credentials reload (SIGHUP) that removes the token an MQTT session was created with ends it
//! at once: a `closing` event naming the revocation, then its broker credentials are deleted (the
//! broker disconnects the client and refuses it from then on). A session of a token still in
//! force goes on.

use railcast_server::auth::demo_credentials;
use serde_json::{json, Value};
use testkit::mqtt::Broker;
use testkit::{api_as, client_token, scratch, wait_for_train_as, write_credentials, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_loses_its_broker_access_at_once() {
    let dir = scratch("mqtt_revocation");
    let broker = Broker::start(&dir).await;
    let path = dir.join("credentials.toml");
    let mut creds = demo_credentials(1);
    write_credentials(&path, &creds);
    let mut args = broker.server_args();
    args.extend(["--auth-file".into(), path.to_str().expect("utf8").into()]);
    let mut server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    server.credentials = Some(path.clone());
    let (admin, viewer) = (client_token(&creds, "demo-admin"), client_token(&creds, "demo-viewer"));
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train_as(&server, Some(&admin), "train-1", true).await;
    let (s, rc) = api_as(Some(&admin), "POST", &server.url("/api/remote-controls"), Some(json!({}))).await;
    assert_eq!(s, 201, "{rc}");
    let rc = rc["id"].as_str().expect("id").to_owned();
    let url = server.url(&format!("/api/remote-controls/{rc}/train"));
    let (s, v) = api_as(Some(&admin), "PUT", &url, Some(json!({"train_id": "train-1"}))).await;
    assert_eq!(s, 200, "{v}");

    let (_, info) = api_as(Some(&admin), "GET", &server.url("/api/mqtt"), None).await;
    assert!(info["url"].is_string(), "{info}");
    let session_of = |token: String| {
        let (server, rc) = (&server, rc.clone());
        async move {
            let (s, v): (u16, Value) = testkit::mqtt::create_session_as(server, Some(&token), &rc).await;
            assert_eq!(s, 201, "{v}");
            v
        }
    };
    testkit::mqtt::wait_connected_as(&server, Some(&admin)).await;
    let watched = session_of(viewer.clone()).await;
    let watcher = testkit::mqtt::connect(broker.port, &watched).await;
    let admins = session_of(admin.clone()).await;
    let admin_client = testkit::mqtt::connect(broker.port, &admins).await;
    watcher.wait_frames(3).await;
    admin_client.wait_frames(3).await;

    creds.clients.retain(|c| c.name != "demo-viewer");
    write_credentials(&path, &creds);
    let revoked = std::time::Instant::now();
    server.signal("HUP");

    let closing = watcher.wait_event("closing", |e| e["type"] == "closing").await;
    let reason = closing["reason"].as_str().expect("reason");
    assert!(reason.contains("demo-viewer") && reason.contains("revoked"), "{closing}");
    // The broker refuses the session's credentials from now on.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while testkit::mqtt::can_log_in(broker.port, &watched).await {
        assert!(tokio::time::Instant::now() < deadline, "the revoked session's credentials still log in");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("mqtt revocation: credentials refused {} ms after SIGHUP", revoked.elapsed().as_millis());
    // The revoked token gets no new session; the admin's goes on.
    let (s, v) = testkit::mqtt::create_session_as(&server, Some(&viewer), &rc).await;
    assert_eq!(s, 401, "{v}");
    let before = admin_client.frames().len();
    admin_client.wait_frames(before + 5).await;
    assert!(admin_client.log.lock().expect("lock").closed.is_none(), "the admin's session is untouched");
    assert!(testkit::mqtt::can_log_in(broker.port, &admins).await);
}
