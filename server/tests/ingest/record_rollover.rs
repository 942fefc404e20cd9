//! Segments roll over at the first keyframe after `record_segment_duration`: several files,
//! each starting with a keyframe, that together hold every frame once, in order.

use testkit::record::{decode_errors, recordings, samples, until_sim_ends};
use testkit::{scratch, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_start_at_keyframes_and_hold_every_frame_once() {
    let dir = scratch("record_rollover");
    let rec = dir.join("rec");
    let args = ["--record-dir", rec.to_str().expect("utf8"), "--record-segment-duration", "2s"];
    // `*` (the default): the recorder starts when the train appears, from the hub's cached GOP.
    let mut server = Server::start(&dir, &args).await;
    let mut sim = Sim::start(&dir, &server, &[&["--trains", "1", "--duration", "7s"], SMALL_VIDEO].concat());
    let manifest = until_sim_ends(&mut server, &mut sim).await.received;
    let files = recordings(&rec);
    println!("{} frames received; files: {files:#?}", manifest.len());
    assert!(files.len() >= 2, "7 s in 2 s segments: {files:?}");
    let mut all = Vec::new();
    for (i, file) in files.iter().enumerate() {
        assert_eq!(decode_errors(file), "", "{}", file.display());
        let got = samples(file);
        assert!(got.first().is_some_and(|s| s.keyframe), "{} starts with a sync sample", file.display());
        let first = manifest.iter().find(|e| got.first().is_some_and(|s| s.sha256 == e.sha256));
        assert!(first.is_some_and(|e| e.keyframe), "{} starts with a keyframe the train sent", file.display());
        assert!(got.iter().skip(1).all(|s| s.dts > 0.0), "{}: decode times from 0", file.display());
        if i + 1 < files.len() {
            // Closed at the first keyframe at least 2 s in (a GOP is 1 s).
            let span = got.len() as f64 / 15.0;
            assert!((1.9..=3.1).contains(&span), "{}: {} frames", file.display(), got.len());
        }
        all.extend(got);
    }
    // Every frame once, in order: a run of the manifest from a keyframe of the first two GOPs to
    // the last frame received.
    let start = manifest.iter().position(|e| e.sha256 == all[0].sha256).expect("the first frame was sent");
    assert!(manifest[start].keyframe && start <= 15, "recording starts at frame {start}");
    let hashes: Vec<_> = all.iter().map(|s| s.sha256.as_str()).collect();
    let sent: Vec<_> = manifest[start..].iter().map(|e| e.sha256.as_str()).collect();
    assert_eq!(hashes, sent, "the segments together hold every frame from {start} once");
}
