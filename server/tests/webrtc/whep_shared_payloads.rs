//! Three WHEP players of one train at once: the server packetizes each frame once and every
//! session sends the same RTP payloads (`tracks.rs`, `SharedPayloads`), so each player must still
//! get every access unit byte for byte, with its own payload type (the client's), its own SSRC
//! and RTP timestamps that follow the capture times. A payload shared wrongly (another camera's,
//! another frame's, a prepended keyframe sent as is) shows as an unknown access unit.

use std::time::Duration;

use testkit::whep::{verify, Whep, CLIENT_H264_PT};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_player_of_a_train_gets_exact_frames() {
    let dir = scratch("whep_shared_payloads");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let token = server.tokens.get("admin").map(String::as_str);
    let mut players = Vec::new();
    for _ in 0..3 {
        let rc = remote_control(&server, Some("train-1")).await;
        players.push(Whep::connect(&server, &rc, token, 2, false).await);
    }
    for p in &players {
        p.wait_units(2, 30, Duration::from_secs(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Units before the manifest: a frame sent after the manifest is read would be unknown.
    let received: Vec<Vec<_>> = players.iter().map(|p| (0..2).map(|slot| p.units(slot)).collect()).collect();
    let manifest = sim.manifest();
    let mut ssrcs = Vec::new();
    for (i, units) in received.iter().enumerate() {
        for (slot, units) in units.iter().enumerate() {
            let v = verify(units, &manifest, "train-1", slot as u16);
            println!(
                "player {i} camera {slot}: {} access units, {} verified, {} unknown",
                units.len(),
                v.frames,
                v.unknown
            );
            assert_eq!(v.unknown, 0, "player {i} camera {slot}: access units that are no frame of this camera");
            assert!(v.frames >= 30, "player {i} camera {slot}: {} frames verified", v.frames);
            assert_eq!(v.bad_timestamps, 0, "player {i} camera {slot}");
            assert_eq!(v.payload_types, [CLIENT_H264_PT], "player {i} camera {slot}");
            ssrcs.extend(units.iter().map(|u| u.ssrc).take(1));
        }
    }
    ssrcs.sort_unstable();
    ssrcs.dedup();
    assert_eq!(ssrcs.len(), 6, "every track its own SSRC");
}
