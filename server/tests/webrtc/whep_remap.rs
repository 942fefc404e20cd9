//! A live remap switches a WHEP session's tracks to the new train without renegotiation: the
//! same track (SSRC) carries the new train's frames, verified, from a keyframe on, its RTP
//! timestamps running on past the old train's; the `command` channel in the same connection
//! says welcome (transport `whep`), answers a ping, and announces the switch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use railcast_protocol::client::ServerEvent;
use testkit::whep::{verify, Whep};
use testkit::{remote_control, scratch, set_train, wait_for_train, Server, Sim, SMALL_VIDEO};
use webrtc::data_channel::DataChannelEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remap_switches_the_tracks_without_renegotiation() {
    let dir = scratch("whep_remap");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "2", "--cameras", "1"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-2", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let whep = Whep::connect(&server, &rc, Some(server.token("admin")), 1, true).await;

    let events = Arc::new(Mutex::new(Vec::<ServerEvent>::new()));
    let command = whep.command.clone().expect("command channel");
    {
        let (events, command) = (Arc::clone(&events), Arc::clone(&command));
        tokio::spawn(async move {
            while let Some(ev) = command.poll().await {
                if let DataChannelEvent::OnMessage(m) = ev {
                    if let Ok(e) = serde_json::from_slice::<ServerEvent>(&m.data) {
                        events.lock().expect("lock").push(e);
                    }
                }
            }
        });
    }
    whep.wait_units(1, 15, Duration::from_secs(20)).await;
    command.send_text(r#"{"type":"ping","t":3}"#).await.expect("ping");

    let before = whep.units(0).len();
    let switched_at = Instant::now();
    set_train(&server, &rc, "train-2").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (units, manifest) = loop {
        let units = whep.units(0);
        let manifest = sim.manifest();
        if verify(&units[before..], &manifest, "train-2", 0).frames >= 15 {
            break (units, manifest);
        }
        assert!(Instant::now() < deadline, "fewer than 15 frames of train-2 within 15 s of the remap");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (old, new) = (verify(&units, &manifest, "train-1", 0), verify(&units, &manifest, "train-2", 0));
    assert_eq!(old.unknown + new.unknown, units.len(), "every access unit is a frame of train-1 or train-2");
    assert!(units.iter().all(|u| u.ssrc == units[0].ssrc), "one track throughout");
    let first_new = units
        .iter()
        .position(|u| verify(std::slice::from_ref(u), &manifest, "train-2", 0).frames == 1)
        .expect("a train-2 frame");
    let first_new_verified = verify(&units[first_new..first_new + 1], &manifest, "train-2", 0);
    assert_eq!(first_new_verified.keyframes, 1, "the new train starts at a keyframe");
    assert_eq!(
        verify(&units[first_new..], &manifest, "train-1", 0).frames,
        0,
        "no old frame after the new train's first"
    );
    let step = units[first_new].timestamp.wrapping_sub(units[first_new - 1].timestamp) as i32;
    assert!((1..=90_000).contains(&step), "RTP time runs on across the switch: step {step}");
    println!(
        "first train-2 frame {:?} after the remap; {} train-1 then {} train-2 frames verified; timestamp step {step}",
        units[first_new].received.duration_since(switched_at),
        old.frames,
        new.frames
    );

    let events = events.lock().expect("lock").clone();
    assert!(
        matches!(events.first(), Some(ServerEvent::Welcome { transport, .. }) if transport == "whep"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(e, ServerEvent::Pong { t, .. } if *t == 3.0)), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::MappedTrainChanged { train_id: Some(t), .. } if t.as_str() == "train-2")),
        "{events:?}"
    );
    let _ = whep.pc.close().await;
}
