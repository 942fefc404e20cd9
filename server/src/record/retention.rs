//! Deleting old recordings (`record_delete_after`, `record_max_bytes` per train,
//! `record_max_total_bytes` for the whole `record_dir`), on the writer thread: after a segment
//! closes (that train, then the whole directory's budget) and every [`SWEEP_INTERVAL`] (every
//! train directory under `record_dir`, also those of trains not recorded since a restart).
//!
//! Only closed segment files are deleted, oldest first (by name: the segment's UTC start, across
//! the train's cameras and audio sources, and across trains for the whole directory's budget); a
//! file the writer has open never is.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::METRICS;

/// How often every train directory is swept, besides after each segment closes.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// What to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete a closed segment this long after its last write; zero: never.
    pub delete_after: Duration,
    /// Keep a train's segments within this many bytes, deleting the oldest closed ones; 0: no
    /// limit.
    pub max_bytes: u64,
    /// Keep every train's segments together within this many bytes, deleting the oldest closed
    /// ones of any train; 0: no limit.
    pub max_total_bytes: u64,
}

impl Retention {
    pub fn is_on(&self) -> bool {
        !self.delete_after.is_zero() || self.max_bytes > 0 || self.max_total_bytes > 0
    }
}

/// A segment file of a train.
#[derive(Debug)]
struct File {
    path: PathBuf,
    /// `<UTC start>.mp4`.
    name: String,
    len: u64,
    modified: SystemTime,
}

/// The segment files of `train_dir` (`<train>/<source>/<UTC start>.mp4`), oldest first.
fn files(train_dir: &Path) -> Vec<File> {
    let mut out = Vec::new();
    for source in std::fs::read_dir(train_dir).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(source.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if !name.ends_with(".mp4") || !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(File { path, name, len: meta.len(), modified });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.path.cmp(&b.path)));
    out
}

/// Apply `keep` to `train_dir`, never touching a file in `open`; `now` is the wall clock. The
/// segments deleted and their bytes.
pub fn sweep_train(train_dir: &Path, open: &HashSet<PathBuf>, keep: Retention, now: SystemTime) -> (u64, u64) {
    let expired = |f: &File| {
        !keep.delete_after.is_zero() && now.duration_since(f.modified).is_ok_and(|age| age >= keep.delete_after)
    };
    delete_oldest(train_dir, "train", files(train_dir), open, keep.max_bytes, expired)
}

/// Keep every train's segments under `dir` within `max_total` bytes (0: no limit), deleting the
/// oldest closed ones of any train. The segments deleted and their bytes.
pub fn sweep_total(dir: &Path, open: &HashSet<PathBuf>, max_total: u64) -> (u64, u64) {
    if max_total == 0 {
        return (0, 0);
    }
    let mut all: Vec<File> = trains(dir).iter().flat_map(|t| files(t)).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.path.cmp(&b.path)));
    delete_oldest(dir, "all trains", all, open, max_total, |_| false)
}

/// Delete `files` of `dir` (oldest first) while one is `expired` or they add up to more than
/// `max` bytes (0: no limit), skipping those in `open`; logged with `scope`. The segments
/// deleted and their bytes.
fn delete_oldest(
    dir: &Path,
    scope: &str,
    files: Vec<File>,
    open: &HashSet<PathBuf>,
    max: u64,
    expired: impl Fn(&File) -> bool,
) -> (u64, u64) {
    let mut total: u64 = files.iter().map(|f| f.len).sum();
    let (mut deleted, mut freed) = (0u64, 0u64);
    for f in files.iter().filter(|f| !open.contains(&f.path)) {
        let over = max > 0 && total > max;
        if !expired(f) && !over {
            // Oldest first: once one is young enough and within the budget, so are the rest.
            break;
        }
        match std::fs::remove_file(&f.path) {
            Ok(()) => {
                total -= f.len;
                deleted += 1;
                freed += f.len;
            }
            Err(e) => tracing::warn!(path = %f.path.display(), error = %e, "recording retention: cannot delete"),
        }
    }
    if deleted > 0 {
        METRICS.deleted.inc_by(deleted);
        tracing::info!(
            dir = %dir.display(),
            scope,
            deleted,
            freed_bytes = freed,
            kept_bytes = total,
            "recording retention: deleted the oldest closed segments"
        );
    }
    (deleted, freed)
}

/// The train directories under `dir`.
fn trains(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Sweep every train directory under `dir`, then the whole directory's budget.
pub fn sweep_all(dir: &Path, open: &HashSet<PathBuf>, keep: Retention, now: SystemTime) {
    if !keep.delete_after.is_zero() || keep.max_bytes > 0 {
        for train in trains(dir) {
            sweep_train(&train, open, keep, now);
        }
    }
    sweep_total(dir, open, keep.max_total_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A train directory with two sources and segments of 100 bytes each, a second apart, the
    /// newest last written at `now`.
    fn train(test: &str, now: SystemTime) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("railcast-retention-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (i, (source, name)) in [
            ("camera-0", "20261202T090000.000Z"),
            ("audio-256", "20261202T090000.500Z"),
            ("camera-0", "20261202T090001.000Z"),
            ("audio-256", "20261202T090001.500Z"),
            ("camera-0", "20261202T090002.000Z"),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.join(source).join(format!("{name}.mp4"));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let f = std::fs::File::create(&path).expect("create");
            f.set_len(100).expect("len");
            f.set_modified(now - Duration::from_secs(4 - i as u64)).expect("mtime");
        }
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        files(dir).into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn a_byte_budget_deletes_the_oldest_closed_segments_only() {
        let now = SystemTime::now();
        let dir = train("bytes", now);
        let open: HashSet<_> = [dir.join("camera-0/20261202T090000.000Z.mp4")].into();
        let keep = Retention { max_bytes: 250, ..Retention::default() };
        assert_eq!(sweep_train(&dir, &open, keep, now), (3, 300), "500 bytes to 200, skipping the open one");
        assert_eq!(names(&dir), ["20261202T090000.000Z.mp4", "20261202T090002.000Z.mp4"]);
        assert_eq!(sweep_train(&dir, &open, keep, now), (0, 0), "within budget");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_age_limit_deletes_segments_last_written_before_it() {
        let now = SystemTime::now();
        let dir = train("age", now);
        let keep = Retention { delete_after: Duration::from_millis(2500), ..Retention::default() };
        // Last written 4, 3, 2, 1 and 0 s ago: the first two are older than 2.5 s.
        assert_eq!(sweep_train(&dir, &HashSet::new(), keep, now), (2, 200));
        assert_eq!(names(&dir), ["20261202T090001.000Z.mp4", "20261202T090001.500Z.mp4", "20261202T090002.000Z.mp4"]);
        assert!(!Retention::default().is_on());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_budget_for_the_whole_directory_deletes_the_oldest_of_any_train() {
        let now = SystemTime::now();
        let root = std::env::temp_dir().join(format!("railcast-retention-total-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("root");
        // Two trains, 500 bytes each, train-2's segments ten minutes after train-1's; train-1's
        // oldest is open.
        let (t1, t2) = (train("total-1", now), train("total-2", now));
        std::fs::rename(&t1, root.join("train-1")).expect("move");
        std::fs::rename(&t2, root.join("train-2")).expect("move");
        for f in files(&root.join("train-2")) {
            let later = f.name.replace("T0900", "T0910");
            std::fs::rename(&f.path, f.path.with_file_name(later)).expect("rename");
        }
        let open: HashSet<_> = [root.join("train-1/camera-0/20261202T090000.000Z.mp4")].into();
        assert_eq!(sweep_total(&root, &open, 0), (0, 0), "no limit");
        assert_eq!(sweep_total(&root, &open, 650), (4, 400), "1,000 bytes to 600, train-1's closed ones first");
        assert_eq!(names(&root.join("train-1")), ["20261202T090000.000Z.mp4"], "the open one stays");
        assert_eq!(names(&root.join("train-2")).len(), 5);
        assert_eq!(sweep_total(&root, &open, 250), (4, 400));
        assert_eq!(names(&root.join("train-2")), ["20261202T091002.000Z.mp4"], "the newest stays");
        assert!(Retention { max_total_bytes: 1, ..Retention::default() }.is_on());
        let _ = std::fs::remove_dir_all(&root);
    }
}
