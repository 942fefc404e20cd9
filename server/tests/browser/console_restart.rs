//! After a server restart (same address, all state lost), the console brings the picture back by
//! itself, without a page reload: it reconnects with backoff, re-creates its remote control and
//! re-maps it to the same train, and commands work again. Then the train stops: within 3 s its
//! last picture is greyed with "no video for N s", the figures read "— (stale N s)", then "train
//! offline" once the server knows, and the telemetry shows its age.

use std::time::{Duration, Instant};

use testkit::console::{artifacts, web_root, Console};
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picture_returns_after_server_restart() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_restart");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let http = server.http.clone();
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let port = http.rsplit(':').next().expect("port");
    let admin = server.token("admin").to_owned();
    let credentials = server.credentials.clone().expect("generated credentials");
    let mut console = Console::spawn(
        &format!("http://localhost:{port}"),
        "restart",
        &artifacts("console_restart"),
        &admin,
        &[("STOP_TRAIN", "1")],
    );
    console.wait_line("READY_FOR_RESTART", Duration::from_secs(60)).await;

    drop(server); // kill_on_drop: the process dies with its state
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = Instant::now();
    // The same credentials (the console keeps its token, the train its own); no state file.
    let creds = credentials.to_str().expect("utf8");
    let _server = Server::start(&dir, &["--web-root", &root, "--http-addr", &http, "--auth-file", creds]).await;
    console.wait_line("READY_FOR_TRAIN_STOP", Duration::from_secs(90)).await;
    // SIGTERM: the simulator closes its QUIC connection, so the server marks the train offline at once.
    let pid = sim.child.id().expect("simulator running").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success(), "SIGTERM to the simulator");
    let r = console.finish(Duration::from_secs(60)).await;
    println!(
        "server restart: the console saw the drop after {} ms and painted again {} ms later (now over {}; \
         remote control re-created: {}); command ack after the restart {} ms; {} ms from the new server's start \
         to the end of the check",
        r["restart_detected_ms"],
        r["restart_recovered_ms"],
        r["transport_after_restart"],
        r["remote_control_recreated"],
        r["ack_rtt_after_restart_ms"],
        restarted.elapsed().as_millis()
    );
    assert_eq!(r["remote_control_recreated"], true, "the new server knew nothing; the console re-created it: {r}");
    assert!(r["ack_rtt_after_restart_ms"].is_number(), "a command works after the restart: {r}");
    println!(
        "train stopped: marked stale after {} ms ({} {}), \"train offline\" after {} ms, later {}, telemetry {}; \
         train list with the offline reason {}",
        r["stale_ms"],
        r["stale_text"],
        r["stale_figures"],
        r["offline_shown_ms"],
        r["stale_text_later"],
        r["telemetry_age"],
        r["train_list_fit"]
    );
    assert!(r["stale_ms"].as_u64().is_some_and(|ms| ms <= 3000), "stale within 3 s of the stop: {r}");
}
