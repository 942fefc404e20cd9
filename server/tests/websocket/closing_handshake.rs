//! Every close is a clean close (RFC 6455 §5.5.1, §7.1.1): a client's Close frame is answered with a
//! Close, and when the server closes a connection itself (here: a message over `ws_max_message`,
//! 1009) the client reads that Close even though it has sent more than the server read. The server
//! must not drop TCP with unread data, which makes the kernel send a reset that can destroy its
//! Close frame before the client reads it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use testkit::{remote_control, scratch, Server};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Close frame the server sends, reading past events; `Err` with what came instead.
async fn close_from_server(ws: &mut Ws) -> Result<Option<CloseFrame>, String> {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return Ok(frame),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("error instead of a Close frame: {e}")),
                None => return Err("the connection ended without a Close frame".to_owned()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.map_err(|_| "no Close frame within 5 s".to_owned())?
}

/// A server with one remote control.
async fn server() -> (Server, String) {
    let server = Server::start(&scratch("closing_handshake"), &[]).await;
    let rc = remote_control(&server, None).await;
    (server, rc)
}

/// A WebSocket session of `rc`, past its welcome (the session is running).
async fn session(server: &Server, rc: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(rc)).await.expect("ws connect");
    assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_with_a_close() {
    let (server, rc) = server().await;
    for round in 0..5 {
        let mut ws = session(&server, &rc).await;
        let frame = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        ws.send(Message::Close(Some(frame))).await.expect("send close");
        let answer = close_from_server(&mut ws).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal), "round {round}: the close is echoed");
        // Then the server ends TCP (end of stream, no reset).
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(None) | Ok(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => {}
            other => panic!("round {round}: expected the end of the stream, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_gets_1009_even_with_more_unread() {
    let (server, rc) = server().await;
    for round in 0..5 {
        let mut ws = session(&server, &rc).await;
        // 70 KB whole, over the 64 KiB limit, then more the server will never read as messages.
        ws.feed(Message::Text("x".repeat(70_000).into())).await.expect("feed");
        ws.feed(Message::Text("y".repeat(200_000).into())).await.expect("feed");
        ws.flush().await.expect("flush");
        let frame = close_from_server(&mut ws).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let frame = frame.unwrap_or_else(|| panic!("round {round}: a Close without a code"));
        assert_eq!(u16::from(frame.code), 1009, "round {round}: {frame:?}");
        assert!(!frame.reason.is_empty(), "round {round}: the reason is given");
        // The client answers the Close (tungstenite does, on the next read); the server, having
        // drained what it did not read, ends TCP with a FIN: the end of the stream, no reset.
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(None) | Ok(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => {}
            other => panic!("round {round}: expected the end of the stream, got {other:?}"),
        }
    }
}
