//! 100 sequential WebRTC connect/close cycles: every one opens, and the server's sockets, threads,
//! tasks and memory return to their baseline. Prints the setup time distribution.

use std::time::Duration;

use testkit::webrtc::RtcClient;
use testkit::{api, pct, remote_control, scratch, Server, Sim, SMALL_VIDEO};

struct Usage {
    fds: usize,
    threads: u64,
    rss_kb: u64,
    tasks: u64,
}

async fn usage(server: &Server) -> Usage {
    let pid = server.child.id().expect("pid");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds").count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client.get(server.url("/metrics").parse().expect("uri")).await.expect("metrics");
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    let tasks = text
        .lines()
        .find_map(|l| l.strip_prefix("railcast_tokio_alive_tasks "))
        .and_then(|v| v.parse().ok())
        .expect("task gauge");
    Usage { fds, threads: field("Threads:"), rss_kb: field("VmRSS:"), tasks }
}

async fn settle(server: &Server) {
    testkit::wait_no_webrtc_sessions(server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_cycles_all_open_and_resources_return() {
    let dir = scratch("webrtc_churn");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    // Warm up (allocator pools, lazy statics), then take the baseline.
    for _ in 0..3 {
        let c = RtcClient::connect(&server, &rc).await;
        api("DELETE", &server.url(&format!("/api/webrtc/sessions/{}", c.session_id)), None).await;
        let _ = c.pc.close().await;
    }
    settle(&server).await;
    let before = usage(&server).await;

    let mut setup = Vec::new();
    for _ in 0..100 {
        let c = RtcClient::connect(&server, &rc).await;
        c.client.wait_event("welcome", |e| e["type"] == "welcome").await;
        setup.push(c.setup.as_micros() as u64);
        let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{}", c.session_id)), None).await;
        assert_eq!(status, 204);
        let _ = c.pc.close().await;
    }
    settle(&server).await;
    let after = usage(&server).await;
    setup.sort_unstable();
    println!(
        "100/100 opened; setup (offer request → channels open, client side) p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms max {:.1} ms; {} over 100 ms",
        pct(&setup, 0.5) as f64 / 1000.0,
        pct(&setup, 0.9) as f64 / 1000.0,
        pct(&setup, 0.99) as f64 / 1000.0,
        *setup.last().expect("n") as f64 / 1000.0,
        setup.iter().filter(|&&us| us > 100_000).count()
    );
    println!(
        "server before/after: fds {}/{}, threads {}/{}, tasks {}/{}, RSS {}/{} kB",
        before.fds, after.fds, before.threads, after.threads, before.tasks, after.tasks, before.rss_kb, after.rss_kb
    );
    assert_eq!(setup.len(), 100);
    assert!(after.fds <= before.fds + 2, "sockets leak: {} → {}", before.fds, after.fds);
    assert!(after.threads <= before.threads + 1, "threads: {} → {}", before.threads, after.threads);
    assert!(after.tasks <= before.tasks + 2, "tasks leak: {} → {}", before.tasks, after.tasks);
    assert!(
        after.rss_kb <= before.rss_kb + before.rss_kb / 10 + 4096,
        "memory: {} → {} kB",
        before.rss_kb,
        after.rss_kb
    );
}
