//! A train whose network disappears in the middle of a frame (no close, no more packets): the
//! server notices by its idle timeout, tells the train's clients it is offline, and when the train
//! comes back the clients get whole frames again. The half frame is never delivered as a frame.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use testkit::ws::Client;
use testkit::{api, remote_control, scratch, sha256_hex, RawTrain, Server};
use tokio::net::UdpSocket;

/// A UDP relay between one client and the server's QUIC port that can be cut: after `cut`, it
/// forwards nothing either way, as when a train drives into a tunnel.
async fn relay(server_quic: std::net::SocketAddr, cut: Arc<AtomicBool>) -> std::net::SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("front"));
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("back"));
    back.connect(server_quic).await.expect("connect");
    let addr = front.local_addr().expect("addr");
    let client = Arc::new(tokio::sync::Mutex::new(None));
    let (f, b, c, k) = (Arc::clone(&front), Arc::clone(&back), Arc::clone(&client), Arc::clone(&cut));
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().await = Some(from);
            if !k.load(Ordering::Relaxed) {
                let _ = b.send(&buf[..n]).await;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client.lock().await;
            if let (Some(to), false) = (to, cut.load(Ordering::Relaxed)) {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_offline_then_whole_frames_again() {
    let dir = scratch("train_vanishes");
    let server = Server::start(&dir, &["--quic-idle-timeout", "1s", "--quic-keep-alive", "300ms"]).await;
    let rc = remote_control(&server, None).await;
    testkit::set_train(&server, &rc, "train-1").await;
    let client = Client::connect(&server.ws_url(&rc)).await;

    // The train connects through the relay.
    let cut = Arc::new(AtomicBool::new(false));
    let via = relay(server.quic.parse().expect("quic addr"), Arc::clone(&cut)).await;
    let train = RawTrain::connect_via(&server, "train-1", via).await;
    client.wait_event("online", |e| e["type"] == "train_online").await;
    let whole = vec![0x5au8; 3000];
    train.send_frame(1, true, testkit::now_us(), &whole, None);
    client.wait_frames(1).await;

    // Frame 2: one chunk of three, then the network is gone.
    let half = vec![0xa5u8; 3000];
    assert_eq!(train.send_frame(2, false, testkit::now_us(), &half, Some(1)), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    cut.store(true, Ordering::Relaxed);
    let t = std::time::Instant::now();
    let off = client.wait_event("offline", |e| e["type"] == "train_offline").await;
    println!("offline after {} ms: {off}", t.elapsed().as_millis());
    let (_, tr) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(tr["online"], false);

    // Back, directly; a new keyframe.
    let back = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let again = vec![0x3cu8; 3000];
    back.send_frame(3, true, testkit::now_us(), &again, None);
    client.wait_frames(2).await;
    let frames = client.frames();
    let seqs: Vec<u32> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, vec![1, 3], "the half frame was never delivered as a frame");
    assert_eq!(frames[0].sha256, sha256_hex(&whole));
    assert_eq!(frames[1].sha256, sha256_hex(&again));
    let (s, _) = api("GET", &server.url("/healthz"), None).await;
    assert_eq!(s, 200);
}
