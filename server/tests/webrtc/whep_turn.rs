//! WHEP through a real TURN server (Debian's coturn) on loopback, with `webrtc_relay_only`: the
//! answer carries only the server's relay candidate (it waits for it, as the REST offer does),
//! the POST's `Link` headers hand the TURN server and its credentials to the player, and both
//! cameras' frames arrive through coturn, verified.

use std::time::Duration;

use testkit::whep::{verify, Whep};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};

use crate::webrtc_turn::{turn_args, Turn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_streams_through_coturn_with_relay_only() {
    let dir = scratch("whep_turn");
    let turn = Turn::start(&dir);
    let mut args = turn_args(&turn);
    args.push("--webrtc-relay-only".into());
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let whep = Whep::connect(&server, &rc, Some(server.token("admin")), 2, false).await;
    let lines: Vec<&str> = whep.answer.lines().filter(|l| l.starts_with("a=candidate:")).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains(" typ relay")), "relay candidates only: {lines:?}");
    assert_eq!(whep.links.len(), 1, "{:?}", whep.links);
    assert!(whep.links[0].contains("rel=\"ice-server\"; username=\"railcast\""), "{:?}", whep.links);

    whep.wait_units(2, 20, Duration::from_secs(20)).await;
    let manifest = sim.manifest();
    for slot in 0..2u16 {
        let v = verify(&whep.units(usize::from(slot)), &manifest, "train-1", slot);
        println!("relay-only WHEP, camera {slot}: {} frames verified through coturn", v.frames);
        assert!(v.frames >= 20 && v.unknown == 0, "camera {slot}: {v:?}");
    }
    let log = turn.log();
    assert!(log.contains("ALLOCATE processed, success"), "coturn allocated a relay:\n{log}");
    let _ = whep.pc.close().await;
}
