//! A second WHIP publisher for a train id that is online takes it over ("newest wins", as a
//! second QUIC connection with the train's token): the viewer sees `train_offline` (replaced)
//! then `train_online` with the new publisher's cameras and gets its video; the first
//! publication is gone (its DELETE is 404).

use testkit::ws::Client;
use testkit::{api, remote_control, scratch, wait_for_train, Server};

use crate::whip_aiortc::Aiortc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_whip_publisher_takes_the_train_over() {
    let dir = scratch("whip_takeover");
    let server = Server::start(&dir, &[]).await;
    let token = server.train_token("train-3");
    let first = Aiortc::start(&server, "train-3", &token, &["--cameras", "1"]).await;
    let rc = remote_control(&server, Some("train-3")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(5).await;

    let second = Aiortc::start(&server, "train-3", &token, &["--cameras", "2"]).await;
    let offline = client.wait_event("train_offline", |e| e["type"] == "train_offline").await;
    assert!(offline["reason"].as_str().unwrap_or_default().contains("replaced"), "{offline}");
    let online = client
        .wait_event("train_online with two cameras", |e| {
            e["type"] == "train_online" && e["cameras"].as_array().is_some_and(|c| c.len() == 2)
        })
        .await;
    println!("{offline}\n{online}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !client.frames().iter().any(|f| f.camera == 1) {
        assert!(tokio::time::Instant::now() < deadline, "no frame of the second publisher's camera 1");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let report = first.stop().await;
    println!("first publisher: {report}");
    assert_eq!(report["delete"], 404, "the replaced publication is gone: {report}");
    let states = report["connection_states"].as_array().cloned().unwrap_or_default();
    assert!(states.iter().any(|s| s == "closed"), "the server closed the peer: {report}");
    let (_, train) = api("GET", &server.url("/api/trains/train-3"), None).await;
    assert_eq!((train["online"].as_bool(), train["ingest"].as_str()), (Some(true), Some("whip")), "{train}");
    let report = second.stop().await;
    assert_eq!(report["delete"], 204, "{report}");
    wait_for_train(&server, "train-3", false).await;
}
