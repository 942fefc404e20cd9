//! A token revoked on one node is cut off on every node: the viewer sessions it opened on B and
//! C close (4003) and the API refuses it there; a train token revoked on C disconnects the train
//! from A, and lifting the revocation on B lets it back.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::ws::Client;
use testkit::{api, api_as, scratch, set_train, wait_for_train, Sim, SMALL_VIDEO};

use crate::{shared_remote_control, wait_api, Three};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_cut_off_on_every_node() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_revocation");
    let t = Three::start(&dir).await;
    let _sim = Sim::start(&dir, &t.a, &[&["--trains", "1"], SMALL_VIDEO].concat());
    for node in [&t.b, &t.c] {
        wait_api(node, "/api/trains/train-1", "train-1 mirrored", |s, v| s == 200 && v["online"] == true).await;
    }
    let rc = shared_remote_control(&t.a, &[&t.b, &t.c]).await;
    set_train(&t.a, &rc, "train-1").await;
    let viewer = t.a.token("viewer").to_owned();
    let on_b = Client::connect(&t.b.ws_url_as(&rc, Some(&viewer))).await;
    let on_c = Client::connect(&t.c.ws_url_as(&rc, Some(&viewer))).await;
    on_b.wait_frames(1).await;
    on_c.wait_frames(1).await;

    let revoked = Instant::now();
    let (status, r) = api("POST", &t.a.url("/api/revocations"), Some(json!({"token": viewer, "note": "test"}))).await;
    assert_eq!(status, 201, "{r}");
    let (code_b, reason_b) = on_b.wait_closed().await;
    let closed_b = revoked.elapsed();
    let (code_c, _) = on_c.wait_closed().await;
    let closed_c = revoked.elapsed();
    assert_eq!((code_b, code_c), (4003, 4003), "{reason_b}");
    let (status, _) = api_as(Some(&viewer), "GET", &t.c.url("/api/me"), None).await;
    assert_eq!(status, 401, "refused on C");
    let (_, list) = api("GET", &t.b.url("/api/revocations"), None).await;
    assert_eq!(list[0]["sha256"], r["sha256"], "{list}");
    assert_eq!((list[0]["by"].as_str(), list[0]["note"].as_str()), (Some("demo-admin"), Some("test")), "{list}");
    let (status, again) = api("POST", &t.b.url("/api/revocations"), Some(json!({"sha256": r["sha256"]}))).await;
    assert_eq!((status, &again["revoked_at"]), (200, &r["revoked_at"]), "the first revocation stands: {again}");

    // The train's token, revoked on C: A closes the train's connection and refuses it after.
    let train_token = t.a.train_token("train-1");
    let revoked = Instant::now();
    let (status, tr) = api("POST", &t.c.url("/api/revocations"), Some(json!({"token": train_token}))).await;
    assert_eq!(status, 201, "{tr}");
    wait_for_train(&t.a, "train-1", false).await;
    let train_off = revoked.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, v) = api("GET", &t.a.url("/api/trains/train-1"), None).await;
    assert_eq!(v["online"], false, "the train cannot come back: {v}");
    // Lifted on B: the simulator's next attempt (backoff ≤ 5 s) gets in.
    let sha = tr["sha256"].as_str().expect("sha256");
    let (status, body) = api("DELETE", &t.b.url(&format!("/api/revocations/{sha}")), None).await;
    assert_eq!(status, 204, "{body}");
    wait_for_train(&t.a, "train-1", true).await;
    let (status, _) = api("DELETE", &t.b.url(&format!("/api/revocations/{sha}")), None).await;
    assert_eq!(status, 404);
    println!(
        "cluster: viewer token revoked on A → its sessions closed on B after {} ms, on C after {} ms; \
         train token revoked on C → train offline on A after {} ms",
        closed_b.as_millis(),
        closed_c.as_millis(),
        train_off.as_millis(),
    );
}
