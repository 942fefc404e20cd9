//! The command audit: every command (acked, refused by role, refused unmapped, over WebSocket and
//! WebRTC) appears exactly once in `GET /api/audit` with who sent it, through what, to which train,
//! and how it ended; filters and pages work; the file survives a restart (the sequence goes on);
//! a viewer cannot read it.

use serde_json::{json, Value};
use testkit::webrtc::RtcClient;
use testkit::ws::Client;
use testkit::{api, api_as, remote_control, scratch, Server, Sim, SMALL_VIDEO};

async fn command(client: &Client, id: &str, action: Value) -> Value {
    client.send_text(json!({"type": "command", "request_id": id, "command": action}).to_string()).await;
    client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await
}

async fn audit(server: &Server, query: &str) -> Value {
    let (status, page) = api("GET", &server.url(&format!("/api/audit{query}")), None).await;
    assert_eq!(status, 200, "{page}");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_is_audited_once_and_survives_a_restart() {
    let dir = scratch("command_audit");
    let file = dir.join("audit.jsonl");
    let file_arg = file.to_str().expect("utf-8").to_owned();
    let mut server = Server::start(&dir, &["--audit-file", &file_arg]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let idle = remote_control(&server, None).await;

    let operator = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    let viewer = RtcClient::connect_as(&server, &rc, Some(server.token("viewer"))).await;
    let unmapped = Client::connect(&server.ws_url_as(&idle, Some(server.token("operator")))).await;
    operator.wait_frames(1).await;
    viewer.client.wait_frames(1).await;

    let acked = command(&operator, "a-horn", json!({"type": "horn", "duration_ms": 100})).await;
    assert_eq!(acked["type"], "command_ack", "{acked}");
    let refused = command(&viewer.client, "v-speed", json!({"type": "set_speed", "kmh": 5})).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let not_mapped = command(&unmapped, "u-horn", json!({"type": "horn"})).await;
    assert_eq!(not_mapped["code"], "not_mapped", "{not_mapped}");

    let page = audit(&server, "").await;
    let entries = page["entries"].as_array().expect("entries").clone();
    let by_request = |id: &str| -> Vec<Value> { entries.iter().filter(|e| e["request_id"] == id).cloned().collect() };
    for id in ["a-horn", "v-speed", "u-horn"] {
        assert_eq!(by_request(id).len(), 1, "{id} audited once: {page}");
    }
    let a = &by_request("a-horn")[0];
    assert_eq!(
        (&a["principal"], &a["role"], &a["transport"], &a["train_id"], &a["result"], &a["ok"]),
        (
            &json!("demo-operator"),
            &json!("operator"),
            &json!("websocket"),
            &json!("train-1"),
            &json!("acked"),
            &json!(true)
        ),
        "{a}"
    );
    assert_eq!(a["command"], json!({"type": "horn", "duration_ms": 100}), "{a}");
    assert_eq!(a["remote_control_id"], rc.as_str());
    assert!(a["rtt_us"].as_u64().is_some() && a["command_id"].as_u64().is_some(), "{a}");
    let v = &by_request("v-speed")[0];
    assert_eq!(
        (&v["result"], &v["code"], &v["transport"], &v["role"]),
        (&json!("refused"), &json!("forbidden"), &json!("webrtc"), &json!("viewer")),
        "{v}"
    );
    let u = &by_request("u-horn")[0];
    assert_eq!(
        (&u["result"], &u["code"], &u["train_id"]),
        (&json!("refused"), &json!("not_mapped"), &Value::Null),
        "{u}"
    );

    // Filters and pages.
    let train1 = audit(&server, "?train=train-1").await;
    assert!(train1["entries"].as_array().expect("entries").iter().all(|e| e["train_id"] == "train-1"), "{train1}");
    let first = audit(&server, "?limit=1").await;
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(1));
    let next = first["next"].as_u64().expect("a next page");
    let second = audit(&server, &format!("?limit=1&after={next}")).await;
    assert!(second["entries"][0]["seq"].as_u64() > first["entries"][0]["seq"].as_u64(), "{second}");
    // Newest first: the last entry, then the ones before it through `before`.
    let newest = audit(&server, "?order=newest&limit=1").await;
    let top = newest["entries"][0]["seq"].as_u64().expect("seq");
    assert_eq!(Some(top), entries.iter().filter_map(|e| e["seq"].as_u64()).max(), "{newest}");
    let before = newest["next"].as_u64().expect("a next page");
    assert_eq!(before, top, "next is the page's last seq");
    let older = audit(&server, &format!("?order=newest&before={before}")).await;
    let older: Vec<u64> =
        older["entries"].as_array().expect("entries").iter().filter_map(|e| e["seq"].as_u64()).collect();
    let mut expected: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).filter(|&s| s < top).collect();
    expected.reverse();
    assert_eq!(older, expected, "the rest, newest first");
    let (status, v) = api("GET", &server.url("/api/audit?order=latest"), None).await;
    assert_eq!(status, 400, "an order it does not know: {v}");
    // A viewer (and an operator) may not read it.
    for role in ["viewer", "operator"] {
        let (status, v) = api_as(Some(server.token(role)), "GET", &server.url("/api/audit"), None).await;
        assert_eq!(status, 403, "{role}: {v}");
    }

    // A restart keeps it; the sequence goes on.
    let last_seq = entries.iter().filter_map(|e| e["seq"].as_u64()).max().expect("seq");
    drop((operator, viewer, unmapped));
    server.signal("TERM");
    let _ = server.child.wait().await;
    let lines = std::fs::read_to_string(&file).expect("the audit file");
    assert_eq!(lines.lines().count(), entries.len(), "one line per entry:\n{lines}");
    let again = Server::start(&dir, &["--audit-file", &file_arg]).await;
    let rc2 = remote_control(&again, None).await;
    let c = Client::connect(&again.ws_url_as(&rc2, Some(again.token("operator")))).await;
    command(&c, "after-restart", json!({"type": "horn"})).await;
    let page = audit(&again, "").await;
    let all = page["entries"].as_array().expect("entries");
    assert!(all.iter().any(|e| e["request_id"] == "a-horn"), "the old entries survive: {page}");
    let newest = all.iter().find(|e| e["request_id"] == "after-restart").expect("the new one");
    assert_eq!(newest["seq"].as_u64(), Some(last_seq + 1), "{newest}");
}
