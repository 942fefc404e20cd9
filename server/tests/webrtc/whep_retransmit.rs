//! WHEP over a path that loses packets: a relay between the server and a webrtc-rs player (with a
//! player's NACK generator) drops every 4th RTP datagram on its way to the player. The server
//! answers each NACK from the packets it sent last, so the player rebuilds every frame in
//! sequence order: each is, byte for byte, a frame the simulator sent, with no frame missing
//! between the first and the last, and `railcast_whep_nack_packets_total{outcome="resent"}`
//! counts the packets sent again. Without retransmissions one frame in a few would be lost.
//! Prints what was dropped and repaired.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use testkit::link::{server_candidate, through, without_candidates, Lossy};
use testkit::whep::{http, units_in_sequence, verify, Offer, Signaled, Whep};
use testkit::{remote_control, scratch, Server, Sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_rtp_is_sent_again_on_nack() {
    let dir = scratch("whep_retransmit");
    let server = Server::start(&dir, &[]).await;
    // 320×240 at 15 fps and 1 Mbit/s: about 7 RTP packets a frame, so most losses are inside one.
    let video = ["--width", "320", "--height", "240", "--fps", "15", "--gop", "15", "--bitrate", "1M"];
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "1"][..], &video].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let udp: SocketAddr = server.webrtc_udp.as_deref().expect("one WebRTC UDP port").parse().expect("address");
    let relay = Lossy::start(udp, 4).await;

    let url = server.url(&format!("/api/whep/remote-controls/{rc}"));
    let token = server.tokens.get("admin").cloned();
    let front = relay.front;
    let whep = Whep::signal_with(Offer { cameras: 1, audio: 0, command: false }, |offer| async move {
        // The player keeps its candidates to itself and knows the server only as the relay.
        let (status, headers, answer) =
            http("POST", &url, token.as_deref(), &[("content-type", "application/sdp")], &without_candidates(&offer))
                .await;
        assert_eq!(status, 201, "WHEP POST: {answer}");
        let location = headers.get("location").and_then(|v| v.to_str().ok()).expect("Location").to_owned();
        let answer = through(&answer, server_candidate(&answer), front);

        Signaled { answer, url: location.clone(), location, etag: String::new(), links: vec![] }
    })
    .await;

    whep.wait_units(1, 10, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let packets = whep.received.lock().expect("lock").video.clone();
    let (units, incomplete) = units_in_sequence(&packets, &whep.ssrcs, 0);
    let v = verify(&units, &sim.manifest(), "train-1", 0);
    let (dropped, passed) = (relay.dropped.load(Ordering::Relaxed), relay.passed.load(Ordering::Relaxed));
    // A loss in the last half second may still be waiting for its NACK (sent every 100 ms).
    let settled = v.seqs.last().map_or(0, |last| last.saturating_sub(8));
    let missing: Vec<_> =
        v.seqs.windows(2).filter(|w| w[1] <= settled && w[1] != w[0] + 1).map(|w| (w[0], w[1])).collect();
    println!(
        "whep over a lossy path: {dropped} RTP datagrams dropped, {passed} passed (retransmissions \
         included), {} at the player; {} frames verified, {} unknown, {incomplete} incomplete, gaps \
         {missing:?}",
        packets.len(),
        v.frames,
        v.unknown,
    );
    let resent = testkit::mqtt::metric(&server, "railcast_whep_nack_packets_total{outcome=\"resent\"}").await;
    println!("the server resent {resent} RTP packets on NACK");
    assert!(dropped >= 15, "the relay dropped too little to tell: {dropped}");
    // Every drop asked for again and sent again (a resent packet may be dropped once more).
    assert!(resent >= dropped as f64 * 0.8, "{resent} packets resent for {dropped} dropped");
    assert_eq!(v.unknown, 0, "access units that are no frame of the camera");
    assert!(v.frames >= 60, "{} frames verified", v.frames);
    assert!(missing.is_empty(), "frames lost between the first and the last: {missing:?}");
}
