//! Deleting old recordings (`record_delete_after`, `record_max_bytes`), on the writer thread:
//! after a segment closes (that train) and every [`SWEEP_INTERVAL`] (every train directory under
//! `record_dir`, also those of trains not recorded since a restart).
//!
//! Only closed segment files are deleted, oldest first (by name: the segment's UTC start, across
//! the train's cameras and audio sources); a file the writer has open never is.

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
}

impl Retention {
    pub fn is_on(&self) -> bool {
        !self.delete_after.is_zero() || self.max_bytes > 0
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
    let files = files(train_dir);
    let mut total: u64 = files.iter().map(|f| f.len).sum();
    let (mut deleted, mut freed) = (0u64, 0u64);
    for f in files.iter().filter(|f| !open.contains(&f.path)) {
        let expired =
            !keep.delete_after.is_zero() && now.duration_since(f.modified).is_ok_and(|age| age >= keep.delete_after);
        let over = keep.max_bytes > 0 && total > keep.max_bytes;
        if !expired && !over {
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
            dir = %train_dir.display(),
            deleted,
            freed_bytes = freed,
            kept_bytes = total,
            "recording retention: deleted the oldest closed segments"
        );
    }
    (deleted, freed)
}

/// Sweep every train directory under `dir`.
pub fn sweep_all(dir: &Path, open: &HashSet<PathBuf>, keep: Retention, now: SystemTime) {
    for train in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if train.file_type().is_ok_and(|t| t.is_dir()) {
            sweep_train(&train.path(), open, keep, now);
        }
    }
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
        let keep = Retention { delete_after: Duration::ZERO, max_bytes: 250 };
        assert_eq!(sweep_train(&dir, &open, keep, now), (3, 300), "500 bytes to 200, skipping the open one");
        assert_eq!(names(&dir), ["20261202T090000.000Z.mp4", "20261202T090002.000Z.mp4"]);
        assert_eq!(sweep_train(&dir, &open, keep, now), (0, 0), "within budget");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_age_limit_deletes_segments_last_written_before_it() {
        let now = SystemTime::now();
        let dir = train("age", now);
        let keep = Retention { delete_after: Duration::from_millis(2500), max_bytes: 0 };
        // Last written 4, 3, 2, 1 and 0 s ago: the first two are older than 2.5 s.
        assert_eq!(sweep_train(&dir, &HashSet::new(), keep, now), (2, 200));
        assert_eq!(names(&dir), ["20261202T090001.000Z.mp4", "20261202T090001.500Z.mp4", "20261202T090002.000Z.mp4"]);
        assert!(!Retention::default().is_on());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
