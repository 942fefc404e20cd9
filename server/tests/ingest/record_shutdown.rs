//! A graceful shutdown (SIGTERM) while the train streams: the recorder writes the part in
//! progress (as the train's session ends, or as the recorder stops, whichever it sees first), so
//! every frame the hub had received when the signal came is in the file.

use std::time::Duration;

use testkit::record::{decode_errors, recordings, samples};
use testkit::{api, scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_part_in_progress() {
    let dir = scratch("record_shutdown");
    let rec = dir.join("rec");
    let args = ["--record-dir", rec.to_str().expect("utf8"), "--record-trains", "train-1"];
    let mut server = Server::start(&dir, &[&args[..], &["--record-part-duration", "2s"]].concat()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;
    // 3 s: the second part (2..4 s) is half built.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    let received = train["frames_in"].as_u64().expect("frames_in") as usize;
    server.signal("TERM");
    tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.expect("the server stops").expect("wait");
    let sent: Vec<_> = sim.manifest().entries.into_iter().filter(|e| e.camera == 0).collect();

    let files = recordings(&rec);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(decode_errors(&files[0]), "");
    let got = samples(&files[0]);
    println!("{received} frames received before SIGTERM, {} recorded, {} sent", got.len(), sent.len());
    assert!(got.len() >= received, "recorded {} of the {received} frames received before the signal", got.len());
    let hashes: Vec<_> = got.iter().map(|s| s.sha256.as_str()).collect();
    let prefix: Vec<_> = sent.iter().take(hashes.len()).map(|e| e.sha256.as_str()).collect();
    assert_eq!(hashes, prefix, "the file holds the frames sent, in order, from the first");
}
