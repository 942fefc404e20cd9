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

/// The frames a raw client reads until the server's Close: the text events, and the close code.
async fn read_to_close(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Result<(Vec<String>, u16), String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => return Err("no Close within 10 s".into()),
            Ok(None) => return Err(format!("the stream ended without a Close after {events:?}")),
            Ok(Some(Err(e))) => return Err(format!("{e} after {events:?}")),
            Ok(Some(Ok(Message::Text(t)))) => events.push(t.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => return Ok((events, frame.map_or(0, |f| u16::from(f.code)))),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A client whose socket is full when the server stops (it is slow to read) still gets the
/// `closing` event and close 1001 once it reads again: the process waits, within the grace
/// period, for every session's goodbye instead of ending under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_its_goodbye() {
    let _serial = testkit::serial().await;
    let dir = scratch("shutdown_slow_reader");
    let mut server = Server::start(&dir, &["--shutdown-grace", "5s", "--ws-send-buffer", "8192"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], testkit::BUSY_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let watching = Client::connect(&server.ws_url(&rc)).await;
    watching.wait_frames(5).await;
    // 4 KiB receive buffer, not read: within a second of 2 Mbit/s its socket is full.
    let mut slow = testkit::ws::stalled(&server.ws_url(&rc), &server.http).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (events, code) = read_to_close(&mut slow).await.expect("the slow reader's goodbye");
    assert_eq!(code, 1001, "{events:?}");
    assert!(events.iter().any(|e| e.contains("\"closing\"")), "no closing event: {events:?}");
    let status =
        tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exit in time").expect("wait");
    assert!(status.success(), "{status}");
    watching.wait_event("closing", |e| e["type"] == "closing").await;
}

/// The repro: HTTP requests sent half (a header never finished, a body never sent whole)
/// are open when SIGTERM comes; the watching client still gets its goodbye every time, and the
/// process ends within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_do_not_cost_a_goodbye() {
    use tokio::io::AsyncWriteExt;
    let dir = scratch("shutdown_half_open");
    let mut server = Server::start(&dir, &["--shutdown-grace", "3s"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(5).await;
    let mut half_open = Vec::new();
    for i in 0..20 {
        let mut tcp = tokio::net::TcpStream::connect(&server.http).await.expect("connect");
        let half: &[u8] = if i % 2 == 0 {
            b"GET /api/trains HTTP/1.1\r\nHost: railcast\r\nX-Slow: aaa"
        } else {
            b"POST /api/remote-controls HTTP/1.1\r\nHost: railcast\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        };
        tcp.write_all(half).await.expect("write");
        half_open.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let start = Instant::now();
    server.signal("TERM");
    let status =
        tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exit in time").expect("wait");
    let took = start.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    client.wait_event("closing", |e| e["type"] == "closing").await;
    let closed = client.log.lock().expect("lock").closed.clone();
    assert_eq!(closed.as_ref().map(|c| c.0), Some(1001), "{closed:?}");
    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(log.contains("websocket session closed"), "the session did not end before the process");
}
