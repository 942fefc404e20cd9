//! Whatever arrives on the cluster's subjects — malformed presence, subjects that name no train,
//! garbage media, bad keyframe requests and commands — is counted and ignored; both nodes keep
//! relaying exact frames. A train announced by a node that then falls silent goes offline on the
//! others after the presence timeout.

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
    let garbage: [(&str, &[u8]); 6] = [
        ("railcast.presence", b"not json"),
        ("railcast.presence", b"{\"node\":\"\",\"trains\":[]}"),
        ("railcast.want.x%y", b"node-z"),
        ("railcast.media.train-1", b"RV\x09garbage"),
        ("railcast.keyframe.train-1", b"[["),
        ("railcast.telemetry.train-1", b"{\"speed_kmh\":\"fast\"}"),
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

    // A node that announces a train and then falls silent.
    let ghost = Bytes::from_static(b"{\"node\":\"node-x\",\"trains\":[{\"train_id\":\"ghost\",\"cameras\":[]}]}");
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
    ] {
        assert!(rejected(server, kind).await >= 1.0, "{kind} not counted on {}", server.http);
    }
    assert!(rejected(&nodes.a, "presence").await >= 2.0);
    println!(
        "cluster: bad messages counted and ignored; a silent node's train offline after {} ms",
        ghost_offline.as_millis()
    );
}
