//! Trains must present their own token in the hello. A missing token, a wrong one, another
//! train's, or one for an id without a token is refused with a reason (error frame
//! `unauthorized`, QUIC close code 5), counted, and the train is not registered.

use railcast_protocol::ControlMessage;
use testkit::{api, hello_with, raw_train, read_control, scratch, Server};

/// Say hello with `token`; return the error frame's message and the close reason.
async fn refused(server: &Server, train: &str, token: Option<String>) -> (String, String) {
    let (_ep, conn) = raw_train(server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&hello_with(train, token).to_bytes()).await.expect("hello");
    let message = match read_control(&mut recv).await {
        Some(ControlMessage::Error(e)) => {
            assert_eq!(e.code, "unauthorized", "{e:?}");
            e.message
        }
        other => panic!("{train}: expected an error frame, got {other:?}"),
    };
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(5), "close code UNAUTHORIZED");
            (message, String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => panic!("unexpected close {other}"),
    }
}

fn metric(text: &str, reason: &str) -> u64 {
    let key = format!("railcast_auth_refusals_total{{peer=\"train\",reason=\"{reason}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_without_their_token_are_refused() {
    let dir = scratch("auth_trains");
    let server = Server::start(&dir, &[]).await;

    let (m, close) = refused(&server, "train-1", None).await;
    println!("no token: {m} / close: {close}");
    assert!(m.contains("no token"), "{m}");
    let (m, _) = refused(&server, "train-1", Some("0123456789abcdef0123456789abcdef".into())).await;
    assert!(m.contains("does not match"), "{m}");
    let (m, _) = refused(&server, "train-1", Some(server.train_token("train-2"))).await;
    assert!(m.contains("does not match"), "another train's token does not open this one: {m}");
    let (m, _) = refused(&server, "intruder-1", Some(server.train_token("train-1"))).await;
    assert!(m.contains("no token is configured"), "{m}");

    for id in ["train-1", "intruder-1"] {
        let (s, _) = api("GET", &server.url(&format!("/api/trains/{id}")), None).await;
        assert_eq!(s, 404, "a refused train is not registered: {id}");
    }
    let (_, text) = testkit::api("GET", &server.url("/metrics"), None).await;
    let text = text.as_str().expect("metrics text");
    assert_eq!((metric(text, "missing"), metric(text, "invalid"), metric(text, "unknown_train")), (1, 2, 1));

    // The right token is accepted.
    let (_ep, conn) = raw_train(&server).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("bi");
    send.write_all(&testkit::hello(&server, "train-1").to_bytes()).await.expect("hello");
    assert!(matches!(read_control(&mut recv).await, Some(ControlMessage::Welcome(_))));
    testkit::wait_for_train(&server, "train-1", true).await;
}
