//! SIGTERM during streaming: clients get a close with a reason, trains are told, and the process
//! exits 0 within the grace period.

use std::time::{Duration, Instant};

use railcast_protocol::ControlMessage;
use testkit::ws::Client;
use testkit::{raw_train, read_control, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_a_reason_and_exits_zero() {
    let dir = scratch("shutdown");
    let mut server = Server::start(&dir, &["--shutdown-grace", "3s"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(5).await;
    // A second train, driven by hand, to see what the server tells trains.
    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&testkit::hello(&server, "train-9").to_bytes()).await.expect("hello");
    assert!(matches!(read_control(&mut recv).await, Some(ControlMessage::Welcome(_))));

    let start = Instant::now();
    server.signal("TERM");
    let status =
        tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exit in time").expect("wait");
    let took = start.elapsed();
    println!("exited with {status} after {} ms", took.as_millis());
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    client.wait_event("closing", |e| e["type"] == "closing").await;
    let closed = client.log.lock().expect("lock").closed.clone();
    assert_eq!(closed.as_ref().map(|c| c.0), Some(1001), "{closed:?}");
    assert!(closed.is_some_and(|c| c.1.contains("shutting down")));
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(3), "QUIC close code 3: shutting down");
            assert!(String::from_utf8_lossy(&c.reason).contains("shutting down"));
        }
        other => panic!("train not told: {other}"),
    }
}
