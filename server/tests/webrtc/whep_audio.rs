//! The train's audio as an Opus RTP track on WHEP (docs/wire-format.md §2.7; README, "WHEP"): a
//! webrtc-rs player offers two receive-only audio transceivers (Opus, its own payload type) before
//! one video transceiver. With the simulator's `--audio tone` the answer's audio m-line is
//! `sendonly` with the player's Opus payload type, and RTP packets arrive at ≈ 50/s, each payload
//! exactly the Opus packet (SHA-256 as in the manifest) the train captured at the time its RTP
//! timestamp names at 48 kHz, stepping 960 per packet, while the video beside it still verifies
//! frame by frame. A remap to another train with audio switches the audio track to that train's
//! packets (same SSRC, RTP time running on, no renegotiation). A second audio m-line, and the
//! audio m-line of a train without audio, are answered `inactive` (not rejected), and carry no
//! audio RTP; a remote control mapped to no train yet gets an audio track, which carries the
//! train mapped later. Prints the rate and the packets verified.

use std::time::{Duration, Instant};

use testkit::whep::{verify, verify_audio, Offer, Whep, CLIENT_OPUS_PT};
use testkit::{remote_control, scratch, set_train, wait_for_train, Server, Sim, SMALL_VIDEO};

/// The simulator's microphone id.
const MIC: u16 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_audio_is_an_opus_track_beside_the_video() {
    let dir = scratch("whep_audio");
    let server = Server::start(&dir, &[]).await;
    let with_audio = ["--trains", "1", "--cameras", "1", "--audio", "tone"];
    let sim = Sim::start(&dir, &server, &[&with_audio[..], SMALL_VIDEO].concat());
    // The chime is a function of the packet's index since the train connected, so two trains of
    // one simulator send the same packets at (nearly) the same capture times: train-2 comes from
    // a simulator started a second later, so that a remap to it can be told by time and payload.
    wait_for_train(&server, "train-1", true).await;
    tokio::time::sleep(Duration::from_millis(1_030)).await;
    let sim2 = Sim::start(&dir, &server, &[&with_audio[..], &["--first", "2"], SMALL_VIDEO].concat());
    let _silent = Sim::start(&dir, &server, &[&["--trains", "1", "--first", "3"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-2", true).await;
    let token = Some(server.token("admin"));
    // Two audio m-lines: the first carries the train's audio, the second is inactive.
    let offer = Offer { cameras: 1, audio: 2, command: false };

    // A train with audio: a sending Opus track on the player's payload type.
    let rc = remote_control(&server, Some("train-1")).await;
    let whep = Whep::connect_with(&server, &rc, token, offer).await;
    let [section, extra] = whep.audio_sections.as_slice() else { panic!("two audio m-lines: {}", whep.answer) };
    assert!(section.port != 0 && section.direction == "sendonly", "{section:?}\n{}", whep.answer);
    assert!(extra.direction == "inactive" && extra.ssrcs.is_empty(), "{extra:?}\n{}", whep.answer);
    assert_eq!(section.payload_type, Some(CLIENT_OPUS_PT), "the player's Opus payload type: {}", whep.answer);
    assert!(whep.answer.contains(&format!("a=rtpmap:{CLIENT_OPUS_PT} opus/48000/2")), "{}", whep.answer);
    let [ssrc] = section.ssrcs[..] else { panic!("one SSRC on the audio m-line: {section:?}") };

    whep.wait_audio(1, Duration::from_secs(20)).await;
    let (t0, n0) = (Instant::now(), whep.audio().len());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (elapsed, n1) = (t0.elapsed().as_secs_f64(), whep.audio().len());
    let rate = (n1 - n0) as f64 / elapsed;
    whep.wait_units(1, 30, Duration::from_secs(10)).await;
    let (packets, units) = (whep.audio(), whep.units(0));
    tokio::time::sleep(Duration::from_millis(300)).await; // their lines in the manifest
    let manifest = sim.manifest();
    let audio = verify_audio(&packets, &manifest, "train-1", MIC);
    let video = verify(&units, &manifest, "train-1", 0);
    println!(
        "audio: {rate:.1} packets/s over {elapsed:.1} s; {} of {} Opus RTP packets verified against the manifest \
         ({} mismatched, {} at no capture time, {} missing), {} of {} steps exactly 960, RTP−capture shift {:?}; \
         video beside it: {} frames verified, {} unknown",
        audio.packets,
        packets.len(),
        audio.mismatched,
        audio.unknown,
        audio.missing,
        audio.steps_960,
        audio.pairs,
        audio.shift,
        video.frames,
        video.unknown,
    );
    assert!((45.0..=55.0).contains(&rate), "{rate:.1} audio packets/s, expected ≈ 50");
    assert_eq!(audio.shift, Some(0), "RTP timestamps are the capture times at 48 kHz");
    assert_eq!(audio.packets, packets.len(), "every audio packet is the train's at its capture time: {audio:?}");
    assert!(audio.seqs.windows(2).all(|w| w[1] > w[0]), "audio in order");
    assert!(audio.missing <= 2, "{} audio packets lost on loopback", audio.missing);
    assert!(audio.pairs >= 150 && audio.steps_960 * 10 >= audio.pairs * 9, "{audio:?}");
    assert_eq!(audio.payload_types, [CLIENT_OPUS_PT], "the negotiated payload type");
    assert!(packets.iter().all(|p| p.ssrc == ssrc), "one audio track, the answer's SSRC");
    assert_eq!(video.unknown, 0, "access units that are no frame of the camera");
    assert!(video.frames >= 30 && video.bad_timestamps == 0, "{video:?}");

    // A remap to another train with audio: its packets on the same track, time running on.
    let remapped = Instant::now();
    set_train(&server, &rc, "train-2").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (packets, manifest, new) = loop {
        let packets = whep.audio();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let new = verify_audio(&packets, &sim2.manifest(), "train-2", MIC);
        if new.packets >= 50 {
            break (packets, sim.manifest(), new);
        }
        assert!(Instant::now() < deadline, "fewer than 50 audio packets of train-2 within 15 s of the remap: {new:?}");
    };
    let first = new.matched.iter().position(|m| *m).expect("a train-2 packet");
    assert!(first > 0, "train-1's audio before the remap");
    assert!(new.matched[first..].iter().all(|m| *m), "after train-2's first packet, only train-2's: {new:?}");
    let old = verify_audio(&packets[..first], &manifest, "train-1", MIC);
    assert_eq!(old.packets, first, "before it, only train-1's: {old:?}");
    assert!(packets.iter().all(|p| p.ssrc == ssrc), "the same track throughout");
    let step = packets[first].timestamp.wrapping_sub(packets[first - 1].timestamp) as i32;
    assert!((1..=48_000).contains(&step), "RTP time runs on across the remap: step {step}");
    println!(
        "remap: first train-2 audio packet {:?} after the PUT; {} train-1 then {} train-2 packets verified; \
         timestamp step {step}, shift {:?}",
        packets[first].received.duration_since(remapped),
        old.packets,
        new.packets,
        new.shift,
    );
    let _ = whep.pc.close().await;

    // A train without audio: the audio m-line is inactive, and carries nothing.
    let rc = remote_control(&server, Some("train-3")).await;
    let silent = Whep::connect_with(&server, &rc, token, offer).await;
    assert_eq!(silent.audio_sections.len(), 2, "{}", silent.answer);
    for section in &silent.audio_sections {
        assert_eq!(section.direction, "inactive", "{section:?}\n{}", silent.answer);
        assert!(section.port != 0 && section.ssrcs.is_empty(), "inactive, not rejected: {section:?}");
    }
    silent.wait_units(1, 20, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(silent.audio().is_empty(), "audio RTP for a train without audio: {} packets", silent.audio().len());
    println!(
        "no audio: the audio m-line answered inactive, {} video frames and no audio packet",
        silent.units(0).len()
    );
    let _ = silent.pc.close().await;

    // A remote control not mapped yet: the train is unknown, so the audio m-line gets a track
    // (as every video m-line does), and the train mapped later is heard on it.
    let rc = remote_control(&server, None).await;
    let later = Whep::connect_with(&server, &rc, token, offer).await;
    assert_eq!(later.audio_sections[0].direction, "sendonly", "{}", later.answer);
    set_train(&server, &rc, "train-1").await;
    later.wait_audio(25, Duration::from_secs(15)).await;
    let packets = later.audio();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = verify_audio(&packets, &sim.manifest(), "train-1", MIC);
    assert_eq!(heard.packets, packets.len(), "{heard:?}");
    println!("mapped after the answer: {} audio packets of train-1 verified", heard.packets);
    let _ = later.pc.close().await;
}
