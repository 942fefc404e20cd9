//! Bad REST input: unknown ids are 404, malformed bodies 400/415/413, unknown routes 404 and wrong
//! methods 405 — always with the one JSON error shape.

use serde_json::{json, Value};
use testkit::{api, raw, remote_control, scratch, Server, Sim, SMALL_VIDEO};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let dir = scratch("api_errors");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let u = |p: &str| server.url(p);

    let (s, b) = api("GET", &u("/api/remote-controls/rc-nope"), None).await;
    assert_error(s, &b, 404, "remote_control_not_found");
    let (s, b) = api("DELETE", &u("/api/remote-controls/rc-nope"), None).await;
    assert_error(s, &b, 404, "remote_control_not_found");
    let (s, b) = api("PUT", &u("/api/remote-controls/rc-nope/train"), Some(json!({"train_id": "train-1"}))).await;
    assert_error(s, &b, 404, "remote_control_not_found");
    let (s, b) = api("GET", &u("/api/trains/no-such-train"), None).await;
    assert_error(s, &b, 404, "train_not_found");
    let (s, b) =
        api("PUT", &u(&format!("/api/remote-controls/{rc}/train")), Some(json!({"train_id": "no-such-train"}))).await;
    assert_error(s, &b, 404, "train_not_found");
    let (s, b) = api("PUT", &u(&format!("/api/remote-controls/{rc}/train")), Some(json!({"train_id": "bad/id"}))).await;
    assert_error(s, &b, 400, "bad_train_id");
    // The failed calls left the mapping alone.
    let (_, v) = api("GET", &u(&format!("/api/remote-controls/{rc}")), None).await;
    assert_eq!(v["train_id"], "train-1");

    let (s, b) =
        raw("PUT", &u(&format!("/api/remote-controls/{rc}/train")), Some("application/json"), b"{\"train_id\":").await;
    assert_error(s, &b, 400, "bad_json");
    let (s, b) =
        raw("PUT", &u(&format!("/api/remote-controls/{rc}/train")), Some("application/json"), b"{\"train\":1}").await;
    assert_error(s, &b, 422, "invalid_body");
    let (s, b) = raw("POST", &u("/api/remote-controls"), None, b"{}").await;
    assert_error(s, &b, 415, "unsupported_media_type");
    let (s, b) = api("POST", &u("/api/remote-controls"), Some(json!({"name": "x".repeat(101)}))).await;
    assert_error(s, &b, 400, "bad_name");
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(70_000));
    let (s, _) = raw("POST", &u("/api/remote-controls"), Some("application/json"), big.as_bytes()).await;
    assert_eq!(s, 413);

    let (s, b) = api("GET", &u("/api/nothing-here"), None).await;
    assert_error(s, &b, 404, "not_found");
    // Outside /api too, and with a path segment that is not UTF-8 once decoded.
    let (s, b) = api("GET", &u("/nothing-here"), None).await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = api("GET", &u("/api/remote-controls/%00%ff"), None).await;
    assert_error(s, &b, 400, "bad_path");
    let (s, b) = api("PATCH", &u("/api/trains"), None).await;
    assert_error(s, &b, 405, "method_not_allowed");

    // WebSocket endpoint: unknown remote control, missing query, not an upgrade.
    let (s, b) = api("GET", &u("/ws?remote_control_id=rc-nope"), None).await;
    assert_error(s, &b, 404, "remote_control_not_found");
    let (s, b) = api("GET", &u("/ws"), None).await;
    assert_error(s, &b, 400, "bad_query");
    let (s, b) = api("GET", &u(&format!("/ws?remote_control_id={rc}")), None).await;
    assert_eq!(b["code"], "not_a_websocket_upgrade", "{s} {b}");
    let err = tokio_tungstenite::connect_async(server.ws_url("rc-nope")).await.expect_err("must refuse");
    assert!(err.to_string().contains("404"), "{err}");

    let (s, _) = api("DELETE", &u(&format!("/api/remote-controls/{rc}")), None).await;
    assert_eq!(s, 204);
    let (s, b) = api("DELETE", &u(&format!("/api/remote-controls/{rc}")), None).await;
    assert_error(s, &b, 404, "remote_control_not_found");
    let (s, _) = api("GET", &u("/healthz"), None).await;
    assert_eq!(s, 200);
}
