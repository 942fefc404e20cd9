//! Retention: 1 s segments under a byte budget per train (`record_max_bytes`). While the train
//! streams, only the oldest segments are deleted (what is left is always the newest, a run with
//! no hole) and the file being written never is; at the end the files left each play.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use testkit::mqtt::metric;
use testkit::record::{decode_errors, recordings};
use testkit::{scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

const BUDGET: u64 = 65_536;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_oldest_closed_segments_are_deleted() {
    let dir = scratch("record_retention");
    let rec = dir.join("rec");
    let rec_arg = rec.to_str().expect("utf8");
    let args = ["--record-dir", rec_arg, "--record-trains", "train-1", "--record-segment-duration", "1s"];
    let budget = BUDGET.to_string();
    let more = ["--record-part-duration", "500ms", "--record-max-bytes", &budget];
    let mut server = Server::start(&dir, &[&args[..], &more].concat()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;

    // Every file ever seen (sorted by name: by start time), and the most bytes on disk.
    let mut seen: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut most = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let now = recordings(&rec);
        let sizes: Vec<u64> = now.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).collect();
        most = most.max(sizes.iter().sum());
        for (f, len) in now.iter().zip(&sizes) {
            seen.insert(f.clone(), *len);
        }
        // What is left is the newest run of what was seen: nothing newer than a file is gone.
        let all: Vec<&PathBuf> = seen.keys().collect();
        if let Some(first) = now.first() {
            let from = all.iter().position(|f| *f == first).expect("seen");
            assert_eq!(all[from..].to_vec(), now.iter().collect::<Vec<_>>(), "a hole in what is left");
        }
        // The newest file (the one being written) was there at every look since it appeared.
        if let Some(newest) = seen.keys().next_back() {
            assert!(now.contains(newest), "the file being written was deleted: {}", newest.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deleted_metric = metric(&server, "railcast_record_deleted_total").await;
    let left = recordings(&rec);
    let deleted = seen.len() - left.len();
    println!(
        "{} files seen, {} left, {deleted} deleted (metric {deleted_metric}); at most {most} bytes on disk",
        seen.len(),
        left.len()
    );
    assert!(deleted >= 2, "10 s of 1-2 s segments of ~20-40 kB under a 64 KiB budget: {deleted} deleted");
    assert_eq!(deleted_metric as usize, deleted, "railcast_record_deleted_total counts them");
    // Between sweeps (at each close) the open segment grows past the budget by at most itself.
    assert!(most <= BUDGET + 60_000, "{most} bytes on disk");
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(log.contains("recording retention: deleted the oldest closed segments"), "logged at info");

    server.signal("TERM");
    tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.expect("the server stops").expect("wait");
    drop(sim);
    let left = recordings(&rec);
    let total: u64 = left.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    println!("after the stop: {} files, {total} bytes", left.len());
    assert!(total <= BUDGET, "the last close swept too: {total}");
    for file in &left {
        assert_eq!(decode_errors(file), "", "{} plays", file.display());
    }
}
