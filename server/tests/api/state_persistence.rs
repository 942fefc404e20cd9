//! With a state file, remote controls (owner and mapping included) survive a restart: after the
//! server comes back on the same address, the simulator reconnects by itself and a client of the
//! same remote control id gets the same train's video without any admin action.

use std::time::Duration;

use serde_json::json;
use testkit::ws::{verify, Client};
use testkit::{api, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_controls_and_mappings_survive_a_restart() {
    let dir = scratch("state_persistence");
    let state = dir.join("state.json");
    let state_arg = state.to_str().expect("utf8");
    let server = Server::start(&dir, &["--state-file", state_arg]).await;
    let (s, rc) =
        api("POST", &server.url("/api/remote-controls"), Some(json!({"name": "desk 7", "owner": "demo-operator"})))
            .await;
    assert_eq!(s, 201, "{rc}");
    let id = rc["id"].as_str().expect("id").to_owned();
    // Mapped before the train ever connected: it has a token, so it may.
    let (s, v) =
        api("PUT", &server.url(&format!("/api/remote-controls/{id}/train")), Some(json!({"train_id": "train-1"})))
            .await;
    assert_eq!(s, 200, "{v}");
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let op = server.token("operator").to_owned();
    let client = Client::connect(&server.ws_url_as(&id, Some(&op))).await;
    client.wait_frames(3).await;
    drop(client);

    let http = server.http.clone();
    let credentials = server.credentials.clone().expect("credentials");
    drop(server); // killed: no goodbye, nothing but the state file is left
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = Server::start(
        &dir,
        &["--http-addr", &http, "--state-file", state_arg, "--auth-file", credentials.to_str().expect("utf8")],
    )
    .await;
    let (s, back) = api_as_admin_of(&server, &credentials, &format!("/api/remote-controls/{id}")).await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(
        (back["name"].as_str(), back["owner"].as_str(), back["train_id"].as_str()),
        (Some("desk 7"), Some("demo-operator"), Some("train-1"))
    );

    let t = std::time::Instant::now();
    let client = Client::connect(&server.ws_url_as(&id, Some(&op))).await;
    client.wait_frames(3).await;
    println!(
        "video again {} ms after the new server's start (the simulator rediscovered it by itself)",
        t.elapsed().as_millis()
    );
    let checked = verify(&client.frames(), &sim.manifest());
    assert!(checked >= 3);
}

/// The restarted server uses the same credentials file; act as its admin.
async fn api_as_admin_of(server: &Server, credentials: &std::path::Path, path: &str) -> (u16, serde_json::Value) {
    let file: railcast_server::auth::CredentialsFile =
        toml::from_str(&std::fs::read_to_string(credentials).expect("read")).expect("parse");
    let admin = file.clients.iter().find(|c| c.name == "demo-admin").and_then(|c| c.token.clone()).expect("admin");
    testkit::api_as(Some(&admin), "GET", &server.url(path), None).await
}
