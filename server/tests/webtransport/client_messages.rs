//! The client's stream: nothing comes before its first message (no event, no datagram); then
//! the welcome. A message over 16,384 bytes gets an `error` event `message_too_large` and the
//! session stays; a line over 65,536 bytes closes the session with 1009; a line that is not JSON
//! gets `bad_message`.

use std::time::Duration;

use testkit::wt::{hashes, open, url};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_before_the_first_message_and_the_size_limits() {
    let dir = scratch("wt_client_messages");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let session = open(&url(&server, &rc), &hashes(&server).await).await.expect("session");
    let (_send, mut recv) = session.open_bi().await.expect("stream");
    let quiet = async {
        tokio::select! {
            d = session.read_datagram() => panic!("a datagram before the first message: {d:?}"),
            c = recv.read_chunk(1024, true) => panic!("stream data before the first message: {c:?}"),
        }
    };
    assert!(tokio::time::timeout(Duration::from_millis(1500), quiet).await.is_err());
    drop(recv);
    drop(session);

    let client = testkit::wt::connect(&server, &rc).await;
    client.wait_frames(3).await;
    client.send_text("not json").await;
    client.wait_event("bad_message", |e| e["type"] == "error" && e["code"] == "bad_message").await;
    let big = format!(r#"{{"type":"ping","t":2,"pad":"{}"}}"#, "x".repeat(20_000));
    client.send_text(big).await;
    client.wait_event("message_too_large", |e| e["type"] == "error" && e["code"] == "message_too_large").await;
    let before = client.frames().len();
    client.wait_frames(before + 3).await;
    assert!(client.log.lock().expect("lock").closed.is_none());

    client.send_text("x".repeat(70_000)).await;
    let closed = client.wait_closed().await;
    assert_eq!(closed.0, 1009, "{closed:?}");
}
