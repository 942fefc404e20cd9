//! The console in Chromium honours roles: a viewer watches the remote control an admin assigned
//! to it, and cannot command (buttons disabled; a command forced past the UI is refused with
//! `forbidden`); a wrong token gets the token prompt with the server's 401 message, and no video.

use std::time::Duration;

use testkit::console::{artifacts, web_root, Console};
use testkit::{api, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_watches_but_cannot_command() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_roles_viewer");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    testkit::wait_for_train(&server, "train-1", true).await;
    let (s, rc) = api(
        "POST",
        &server.url("/api/remote-controls"),
        Some(serde_json::json!({"name": "viewer desk", "owner": "demo-viewer"})),
    )
    .await;
    assert_eq!(s, 201, "{rc}");
    let rc = rc["id"].as_str().expect("id").to_owned();
    testkit::set_train(&server, &rc, "train-1").await;
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        "viewer",
        &artifacts("console_roles_viewer"),
        server.token("viewer"),
        &[("RAILCAST_RC", &rc)],
    );
    let r = console.finish(Duration::from_secs(120)).await;
    println!(
        "viewer console: role {} · video {} over {} · command UI {} · forced command {} · token removed from URL {}",
        r["role"],
        r["video"],
        r["transport"],
        r["command_ui"],
        r["forced_command"]["code"],
        r["token_removed_from_url"]
    );
    assert_eq!(r["role"], "viewer", "{r}");
    assert_eq!(r["remote_control_id"], rc.as_str(), "{r}");
    assert_eq!(r["video"], true, "{r}");
    assert_eq!(r["command_ui"], "disabled", "{r}");
    assert_eq!(r["forced_command"]["code"], "forbidden", "{r}");
    assert_eq!(r["token_removed_from_url"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_gets_the_prompt_and_no_video() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_roles_bad_token");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        "bad-token",
        &artifacts("console_roles_bad_token"),
        "",
        &[],
    );
    let r = console.finish(Duration::from_secs(60)).await;
    println!(
        "bad token: the page shows {:?} (server said {} {:?})",
        r["auth_error"], r["server_status"], r["server_message"]
    );
    assert_eq!(r["server_status"], 401, "{r}");
    assert_eq!(r["token_prompt"], true, "{r}");
    assert_eq!(r["auth_error"], r["server_message"], "{r}");
    assert_eq!(r["video"], false, "{r}");
}
