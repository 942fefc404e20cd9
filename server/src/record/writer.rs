//! The one thread that touches the recording files: jobs come over a bounded channel, each part
//! is written with one `write_all`, so a file on disk always ends at a part boundary (the kernel
//! has it once the call returns; a crash of the process loses at most the part not yet handed
//! over). Errors are logged and counted; the job's camera then has no open file until its next
//! segment.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use tokio::sync::mpsc;

use super::segment::Out;
use super::METRICS;

/// A file operation for one camera of one train.
#[derive(Debug)]
pub struct Job {
    /// `RECORD_DIR/<train>/camera-<N>`.
    pub dir: PathBuf,
    pub out: Out,
}

/// Run jobs until every sender is gone.
pub fn run(mut jobs: mpsc::Receiver<Job>) {
    let mut files: HashMap<PathBuf, (PathBuf, File)> = HashMap::new();
    while let Some(Job { dir, out }) = jobs.blocking_recv() {
        match out {
            Out::Create { name, bytes } => {
                let path = dir.join(format!("{name}.mp4"));
                let created = std::fs::create_dir_all(&dir)
                    .and_then(|()| OpenOptions::new().write(true).create_new(true).open(&path))
                    .map_err(|e| fail("create", &path, &e))
                    .ok();
                files.remove(&dir);
                if let Some(mut file) = created {
                    METRICS.segments.inc();
                    if write(&mut file, &path, &bytes) {
                        tracing::debug!(path = %path.display(), "recording segment started");
                        files.insert(dir, (path, file));
                    }
                }
            }
            Out::Append(bytes) => {
                if let Some((path, file)) = files.get_mut(&dir) {
                    if !write(file, path, &bytes) {
                        files.remove(&dir);
                    }
                }
            }
            Out::Close => {
                if let Some((path, _)) = files.remove(&dir) {
                    tracing::debug!(path = %path.display(), "recording segment closed");
                }
            }
        }
    }
}

fn write(file: &mut File, path: &std::path::Path, bytes: &[u8]) -> bool {
    match file.write_all(bytes).and_then(|()| file.flush()) {
        Ok(()) => {
            METRICS.bytes.inc_by(bytes.len() as u64);
            true
        }
        Err(e) => {
            fail("write", path, &e);
            false
        }
    }
}

fn fail(kind: &'static str, path: &std::path::Path, e: &std::io::Error) {
    METRICS.errors.with_label_values(&[kind]).inc();
    tracing::error!(path = %path.display(), error = %e, "recording: cannot {kind} the segment file; this segment ends here");
}
