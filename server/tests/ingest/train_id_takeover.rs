//! A second connection claiming a train id that is online: with the train's token it replaces the
//! first (the newest wins: a train that reconnects before the server noticed its old connection
//! died must not be locked out; the old one is closed with code 2, "replaced"). Without the token
//! it is refused and the online train keeps streaming undisturbed.

use std::time::Duration;

use railcast_protocol::ControlMessage;
use testkit::ws::Client;
use testkit::{hello_with, raw_train, read_control, remote_control, scratch, RawTrain, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_token_holder_can_take_a_train_id_over() {
    let dir = scratch("train_id_takeover");
    let server = Server::start(&dir, &[]).await;
    let first = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_event("mapped", |e| e["type"] == "mapped_train_changed").await;

    // An impostor with a wrong token: refused; the first connection is untouched.
    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&hello_with("train-1", Some("0000000000000000000000".into())).to_bytes()).await.expect("hello");
    assert!(matches!(read_control(&mut recv).await, Some(ControlMessage::Error(e)) if e.code == "unauthorized"));
    assert!(first.conn.close_reason().is_none(), "the online train was not disturbed");
    first.send_frame(1, true, testkit::now_us(), &[1u8; 2000], None);
    client.wait_frames(1).await;

    // The same train with its token, on a new connection: it takes over.
    let second = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    match tokio::time::timeout(Duration::from_secs(5), first.conn.closed()).await.expect("old connection closed") {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(2), "replaced");
            println!("old connection closed: {}", String::from_utf8_lossy(&c.reason));
        }
        other => panic!("unexpected close {other}"),
    }
    second.send_frame(2, true, testkit::now_us(), &[2u8; 2000], None);
    client.wait_frames(2).await;
    let (_, t) = testkit::api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(t["online"], true, "{t}");
    assert_eq!(t["connections"], 2, "{t}");
}
