//! The recordings on disk, for playback: which sources a train has, their segments indexed
//! ([`playback::index`]), cached while a file keeps its length (closed segments never change; the
//! one being written is indexed again when it has grown). Blocking: call it off the runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use railcast_protocol::TrainId;

use super::playback::{self, PlaybackError, Segment};

/// Segment indexes kept at most; beyond, the cache starts over.
const MAX_CACHED: usize = 50_000;

/// A recorded source of a train: `camera-<id>` or `audio-<id>`, its segments sorted by time.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: &'static str,
    pub segments: Vec<Arc<Segment>>,
}

/// The recordings under a directory.
#[derive(Debug)]
pub struct Library {
    dir: PathBuf,
    cache: Mutex<HashMap<PathBuf, Arc<Segment>>>,
}

/// The directory of `train`'s recordings under `dir`; `None` for an id that is not a plain name
/// (`.` and `..` are valid train ids but not directories of their own).
pub fn train_dir(dir: &Path, train: &TrainId) -> Option<PathBuf> {
    recordable(train).then(|| dir.join(train.as_str()))
}

/// Whether `train`'s id can name a directory of its own (not `.` or `..`).
pub fn recordable(train: &TrainId) -> bool {
    !matches!(train.as_str(), "." | "..")
}

/// Whether `name` is a source directory's name: `camera-<u16>` or `audio-<u16>` (canonical
/// decimal). Its kind.
pub fn source_kind(name: &str) -> Option<&'static str> {
    let (kind, id) = if let Some(id) = name.strip_prefix("camera-") {
        ("video", id)
    } else {
        ("audio", name.strip_prefix("audio-")?)
    };
    let n: u16 = id.parse().ok()?;
    (n.to_string() == id).then_some(kind)
}

impl Library {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, cache: Mutex::new(HashMap::new()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether anything of `train` was ever recorded here.
    pub fn has(&self, train: &TrainId) -> bool {
        train_dir(&self.dir, train).is_some_and(|d| d.is_dir())
    }

    /// Every source of `train`, sorted by name.
    pub fn sources(&self, train: &TrainId) -> Result<Vec<Source>, PlaybackError> {
        let Some(dir) = train_dir(&self.dir, train) else { return Ok(Vec::new()) };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(PlaybackError::Io { path: dir, error }),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| source_kind(n).is_some())
            .collect();
        names.sort();
        names.into_iter().map(|name| self.source(train, &name)).filter_map(Result::transpose).collect()
    }

    /// One source of `train` (`None`: not a source name, or nothing recorded).
    pub fn source(&self, train: &TrainId, name: &str) -> Result<Option<Source>, PlaybackError> {
        let (Some(kind), Some(dir)) = (source_kind(name), train_dir(&self.dir, train)) else { return Ok(None) };
        let dir = dir.join(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(PlaybackError::Io { path: dir, error }),
        };
        let mut files: Vec<(PathBuf, u64)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let path = e.path();
                let len = e.metadata().ok().filter(std::fs::Metadata::is_file)?.len();
                (path.extension()? == "mp4").then_some((path, len))
            })
            .collect();
        // Names are the segments' UTC start: they sort by time.
        files.sort();
        let mut segments = Vec::with_capacity(files.len());
        for (path, len) in files {
            match self.segment(&path, len) {
                Ok(s) => segments.push(s),
                // One unreadable file (a foreign one, an empty one just created) is not the
                // whole source's failure.
                Err(e) => tracing::debug!(error = %e, "recording: a file is skipped"),
            }
        }
        segments.retain(|s| !s.samples.is_empty());
        Ok(Some(Source { name: name.to_owned(), kind, segments }))
    }

    fn segment(&self, path: &Path, len: u64) -> Result<Arc<Segment>, PlaybackError> {
        if let Some(s) = self.cache.lock().expect("cache lock").get(path).filter(|s| s.len == len) {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(playback::index(path)?);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(path.to_owned(), Arc::clone(&s));
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_are_canonical() {
        assert_eq!(source_kind("camera-0"), Some("video"));
        assert_eq!(source_kind("audio-256"), Some("audio"));
        for bad in ["camera-", "camera-01", "camera-65536", "audio-x", "camera-1/..", "..", "video-1", "camera--1"] {
            assert_eq!(source_kind(bad), None, "{bad}");
        }
        let dir = Path::new("rec");
        assert_eq!(train_dir(dir, &TrainId::new("..").expect("valid id")), None);
        assert_eq!(train_dir(dir, &TrainId::new("t.1").expect("id")), Some(dir.join("t.1")));
    }
}
