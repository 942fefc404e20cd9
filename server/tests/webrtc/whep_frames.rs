//! WHEP end to end with real media: a webrtc-rs player offers two receive-only H.264 video
//! transceivers for a train with two cameras, and every complete access unit it depacketizes is,
//! byte for byte (after the Annex B normalisation in `testkit::whep`), a frame the simulator sent
//! on that camera; RTP timestamps step exactly as the frames' capture times; every packet carries
//! the payload type the client negotiated. The session is listed with transport `whep`, and
//! DELETE ends it. Prints setup time and frames verified.

use std::time::Duration;

use testkit::whep::{verify, Whep, CLIENT_H264_PT};
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// The NAL unit types of an access unit (4-byte start codes, as the depacketizer writes them).
fn nal_types(au: &[u8]) -> Vec<u8> {
    au.windows(5).filter(|w| w[..4] == [0, 0, 0, 1]).map(|w| w[4] & 0x1f).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cameras_arrive_as_exact_h264_frames_on_two_tracks() {
    let dir = scratch("whep_frames");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let whep = Whep::connect(&server, &rc, server.tokens.get("admin").map(String::as_str), 2, false).await;
    assert!(whep.location.starts_with("/api/whep/sessions/whep-"), "{}", whep.location);
    assert!(whep.etag.starts_with('"') && whep.etag.ends_with('"'), "a quoted entity tag: {}", whep.etag);
    assert!(whep.answer.contains("a=candidate:"), "the answer carries the server's host candidates");
    assert_eq!(whep.payload_types, [Some(CLIENT_H264_PT); 2], "both m-lines answered with the client's H.264");
    assert_eq!(whep.answer.matches("a=sendonly").count(), 2, "{}", whep.answer);

    whep.wait_units(2, 45, Duration::from_secs(20)).await;
    let first: Vec<Duration> = (0..2).map(|s| whep.units(s)[0].received.duration_since(whep.started)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received: Vec<_> = (0..2).map(|slot| whep.units(slot)).collect();
    let manifest = sim.manifest();
    let mut total = 0;
    for ((slot, first), units) in first.iter().enumerate().zip(received) {
        let v = verify(&units, &manifest, "train-1", slot as u16);
        println!(
            "camera {slot}: {} access units, {} verified ({} keyframes), {} unknown, {} bad timestamps, first after {:?}",
            units.len(),
            v.frames,
            v.keyframes,
            v.unknown,
            v.bad_timestamps,
            first
        );
        assert_eq!(v.unknown, 0, "camera {slot}: access units that are no frame of this camera");
        assert!(v.frames >= 45, "camera {slot}: {} frames verified", v.frames);
        assert!(v.keyframes >= 1, "camera {slot}: no keyframe");
        // SPS and PPS precede every IDR slice: a player may join (or recover) at any keyframe.
        for u in units.iter().filter(|u| nal_types(&u.data).contains(&5)) {
            let types = nal_types(&u.data);
            let idr = types.iter().position(|t| *t == 5).expect("IDR");
            assert!(
                types[..idr].contains(&7) && types[..idr].contains(&8),
                "camera {slot}: IDR without SPS/PPS: {types:?}"
            );
        }
        assert_eq!(nal_types(&units[0].data)[..2], [7, 8], "camera {slot}: the first access unit starts a GOP");
        assert_eq!(v.bad_timestamps, 0, "camera {slot}: RTP timestamps must follow capture times");
        assert_eq!(v.payload_types, [CLIENT_H264_PT], "camera {slot}: the negotiated payload type");
        assert!(v.seqs.windows(2).all(|w| w[1] > w[0]), "camera {slot}: frames in order");
        total += v.frames;
    }
    let broken = whep.received.lock().expect("lock").broken;
    println!("{total} frames verified; signaling {:?}; {broken} incomplete access units", whep.signaling);

    let (_, sessions) = api("GET", &server.url("/api/sessions"), None).await;
    assert!(sessions.as_array().expect("list").iter().any(|s| s["transport"] == "whep"), "{sessions}");
    let (_, peers) = api("GET", &server.url("/api/webrtc/sessions"), None).await;
    let peer = &peers.as_array().expect("list")[0];
    assert_eq!(peer["transport"], "whep", "{peers}");
    assert!(peer["setup_ms"].as_f64().is_some(), "{peers}");

    let token = server.tokens.get("admin").map(String::as_str);
    let (status, _, body) = testkit::whep::http("DELETE", &whep.url, token, &[], "").await;
    assert_eq!(status, 204, "{body}");
    testkit::wait_no_webrtc_sessions(&server).await;
    let _ = whep.pc.close().await;
}
