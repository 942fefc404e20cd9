//! The `video` data channel packs whole packets into messages (docs/wire-format.md §2.6): with the
//! default limit, messages carry several packets (a frame's chunks arrive together, and a late
//! joiner's cached GOP in a burst), none is larger than 64 KiB, and every frame still matches the
//! simulator's SHA-256. With `--webrtc-video-message 1` every message is exactly one packet.

use std::time::Duration;

use testkit::webrtc::RtcClient;
use testkit::ws::verify;
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// Connect one webrtc-rs client to a server started with `args`, let it receive for a while and
/// return (frames verified, messages, messages holding more than one packet, largest message,
/// packets).
async fn run(name: &str, args: &[&str]) -> (usize, u64, u64, usize, u64) {
    let dir = scratch(name);
    let server = Server::start(&dir, args).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    // Join mid-GOP, so that the cached frames since the last keyframe arrive in one burst.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rtc = RtcClient::connect(&server, &rc).await;
    rtc.client.wait_frames(40).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let checked = verify(&rtc.client.frames(), &sim.manifest());
    let r = {
        let log = rtc.client.log.lock().expect("lock");
        (checked, log.video_messages, log.multi_packet_messages, log.largest_video_message, log.packets)
    };
    let _ = rtc.pc.close().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_packets_share_a_message_and_frames_stay_intact() {
    let (checked, messages, multi, largest, packets) = run("webrtc_video_messages", &[]).await;
    println!("default limit: {checked} frames verified; {packets} packets in {messages} messages, {multi} with several packets, largest {largest} bytes");
    assert!(checked >= 40, "{checked} frames verified");
    assert!(multi > 0, "no message carried more than one packet ({packets} packets in {messages} messages)");
    assert!(packets > messages, "{packets} packets in {messages} messages");
    assert!(largest <= 65_536, "a message of {largest} bytes is over the 64 KiB default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_below_one_packet_sends_one_packet_per_message() {
    let (checked, messages, multi, largest, packets) =
        run("webrtc_video_messages_one", &["--webrtc-video-message", "1"]).await;
    println!("limit 1: {checked} frames verified; {packets} packets in {messages} messages, largest {largest} bytes");
    assert!(checked >= 40, "{checked} frames verified");
    assert_eq!(multi, 0, "a message carried several packets");
    assert_eq!(packets, messages);
    assert!(largest <= 26 + 1150, "largest message {largest} bytes");
}
