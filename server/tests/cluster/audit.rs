//! The command audit of a cluster, read through any node: every node's entries merged by time,
//! each marked with its node, paged with a cursor that names every node once; `resume` reads only
//! what came later; `scope=node` reads one node's log. A node that is up but does not answer in
//! time is named in `missing`, and the page still has the others' entries; once its presence is
//! stale it is named without being waited for. Malformed queries on
//! the audit subject are counted and not answered.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use testkit::mqtt::metric;
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, Server};

use crate::Nodes;

async fn horn(client: &Client, id: &str) {
    client
        .send_text(
            json!({"type": "command", "request_id": id, "command": {"type": "horn", "duration_ms": 20}}).to_string(),
        )
        .await;
    let ack = client.wait_event(id, |e| e["type"] == "command_ack" && e["request_id"] == id).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

async fn audit(node: &Server, query: &str) -> (u16, Value) {
    api("GET", &node.url(&format!("/api/audit?train=train-1{query}")), None).await
}

/// `node:seq` of each entry, in the page's order.
fn ids(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| format!("{}:{}", e["node"].as_str().expect("every entry names its node"), e["seq"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_of_every_node_reads_through_any_node() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_audit");
    let mut nodes = Nodes::start(&dir).await;
    let rc_a = remote_control(&nodes.a, Some("train-1")).await;
    let rc_b = remote_control(&nodes.b, Some("train-1")).await;
    let on_a = Client::connect(&nodes.a.ws_url(&rc_a)).await;
    let on_b = Client::connect(&nodes.b.ws_url(&rc_b)).await;
    on_b.wait_frames(1).await;
    for i in 0..3 {
        horn(&on_b, &format!("b{i}")).await;
        horn(&on_a, &format!("a{i}")).await;
    }

    // Through either node, the same six commands, by time, each with its node.
    let started = Instant::now();
    let (status, page_a) = audit(&nodes.a, "").await;
    let asked_ms = started.elapsed().as_millis();
    assert_eq!(status, 200, "{page_a}");
    let (_, page_b) = audit(&nodes.b, "").await;
    let requests: Vec<&str> =
        page_a["entries"].as_array().expect("entries").iter().map(|e| e["request_id"].as_str().expect("id")).collect();
    assert_eq!(requests, ["b0", "a0", "b1", "a1", "b2", "a2"], "{page_a}");
    assert_eq!(ids(&page_a), ids(&page_b), "the same page through A and B");
    for e in page_a["entries"].as_array().expect("entries") {
        let node = if e["request_id"].as_str().expect("id").starts_with('a') { "node-a" } else { "node-b" };
        assert_eq!(e["node"], node, "audited where the client is: {e}");
    }
    assert!(page_a["next"].is_null() && page_a["cursor"].is_null(), "one page: {page_a}");
    assert!(page_a.get("missing").is_none(), "both answered: {page_a}");

    // Two at a time through B, oldest first: every entry once, in the same order.
    let (mut paged, mut cursor, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let q = if cursor.is_empty() { "&limit=2".to_owned() } else { format!("&limit=2&cursor={cursor}") };
        let (status, page) = audit(&nodes.b, &q).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(ids(&page));
        pages += 1;
        match page["cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!((paged, pages), (ids(&page_a), 3));

    // One node's log alone; its seq cursors are refused for the cluster-wide read, as are
    // malformed cursors.
    let (_, only_b) = audit(&nodes.b, "&scope=node").await;
    assert_eq!(ids(&only_b).len(), 3, "{only_b}");
    assert!(ids(&only_b).iter().all(|id| id.starts_with("node-b:")));
    for bad in ["&after=1", "&cursor=node-a", "&cursor=node-a:1,node-a:2", "&cursor=a%20b:1"] {
        let (status, body) = audit(&nodes.a, bad).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("bad_query")), "{bad}: {body}");
    }

    // The newest two, then `resume`: only what is recorded later, on either node.
    let (_, newest) = audit(&nodes.a, "&order=newest&limit=2").await;
    let want: Vec<String> = ids(&page_a).into_iter().rev().take(2).collect();
    assert_eq!(ids(&newest), want);
    let resume = newest["resume"].as_str().expect("resume").to_owned();
    horn(&on_b, "b3").await;
    horn(&on_a, "a3").await;
    let (_, later) = audit(&nodes.a, &format!("&cursor={resume}")).await;
    let requests: BTreeSet<&str> =
        later["entries"].as_array().expect("entries").iter().map(|e| e["request_id"].as_str().expect("id")).collect();
    assert_eq!(requests, BTreeSet::from(["a3", "b3"]), "{later}");

    // Bad questions on the subject: counted, unanswered.
    let nats = async_nats::connect(nodes.nats.url()).await.expect("connect to nats");
    let before = metric(&nodes.a, "railcast_cluster_rejected_total{kind=\"audit\"}").await;
    let asked =
        tokio::time::timeout(Duration::from_millis(500), nats.request("railcast.audit", Bytes::from_static(b"{{")))
            .await;
    assert!(!matches!(asked, Ok(Ok(_))), "a malformed question gets no answer");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&nodes.a, "railcast_cluster_rejected_total{kind=\"audit\"}").await <= before {
        assert!(Instant::now() < deadline, "the malformed question was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // B dies: within the presence timeout A still counts on it, waits, and says who is missing.
    let _ = nodes.b.child.kill().await;
    let started = Instant::now();
    let (status, partial) = audit(&nodes.a, "").await;
    let partial_ms = started.elapsed().as_millis();
    assert_eq!(status, 200, "{partial}");
    assert_eq!(partial["missing"], json!(["node-b"]), "{partial}");
    assert!(!ids(&partial).is_empty() && ids(&partial).iter().all(|id| id.starts_with("node-a:")), "{partial}");
    // Once its presence is stale, B is not waited for, and still named.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let started = Instant::now();
    let (_, later) = audit(&nodes.a, "").await;
    let stale_ms = started.elapsed().as_millis();
    assert_eq!(later["missing"], json!(["node-b"]), "{later}");
    assert!(stale_ms < 1_000, "a node known to be down was waited for: {stale_ms} ms");
    println!(
        "cluster audit: a page of both nodes in {asked_ms} ms; with node B just killed, A's part and \
         `missing` in {partial_ms} ms; with B's presence stale, in {stale_ms} ms"
    );
}
