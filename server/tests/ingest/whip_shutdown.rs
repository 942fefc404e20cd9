//! SIGTERM with a WHIP train publishing: the server ends the publication (the train goes offline,
//! "server shutting down"), closes its peer (aiortc sees `closed`) and exits 0 well within the
//! grace period.

use std::time::{Duration, Instant};

use testkit::{scratch, wait_for_train, Server};

use crate::whip_aiortc::Aiortc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_whip_publications_and_exits_zero() {
    let dir = scratch("whip_shutdown");
    let mut server = Server::start(&dir, &["--shutdown-grace", "5s"]).await;
    let token = server.train_token("train-4");
    let publisher = Aiortc::start(&server, "train-4", &token, &["--cameras", "1", "--audio"]).await;
    wait_for_train(&server, "train-4", true).await;

    let start = Instant::now();
    server.signal("TERM");
    let status =
        tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exit in time").expect("wait");
    let took = start.elapsed();
    println!("exited with {status} after {} ms", took.as_millis());
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(3), "took {took:?}: the WHIP session did not end by itself");
    let log = std::fs::read_to_string(&server.log).expect("server log");
    assert!(log.contains("WHIP publication ended: server shutting down"), "the server log says why it ended");
    let report = publisher.stop().await;
    println!("publisher: {report}");
    assert_eq!(report["delete"], 0, "the server is gone: {report}");
    let states = report["connection_states"].as_array().cloned().unwrap_or_default();
    assert!(states.iter().any(|s| s == "closed"), "the server closed the peer: {report}");
}
