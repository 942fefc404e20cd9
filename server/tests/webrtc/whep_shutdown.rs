//! SIGTERM with a WHEP session playing: its `command` channel gets `closing` ("server shutting
//! down"), and the process exits 0 well within the grace period (the session ended, it did not
//! time out).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use railcast_protocol::client::ServerEvent;
use testkit::whep::Whep;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};
use webrtc::data_channel::DataChannelEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_goodbye_to_whep_sessions_and_exits_zero() {
    let dir = scratch("whep_shutdown");
    let mut server = Server::start(&dir, &["--shutdown-grace", "5s"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let whep = Whep::connect(&server, &rc, Some(server.token("admin")), 1, true).await;
    let events = Arc::new(Mutex::new(Vec::<ServerEvent>::new()));
    let command = whep.command.clone().expect("command channel");
    {
        let events = Arc::clone(&events);
        tokio::spawn(async move {
            while let Some(ev) = command.poll().await {
                if let DataChannelEvent::OnMessage(m) = ev {
                    if let Ok(e) = serde_json::from_slice::<ServerEvent>(&m.data) {
                        events.lock().expect("lock").push(e);
                    }
                }
            }
        });
    }
    whep.wait_units(1, 10, Duration::from_secs(20)).await;

    let start = Instant::now();
    server.signal("TERM");
    let status =
        tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exit in time").expect("wait");
    let took = start.elapsed();
    println!("exited with {status} after {} ms", took.as_millis());
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(3), "took {took:?}: the WHEP session did not end by itself");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = events.lock().expect("lock").clone();
    assert!(
        events.iter().any(|e| matches!(e, ServerEvent::Closing { reason } if reason.contains("shutting down"))),
        "{events:?}"
    );
    let _ = whep.pc.close().await;
}
