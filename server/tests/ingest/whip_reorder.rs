//! A WHIP publisher (aiortc, one camera and its audio) whose RTP reaches the server out of order:
//! a relay holds every 4th RTP datagram back until three more have passed it (40 ms at most; a
//! frame at 320×240 is often one packet, so that is the next frame's, or an audio packet). The server puts the packets back in order
//! before it depacketizes them, so no frame is dropped as incomplete and a viewer gets every
//! frame; the metrics count the packets put back. Without the reorder buffer every held packet
//! broke its frame (a sequence gap) and the frames after it until a keyframe. The audio track's
//! Opus packets, held the same way, are put back in order too, and none is dropped as late.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use testkit::link::Reorderer;
use testkit::mqtt::metric;
use testkit::ws::Client;
use testkit::{remote_control, scratch, wait_for_train, Server};

use crate::whip_aiortc::Aiortc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_rtp_is_put_back_in_order() {
    let dir = scratch("whip_reorder");
    let server = Server::start(&dir, &[]).await;
    let udp: SocketAddr = server.webrtc_udp.as_deref().expect("one WebRTC UDP port").parse().expect("address");
    let relay = Reorderer::start(udp, 4, 3).await;
    let token = server.train_token("train-5");
    let via = relay.front.to_string();
    let publisher = Aiortc::start(&server, "train-5", &token, &["--cameras", "1", "--audio", "--via", &via]).await;
    wait_for_train(&server, "train-5", true).await;
    let rc = remote_control(&server, Some("train-5")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.frames().iter().filter(|f| f.camera == 0).count() < 90 {
        assert!(std::time::Instant::now() < deadline, "no 90 video frames in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the session meters every 250 ms

    let held = relay.held.load(Ordering::Relaxed);
    let reorder = |kind: &'static str, outcome: &'static str| {
        let name = format!("railcast_whip_rtp_reorder_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}");
        let server = &server;
        async move { metric(server, &name).await }
    };
    let reordered = reorder("video", "reordered").await;
    let gaps = reorder("video", "gap").await;
    let (audio_reordered, audio_gaps, audio_late) =
        (reorder("audio", "reordered").await, reorder("audio", "gap").await, reorder("audio", "late").await);
    let audio_packets = client.frames().iter().filter(|f| f.camera == 256).count();
    let incomplete = metric(&server, "railcast_whip_frames_total{outcome=\"incomplete\"}").await;
    let relayed = metric(&server, "railcast_whip_frames_total{outcome=\"relayed\"}").await;
    println!(
        "whip: {held} RTP datagrams held back by the relay; {reordered} packets put back in order, \
         {gaps} gaps given up, {incomplete} frames incomplete, {relayed} relayed; audio: {audio_reordered} \
         put back in order, {audio_gaps} gaps, {audio_late} late, {audio_packets} packets at the viewer"
    );
    assert!(held >= 20, "the relay reordered too little to tell: {held}");
    // A held datagram passed by no video packet (only RTCP, say) arrives in order after all.
    assert!(reordered + audio_reordered >= held as f64 / 2.0, "put back {reordered} + {audio_reordered} of {held}");
    assert_eq!((gaps, incomplete), (0.0, 0.0), "nothing lost on loopback");
    assert!(audio_reordered >= 1.0, "no Opus packet put back in order");
    assert_eq!((audio_gaps, audio_late), (0.0, 0.0), "no audio lost or dropped as late");
    assert!(audio_packets >= 50, "the viewer got {audio_packets} audio packets");
    // Consecutive frame numbers per camera: no frame missing at the viewer.
    let seqs: Vec<u32> = client.frames().iter().filter(|f| f.camera == 0).map(|f| f.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "a frame missing: {seqs:?}");
    let report = publisher.stop().await;
    assert_eq!(report["ok"], true, "{report}");
}
