//! Whatever arrives on the cluster's subjects — malformed presence, subjects that name no train,
//! garbage media, bad keyframe requests, commands and control requests — is counted and ignored; both nodes keep
//! relaying exact frames. Malformed entries in the shared-state buckets are counted and skipped.
//! A train announced by a node that then falls silent goes offline on the others after the
//! presence timeout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use testkit::mqtt::metric;
use testkit::ws::{verify, Client};
use testkit::{remote_control, scratch, wait_for_train, Server};

use crate::Nodes;

async fn rejected(server: &Server, kind: &str) -> f64 {
    metric(server, &format!("railcast_cluster_rejected_total{{kind=\"{kind}\"}}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cluster_messages_are_counted_and_ignored() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_bad_input");
    let nodes = Nodes::start(&dir).await;
    let rc_b = remote_control(&nodes.b, Some("train-1")).await;
    let on_b = Client::connect(&nodes.b.ws_url(&rc_b)).await;
    on_b.wait_frames(1).await;

    let nats = async_nats::connect(nodes.nats.url()).await.expect("connect to nats");
    let garbage: [(&str, &[u8]); 8] = [
        ("railcast.presence", b"not json"),
        ("railcast.presence", b"{\"node\":\"\",\"trains\":[]}"),
        ("railcast.want.x%y", b"node-z"),
        ("railcast.media.train-1", b"RV\x09garbage"),
        ("railcast.keyframe.train-1", b"[["),
        ("railcast.telemetry.train-1", b"{\"speed_kmh\":\"fast\"}"),
        ("railcast.control.train-1", b"{\"node\":\"node-z\",\"op\":\"steal\"}"),
        // A holder of another node than the one asking.
        (
            "railcast.control.train-1",
            b"{\"node\":\"node-z\",\"op\":\"take\",\"force\":true,\"holder\":{\"name\":\"m\",\"role\":\"admin\",\
              \"session\":1,\"transport\":\"websocket\",\"since_us\":1,\"node\":\"node-a\"}}",
        ),
    ];
    for (subject, body) in garbage {
        nats.publish(subject, Bytes::from_static(body)).await.expect("publish");
    }
    let reply = nats
        .request("railcast.command.train-1", Bytes::from_static(b"{\"type\":\"set_speed\",\"kmh\":9000}"))
        .await
        .expect("the owner answers");
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).expect("json reply");
    assert_eq!(reply["error"], "bad_request", "{reply}");
    nats.flush().await.expect("flush");

    // Bad entries in the shared state: not JSON, a record under another id's key, a bad digest.
    let js = async_nats::jetstream::new(nats.clone());
    let remotes = js.get_key_value("railcast_remote_controls").await.expect("bucket");
    remotes.put("rc-x", Bytes::from_static(b"{{")).await.expect("put");
    let other = b"{\"id\":\"rc-y\",\"name\":\"n\",\"created_at_ms\":1}";
    remotes.put("rc-z", Bytes::from_static(other)).await.expect("put");
    let revocations = js.get_key_value("railcast_revocations").await.expect("bucket");
    let bad = b"{\"sha256\":\"00\",\"revoked_at_ms\":1,\"by\":\"x\"}";
    revocations.put("00", Bytes::from_static(bad)).await.expect("put");

    // A node that announces a train and then falls silent.
    let ghost =
        Bytes::from_static(b"{\"node\":\"node-x\",\"trains\":[{\"train_id\":\"ghost\",\"cameras\":[],\"epoch\":1}]}");
    nats.publish("railcast.presence", ghost).await.expect("publish");
    nats.flush().await.expect("flush");
    wait_for_train(&nodes.b, "ghost", true).await;
    let silent = Instant::now();
    wait_for_train(&nodes.b, "ghost", false).await;
    let ghost_offline = silent.elapsed();
    assert!(ghost_offline <= Duration::from_secs(5), "{ghost_offline:?}");

    let before = on_b.frames().len();
    on_b.wait_frames(before + 15).await;
    verify(&on_b.frames(), &nodes.sim.manifest());
    for (server, kind) in [
        (&nodes.a, "presence"),
        (&nodes.b, "presence"),
        (&nodes.a, "want"),
        (&nodes.b, "media"),
        (&nodes.b, "telemetry"),
        (&nodes.a, "keyframe"),
        (&nodes.a, "command"),
        (&nodes.a, "control"),
        (&nodes.a, "remote_control"),
        (&nodes.b, "revocation"),
    ] {
        assert!(rejected(server, kind).await >= 1.0, "{kind} not counted on {}", server.http);
    }
    assert!(rejected(&nodes.a, "presence").await >= 2.0);
    assert!(rejected(&nodes.a, "control").await >= 2.0);
    let (_, train) = testkit::api("GET", &nodes.a.url("/api/trains/train-1"), None).await;
    assert!(train["control"].is_null(), "no lease taken: {train}");
    assert!(rejected(&nodes.b, "remote_control").await >= 2.0);
    let (_, list) = testkit::api("GET", &nodes.b.url("/api/remote-controls"), None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "only the real one: {list}");
    println!(
        "cluster: bad messages counted and ignored; a silent node's train offline after {} ms",
        ghost_offline.as_millis()
    );
}
