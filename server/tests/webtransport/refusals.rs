//! A CONNECT request is checked as `GET /ws` is: missing or wrong token 401, unknown remote
//! control or path 404, another client's remote control 403, over `max_connections_per_address`
//! 429 (the status of the CONNECT response). A client pinning a hash the server does not serve
//! fails its TLS handshake. `GET /api/webtransport` needs a token.

use serde_json::json;
use testkit::wt::{hashes, open, refusal, url, url_as};
use testkit::{api, api_as, remote_control, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_the_connect_status() {
    let dir = scratch("wt_refusals");
    let server = Server::start(&dir, &["--max-connections-per-address", "1"]).await;
    let rc = remote_control(&server, None).await;
    let pinned = hashes(&server).await;
    assert_eq!(pinned.len(), 2, "current and next: {pinned:?}");
    assert!(pinned
        .iter()
        .all(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())));

    let cases = [
        ("no token", url_as(&server, &rc, None, "/wt"), 401),
        ("wrong token", url_as(&server, &rc, Some("not-a-token"), "/wt"), 401),
        ("unknown remote control", url(&server, "rc-nope"), 404),
        ("unknown path", url_as(&server, &rc, Some(server.token("admin")), "/ws"), 404),
        (
            "no remote control",
            url_as(&server, &rc, Some(server.token("admin")), "/wt").replace("remote_control_id", "x"),
            400,
        ),
    ];
    for (what, u, status) in cases {
        let got = open(&u, &pinned).await;
        assert_eq!(refusal(&got), Some(status), "{what}: {:?}", got.err());
    }

    // Another client's remote control.
    let (s, owned) = api("POST", &server.url("/api/remote-controls"), Some(json!({"owner": "someone-else"}))).await;
    assert_eq!(s, 201, "{owned}");
    let owned = owned["id"].as_str().expect("id");
    let got = open(&url_as(&server, owned, Some(server.token("operator")), "/wt"), &pinned).await;
    assert_eq!(refusal(&got), Some(403), "{:?}", got.err());

    // The per-address limit: one session at a time from 127.0.0.1.
    let first = testkit::wt::connect_url(&url(&server, &rc), &pinned).await.expect("first session");
    first.wait_event("welcome", |e| e["type"] == "welcome").await;
    let second = open(&url(&server, &rc), &pinned).await;
    assert_eq!(refusal(&second), Some(429), "{:?}", second.err());
    drop(first);

    // A hash the server does not serve: the TLS handshake fails (no HTTP status at all).
    let wrong = open(&url(&server, &rc), &["00".repeat(32)]).await;
    let err = wrong.expect_err("an unpinned certificate must fail the handshake");
    assert!(refusal(&Err(err.clone())).is_none(), "{err}");
    println!("wrong hash: {err}");

    // The API needs a token.
    let (s, v) = api_as(None, "GET", &server.url("/api/webtransport"), None).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = api_as(Some(server.token("viewer")), "GET", &server.url("/api/webtransport"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["path"], "/wt");
    assert_eq!(v["self_signed"], true);
    assert!(v["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
}

/// Disabled (`--webtransport-addr ""`): no banner line, and the API says 404 `webtransport_disabled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_says_so() {
    let dir = scratch("wt_disabled");
    let server = Server::start(&dir, &["--webtransport-addr", ""]).await;
    assert!(server.webtransport.is_none());
    let (s, v) = api("GET", &server.url("/api/webtransport"), None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("webtransport_disabled")), "{v}");
}
