//! RTSP cameras behind credentials (GStreamer's RTSP server with basic authentication, as IP
//! cameras have): camera 0 with the right password (from a password file) streams; camera 1 with
//! a wrong one is refused (401) and retried with backoff, and the server's train view says so
//! (`reconnecting`, with the camera's refusal), while camera 0 goes on.

use std::time::{Duration, Instant};

use testkit::agent::{server_table, Agent, RtspServer};
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_streams_a_wrong_one_is_reported() {
    let dir = scratch("agent_rtsp_auth");
    let server = Server::start(&dir, &[]).await;
    let rtsp = RtspServer::start_with(&dir, 2, None, &["--user", "railcast", "--password", "s3cret-pass"]).await;
    let password = dir.join("front.password");
    std::fs::write(&password, "s3cret-pass\n").expect("password file");
    let config = format!(
        "train_id = \"train-1\"\n{}\n\
         [[camera]]\nid = 0\nsource = \"rtsp\"\nurl = \"{}\"\nusername = \"railcast\"\npassword_file = \"{}\"\n\
         [[camera]]\nid = 1\nsource = \"rtsp\"\nurl = \"{}\"\nusername = \"railcast\"\npassword = \"wrong\"\n\
         width = 320\nheight = 240\n",
        server_table(&server, "train-1"),
        rtsp.url(0),
        password.display(),
        rtsp.url(1)
    );
    let agent = Agent::start(&dir, "rtsp-auth", &config, std::process::Stdio::null());
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(20).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (_, train) = testkit::api("GET", &server.url("/api/trains/train-1"), None).await;
        let s = train["sources"].as_array().into_iter().flatten().find(|s| s["id"] == 1).cloned();
        if let Some(s) = s.filter(|s| s["state"] == "reconnecting") {
            break s;
        }
        assert!(Instant::now() < deadline, "camera 1 never reported refused: {}", train["sources"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("401") || detail.contains("Unauthorized"), "{refused}");
    assert!(!detail.contains("wrong"), "the password never shows: {refused}");
    let frames = client.frames();
    assert!(frames.iter().all(|f| f.camera == 0), "only camera 0 streams");
    assert!(!agent.log_text().contains("s3cret"), "the password never reaches the log");
    println!("agent rtsp auth: camera 0 streams with its password file; camera 1 reported: {detail}");
}
