//! Packets larger than the session's datagram size arrive alone on unidirectional streams, the
//! others as datagrams, and every frame reassembled from both matches the manifest. The client
//! takes datagrams of at most 1,100 bytes (its QUIC `max_datagram_frame_size`), below the
//! simulator's full packets (up to 1,176 bytes: the default `max_payload`, 1,150, and the
//! header): a train's packets must fit its own QUIC datagrams, so they cannot be made much larger
//! than a client's datagrams at the simulator, and the client's limit is what varies in the
//! field (Chromium's is 1,211 bytes).

use std::time::Duration;

use testkit::ws::verify;
use testkit::{remote_control, scratch, Server, Sim, KEYFRAME_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packets_come_on_streams() {
    let _serial = testkit::serial().await;
    let dir = scratch("wt_oversized");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], KEYFRAME_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let hashes = testkit::wt::hashes(&server).await;
    let session =
        testkit::wt::open_limited(&testkit::wt::url(&server, &rc), &hashes, Some(1100)).await.expect("session");
    let client = testkit::wt::run(session).await;
    client.wait_frames(5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let frames = client.frames();
    let checked = verify(&frames, &sim.manifest());
    let first = frames.first().expect("frames").seq;
    let last_sent = sim.manifest().of_train("train-1").map(|e| e.seq).max().unwrap_or(0);
    let expected = (last_sent - first + 1) as usize;
    let log = client.log.lock().expect("lock");
    println!(
        "oversized: {checked} frames verified of {expected}; {} packets: {} datagrams (largest {} B), {} on streams",
        log.packets, log.datagrams, log.largest_video_message, log.stream_packets
    );
    assert!(log.stream_packets > 0, "no packet came on a stream");
    assert!(log.largest_video_message <= 1100, "a datagram over the client's limit");
    assert_eq!(log.datagrams + log.stream_packets, log.packets);
    // quinn advertises its datagram receive buffer as its largest datagram, so this client
    // buffers one datagram at a time: a frame's last (short) packet, sent as a datagram, is lost
    // whenever the client has not yet read the one before, and the frame with it (in 2 of 4 runs
    // of the whole test binary only 10-14 of 50 frames completed). Chromium buffers far more.
    // So: the full packets come on streams, and whatever arrives is exact (`verify`).
    assert!(checked >= 5, "{checked} of {expected} frames");
}
