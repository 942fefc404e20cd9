//! Every JSON-RPC error code of `/rpc` comes from a malformed or wrong message, and the
//! connection survives each: -32700 (with `id: null`), -32600 (bad requests, an empty or
//! oversized batch), -32601, -32602, -32000 with the REST code in `data.code`, -32002 (too
//! large); notifications never get a reply; ids may be strings, numbers or null; a batch gets an
//! array. A flood hits the documented rate limit (-32001) and the socket still answers after.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::rpc::RpcSocket;
use testkit::{api, remote_control, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_and_the_connection_survives() {
    let dir = scratch("rpc_errors");
    let server = Server::start(&dir, &[]).await;
    let rc = remote_control(&server, None).await;
    let s = RpcSocket::connect(&server).await;
    let n = |s: &RpcSocket| s.received.lock().expect("lock").len();

    // Raw messages and the reply each gets.
    let cases: Vec<(String, Value, i64, Option<&str>)> = vec![
        ("{nope".into(), Value::Null, -32700, None),
        (r#"{"id":101,"method":"list_peers"}"#.into(), json!(101), -32600, None),
        (r#"{"jsonrpc":"2.0","id":"s","method":7}"#.into(), json!("s"), -32600, None),
        (r#"{"jsonrpc":"2.0","id":102,"method":"x","params":3}"#.into(), json!(102), -32600, None),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#.into(), Value::Null, -32600, None),
        ("[]".into(), Value::Null, -32600, None),
        (r#"{"jsonrpc":"2.0","id":103,"method":"fly"}"#.into(), json!(103), -32601, None),
        (r#"{"jsonrpc":"2.0","id":104,"method":"announce","params":{}}"#.into(), json!(104), -32602, None),
        (r#"{"jsonrpc":"2.0","id":105,"method":"list_peers","params":[1]}"#.into(), json!(105), -32602, None),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"offer","params":{"to_peer_id":"relay","sdp":"v=0"}}"#.into(),
            Value::Null,
            -32000,
            Some("not_announced"),
        ),
    ];
    for (text, id, code, data) in &cases {
        let before = n(&s);
        s.send_raw(text.clone()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let reply = loop {
            let got = s.received.lock().expect("lock").get(before).cloned();
            if let Some(r) = got {
                break r;
            }
            assert!(tokio::time::Instant::now() < deadline, "no reply to {text}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(reply["error"]["code"], *code, "{text} → {reply}");
        assert_eq!(reply["id"], *id, "{text} → {reply}");
        if let Some(d) = data {
            assert_eq!(reply["error"]["data"]["code"], *d, "{text} → {reply}");
        }
    }

    // Announced: server errors with the REST codes.
    s.ok("announce", json!({"name": "errors"})).await;
    for (params, method, code) in [
        (json!({"name": "again"}), "announce", "already_announced"),
        (json!({"to_peer_id": "p-nobody", "sdp": "v=0"}), "offer", "unknown_peer"),
        (
            json!({"to_peer_id": "relay", "remote_control_id": "rc-none", "sdp": "v=0"}),
            "offer",
            "remote_control_not_found",
        ),
        (json!({"to_peer_id": "relay", "remote_control_id": rc, "sdp": "not sdp"}), "offer", "bad_sdp"),
        (json!({"to_peer_id": "relay", "candidate": ""}), "ice_candidate", "unknown_session"),
        (json!({"to_peer_id": "relay", "sdp": "v=0"}), "answer", "unknown_session"),
    ] {
        let reply = s.call(method, params.clone()).await;
        assert_eq!(reply["error"]["code"], -32000, "{method} {params} → {reply}");
        assert_eq!(reply["error"]["data"]["code"], code, "{method} {params} → {reply}");
    }
    let reply = s.call("offer", json!({"to_peer_id": "relay", "sdp": "v=0"})).await;
    assert_eq!(reply["error"]["code"], -32602, "no remote_control_id → {reply}");

    // Too large, answered (under the frame limit).
    let before = n(&s);
    s.send_raw(format!(
        r#"{{"jsonrpc":"2.0","id":109,"method":"list_peers","params":{{"pad":"{}"}}}}"#,
        "x".repeat(70_000)
    ))
    .await;
    let big = s.wait("too large", |v| v["error"]["code"] == -32002).await;
    assert_eq!(big["error"]["data"]["code"], "message_too_large", "{big}");
    assert!(n(&s) > before);

    // A notification never gets a reply, even a bad one; a batch gets an array of the replies
    // of its requests.
    let before = n(&s);
    s.notify("fly", json!({})).await;
    s.notify("list_peers", json!({})).await;
    s.send_raw(r#"[{"jsonrpc":"2.0","id":"a","method":"list_peers"},{"jsonrpc":"2.0","method":"list_peers"},{"jsonrpc":"2.0","id":"b","method":"fly"},7]"#).await;
    let batch = s.wait("the batch reply", |v| v.is_array()).await;
    let replies = batch.as_array().expect("array");
    assert_eq!(replies.len(), 3, "{batch}");
    assert_eq!(replies[0]["id"], "a");
    assert!(replies[0]["result"].is_array());
    assert_eq!(replies[1]["error"]["code"], -32601);
    assert_eq!(replies[2]["error"]["code"], -32600);
    assert_eq!(n(&s), before + 1, "the notifications got replies: {:?}", s.received.lock().expect("lock"));
    let all_notes = (0..3).map(|_| json!({"jsonrpc": "2.0", "method": "list_peers"})).collect::<Vec<_>>();
    s.send_raw(Value::Array(all_notes).to_string()).await;

    // A flood: 200 requests at once; beyond the burst each gets -32001, and the socket goes on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = n(&s);
    for i in 0..200 {
        s.send_raw(json!({"jsonrpc": "2.0", "id": 1000 + i, "method": "list_peers"}).to_string()).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while n(&s) < before + 200 {
        assert!(tokio::time::Instant::now() < deadline, "only {} replies to 200 requests", n(&s) - before);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let replies: Vec<Value> = s.received.lock().expect("lock")[before..].to_vec();
    let limited = replies.iter().filter(|r| r["error"]["code"] == -32001).count();
    let answered = replies.iter().filter(|r| r["result"].is_array()).count();
    println!("rpc flood: 200 requests → {answered} answered, {limited} rate limited");
    assert!(limited >= 100, "{limited} rate limited");
    assert!((40..=100).contains(&answered), "{answered} answered");
    assert_eq!(
        replies.iter().find(|r| r["error"]["code"] == -32001).expect("one")["error"]["data"]["code"],
        "rate_limited"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = s.call("list_peers", json!({})).await;
    assert!(after["result"].is_array(), "the socket answers again after the flood: {after}");
    assert!(s.closed.lock().expect("lock").is_none(), "the socket was closed");
    let (_, metrics) = api("GET", &server.url("/metrics"), None).await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains(r#"railcast_rpc_errors_total{code="rate_limited"}"#), "metrics count the refusals");
}
