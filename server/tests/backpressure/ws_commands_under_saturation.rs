//! WebSocket: commands still get through when video saturates the path to the operator.
//!
//! The client reaches the server through a TCP relay that carries 400 kbit/s towards it
//! (testkit::link::TcpLink), while the train sends ≈ 1 Mbit/s of video. Events share the one
//! TCP stream with video, so an ack waits behind whatever video the server has already handed to
//! its socket: that backlog must stay small (`ws_unsent_limit`), the rest dropped in the hub as
//! whole frames, and an ack written before the next video batch. Before both, acks took 4.6 to
//! 16.8 s here, growing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use testkit::link::TcpLink;
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, Server, Sim, KEYFRAME_VIDEO};

const LINK_BPS: u64 = 400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_acks_arrive_while_video_saturates_the_link() {
    let _serial = testkit::serial().await;
    let dir = scratch("ws_commands_under_saturation");
    let server = Server::start(&dir, &[]).await;
    // Every frame a keyframe: ≈ 1 Mbit/s of video into a 0.4 Mbit/s link.
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], KEYFRAME_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let link = TcpLink::start(server.http.parse().expect("http addr"), LINK_BPS, 16 * 1024).await;
    let url = server.ws_url(&rc).replace(&server.http, &link.addr.to_string());
    let c = Client::connect(&url).await;
    c.wait_frames(5).await;
    // Let the backlog build.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let rtts = c.command_round_trips(5, Duration::from_secs(6), || "video saturates the link".into()).await;

    // The link was the bottleneck: video waited in the hub's queue for this client (and is
    // dropped there, as whole frames, once the queue is full) while the acks went past it.
    let (_, view) = api("GET", &server.url(&format!("/api/remote-controls/{rc}")), None).await;
    let session = &view["sessions"][0];
    let count = |k: &str| session[k].as_u64().unwrap_or_else(|| panic!("{k}: {view}"));
    let waiting = count("packets_queued") - count("packets_sent");
    let down = link.stats.down_bytes.load(Ordering::Relaxed);
    println!(
        "websocket command acks through a {} kbit/s link under video: {rtts:?} ms; link carried {} kB; {waiting} \
         packets waiting in the hub, {} frames dropped for this client",
        LINK_BPS / 1000,
        down / 1000,
        session["frames_dropped"]
    );
    assert!(waiting > 100 || count("frames_dropped") > 0, "video never backed up: {view}");
}
