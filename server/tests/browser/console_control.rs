//! The console in Chromium holds a train's control lease and dies: an admin's console (over
//! WebSocket) takes control (the panel shows "you", the heartbeat goes to 250 ms), a horn is
//! acked, then every Chromium process is SIGKILLed (no goodbye, no close frame: the kernel
//! closes the sockets). Checked from outside with raw requests: the train's `control` becomes
//! null (`GET /api/trains/train-1`) and the server's `operator_lost` to the train, acked by the
//! train, is in the audit (`GET /api/audit?train=train-1`) within the heartbeat timeout (1 s)
//! plus 100 ms of the kill.

use std::time::Duration;

use testkit::console::{artifacts, web_root, Console};
use testkit::{api, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_browser_loses_control_and_the_train_is_told() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_control");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        "control",
        &artifacts("console_control"),
        server.token("admin"),
        &[("CONTROL_END", "sigkill")],
    );
    let r = console.finish(Duration::from_secs(90)).await;
    println!(
        "control: taken in {} ms over {} (shown {:?}, pings every {} ms) · horn acked in {} ms · page {} → \
         control null after {} ms, operator_lost {} at +{} ms ({})",
        r["take_ms"],
        r["transport"],
        r["holder_shown"],
        r["ping_every_ms"],
        r["ack_rtt_ms"],
        r["end"],
        r["control_null_ms"],
        r["operator_lost"]["result"],
        r["operator_lost_ms"],
        r["operator_lost"]["reason"]
    );
    assert_eq!(r["ping_every_ms"], 250, "{r}");
    assert_eq!(r["ack_transport"], "websocket", "{r}");
    assert_eq!(r["end"], "sigkill", "{r}");
    let null_ms = r["control_null_ms"].as_u64().expect("control_null_ms");
    assert!(null_ms <= 1100, "the lease outlived the browser by {null_ms} ms: {r}");
    let lost_ms = r["operator_lost_ms"].as_i64().expect("operator_lost_ms");
    assert!(lost_ms <= 1100, "operator_lost reached the train {lost_ms} ms after the kill: {r}");
    assert_eq!(r["operator_lost"]["result"], "acked", "the train acks operator_lost: {r}");
    assert_eq!(r["operator_lost"]["principal"], "railcast", "{r}");
    assert_eq!(r["operator_lost"]["operator"], "demo-admin", "{r}");

    // Raw, from outside the browser.
    let (s, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(s, 200, "{train}");
    assert!(train["control"].is_null(), "{train}");
    let (s, page) = api("GET", &server.url("/api/audit?train=train-1"), None).await;
    assert_eq!(s, 200, "{page}");
    let entries = page["entries"].as_array().expect("entries");
    let lost: Vec<_> = entries.iter().filter(|e| e["command"]["type"] == "operator_lost").collect();
    assert_eq!(lost.len(), 1, "exactly one operator_lost: {page}");
    assert!(
        entries.iter().any(|e| e["command"]["type"] == "horn" && e["result"] == "acked"),
        "the console's horn is audited: {page}"
    );
}
