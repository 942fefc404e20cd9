//! A WebSocket client that stops taking data is disconnected after `ws_write_timeout`, without
//! waiting for TCP to give up, and the others never notice.

use std::time::{Duration, Instant};

use testkit::ws::Client;
use testkit::{api, remote_control, scratch, Server, Sim, BUSY_VIDEO};

async fn sessions_of(server: &Server, rc: &str) -> usize {
    let (_, view) = api("GET", &server.url(&format!("/api/remote-controls/{rc}")), None).await;
    view["sessions"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_no_data_is_disconnected() {
    let _serial = testkit::serial().await;
    let dir = scratch("ws_write_timeout");
    // Small buffers so the stalled client's socket fills within a second at 2 Mbit/s.
    let server = Server::start(&dir, &["--ws-write-timeout", "1s", "--ws-send-buffer", "8192"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], BUSY_VIDEO].concat());
    let stalled_rc = remote_control(&server, Some("train-1")).await;
    let healthy_rc = remote_control(&server, Some("train-1")).await;
    let healthy = Client::connect(&server.ws_url(&healthy_rc)).await;
    healthy.wait_frames(5).await;

    // Handshake, then never read again.
    let stalled = testkit::ws::stalled(&server.ws_url(&stalled_rc), &server.http).await;
    let connected = Instant::now();
    assert_eq!(sessions_of(&server, &stalled_rc).await, 1);

    // Its socket fills, a write waits 1 s, the session ends; allow for the fill and scheduling.
    let deadline = connected + Duration::from_secs(15);
    while sessions_of(&server, &stalled_rc).await > 0 {
        assert!(Instant::now() < deadline, "the stalled client's session is still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = connected.elapsed();
    println!("stalled client disconnected {} ms after it connected", gone.as_millis());
    assert!(gone >= Duration::from_secs(1), "not before the write timeout: {gone:?}");

    // The healthy client goes on, its session untouched.
    let before = healthy.frames().len();
    healthy.wait_frames(before + 10).await;
    assert!(healthy.log.lock().expect("lock").closed.is_none());
    assert_eq!(sessions_of(&server, &healthy_rc).await, 1);
    let log = std::fs::read_to_string(&server.log).expect("server log");
    assert!(log.contains("websocket client disconnected: the client took no data for 1s"), "server log says why");
    drop(stalled);
}
