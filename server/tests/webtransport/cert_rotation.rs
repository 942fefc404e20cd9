//! Certificate rotation (`--webtransport-cert-rotation 3s`): the published next hash becomes the
//! current one, a new next is published, an open session is untouched (it keeps receiving video),
//! a new session with the hashes published after the rotation works, and the first certificate,
//! no longer served, fails a client that pins only it.

use std::time::Duration;

use testkit::ws::verify;
use testkit::wt::{connect_url, hashes, open, url};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_open_sessions_and_serves_the_published_next() {
    let dir = scratch("wt_cert_rotation");
    let server = Server::start(&dir, &["--webtransport-cert-rotation", "3s"]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let first = hashes(&server).await;
    let open_session = connect_url(&url(&server, &rc), &first).await.expect("session before the rotation");
    open_session.wait_frames(5).await;

    // Just after the first rotation (at 3 s).
    let rotated = loop {
        let now = hashes(&server).await;
        if now[0] != first[0] {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rotated[0], first[1], "the published next certificate is served after the rotation");
    assert_ne!(rotated[1], first[0]);
    assert_ne!(rotated[1], first[1]);

    let before = open_session.frames().len();
    let after_rotation = connect_url(&url(&server, &rc), &rotated).await.expect("session after the rotation");
    after_rotation.wait_frames(5).await;
    open_session.wait_frames(before + 15).await;
    assert!(open_session.log.lock().expect("lock").closed.is_none(), "the open session was dropped");
    verify(&open_session.frames(), &sim.manifest());
    verify(&after_rotation.frames(), &sim.manifest());

    let stale = open(&url(&server, &rc), &first[..1]).await;
    assert!(stale.is_err(), "the first certificate is no longer served");
    println!("rotation: {} → {} (next {})", &first[0][..12], &rotated[0][..12], &rotated[1][..12]);
}
