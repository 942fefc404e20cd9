//! A WHEP player's RTCP PLI becomes the hub's keyframe request: with a GOP of 40 s, the camera's
//! next keyframe comes within a second of the PLI (and reaches the player, verified), where
//! without the request it would come 40 s later. A burst of PLIs is one request.

use std::time::Duration;

use testkit::whep::{verify, Whep};
use testkit::{now_us, remote_control, scratch, Server, Sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_brings_a_keyframe_long_before_the_gop_would() {
    let dir = scratch("whep_keyframe_request");
    let server = Server::start(&dir, &[]).await;
    let video = ["--width", "320", "--height", "240", "--fps", "15", "--bitrate", "300k", "--gop", "600"];
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "1"], &video[..]].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let whep = Whep::connect(&server, &rc, Some(server.token("admin")), 1, false).await;
    whep.wait_units(1, 10, Duration::from_secs(20)).await;
    // Past the keyframe the new subscription asked for, and past the request rate limit.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let keyframes_before = sim.manifest().of_train("train-1").filter(|e| e.keyframe).count();
    let received_before = verify(&whep.units(0), &sim.manifest(), "train-1", 0).keyframes;
    let requests =
        || std::fs::read_to_string(&server.log).unwrap_or_default().matches("keyframe requested for a client").count();
    let requested_before = requests();
    let pli_at = now_us();
    // A burst of five PLIs within 100 ms: one request reaches the train (500 ms per camera).
    for _ in 0..5 {
        whep.pli(0).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(requests() - requested_before, 1, "a burst of PLIs is one keyframe request");
    let (_, metrics) = testkit::api("GET", &server.url("/metrics"), None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    let count = |outcome: &str| -> u64 {
        let key = format!("railcast_whep_keyframe_requests_total{{outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    assert!(count("sent") >= 1 && count("limited") >= 4, "sent {}, limited {}", count("sent"), count("limited"));

    let units = whep.units(0);
    let manifest = sim.manifest();
    let new: Vec<_> = manifest.of_train("train-1").filter(|e| e.keyframe && e.capture_us > pli_at).collect();
    let after_ms = new.first().map(|e| (e.capture_us - pli_at) / 1000);
    println!(
        "keyframes sent before the PLI: {keyframes_before}; after it: {} (first {after_ms:?} ms after the PLI)",
        new.len()
    );
    assert!(!new.is_empty(), "no keyframe within 1.5 s of the PLI (GOP: 40 s)");
    let v = verify(&units, &manifest, "train-1", 0);
    assert_eq!(v.unknown, 0);
    assert!(
        v.keyframes > received_before,
        "the player got the requested keyframe ({} before, {} now)",
        received_before,
        v.keyframes
    );
    let _ = whep.pc.close().await;
}
