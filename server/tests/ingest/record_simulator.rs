//! Recording a simulated train: ffprobe reads the file as the simulator's H.264 (size, frame
//! count), ffmpeg decodes it without a word, and its samples are the frames the hub received, byte
//! for byte (the manifest's SHA-256), in order, none missing; the file was flushed to the disk as
//! it was written (`railcast_record_syncs_total`).

use testkit::record::{decode_errors, probe, recordings, samples, until_sim_ends, Run};
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_every_frame_the_hub_received() {
    let dir = scratch("record_simulator");
    let rec = dir.join("rec");
    let rec_arg = rec.to_str().expect("utf8");
    // A listed train: its recorder subscribes before the train connects, so nothing is missed.
    let mut server = Server::start(&dir, &["--record-dir", rec_arg, "--record-trains", "train-1"]).await;
    let mut sim = Sim::start(&dir, &server, &[&["--trains", "1", "--duration", "10s"], SMALL_VIDEO].concat());
    let Run { received, sent, bytes_written: written, gops_lost, syncs, .. } =
        until_sim_ends(&mut server, &mut sim).await;
    let manifest = received.as_slice();
    let received = manifest.len();
    let files = recordings(&rec);
    assert_eq!(files.len(), 1, "one segment in 10 s: {files:?}");
    let file = &files[0];
    assert!(file.starts_with(rec.join("train-1").join("camera-0")), "{}", file.display());
    let size = std::fs::metadata(file).expect("file").len();
    println!("{}: {size} bytes, {written} counted written; {sent} frames sent, {received} received", file.display());
    assert_eq!(written as u64, size, "railcast_record_bytes_total counts the file");
    assert_eq!(gops_lost, 0.0);
    // Flushed to the disk when created (with its directory), 5 s later, and at its end.
    assert!(syncs >= 3.0, "railcast_record_syncs_total {syncs} for a 10 s segment");

    let p = probe(file);
    println!("ffprobe: {p:?}");
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 320, 240));
    assert_eq!(p.frames as usize, received, "ffprobe counts every frame received");
    assert_eq!(decode_errors(file), "", "ffmpeg decodes the recording without errors");

    let got = samples(file);
    assert!(manifest.len() >= 145, "10 s at 15 fps: {}", manifest.len());
    assert_eq!(got.len(), manifest.len());
    for (i, (s, e)) in got.iter().zip(manifest).enumerate() {
        assert_eq!(s.sha256, e.sha256, "frame {i} (seq {}) differs", e.seq);
        assert_eq!(s.keyframe, e.keyframe, "frame {i}: sync flag");
        // Decode times follow the capture timestamps (90 kHz; ±1 tick of rounding per frame).
        let capture = (e.capture_us - manifest[0].capture_us) as f64 / 1e6;
        assert!((s.dts - capture).abs() < 0.001 + i as f64 * 12e-6, "frame {i}: dts {} vs capture {capture}", s.dts);
    }
}
