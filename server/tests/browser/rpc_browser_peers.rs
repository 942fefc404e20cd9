//! Two browser peers through `GET /rpc` (JSON-RPC 2.0 signaling, peer to peer): two pages of one
//! headless Chromium (`tests/browser/rpc-peers.html`, driven by `tests/browser/rpc-peers.mjs`)
//! each open `/rpc` and announce; they find each other (`announce`'s peers or `peer_joined`, then
//! `list_peers`); the operator's page offers a data channel to the viewer's page (a forwarded
//! `offer`), which answers (a forwarded `answer`); both trickle candidates with `ice_candidate`;
//! the channel opens and carries a message each way. The viewer's attempt to offer is refused
//! (`forbidden`). Then the operator's page closes its socket and the viewer's gets `peer_left`.
//! No train, no relay session: the server only routes signaling.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use testkit::{scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_peers_signal_through_rpc() {
    let _serial = testkit::serial().await;
    let browser_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser"));
    assert!(
        browser_dir.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and `npm ci` in tests/browser: run scripts/setup.sh"
    );
    let dir = scratch("rpc_browser_peers");
    let server = Server::start(&dir, &[]).await;
    let port = server.http.rsplit(':').next().expect("port");
    // `localhost`: a secure context, as real deployments have.
    let base = format!("http://localhost:{port}");
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("rpc-peers.mjs"))
        .arg(&base)
        .arg(server.token("operator"))
        .arg(server.token("viewer"))
        .arg(&dir)
        .arg("60000")
        .env("PROBE", "1")
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("node");
    assert!(out.status.success(), "browser run failed: {}", String::from_utf8_lossy(&out.stdout));
    let r: Value = serde_json::from_slice(&out.stdout).expect("result JSON");
    let (a, b) = (&r["a"], &r["b"]);
    assert!(a["error"].is_null(), "offering page: {}", a["error"]);
    assert!(b["error"].is_null(), "answering page: {}", b["error"]);
    let (a_id, b_id) = (a["peer_id"].as_str().expect("a's peer id"), b["peer_id"].as_str().expect("b's peer id"));
    assert_ne!(a_id, b_id);

    // They found each other, and list_peers has the relay first, then both.
    assert_eq!(a["other_id"], b_id, "{r}");
    assert_eq!(b["other_id"], a_id, "{r}");
    for p in [a, b] {
        let ids: Vec<&str> =
            p["list_peers"].as_array().expect("list_peers").iter().filter_map(|x| x["peer_id"].as_str()).collect();
        assert_eq!(ids.first(), Some(&"relay"), "the relay first: {r}");
        assert!(ids.contains(&a_id) && ids.contains(&b_id), "both peers listed: {r}");
    }
    // One of them announced first and saw the other join.
    assert!(a["seen_other_by"] == "peer_joined" || b["seen_other_by"] == "peer_joined", "a peer_joined: {r}");

    // Offer and answer forwarded with their sender; candidates both ways.
    assert_eq!(a["offer_result"]["delivered"], true, "{r}");
    assert_eq!(b["offer_from"], a_id, "{r}");
    assert_eq!(b["offer_to"], b_id, "the forwarded offer names its addressee: {r}");
    assert_eq!(b["answer_result"]["delivered"], true, "{r}");
    assert_eq!(a["answer_from"], b_id, "{r}");
    for p in [a, b] {
        assert!(p["candidates"]["sent"].as_u64().unwrap_or(0) > 0, "candidates sent: {r}");
        assert!(p["candidates"]["received"].as_u64().unwrap_or(0) > 0, "candidates received: {r}");
        assert!(p["errors"].as_array().is_some_and(Vec::is_empty), "no signaling errors: {r}");
    }

    // The channel carried a message each way.
    assert_eq!(b["received"], "hello from peer-a", "{r}");
    assert_eq!(a["received"], "hello from peer-b", "{r}");

    // A viewer may answer, not offer.
    assert_eq!(b["viewer_offer"]["code"], -32000, "the viewer's offer refused: {r}");
    assert_eq!(b["viewer_offer"]["data_code"], "forbidden", "{r}");

    // The offerer left: the other saw peer_left (its channel, peer to peer, may outlive the socket).
    assert!(b["marks"]["peer_left"].is_number(), "peer_left after the offerer closed its socket: {r}");
    assert!(b["left"].as_array().is_some_and(|l| l.iter().any(|x| x == a_id)), "{r}");

    let m = |p: &Value, k: &str| p["marks"][k].as_f64().unwrap_or(f64::NAN);
    println!(
        "two Chromium peers over /rpc: offer → channel open {:.1} ms (offerer), offer → answer back {:.1} ms, \
         message round trip {:.1} ms, b's reply → peer_left {:.1} ms (a waits 200 ms, then closes); candidates a→b {} b→a {}; \
         seen by {} / {}; viewer's offer: {} {}; wall {} ms",
        m(a, "channel_open") - m(a, "offer_out"),
        m(a, "answer_in") - m(a, "offer_out"),
        m(a, "message_in") - m(a, "message_out"),
        m(b, "peer_left") - m(b, "message_out"),
        a["candidates"]["sent"],
        b["candidates"]["sent"],
        a["seen_other_by"],
        b["seen_other_by"],
        b["viewer_offer"]["code"],
        b["viewer_offer"]["data_code"],
        r["wall_ms"],
    );
}
