//! Clients need a bearer token, and each route the role it documents: no or a bad token → 401
//! (with `WWW-Authenticate`), too small a role or another client's remote control → 403, both in
//! the JSON error shape. The same holds for `/ws` and WebRTC signaling.

use serde_json::{json, Value};
use testkit::{api_as, scratch, Server};

fn assert_error(status: u16, body: &Value, want: u16, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// The HTTP status of a refused WebSocket upgrade.
async fn ws_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("ws: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_check_tokens_and_roles() {
    let dir = scratch("auth_roles");
    let server = Server::start(&dir, &[]).await;
    let u = |p: &str| server.url(p);
    let (admin, operator, viewer) = (server.token("admin"), server.token("operator"), server.token("viewer"));

    // Public: health, the certificate trains pin, the contract.
    for path in ["/healthz", "/readyz", "/api/quic/certificate", "/api/openapi.json"] {
        let (s, _) = api_as(None, "GET", &u(path), None).await;
        assert_eq!(s, 200, "{path} is public");
    }
    // No token, a bad token.
    let (s, b) = api_as(None, "GET", &u("/api/trains"), None).await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = api_as(Some("not-a-token-at-all"), "GET", &u("/api/trains"), None).await;
    assert_error(s, &b, 401, "unauthorized");

    // Who am I.
    for (token, role) in [(admin, "admin"), (operator, "operator"), (viewer, "viewer")] {
        let (s, me) = api_as(Some(token), "GET", &u("/api/me"), None).await;
        assert_eq!((s, me["role"].as_str()), (200, Some(role)), "{me}");
    }

    // Admin-only routes refuse the others.
    for token in [operator, viewer] {
        let (s, b) = api_as(Some(token), "POST", &u("/api/remote-controls"), Some(json!({}))).await;
        assert_error(s, &b, 403, "forbidden");
        let (s, b) = api_as(Some(token), "GET", &u("/api/sessions"), None).await;
        assert_error(s, &b, 403, "forbidden");
        let (s, b) = api_as(Some(token), "GET", &u("/api/webrtc/sessions"), None).await;
        assert_error(s, &b, 403, "forbidden");
    }
    let (s, mine) =
        api_as(Some(admin), "POST", &u("/api/remote-controls"), Some(json!({"owner": "demo-operator"}))).await;
    assert_eq!(s, 201, "{mine}");
    assert_eq!(mine["owner"], "demo-operator");
    let mine = mine["id"].as_str().expect("id").to_owned();
    let (_, open) = api_as(Some(admin), "POST", &u("/api/remote-controls"), Some(json!({"name": "shared"}))).await;
    let open = open["id"].as_str().expect("id").to_owned();
    for token in [operator, viewer] {
        let (s, b) = api_as(
            Some(token),
            "PUT",
            &u(&format!("/api/remote-controls/{open}/train")),
            Some(json!({"train_id": "train-1"})),
        )
        .await;
        assert_error(s, &b, 403, "forbidden");
        let (s, b) = api_as(Some(token), "DELETE", &u(&format!("/api/remote-controls/{open}")), None).await;
        assert_error(s, &b, 403, "forbidden");
    }
    // A train with a token may be mapped before it ever connects; an id without one may not.
    let (s, v) = api_as(
        Some(admin),
        "PUT",
        &u(&format!("/api/remote-controls/{mine}/train")),
        Some(json!({"train_id": "train-3"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, b) = api_as(
        Some(admin),
        "PUT",
        &u(&format!("/api/remote-controls/{mine}/train")),
        Some(json!({"train_id": "stranger-1"})),
    )
    .await;
    assert_error(s, &b, 404, "train_not_found");

    // Remote controls: each client lists only what it may use.
    let ids = |v: &Value| -> Vec<String> {
        v.as_array().expect("list").iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect()
    };
    let (_, all) = api_as(Some(admin), "GET", &u("/api/remote-controls"), None).await;
    assert_eq!(ids(&all).len(), 2);
    let (_, ops) = api_as(Some(operator), "GET", &u("/api/remote-controls"), None).await;
    assert_eq!(ids(&ops).len(), 2, "the owner sees its own and the shared one");
    let (_, views) = api_as(Some(viewer), "GET", &u("/api/remote-controls"), None).await;
    assert_eq!(ids(&views), vec![open.clone()], "not the operator's");
    let (s, b) = api_as(Some(viewer), "GET", &u(&format!("/api/remote-controls/{mine}")), None).await;
    assert_error(s, &b, 403, "forbidden");

    // WebSocket: the token in the query; the owner's remote control is the owner's.
    assert_eq!(ws_status(&server.ws_url_as(&open, None)).await, 401);
    assert_eq!(ws_status(&server.ws_url_as(&open, Some("bad-token-bad-token"))).await, 401);
    assert_eq!(ws_status(&server.ws_url_as(&mine, Some(viewer))).await, 403);
    assert_eq!(ws_status(&server.ws_url_as(&mine, Some(operator))).await, 101);
    assert_eq!(ws_status(&server.ws_url_as(&open, Some(viewer))).await, 101);

    // WebRTC signaling: offers for what the caller may use; a session is its creator's.
    let offer = |token, rc: &str| {
        let body = json!({"remote_control_id": rc});
        let url = u("/api/webrtc/offer");
        async move { api_as(token, "POST", &url, Some(body)).await }
    };
    let (s, b) = offer(None, &open).await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = offer(Some(viewer), &mine).await;
    assert_error(s, &b, 403, "forbidden");
    let (s, o) = offer(Some(operator), &mine).await;
    assert_eq!(s, 200, "{o}");
    let sid = o["session_id"].as_str().expect("sid").to_owned();
    let answer = json!({"session_id": sid, "type": "answer", "sdp": "v=0"});
    let (s, b) = api_as(Some(viewer), "POST", &u("/api/webrtc/answer"), Some(answer)).await;
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = api_as(Some(viewer), "DELETE", &u(&format!("/api/webrtc/sessions/{sid}")), None).await;
    assert_error(s, &b, 403, "forbidden");
    let (s, _) = api_as(Some(operator), "DELETE", &u(&format!("/api/webrtc/sessions/{sid}")), None).await;
    assert_eq!(s, 204);

    let (_, text) = api_as(None, "GET", &u("/metrics"), None).await;
    let text = text.as_str().expect("metrics");
    for reason in ["missing", "invalid", "forbidden"] {
        let key = format!("railcast_auth_refusals_total{{peer=\"client\",reason=\"{reason}\"}} ");
        let n: u64 = text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        assert!(n > 0, "{reason} refusals are counted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_says_how_to_authenticate() {
    let dir = scratch("auth_roles_header");
    let server = Server::start(&dir, &[]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::get(server.url("/api/trains")).body(http_body_util::Full::default()).expect("req");
    let resp = client.request(req).await.expect("call");
    assert_eq!(resp.status(), 401);
    let h = resp.headers().get("www-authenticate").expect("WWW-Authenticate").to_str().expect("ascii");
    assert!(h.starts_with("Bearer"), "{h}");
}
