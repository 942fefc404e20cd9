//! With a state file, a revoked token stays revoked after a restart (and a lifted revocation
//! stays lifted); the remote controls kept in the same file are untouched by it.

use railcast_server::auth::demo_credentials;
use serde_json::json;
use testkit::{api_as, client_token, scratch, write_credentials, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_a_restart() {
    let dir = scratch("revocation_persistence");
    let credentials = dir.join("credentials.toml");
    let creds = demo_credentials(1);
    write_credentials(&credentials, &creds);
    let state = dir.join("state.json");
    let args = ["--auth-file", credentials.to_str().expect("utf8"), "--state-file", state.to_str().expect("utf8")];
    let (admin, viewer) = (client_token(&creds, "demo-admin"), client_token(&creds, "demo-viewer"));
    let me = |server: &Server, token: &str| {
        let (url, token) = (server.url("/api/me"), token.to_owned());
        async move { api_as(Some(&token), "GET", &url, None).await.0 }
    };

    let server = Server::start(&dir, &args).await;
    let (s, rc) =
        api_as(Some(&admin), "POST", &server.url("/api/remote-controls"), Some(json!({"name": "desk 1"}))).await;
    assert_eq!(s, 201, "{rc}");
    let (s, r) =
        api_as(Some(&admin), "POST", &server.url("/api/revocations"), Some(json!({"token": viewer, "note": "lost"})))
            .await;
    assert_eq!(s, 201, "{r}");
    let sha = r["sha256"].as_str().expect("sha256").to_owned();
    assert_eq!(me(&server, &viewer).await, 401);
    drop(server); // killed: nothing but the state file is left

    let server = Server::start(&dir, &args).await;
    assert_eq!(me(&server, &viewer).await, 401, "the revocation is in force again after the restart");
    let (s, list) = api_as(Some(&admin), "GET", &server.url("/api/revocations"), None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!((list[0]["sha256"].as_str(), list[0]["note"].as_str()), (Some(sha.as_str()), Some("lost")), "{list}");
    let (s, back) = api_as(
        Some(&admin),
        "GET",
        &server.url(&format!("/api/remote-controls/{}", rc["id"].as_str().expect("id"))),
        None,
    )
    .await;
    assert_eq!((s, back["name"].as_str()), (200, Some("desk 1")), "{back}");
    let (s, body) = api_as(Some(&admin), "DELETE", &server.url(&format!("/api/revocations/{sha}")), None).await;
    assert!((200..300).contains(&s), "{s} {body}");
    assert_eq!(me(&server, &viewer).await, 200);
    drop(server);

    let server = Server::start(&dir, &args).await;
    assert_eq!(me(&server, &viewer).await, 200, "the lifted revocation stays lifted");
    let (_, list) = api_as(Some(&admin), "GET", &server.url("/api/revocations"), None).await;
    assert_eq!(list, json!([]));
}
