//! SIGTERM during streaming: a WebTransport client gets a `closing` event, then the session closes
//! with 1001 "server shutting down", and the process exits 0 within the grace period (it waits
//! for the session's goodbye).

use std::time::{Duration, Instant};

use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_with_closing_then_1001() {
    let dir = scratch("wt_shutdown");
    let mut server = Server::start(&dir, &["--shutdown-grace", "3s"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = testkit::wt::connect(&server, &rc).await;
    client.wait_frames(5).await;

    let start = Instant::now();
    server.signal("TERM");
    let status =
        tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exit in time").expect("wait");
    let took = start.elapsed();
    println!("exited with {status} after {} ms", took.as_millis());
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let closing = client.wait_event("closing", |e| e["type"] == "closing").await;
    assert!(closing["reason"].as_str().is_some_and(|r| r.contains("shutting down")), "{closing}");
    let closed = client.wait_closed().await;
    assert_eq!(closed, (1001, "server shutting down".to_owned()));
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(log.contains("webtransport session closed"), "the session did not end before the process");
}
