//! `kill -9` of the server mid-recording: every file left decodes cleanly (each part went to disk
//! whole), and together they hold the frames sent, in order, but for at most the part in progress.

use std::time::Duration;

use testkit::record::{decode_errors, recordings, samples};
use testkit::{scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_file_plays_and_at_most_a_part_is_lost() {
    let dir = scratch("record_kill");
    let rec = dir.join("rec");
    let rec_arg = rec.to_str().expect("utf8");
    let args = ["--record-dir", rec_arg, "--record-trains", "train-1", "--record-segment-duration", "2s"];
    let mut server = Server::start(&dir, &[&args[..], &["--record-part-duration", "1s"]].concat()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;
    // 4.5 s: the second segment is half a part in.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    server.signal("KILL");
    let sent: Vec<_> = sim.manifest().entries.into_iter().filter(|e| e.camera == 0).collect();
    tokio::time::timeout(Duration::from_secs(5), server.child.wait()).await.expect("killed").expect("wait");

    let files = recordings(&rec);
    println!("{} frames sent; files: {files:#?}", sent.len());
    assert!(files.len() >= 2, "{files:?}");
    let mut all = Vec::new();
    for file in &files {
        assert_eq!(decode_errors(file), "", "{} plays", file.display());
        all.extend(samples(file));
    }
    let hashes: Vec<_> = all.iter().map(|s| s.sha256.as_str()).collect();
    let prefix: Vec<_> = sent.iter().take(hashes.len()).map(|e| e.sha256.as_str()).collect();
    assert_eq!(hashes, prefix, "the files hold a prefix of what was sent");
    // Lost: the part in progress (up to 1 s, 15 frames) and the frames in flight at the kill.
    let lost = sent.len() - hashes.len();
    println!("{} frames recorded, {lost} lost at the kill", hashes.len());
    assert!(lost <= 15 + 3, "{lost} frames lost, more than one part");
}
