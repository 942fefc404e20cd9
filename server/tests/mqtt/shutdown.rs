//! SIGTERM during streaming: an MQTT client gets a `closing` event, its broker credentials are
//! deleted, and the process exits 0 within the grace period (after the session's goodbye).

use std::time::{Duration, Instant};

use testkit::mqtt::Broker;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_goodbye_and_deletes_the_credentials() {
    let dir = scratch("mqtt_shutdown");
    let broker = Broker::start(&dir).await;
    let mut args = broker.server_args();
    args.extend(["--shutdown-grace".into(), "5s".into()]);
    let mut server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let (session, client) = testkit::mqtt::connect_rc(&server, &broker, &rc).await;
    client.wait_frames(5).await;
    // Credentials handed out but never used go too.
    let unused = testkit::mqtt::create_session(&server, &rc).await;

    let start = Instant::now();
    server.signal("TERM");
    let status =
        tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exit in time").expect("wait");
    let took = start.elapsed();
    println!("mqtt shutdown: exited with {status} after {} ms", took.as_millis());
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let closing = client.wait_event("closing", |e| e["type"] == "closing").await;
    assert!(closing["reason"].as_str().is_some_and(|r| r.contains("shutting down")), "{closing}");
    assert!(!testkit::mqtt::can_log_in(broker.port, &session).await, "the session's credentials were not deleted");
    assert!(!testkit::mqtt::can_log_in(broker.port, &unused).await, "unused credentials were not deleted");
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(log.contains("mqtt session closed"), "the session did not end before the process");
}
