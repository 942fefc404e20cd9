//! Packets larger than the session's datagram size arrive alone on unidirectional streams, the
//! others as datagrams, and every frame reassembled from both is exact.
//!
//! The client takes UDP payloads of at most 1,200 bytes (its QUIC `max_udp_payload_size`, the
//! smallest allowed), which leaves it datagrams of about 1,160 bytes. A hand-driven train sends
//! frames whose packets are all full (three chunks of 1,150 bytes: 1,176-byte packets, too large
//! for the client) between frames of one short packet (1,026 bytes): the sizes are chosen, not
//! left to the encoder, which splits frames evenly and so only sometimes makes a full packet
//! (one CI run saw none in 50 frames). A train's packets must fit its own QUIC datagrams, so they
//! cannot be made much larger than a client's; the client's limit is what varies in the field
//! (Chromium's is 1,211 bytes).

use std::collections::HashMap;
use std::time::Duration;

use testkit::{remote_control, scratch, sha256_hex, RawTrain, Server};

const FULL: usize = 3 * 1150;
const SHORT: usize = 1000;
const FRAMES: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packets_come_on_streams() {
    let _serial = testkit::serial().await;
    let dir = scratch("wt_oversized");
    let server = Server::start(&dir, &[]).await;
    let train = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let hashes = testkit::wt::hashes(&server).await;
    let session =
        testkit::wt::open_limited(&testkit::wt::url(&server, &rc), &hashes, Some(1200)).await.expect("session");
    let client = testkit::wt::run(session).await;
    client.wait_event("mapped", |e| e["type"] == "mapped_train_changed").await;

    // Every frame a keyframe, so a frame lost at the hub costs only itself.
    let mut sent = HashMap::new();
    for seq in 1..=FRAMES {
        let len = if seq % 2 == 0 { FULL } else { SHORT };
        let payload: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(seq) as u8).collect();
        sent.insert(seq, sha256_hex(&payload));
        train.send_frame(seq, true, testkit::now_us(), &payload, None);
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.frames().len() < FRAMES as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let frames = client.frames();
    for f in &frames {
        assert_eq!(Some(&f.sha256), sent.get(&f.seq), "frame {} is not what the train sent", f.seq);
    }
    let full = frames.iter().filter(|f| f.seq % 2 == 0).count() as u64;
    let short = frames.len() as u64 - full;
    let log = client.log.lock().expect("lock");
    println!(
        "oversized: {} of {FRAMES} frames exact; {} packets: {} datagrams (largest {} B), {} on streams",
        frames.len(),
        log.packets,
        log.datagrams,
        log.largest_video_message,
        log.stream_packets
    );
    assert_eq!(log.datagrams + log.stream_packets, log.packets);
    assert!(log.stream_packets >= 3 * full, "full packets must come on streams");
    assert!(log.datagrams >= short && short > 0, "short packets must come as datagrams");
    assert!(log.largest_video_message < 1176, "a full packet came as a datagram: {} B", log.largest_video_message);
    // The hub drops whole frames for a client that falls behind; on loopback nearly none are.
    assert!(frames.len() * 10 >= FRAMES as usize * 8, "{} of {FRAMES} frames", frames.len());
}
