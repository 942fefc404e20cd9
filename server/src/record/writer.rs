//! The one thread that touches the recording files: jobs come over a bounded channel, each part
//! is written with one `write_all`, so a file on disk always ends at a part boundary (the kernel
//! has it once the call returns; a crash of the process loses at most the part not yet handed
//! over). A part that cannot be written whole (a full disk) is cut off again (`set_len`), and a
//! new file whose first part fails is removed, so every file left plays.
//!
//! What the kernel has is flushed to the disk (`fsync`, `sync_data`): a new file after its first
//! part, with its directory (so the file's name survives too); an open file once a part is
//! written [`SYNC_INTERVAL`] after its last flush; every file at its end. A power cut then loses
//! at most the last [`SYNC_INTERVAL`] and the part in progress of each open segment. A flush that
//! fails ends the segment as a failed write does (the data may not be on the disk).
//!
//! Failures are counted, reported to the train's [`Health`] (the recorder ends the segment and
//! tries a new file at a keyframe a second later) and logged at `error` once per episode; the
//! first success after it is logged at `info`. Retention ([`retention`]) runs here too.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::control::{Health, Recovered};
use super::retention::{self, Retention, SWEEP_INTERVAL};
use super::segment::Out;
use super::METRICS;

/// How long written parts of an open segment may stay in the kernel's cache only.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// A file operation for one track (camera or audio source) of one train.
#[derive(Debug)]
pub struct Job {
    /// `RECORD_DIR/<train>/camera-<N>` or `…/audio-<N>`.
    pub dir: PathBuf,
    pub track: u16,
    /// The segment's id (unique in the process): a job for a segment the writer gave up on, or
    /// that was replaced, does nothing.
    pub segment: u64,
    pub health: Arc<Health>,
    pub out: Out,
}

/// A segment file being written.
#[derive(Debug)]
struct Open {
    segment: u64,
    track: u16,
    health: Arc<Health>,
    path: PathBuf,
    file: File,
    /// Bytes written whole so far: where a failed part is cut off.
    len: u64,
    /// When what was written last reached the disk.
    synced: Instant,
}

/// Run jobs until every sender is gone; apply `keep` to the train directories under `dir`.
pub fn run(jobs: Receiver<Job>, dir: PathBuf, keep: Retention) {
    let mut files: HashMap<PathBuf, Open> = HashMap::new();
    let mut swept = Instant::now();
    loop {
        match jobs.recv_timeout(SWEEP_INTERVAL) {
            Ok(job) => {
                let closed = job.out == Out::Close;
                let train_dir = job.dir.parent().map(Path::to_path_buf);
                run_job(&mut files, job);
                if closed && keep.is_on() {
                    let open = open_paths(&files);
                    if let Some(train_dir) = train_dir {
                        retention::sweep_train(&train_dir, &open, keep, SystemTime::now());
                    }
                    retention::sweep_total(&dir, &open, keep.max_total_bytes);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if keep.is_on() && swept.elapsed() >= SWEEP_INTERVAL {
            retention::sweep_all(&dir, &open_paths(&files), keep, SystemTime::now());
            swept = Instant::now();
        }
    }
    for (_, mut open) in files {
        if let Err(e) = sync(&mut open) {
            fail("sync", &open.health, open.track, open.segment, &open.path, &e);
            continue;
        }
        open.health.closed(open.track, open.segment);
    }
}

fn open_paths(files: &HashMap<PathBuf, Open>) -> HashSet<PathBuf> {
    files.values().map(|o| o.path.clone()).collect()
}

fn run_job(files: &mut HashMap<PathBuf, Open>, Job { dir, track, segment, health, out }: Job) {
    match out {
        Out::Create { name, bytes } => {
            // A segment the recorder gave up on (the writer lost one of its parts) ends here.
            if let Some(old) = files.remove(&dir) {
                old.health.closed(old.track, old.segment);
            }
            let path = dir.join(format!("{name}.mp4"));
            let created = std::fs::create_dir_all(&dir)
                .and_then(|()| OpenOptions::new().write(true).create_new(true).open(&path));
            let mut open = match created {
                Ok(file) => Open { segment, track, health, path, file, len: 0, synced: Instant::now() },
                Err(e) => return fail("create", &health, track, segment, &path, &e),
            };
            METRICS.segments.inc();
            if let Err(e) = write(&mut open, &bytes) {
                // Nothing of it is worth keeping: not even the header made it.
                let _ = std::fs::remove_file(&open.path);
                return fail("write", &open.health, track, segment, &open.path, &e);
            }
            if let Err(e) = sync(&mut open).and_then(|()| File::open(&dir)?.sync_all()) {
                let _ = std::fs::remove_file(&open.path);
                return fail("sync", &open.health, track, segment, &open.path, &e);
            }
            tracing::debug!(path = %open.path.display(), "recording segment started");
            recovered(&open.path, open.health.opened(track, segment));
            files.insert(dir, open);
        }
        Out::Append(bytes) => {
            let Some(open) = files.get_mut(&dir).filter(|o| o.segment == segment) else { return };
            let written = write(open, &bytes).map_err(|e| ("write", e)).and_then(|()| {
                if open.synced.elapsed() >= SYNC_INTERVAL {
                    sync(open).map_err(|e| ("sync", e))?;
                }
                Ok(())
            });
            match written {
                Ok(()) => recovered(&open.path, open.health.wrote(track)),
                Err((kind, e)) => {
                    let open = files.remove(&dir).expect("just found");
                    fail(kind, &open.health, track, segment, &open.path, &e);
                }
            }
        }
        Out::Close => {
            if files.get(&dir).is_some_and(|o| o.segment == segment) {
                let mut open = files.remove(&dir).expect("just found");
                if let Err(e) = sync(&mut open) {
                    return fail("sync", &open.health, track, segment, &open.path, &e);
                }
                open.health.closed(track, segment);
                tracing::debug!(path = %open.path.display(), "recording segment closed");
            }
        }
    }
}

/// Write `bytes` whole at the end of `open`, or cut the file back to where it was.
fn write(open: &mut Open, bytes: &[u8]) -> std::io::Result<()> {
    match open.file.write_all(bytes).and_then(|()| open.file.flush()) {
        Ok(()) => {
            open.len += bytes.len() as u64;
            METRICS.bytes.inc_by(bytes.len() as u64);
            Ok(())
        }
        Err(e) => {
            // Part of it may be on disk: the file must end at a part boundary to play.
            if let Err(cut) = open.file.set_len(open.len) {
                tracing::warn!(path = %open.path.display(), error = %cut, "recording: cannot cut off a part written in part");
            }
            Err(e)
        }
    }
}

/// Flush what was written to `open` to the disk.
fn sync(open: &mut Open) -> std::io::Result<()> {
    open.file.sync_data()?;
    METRICS.syncs.inc();
    open.synced = Instant::now();
    Ok(())
}

fn fail(kind: &'static str, health: &Health, track: u16, segment: u64, path: &Path, e: &std::io::Error) {
    METRICS.errors.with_label_values(&[kind]).inc();
    if health.failed(track, segment, e) {
        tracing::error!(
            path = %path.display(),
            error = %e,
            "recording: cannot {kind} the segment file; the segment ends here, and a new file is tried at a \
             keyframe at most once a second (further failures are counted, not logged)"
        );
    } else {
        tracing::debug!(path = %path.display(), error = %e, "recording: cannot {kind} the segment file (still)");
    }
}

fn recovered(path: &Path, r: Option<Recovered>) {
    if let Some(Recovered { since, attempts }) = r {
        let failed_for = SystemTime::now().duration_since(since).unwrap_or_default();
        tracing::info!(
            path = %path.display(),
            failed_for_ms = failed_for.as_millis() as u64,
            failed_attempts = attempts,
            "recording: writing works again"
        );
    }
}
