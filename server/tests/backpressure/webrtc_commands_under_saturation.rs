//! Commands still get through when video saturates the path to the operator.
//!
//! The WebRTC client reaches the server through a bottleneck link (testkit::link): server →
//! client carries 400 kbit/s with at most 100 ms of queue, while the train sends video at several
//! times that: the server's `video` channel stays full and the link drops what overflows its
//! queue. Each command's ack, on the `command` channel, must still arrive: with SCTP sending every
//! queued unordered (video) message before any ordered one, as webrtc-rs's SCTP did before
//! railcast's patch 13 (third_party/PATCHES.md), no ack arrived at all.

use std::time::Duration;

use testkit::webrtc::RtcClient;
use testkit::{api, remote_control, scratch, Server, Sim, KEYFRAME_VIDEO};

const LINK_BPS: u64 = 400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_acks_arrive_while_video_saturates_the_link() {
    let _serial = testkit::serial().await;
    let dir = scratch("webrtc_commands_under_saturation");
    // Video messages of at most 8 KiB, so that one takes ≈ 160 ms on the link: a command's ack
    // waits for at most the message in progress.
    let server = Server::start(&dir, &["--webrtc-video-message", "8192"]).await;
    // Every frame a keyframe: ≈ 1.5 Mbit/s of video into a 0.4 Mbit/s link.
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], KEYFRAME_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let (rtc, link) = RtcClient::connect_through(&server, &rc, LINK_BPS, Duration::from_millis(100)).await;
    let c = &rtc.client;
    c.wait_frames(5).await;
    assert!(
        link.stats.down_datagrams.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the session does not cross the link"
    );
    // Let the backlog build: the peer's send buffer fills and stays full.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let session_url = server.url(&format!("/api/webrtc/sessions/{}", rtc.session_id));

    let rtts = c
        .command_round_trips(5, Duration::from_secs(10), || {
            format!(
                "video saturates the link: {} datagrams down, {} dropped",
                link.stats.down_datagrams.load(std::sync::atomic::Ordering::Relaxed),
                link.stats.down_dropped.load(std::sync::atomic::Ordering::Relaxed)
            )
        })
        .await;

    // The link was the bottleneck throughout: it overflowed, and the server handed the channel
    // more video than the link carried.
    let (_, session) = api("GET", &session_url, None).await;
    let stats = &link.stats;
    let down = stats.down_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = stats.down_dropped.load(std::sync::atomic::Ordering::Relaxed);
    let sent = session["counters"]["bytes_sent"].as_u64().expect("bytes_sent");
    println!(
        "command acks through a {} kbit/s link under video: {rtts:?} ms; video handed to the channel {} kB, link \
         carried {} kB down and dropped {dropped} datagrams",
        LINK_BPS / 1000,
        sent / 1000,
        down / 1000,
    );
    assert!(dropped > 0, "the link never overflowed: the test did not saturate it");
    assert!(sent > down, "the server sent less video ({sent} B) than the link carried ({down} B)");
    let (status, _) = api("DELETE", &session_url, None).await;
    assert_eq!(status, 204);
    let _ = rtc.pc.close().await;
}
