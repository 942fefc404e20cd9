//! A WHIP publisher (aiortc) whose RTP reaches the server out of order: a relay holds every 4th
//! RTP datagram back until the next one has passed it (40 ms at most; a frame at 320×240 is often
//! one packet, so that is the next frame's). The server puts the packets back in order
//! before it depacketizes them, so no frame is dropped as incomplete and a viewer gets every
//! frame; the metrics count the packets put back. Without the reorder buffer every held packet
//! broke its frame (a sequence gap) and the frames after it until a keyframe.

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
    let relay = Reorderer::start(udp, 4, 1).await;
    let token = server.train_token("train-5");
    let via = relay.front.to_string();
    let publisher = Aiortc::start(&server, "train-5", &token, &["--cameras", "1", "--via", &via]).await;
    wait_for_train(&server, "train-5", true).await;
    let rc = remote_control(&server, Some("train-5")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(90).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the session meters every 250 ms

    let held = relay.held.load(Ordering::Relaxed);
    let reordered = metric(&server, "railcast_whip_rtp_reorder_total{outcome=\"reordered\"}").await;
    let gaps = metric(&server, "railcast_whip_rtp_reorder_total{outcome=\"gap\"}").await;
    let incomplete = metric(&server, "railcast_whip_frames_total{outcome=\"incomplete\"}").await;
    let relayed = metric(&server, "railcast_whip_frames_total{outcome=\"relayed\"}").await;
    println!(
        "whip: {held} RTP datagrams held back by the relay; {reordered} packets put back in order, \
         {gaps} gaps given up, {incomplete} frames incomplete, {relayed} relayed"
    );
    assert!(held >= 20, "the relay reordered too little to tell: {held}");
    // A held datagram passed by no video packet (only RTCP, say) arrives in order after all.
    assert!(reordered >= held as f64 / 2.0, "put back {reordered} of {held}");
    assert_eq!((gaps, incomplete), (0.0, 0.0), "nothing lost on loopback");
    // Consecutive frame numbers per camera: no frame missing at the viewer.
    let seqs: Vec<u32> = client.frames().iter().filter(|f| f.camera == 0).map(|f| f.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "a frame missing: {seqs:?}");
    let report = publisher.stop().await;
    assert_eq!(report["ok"], true, "{report}");
}
