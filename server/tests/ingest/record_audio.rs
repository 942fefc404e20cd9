//! Recording the simulator's cab microphone (`--audio tone`): the audio source gets files of its
//! own (`audio-256/`) that ffprobe reads as Opus at 48 kHz, ffmpeg decodes without a word, and
//! whose packets are the ones the hub received, byte for byte (the manifest's SHA-256), in order,
//! their decode times following the capture times; the video beside it is recorded as before.

use testkit::record::{audio_packets, decode_errors, probe, probe_audio, recordings, until_sim_ends, Run};
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_recorded_packet_for_packet_as_opus() {
    let dir = scratch("record_audio");
    let rec = dir.join("rec");
    let rec_arg = rec.to_str().expect("utf8");
    let mut server = Server::start(&dir, &["--record-dir", rec_arg, "--record-trains", "train-1"]).await;
    let args = [&["--trains", "1", "--duration", "5s", "--audio", "tone"], SMALL_VIDEO].concat();
    let mut sim = Sim::start(&dir, &server, &args);
    let Run { received, audio_received, audio_sent, .. } = until_sim_ends(&mut server, &mut sim).await;

    let files = recordings(&rec);
    let audio: Vec<_> = files.iter().filter(|f| f.starts_with(rec.join("train-1").join("audio-256"))).collect();
    let video: Vec<_> = files.iter().filter(|f| f.starts_with(rec.join("train-1").join("camera-0"))).collect();
    assert_eq!((audio.len(), video.len(), files.len()), (1, 1, 2), "one segment per track in 5 s: {files:?}");
    let file = audio[0];
    let p = probe_audio(file);
    println!("{}: {p:?}; {audio_received} audio packets received, {} sent", file.display(), audio_sent.len());
    assert_eq!((p.codec.as_str(), p.sample_rate, p.channels), ("opus", 48_000, 1));
    assert!(audio_received >= 200, "5 s at 50 packets a second: {audio_received}");
    assert_eq!(p.packets as usize, audio_received, "ffprobe counts every audio packet the hub received");
    assert_eq!(decode_errors(file), "", "ffmpeg decodes the audio without errors");

    // The packets are the simulator's, in order, from its first; decode times follow capture.
    let got = audio_packets(file);
    assert_eq!(got.len(), audio_received);
    for (i, ((sha, dts), e)) in got.iter().zip(&audio_sent).enumerate() {
        assert_eq!(sha, &e.sha256, "audio packet {i} (seq {}) differs", e.seq);
        let capture = (e.capture_us - audio_sent[0].capture_us) as f64 / 1e6;
        assert!((dts - capture).abs() < 0.001, "packet {i}: dts {dts} vs capture {capture}");
    }

    // The video beside it, as without audio.
    let v = probe(video[0]);
    assert_eq!((v.codec.as_str(), v.frames as usize), ("h264", received.len()));
    assert_eq!(decode_errors(video[0]), "");
}
