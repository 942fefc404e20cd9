//! JSON-RPC signaling (`GET /rpc`): two peers announce; each sees the other in `peer_joined` and
//! `list_peers` (the relay first), with the reference implementation's aliases accepted; offers,
//! answers and candidates between them are forwarded with `from_peer_id`; a viewer may answer but
//! not offer to a peer; closing a socket sends `peer_left` to the others.

use serde_json::json;
use testkit::rpc::RpcSocket;
use testkit::{scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_see_each_other_and_exchange_signaling() {
    let dir = scratch("rpc_peers");
    let server = Server::start(&dir, &[]).await;
    let a = RpcSocket::connect(&server).await;
    let b = RpcSocket::connect_as(&server, Some(server.token("viewer"))).await;

    let ra = a.ok("announce", json!({"name": "console A", "capabilities": ["datachannel"]})).await;
    let id_a = ra["peer_id"].as_str().expect("peer_id").to_owned();
    assert_eq!(ra["peers"][0]["peer_id"], "relay", "{ra}");
    let rb = b.ok("peer.announce", json!({"name": "console B"})).await;
    let id_b = rb["peer_id"].as_str().expect("peer_id").to_owned();
    let joined = a.wait("peer_joined", |v| v["method"] == "peer_joined").await;
    assert_eq!(joined["params"]["peer"]["peer_id"], id_b.as_str(), "{joined}");
    assert_eq!(joined["params"]["peer"]["role"], "viewer", "{joined}");
    for (socket, method) in [(&a, "list_peers"), (&b, "peer.list")] {
        let list = socket.ok(method, json!({})).await;
        let ids: Vec<&str> = list.as_array().expect("array").iter().filter_map(|p| p["peer_id"].as_str()).collect();
        assert_eq!(ids, ["relay", id_a.as_str(), id_b.as_str()], "{list}");
    }

    // A → B: an offer (`to` alias), forwarded with the sender; B answers; candidates both ways.
    let r = a.ok("offer", json!({"to": id_b, "sdp": "v=0 (opaque to the server)"})).await;
    assert_eq!(r["delivered"], true);
    let offer = b.wait("offer", |v| v["method"] == "offer").await;
    assert_eq!(offer["params"]["from_peer_id"], id_a.as_str(), "{offer}");
    assert_eq!(offer["params"]["from"], id_a.as_str(), "{offer}");
    assert_eq!(offer["params"]["sdp"], "v=0 (opaque to the server)");
    b.ok("peer.answer", json!({"to_peer_id": id_a, "sdp": "v=0 answer"})).await;
    let answer = a.wait("answer", |v| v["method"] == "answer").await;
    assert_eq!(answer["params"]["from_peer_id"], id_b.as_str(), "{answer}");
    b.ok("ice_candidate", json!({"to_peer_id": id_a, "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdp_mid": "0", "sdp_m_line_index": 0})).await;
    let cand = a.wait("ice_candidate", |v| v["method"] == "ice_candidate").await;
    assert_eq!(cand["params"]["sdp_m_line_index"], 0, "{cand}");

    // A viewer may not offer to a peer.
    let refused = b.call("offer", json!({"to_peer_id": id_a, "sdp": "v=0"})).await;
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert_eq!(refused["error"]["data"]["code"], "forbidden", "{refused}");

    // B leaves: A hears it, and B is no longer listed.
    b.close().await;
    let left = a.wait("peer_left", |v| v["method"] == "peer_left").await;
    assert_eq!(left["params"]["peer_id"], id_b.as_str());
    let list = a.ok("list_peers", json!({})).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
}
