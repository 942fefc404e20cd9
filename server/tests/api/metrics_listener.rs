//! `metrics_addr`: `/metrics` on an address of its own, and nowhere else.

use testkit::{get_text, raw, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_address() {
    let dir = scratch("metrics_listener");
    let server = Server::start(&dir, &["--metrics-addr", "127.0.0.1:0"]).await;
    let metrics = server.metrics.clone().expect("the server printed `listening metrics ADDR`");
    assert_ne!(metrics, server.http);

    let (status, _, text) = get_text(&format!("http://{metrics}/metrics")).await;
    assert_eq!(status, 200);
    assert!(text.contains("railcast_build_info{"), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");

    // Not on the HTTP listener any more, and nothing but /metrics on the new one.
    let (status, body) = raw("GET", &server.url("/metrics"), None, b"").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found", "the one error shape: {body}");
    let (status, _) = raw("GET", &format!("http://{metrics}/api/trains"), None, b"").await;
    assert_eq!(status, 404);
    let (status, _) = raw("GET", &server.url("/healthz"), None, b"").await;
    assert_eq!(status, 200);
}
