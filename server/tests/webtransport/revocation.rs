//! A credentials reload (SIGHUP) that removes the token a WebTransport session was opened with
//! ends it: a `closing` event naming the revocation, then the session closes with code 4003. A
//! session of a token still in force goes on.

use railcast_server::auth::demo_credentials;
use serde_json::json;
use testkit::{api_as, client_token, scratch, wait_for_train_as, write_credentials, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_closes_its_session_with_4003() {
    let dir = scratch("wt_revocation");
    let path = dir.join("credentials.toml");
    let mut creds = demo_credentials(1);
    write_credentials(&path, &creds);
    let mut server = Server::start(&dir, &["--auth-file", path.to_str().expect("utf8")]).await;
    server.credentials = Some(path.clone());
    let (admin, viewer) = (client_token(&creds, "demo-admin"), client_token(&creds, "demo-viewer"));
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
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
    assert_eq!(s, 200, "{v}");
    let hashes = testkit::wt::hashes_as(&server, Some(&viewer)).await;
    let connect = |token: String| {
        let url = testkit::wt::url_as(&server, &rc, Some(&token), "/wt");
        let hashes = hashes.clone();
        async move { testkit::wt::connect_url(&url, &hashes).await.expect("session") }
    };
    let watcher = connect(viewer.clone()).await;
    let admin_wt = connect(admin.clone()).await;
    watcher.wait_frames(3).await;
    admin_wt.wait_frames(3).await;

    creds.clients.retain(|c| c.name != "demo-viewer");
    write_credentials(&path, &creds);
    server.signal("HUP");

    let closing = watcher.wait_event("closing", |e| e["type"] == "closing").await;
    let reason = closing["reason"].as_str().expect("reason");
    assert!(reason.contains("demo-viewer") && reason.contains("revoked"), "{closing}");
    let closed = watcher.wait_closed().await;
    assert_eq!(closed.0, 4003, "{closed:?}");
    assert!(closed.1.contains("revoked"), "{closed:?}");
    // The revoked token is refused from now on; the admin's session goes on.
    let again = testkit::wt::open(&testkit::wt::url_as(&server, &rc, Some(&viewer), "/wt"), &hashes).await;
    assert_eq!(testkit::wt::refusal(&again), Some(401), "{:?}", again.err());
    let before = admin_wt.frames().len();
    admin_wt.wait_frames(before + 5).await;
    assert!(admin_wt.log.lock().expect("lock").closed.is_none(), "the admin's session is untouched");
}
