//! The HTTP listener holds no connection for a client that never finishes: a header that never
//! ends and an idle kept-alive connection are closed after `http_header_timeout`, a body that
//! never arrives gets 408 after `http_body_timeout`, a body announced over `max_body` gets 413
//! at once, and connections from one address beyond `max_http_connections_per_address` get 429. Each
//! is counted in `railcast_limit_refusals_total`. Raw sockets, since an HTTP library would not
//! send a request half.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{scratch, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn addr(server: &Server) -> SocketAddr {
    server.http.parse().expect("http addr")
}

/// Everything the server sends until it closes the connection (bounded by 10 s), and how long
/// it took.
async fn until_closed(tcp: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server held the connection for 10 s: {}", String::from_utf8_lossy(&out));
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

/// The status and JSON body of a response read whole.
fn parse(response: &str) -> (u16, Value) {
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn refusals(server: &Server, limit: &str) -> u64 {
    let (_, text) = testkit::api("GET", &server.url("/metrics"), None).await;
    let key = format!("railcast_limit_refusals_total{{limit=\"{limit}\"}} ");
    text.as_str()
        .expect("metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_cut_off() {
    let dir = scratch("http_guards_slow");
    let server = Server::start(&dir, &["--http-header-timeout", "400ms", "--http-body-timeout", "400ms"]).await;
    let token = server.token("admin").to_owned();

    // A header line that never ends: closed, without an answer, after the header timeout.
    let mut tcp = TcpStream::connect(addr(&server)).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: railcast\r\nX-Slow: aaa").await.expect("write");
    let (got, took) = until_closed(&mut tcp).await;
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(got, "", "nothing to answer to a request never sent whole");

    // A kept-alive connection that sends nothing more: closed after the same time.
    let mut tcp = TcpStream::connect(addr(&server)).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: railcast\r\n\r\n").await.expect("write");
    let (got, took) = until_closed(&mut tcp).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(took >= Duration::from_millis(350), "the idle connection closed after {took:?}");

    // A body announced and never sent whole: 408 with the error shape, then closed.
    let mut tcp = TcpStream::connect(addr(&server)).await.expect("connect");
    let head = format!(
        "POST /api/remote-controls HTTP/1.1\r\nHost: railcast\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{{"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let (got, took) = until_closed(&mut tcp).await;
    let (status, body) = parse(&got);
    assert_eq!((status, body["code"].as_str()), (408, Some("body_timeout")), "{got}");
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(5), "answered after {took:?}");

    // A body announced over max_body: 413 at once, nothing of it read.
    let mut tcp = TcpStream::connect(addr(&server)).await.expect("connect");
    let head = format!(
        "POST /api/remote-controls HTTP/1.1\r\nHost: railcast\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n{{"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let (got, took) = until_closed(&mut tcp).await;
    let (status, body) = parse(&got);
    assert_eq!((status, body["code"].as_str()), (413, Some("body_too_large")), "{got}");
    assert!(took < Duration::from_millis(350), "413 only after {took:?}");

    // The header that never ended; the kept-alive connection left idle is closed, not refused.
    assert_eq!(refusals(&server, "http_header_timeout").await, 1);
    assert_eq!(refusals(&server, "http_body_timeout").await, 1);
    assert_eq!(refusals(&server, "body_size").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let dir = scratch("http_guards_cap");
    let server = Server::start(&dir, &["--max-http-connections-per-address", "6"]).await;
    // Connections from 127.0.0.1 that completed a request and stay open (kept alive).
    let mut open = Vec::new();
    let refused = loop {
        assert!(open.len() <= 6, "a 7th connection from one address was served");
        let mut tcp = TcpStream::connect(addr(&server)).await.expect("connect");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: railcast\r\n\r\n").await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("answer").expect("read");
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        if got.starts_with("HTTP/1.1 429") {
            // The refusal's body may come in a later segment; the server closes after it.
            let (rest, _) = until_closed(&mut tcp).await;
            break got + &rest;
        }
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        open.push(tcp);
    };
    // The test's own HTTP client may hold one of the six.
    assert!(open.len() >= 5, "refused after only {} connections", open.len());
    let (_, body) = parse(&refused);
    assert_eq!(body["code"], "limit_http_connections_per_address", "{refused}");

    // Another address is not affected.
    let other = TcpSocket::new_v4().expect("socket");
    other.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
    let mut tcp = other.connect(addr(&server)).await.expect("connect from 127.0.0.2");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: railcast\r\nConnection: close\r\n\r\n").await.expect("write");
    let (got, _) = until_closed(&mut tcp).await;
    assert!(got.starts_with("HTTP/1.1 200"), "from 127.0.0.2: {got}");

    // A closed connection frees its slot.
    drop(open.pop());
    let served = async {
        loop {
            let mut tcp = TcpStream::connect(addr(&server)).await.expect("connect");
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: railcast\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let (got, _) = until_closed(&mut tcp).await;
            if got.starts_with("HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), served).await.expect("a slot is freed when a connection closes");
    // Free the slots before the metrics request. The server releases a closed connection's slot
    // when that connection's task ends, so the request may still find all six taken for a moment
    // (it then gets the 429 before it has sent anything: hyper reports an unexpected message):
    // ask again until it is served.
    drop(open);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let client: testkit::HttpClient =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        match testkit::call(&client, Some(server.token("admin")), "GET", &server.url("/metrics"), None).await {
            Ok((200, text)) => break text,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "metrics not served once the slots were freed: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let key = "railcast_limit_refusals_total{limit=\"http_connections_per_address\"} ";
    let n: u64 = metrics
        .as_str()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix(key)))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(n >= 1, "the refusal is counted");
}
