//! The console opened over plain HTTP from a name that is not localhost (`railcast.test`, mapped
//! to 127.0.0.1 by Chromium's `--host-resolver-rules`) is not a secure context, so the browser
//! hides WebCodecs: the console must say why video cannot play and what to do (the https and
//! localhost addresses, the settings, the docs), and draw no black canvases. Video still arrives
//! (the transports work there); it is not decoded, and nothing throws in the page.

use std::time::Duration;

use testkit::console::{artifacts, web_root, Console};
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_explains_an_insecure_origin() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_insecure_origin");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://railcast.test:{port}"),
        "insecure",
        &artifacts("console_insecure_origin"),
        server.token("admin"),
        &[("CHROMIUM_ARGS", "--host-resolver-rules=MAP railcast.test 127.0.0.1"), ("TRAIN", "train-1")],
    );
    let r = console.finish(Duration::from_secs(60)).await;
    println!("insecure origin {}: {}", r["origin"], r["explanation"]);
    assert_eq!(r["secure_context"], false, "{r}");
    assert_eq!(r["video_decoder"], "undefined", "Chromium hides WebCodecs here: {r}");
    assert_eq!(r["kind"], "insecure-context", "{r}");
    assert_eq!(r["canvases"], 0, "{r}");
    assert_eq!(r["role"], "admin", "the rest of the console works: {r}");
    assert!(r["frames_in"].as_u64().unwrap_or(0) > 30, "video arrives: {r}");
    assert_eq!(r["frames_painted"], 0, "{r}");
}
