//! The remote control is deleted while its WebTransport session streams: the client gets a
//! `closing` event, then the session closes with 4001 "remote control deleted", as on WebSocket.

use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_remote_control_closes_with_4001() {
    let dir = scratch("wt_deleted");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = testkit::wt::connect(&server, &rc).await;
    client.wait_frames(5).await;

    let (status, body) = api("DELETE", &server.url(&format!("/api/remote-controls/{rc}")), None).await;
    assert_eq!(status, 204, "{body}");
    let closing = client.wait_event("closing", |e| e["type"] == "closing").await;
    assert_eq!(closing["reason"], "remote control deleted", "{closing}");
    let closed = client.wait_closed().await;
    assert_eq!(closed, (4001, "remote control deleted".to_owned()));
}
