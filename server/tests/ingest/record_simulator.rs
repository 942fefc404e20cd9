//! Recording a simulated train: ffprobe reads the file as the simulator's H.264 (size, frame
//! count), ffmpeg decodes it without a word, and its samples are the frames the train sent, byte
//! for byte (the manifest's SHA-256), in order, none missing.

use std::time::Duration;

use testkit::mqtt::metric;
use testkit::record::{decode_errors, probe, recordings, samples};
use testkit::{scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_every_frame_the_train_sent() {
    let dir = scratch("record_simulator");
    let rec = dir.join("rec");
    let rec_arg = rec.to_str().expect("utf8");
    // A listed train: its recorder subscribes before the train connects, so nothing is missed.
    let mut server = Server::start(&dir, &["--record-dir", rec_arg, "--record-trains", "train-1"]).await;
    let mut sim = Sim::start(&dir, &server, &[&["--trains", "1", "--duration", "5s"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;
    tokio::time::timeout(Duration::from_secs(20), sim.child.wait()).await.expect("the simulator ends").expect("wait");
    wait_for_train(&server, "train-1", false).await;
    let written = metric(&server, "railcast_record_bytes_total").await;
    let gops_lost = metric(&server, "railcast_record_gops_lost_total").await;
    server.signal("TERM");
    tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.expect("the server stops").expect("wait");

    let manifest: Vec<_> = sim.manifest().entries.into_iter().filter(|e| e.camera == 0).collect();
    let files = recordings(&rec);
    assert_eq!(files.len(), 1, "one segment in 5 s: {files:?}");
    let file = &files[0];
    assert!(file.starts_with(rec.join("train-1").join("camera-0")), "{}", file.display());
    let size = std::fs::metadata(file).expect("file").len();
    println!("{}: {size} bytes, {written} counted written; {} frames sent", file.display(), manifest.len());
    assert_eq!(written as u64, size, "railcast_record_bytes_total counts the file");
    assert_eq!(gops_lost, 0.0);

    let p = probe(file);
    println!("ffprobe: {p:?}");
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 320, 240));
    assert_eq!(p.frames as usize, manifest.len(), "ffprobe counts every frame sent");
    assert_eq!(decode_errors(file), "", "ffmpeg decodes the recording without errors");

    let got = samples(file);
    assert!(manifest.len() >= 70, "5 s at 15 fps: {}", manifest.len());
    assert_eq!(got.len(), manifest.len());
    for (i, (s, e)) in got.iter().zip(&manifest).enumerate() {
        assert_eq!(s.sha256, e.sha256, "frame {i} (seq {}) differs", e.seq);
        assert_eq!(s.keyframe, e.keyframe, "frame {i}: sync flag");
        // Decode times follow the capture timestamps (90 kHz; ±1 tick of rounding per frame).
        let capture = (e.capture_us - manifest[0].capture_us) as f64 / 1e6;
        assert!((s.dts - capture).abs() < 0.001 + i as f64 * 12e-6, "frame {i}: dts {} vs capture {capture}", s.dts);
    }
}
