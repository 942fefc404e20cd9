//! WebSocket control frames interleaved with video. The server writes video packets itself, with
//! vectored writes that bypass tungstenite, and tungstenite writes everything else (events,
//! pongs) on the same connection. While a train streams, a client sends protocol pings (with
//! payloads) and JSON pings as fast as it can: every pong must come back with its payload, every
//! binary message must be a whole, valid video packet, and the frames must match the simulator's
//! manifest byte for byte. Small packets (`--max-payload 200`) make many binary messages per
//! frame, so control frames land between the chunks of a frame.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use testkit::ws::{verify, Log, Recorder};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};
use tokio_tungstenite::tungstenite::Message;

const PINGS: u32 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_and_events_interleave_with_video_without_corrupting_it() {
    let dir = scratch("ws_control_frames");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(
        &dir,
        &server,
        &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO, &["--max-payload", "200"]].concat(),
    );
    let rc = remote_control(&server, Some("train-1")).await;

    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url(&rc)).await.expect("ws connect");
    let (mut sink, mut stream) = ws.split();
    let log = Arc::new(Mutex::new(Log::default()));
    let pongs = Arc::new(Mutex::new(BTreeSet::<u32>::new()));
    let reader = {
        let (log, pongs) = (Arc::clone(&log), Arc::clone(&pongs));
        tokio::spawn(async move {
            let mut rec = Recorder::default();
            while let Some(msg) = stream.next().await {
                match msg.expect("the stream stays valid") {
                    // Recorder::binary panics on a malformed packet.
                    Message::Binary(b) => rec.binary(&log, b),
                    Message::Text(t) => rec.text(&log, t.as_str()),
                    Message::Pong(p) => {
                        let n = u32::from_be_bytes(p[..4].try_into().expect("4-byte payload"));
                        assert!(p[4..].iter().all(|&b| b == (n % 251) as u8), "pong {n} payload changed");
                        pongs.lock().expect("lock").insert(n);
                    }
                    Message::Close(f) => panic!("server closed the connection: {f:?}"),
                    _ => {}
                }
            }
        })
    };

    // Wait for video, then ping while it flows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while log.lock().expect("lock").frames.len() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "no video");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..PINGS {
        // 4-byte counter, then up to 121 bytes of a pattern (control frames carry ≤ 125 bytes).
        let mut payload = n.to_be_bytes().to_vec();
        payload.extend(std::iter::repeat_n((n % 251) as u8, (n % 122) as usize));
        sink.send(Message::Ping(payload.into())).await.expect("send ping");
        sink.send(Message::Text(format!(r#"{{"type":"ping","t":{n}}}"#).into())).await.expect("send json ping");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = pongs.lock().expect("lock").len() as u32;
        let json = log.lock().expect("lock").events.iter().filter(|e| e["type"] == "pong").count() as u32;
        if got == PINGS && json == PINGS {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{got} of {PINGS} pongs, {json} of {PINGS} JSON pongs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Keep streaming a little after the last pong, then check every frame.
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();
    let log = log.lock().expect("lock");
    let checked = verify(&log.frames, &sim.manifest());
    println!("{checked} frames verified, {} packets, {PINGS} pongs and {PINGS} JSON pongs", log.packets);
    assert!(checked >= 20, "only {checked} frames");
}
