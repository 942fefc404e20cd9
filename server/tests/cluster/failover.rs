//! Node A, which the train is connected to, is killed (SIGKILL): the simulator, given A and B,
//! reconnects to B; the viewers on B (WebSocket) and C (WebRTC) get video again by themselves,
//! within a bound measured here (the train's QUIC idle timeout, 6 s, is most of it).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::webrtc::RtcClient;
use testkit::ws::{verify, Received};
use testkit::{scratch, set_train, Sim, SMALL_VIDEO};

use crate::{shared_remote_control, wait_api, Three};

/// How long after a node dies its train's viewers may wait for video: the simulator's QUIC idle
/// timeout (6 s), its reconnection (≈ 0.2 s) and the next presence (≤ 1 s), with room.
const BOUND: Duration = Duration::from_secs(12);

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_micros() as u64
}

/// When the first frame captured after `since_us` arrived, measured from `since`.
async fn video_again(frames: impl Fn() -> Vec<Received>, since_us: u64, since: Instant, who: &str) -> Duration {
    let deadline = since + BOUND;
    loop {
        if frames().iter().any(|f| f.capture_us > since_us) {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "{who}: no video within {BOUND:?} of the node's death");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_recover_by_themselves_when_the_trains_node_dies() {
    let _serial = testkit::serial().await;
    let dir = scratch("cluster_failover");
    let mut t = Three::start(&dir).await;
    let sim = Sim::start_on(&dir, &[&t.a, &t.b], &[&["--trains", "1"], SMALL_VIDEO].concat());
    for node in [&t.b, &t.c] {
        wait_api(node, "/api/trains/train-1", "train-1 mirrored", |s, v| s == 200 && v["owner_node"] == "node-a").await;
    }
    let rc_b = shared_remote_control(&t.b, &[]).await;
    set_train(&t.b, &rc_b, "train-1").await;
    let rc_c = shared_remote_control(&t.c, &[]).await;
    set_train(&t.c, &rc_c, "train-1").await;
    let on_b = testkit::ws::Client::connect(&t.b.ws_url(&rc_b)).await;
    let on_c = RtcClient::connect(&t.c, &rc_c).await;
    on_b.wait_frames(5).await;
    on_c.client.wait_frames(5).await;

    let (killed, killed_us) = (Instant::now(), now_us());
    t.a.child.start_kill().expect("SIGKILL node A");
    let (b, c) = tokio::join!(
        video_again(|| on_b.frames(), killed_us, killed, "B"),
        video_again(|| on_c.client.frames(), killed_us, killed, "C"),
    );
    let v = wait_api(&t.c, "/api/trains/train-1", "train-1 owned by B", |s, v| s == 200 && v["owner_node"] == "node-b")
        .await;
    assert_eq!(v["online"], true, "{v}");
    sim.wait_log("connected", Duration::from_secs(1)).await;
    let manifest = sim.manifest();
    let (checked_b, checked_c) = (verify(&on_b.frames(), &manifest), verify(&on_c.client.frames(), &manifest));
    println!(
        "cluster: node A killed → video again on B after {} ms, on C after {} ms (bound {} s); \
         {checked_b} and {checked_c} exact frames in all, no viewer reconnected",
        b.as_millis(),
        c.as_millis(),
        BOUND.as_secs()
    );
}
