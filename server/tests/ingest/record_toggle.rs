//! The admin's toggle, `PUT /api/trains/{id}/recording`: a train the configuration does not
//! record starts being recorded at once and stops cleanly; the listing's `recording` state
//! follows (`enabled`, `active`), the file it left plays and nothing is appended to it after the
//! toggle. Only an admin may toggle; an id that cannot name a directory is refused.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::record::{decode_errors, packet_hashes, recordings};
use testkit::{api, api_as, scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

async fn state(server: &Server) -> Value {
    let (status, v) = api("GET", &server.url("/api/trains/train-1/recordings"), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Poll the listing until `f` holds (10 s at most).
async fn until(server: &Server, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = state(server).await;
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_starts_and_stops_recording_a_train() {
    let dir = scratch("record_toggle");
    let rec = dir.join("rec");
    // Only train-9 is configured: train-1 is not recorded until the toggle says so.
    let args = ["--record-dir", rec.to_str().expect("utf8"), "--record-trains", "train-9"];
    let server = Server::start(&dir, &args).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v = state(&server).await;
    assert_eq!(v["recording"], json!({"enabled": false, "active": false, "error": null, "error_since": null}), "{v}");
    assert_eq!(v["sources"], json!([]), "nothing recorded: {v}");

    let url = server.url("/api/trains/train-1/recording");
    let (status, v) = api_as(Some(server.token("operator")), "PUT", &url, Some(json!({"enabled": true}))).await;
    assert_eq!((status, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (status, v) = api("PUT", &server.url("/api/trains/../recording"), Some(json!({"enabled": true}))).await;
    assert!(status == 400 || status == 404, "{status} {v}");
    let (status, v) = api("PUT", &server.url("/api/trains/a..b/recording"), Some(json!({"enabled": "yes"}))).await;
    assert_eq!(status, 422, "{v}");

    let on = Instant::now();
    let (status, v) = api("PUT", &url, Some(json!({"enabled": true}))).await;
    assert_eq!((status, v["enabled"].as_bool()), (200, Some(true)), "{v}");
    let v = until(&server, "recording becomes active", |v| v["recording"]["active"] == true).await;
    let active_ms = on.elapsed().as_millis();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let off = Instant::now();
    let (status, v2) = api("PUT", &url, Some(json!({"enabled": false}))).await;
    assert_eq!((status, v2["enabled"].as_bool()), (200, Some(false)), "{v2}");
    let after = until(&server, "recording stops", |v| v["recording"]["active"] == false).await;
    let inactive_ms = off.elapsed().as_millis();
    println!("toggle: active {active_ms} ms after the PUT (state {}), inactive {inactive_ms} ms after", v["recording"]);
    let spans = after["sources"][0]["spans"].as_array().cloned().unwrap_or_default();
    assert_eq!(spans.len(), 1, "{after}");
    let ms = spans[0]["duration_ms"].as_u64().expect("duration");
    assert!((2_000..=5_000).contains(&ms), "about 3 s recorded: {after}");

    // The file is closed and whole: it plays.
    let files = recordings(&rec);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(rec.join("train-1").join("camera-0")), "{files:?}");
    assert_eq!(decode_errors(&files[0]), "");
    let hashes = packet_hashes(&files[0], "v");
    drop(sim);
    // No more frames are written once it is off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recordings(&rec), files);
    assert_eq!(packet_hashes(&files[0], "v"), hashes, "nothing appended after the toggle");
    let v = state(&server).await;
    assert_eq!(v["recording"]["enabled"], false, "{v}");
}
