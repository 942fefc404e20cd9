//! The state file (`state_file`): what one node keeps across restarts, as one JSON object with a
//! member per part: `remote_controls` ([`crate::remote`]) and `revocations` ([`crate::auth`]).
//!
//! Each part reads its member once at start-up and hands over the whole member after each change;
//! the file is then written whole, to a temporary file renamed over it, so a crash leaves the old
//! file or the new one. Members this version does not know are kept as they are.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// The state file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {message}")]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

/// The state file, as last written.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The document; its lock also orders the writes.
    doc: Mutex<Map<String, Value>>,
}

impl StateFile {
    /// Read `path` (a missing file is an empty state).
    pub fn open(path: &Path) -> Result<Arc<Self>, StateError> {
        let doc = match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(doc)) => doc,
                Ok(_) => return Err(Self::error(path, "not a JSON object".into())),
                Err(e) => return Err(Self::error(path, e.to_string())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(Self::error(path, e.to_string())),
        };
        Ok(Arc::new(Self { path: path.to_owned(), doc: Mutex::new(doc) }))
    }

    fn error(path: &Path, message: String) -> StateError {
        StateError { path: path.to_owned(), message }
    }

    /// An error about what the file holds.
    pub fn error_in(&self, message: String) -> StateError {
        Self::error(&self.path, message)
    }

    /// The member `name` as a `T`; a missing one is `T::default()`.
    pub fn get<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, StateError> {
        match self.lock().get(name) {
            None => Ok(T::default()),
            Some(v) => T::deserialize(v).map_err(|e| self.error_in(format!("{name}: {e}"))),
        }
    }

    /// Replace the member `name` and write the file. A failure is logged: serving goes on.
    pub fn set(&self, name: &str, value: &impl Serialize) {
        let mut doc = self.lock();
        match serde_json::to_value(value) {
            Ok(v) => doc.insert(name.to_owned(), v),
            Err(e) => return tracing::error!(path = %self.path.display(), "state file: {name}: {e}"),
        };
        let tmp = self.path.with_extension("tmp");
        let text = serde_json::to_string_pretty(&*doc).unwrap_or_default();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path)) {
            tracing::error!(path = %self.path.display(), "cannot write the state file: {e}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map<String, Value>> {
        self.doc.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_kept_apart_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("railcast-state-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("state.json");
        let _ = std::fs::remove_file(&path);
        let file = StateFile::open(&path).expect("a missing file is empty");
        assert_eq!(file.get::<Vec<String>>("a").expect("missing member"), Vec::<String>::new());
        file.set("a", &vec!["x".to_owned()]);
        file.set("b", &vec![1u32, 2]);
        file.set("a", &vec!["y".to_owned()]);
        let again = StateFile::open(&path).expect("reopen");
        assert_eq!(again.get::<Vec<String>>("a").expect("a"), ["y"]);
        assert_eq!(again.get::<Vec<u32>>("b").expect("b"), [1, 2]);
        assert!(again.get::<Vec<u32>>("a").is_err(), "a member of the wrong shape is an error");
        std::fs::write(&path, "[]").expect("write");
        assert!(StateFile::open(&path).is_err(), "not an object");
        std::fs::remove_dir_all(&dir).ok();
    }
}
