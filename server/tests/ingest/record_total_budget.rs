//! Retention for the whole recording directory (`record_max_total_bytes`): two trains recorded
//! in 1 s segments under one 64 KiB budget. The oldest closed segments of either train go, each
//! train keeps its newest, the files being written are never deleted, and after the stop what is
//! left is within the budget and plays.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::record::{decode_errors, recordings};
use testkit::{scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

const BUDGET: u64 = 65_536;

fn bytes(files: &[PathBuf]) -> u64 {
    files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum()
}

fn of<'a>(files: &'a BTreeSet<PathBuf>, rec: &Path, train: &str) -> Vec<&'a PathBuf> {
    files.iter().filter(|f| f.starts_with(rec.join(train))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_segments_of_any_train_go_first() {
    let dir = scratch("record_total_budget");
    let rec = dir.join("rec");
    let budget = BUDGET.to_string();
    let args = [
        "--record-dir",
        rec.to_str().expect("utf8"),
        "--record-segment-duration",
        "1s",
        "--record-part-duration",
        "500ms",
        "--record-max-total-bytes",
        &budget,
    ];
    let mut server = Server::start(&dir, &args).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "2"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-2", true).await;

    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut most = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let now = recordings(&rec);
        most = most.max(bytes(&now));
        seen.extend(now.iter().cloned());
        for train in ["train-1", "train-2"] {
            // Each train's newest file (the one being written) is there at every look.
            if let Some(newest) = of(&seen, &rec, train).last() {
                assert!(now.contains(newest), "{} was deleted while written", newest.display());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.signal("TERM");
    tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.expect("the server stops").expect("wait");
    drop(sim);

    let left = recordings(&rec);
    let total = bytes(&left);
    let deleted: Vec<usize> = ["train-1", "train-2"]
        .iter()
        .map(|t| of(&seen, &rec, t).iter().filter(|f| !left.contains(f)).count())
        .collect();
    println!(
        "{} files seen, {} left ({total} bytes), deleted per train {deleted:?}; at most {most} bytes",
        seen.len(),
        left.len()
    );
    assert!(deleted.iter().all(|&d| d >= 1), "segments of both trains deleted: {deleted:?}");
    assert!(["train-1", "train-2"].iter().all(|t| left.iter().any(|f| f.starts_with(rec.join(t)))), "both keep some");
    // Between sweeps (at each close) the two open segments grow past the budget by at most themselves.
    assert!(most <= BUDGET + 120_000, "{most} bytes on disk");
    assert!(total <= BUDGET, "the last close swept too: {total}");
    for file in &left {
        assert_eq!(decode_errors(file), "", "{} plays", file.display());
    }
}
