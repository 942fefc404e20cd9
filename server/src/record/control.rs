//! What the recorder tells and takes at run time: which trains are recorded (the configuration,
//! overridden per train by [`Control::set`], the admin toggle) and how each one's recording goes
//! ([`TrainState`]: a segment open, the last file-system error while it persists).
//!
//! [`Health`] is shared by a train's recorder task and the writer thread: the writer reports each
//! file opened, closed, written or failed; the recorder takes the failures (to end the segment and
//! back off before the next try); [`Control::state`] reads both. Plain Rust types: the HTTP API maps
//! them to its DTOs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use railcast_protocol::TrainId;

use super::{Trains, METRICS};

/// How a train's recording goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainState {
    /// The train is to be recorded: the configuration (`record_trains`) or the admin toggle.
    pub enabled: bool,
    /// A segment file is open: frames are being written.
    pub active: bool,
    /// The last file-system error (e.g. "No space left on device (os error 28)") while it
    /// persists: cleared by the next file created or part written.
    pub error: Option<String>,
    /// When that error began (the first failure of the episode).
    pub error_since: Option<SystemTime>,
}

/// Start or stop recording trains at run time, and see how it goes; cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    pub(super) shared: Arc<Shared>,
}

impl Control {
    /// The recording directory (`record_dir`).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Start (`on`) or stop recording `train` now, whatever the configuration says, until the
    /// server restarts. Stopping ends the train's segments cleanly (the parts in progress are
    /// written); with `record_trains = "*"` a stopped train is not picked up again when it comes
    /// online. The state returned already has `enabled = on`; `active` follows once the recorder
    /// has opened a segment (at the train's next keyframe) or, when stopping, once it has written
    /// its last part and closed its files.
    pub fn set(&self, train: &TrainId, on: bool) -> TrainState {
        {
            let mut trains = self.shared.lock();
            let entry = trains.entry(train.clone()).or_default();
            entry.toggle = Some(on);
            if !on {
                entry.health.forget_errors();
            }
        }
        self.shared.wake.notify_one();
        self.state(train)
    }

    pub fn state(&self, train: &TrainId) -> TrainState {
        let enabled = self.shared.enabled(train);
        let trains = self.shared.lock();
        let Some(entry) = trains.get(train) else {
            return TrainState { enabled, active: false, error: None, error_since: None };
        };
        let (active, error) = entry.health.summary();
        TrainState { enabled, active, error_since: error.as_ref().map(|e| e.1), error: error.map(|e| e.0) }
    }
}

/// The registry behind [`Control`], shared with the supervisor.
#[derive(Debug)]
pub(super) struct Shared {
    pub dir: PathBuf,
    pub trains: Trains,
    entries: Mutex<HashMap<TrainId, Entry>>,
    /// The supervisor looks again at once (a toggle).
    pub wake: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Entry {
    /// The admin's choice; `None`: the configuration decides.
    toggle: Option<bool>,
    health: Arc<Health>,
}

impl Shared {
    pub fn new(dir: PathBuf, trains: Trains) -> Self {
        Self { dir, trains, entries: Mutex::default(), wake: tokio::sync::Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TrainId, Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The admin's choice for `train`, if any.
    pub fn toggle(&self, train: &TrainId) -> Option<bool> {
        self.lock().get(train).and_then(|e| e.toggle)
    }

    /// Trains the admin turned on.
    pub fn toggled_on(&self) -> Vec<TrainId> {
        self.lock().iter().filter(|(_, e)| e.toggle == Some(true)).map(|(t, _)| t.clone()).collect()
    }

    /// Whether `train` is to be recorded: the toggle, else the configuration (`*`: every train).
    pub fn enabled(&self, train: &TrainId) -> bool {
        self.toggle(train).unwrap_or_else(|| match &self.trains {
            Trains::All => true,
            Trains::Only(list) => list.contains(train),
        })
    }

    /// `train`'s health, shared with its recorder and the writer.
    pub fn health(&self, train: &TrainId) -> Arc<Health> {
        Arc::clone(&self.lock().entry(train.clone()).or_default().health)
    }
}

/// One train's recording health, per track (camera or audio source id).
#[derive(Debug, Default)]
pub struct Health {
    tracks: Mutex<HashMap<u16, TrackHealth>>,
}

#[derive(Debug, Default)]
struct TrackHealth {
    /// The segment the writer has a file open for.
    open: Option<u64>,
    /// The recorder has a segment open (frames are going into it).
    recording: bool,
    /// A segment whose file could not be created or written, not yet taken by the recorder.
    failed: Option<u64>,
    error: Option<Failure>,
}

#[derive(Debug)]
struct Failure {
    text: String,
    since: SystemTime,
    last: SystemTime,
    /// Failed creates and writes in this episode.
    attempts: u64,
}

/// A failure episode that ended: how long it lasted and how many tries failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub since: SystemTime,
    pub attempts: u64,
}

impl Health {
    fn lock(&self) -> MutexGuard<'_, HashMap<u16, TrackHealth>> {
        self.tracks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writer: `segment`'s file of `track` is open.
    pub fn opened(&self, track: u16, segment: u64) -> Option<Recovered> {
        let mut tracks = self.lock();
        let t = tracks.entry(track).or_default();
        t.open = Some(segment);
        Self::clear(t)
    }

    /// Recorder: `track` has a segment open (`true`) or none.
    pub fn recording(&self, track: u16, open: bool) {
        self.lock().entry(track).or_default().recording = open;
    }

    /// Writer: a part of `track` was written.
    pub fn wrote(&self, track: u16) -> Option<Recovered> {
        self.lock().get_mut(&track).and_then(Self::clear)
    }

    /// Writer: `segment`'s file of `track` is closed (or given up).
    pub fn closed(&self, track: u16, segment: u64) {
        if let Some(t) = self.lock().get_mut(&track) {
            if t.open == Some(segment) {
                t.open = None;
            }
        }
    }

    /// Writer: `segment` of `track` could not be created or written. True when this starts a
    /// failure episode (the one to log).
    pub fn failed(&self, track: u16, segment: u64, error: &std::io::Error) -> bool {
        let now = SystemTime::now();
        let mut tracks = self.lock();
        let t = tracks.entry(track).or_default();
        t.failed = Some(segment);
        if t.open == Some(segment) {
            t.open = None;
        }
        match &mut t.error {
            Some(f) => {
                f.text = error.to_string();
                f.last = now;
                f.attempts += 1;
                false
            }
            None => {
                METRICS.failing.inc();
                t.error = Some(Failure { text: error.to_string(), since: now, last: now, attempts: 1 });
                true
            }
        }
    }

    /// Recorder: whether the writer failed on `track` since the last call (the failed segment's
    /// id), taking the news.
    pub fn take_failure(&self, track: u16) -> Option<u64> {
        self.lock().get_mut(&track).and_then(|t| t.failed.take())
    }

    fn clear(t: &mut TrackHealth) -> Option<Recovered> {
        let f = t.error.take()?;
        METRICS.failing.dec();
        Some(Recovered { since: f.since, attempts: f.attempts })
    }

    /// The recording was turned off: its errors no longer say anything.
    fn forget_errors(&self) {
        for t in self.lock().values_mut() {
            Self::clear(t);
        }
    }

    /// Whether any track is being recorded (a file open, or a segment open whose file comes with
    /// its first part, while writing works), and the latest error with the start of the longest
    /// episode.
    fn summary(&self) -> (bool, Option<(String, SystemTime)>) {
        let tracks = self.lock();
        let active = tracks.values().any(|t| t.open.is_some() || (t.recording && t.error.is_none()));
        let failures = tracks.values().filter_map(|t| t.error.as_ref());
        let latest = failures.clone().max_by_key(|f| f.last).map(|f| f.text.clone());
        let since = failures.map(|f| f.since).min();
        (active, latest.zip(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(id: &str) -> TrainId {
        TrainId::new(id).expect("id")
    }

    fn control(trains: Trains) -> Control {
        Control { shared: Arc::new(Shared::new(PathBuf::from("rec"), trains)) }
    }

    #[test]
    fn the_toggle_overrides_the_configuration_both_ways() {
        let listed = control(Trains::Only(vec![train("train-1")]));
        assert!(listed.state(&train("train-1")).enabled);
        assert!(!listed.state(&train("train-2")).enabled);
        assert!(listed.set(&train("train-2"), true).enabled);
        assert!(!listed.set(&train("train-1"), false).enabled);
        assert_eq!(listed.shared.toggled_on(), [train("train-2")]);
        assert_eq!(listed.dir(), Path::new("rec"));

        let all = control(Trains::All);
        assert!(all.state(&train("never-seen")).enabled, "`*`: every train is to be recorded");
        let off = all.set(&train("train-3"), false);
        assert_eq!(off, TrainState { enabled: false, active: false, error: None, error_since: None });
        assert_eq!(all.shared.toggle(&train("train-3")), Some(false), "not picked up again by `*`");
        assert!(all.set(&train("train-3"), true).enabled);
    }

    #[test]
    fn an_error_lasts_until_the_next_success_and_is_logged_once() {
        let c = control(Trains::All);
        let t = train("train-1");
        let health = c.shared.health(&t);
        assert_eq!(health.opened(0, 1), None);
        assert!(c.state(&t).active);
        let full = std::io::Error::from_raw_os_error(28);
        assert!(health.failed(0, 1, &full), "the first failure starts an episode");
        assert!(!health.failed(0, 2, &full), "the next ones do not");
        assert!(health.failed(1, 7, &full), "each track has its own episode");
        let s = c.state(&t);
        assert!(!s.active, "the failed file is no longer open");
        assert!(s.error.as_deref().is_some_and(|e| e.contains("No space left on device")), "{s:?}");
        assert!(s.error_since.is_some());
        assert_eq!(health.take_failure(0), Some(2));
        assert_eq!(health.take_failure(0), None, "taken once");
        // Track 0 recovers; track 1 still fails: the train still shows the error.
        let back = health.opened(0, 3).expect("recovered");
        assert_eq!(back.attempts, 2);
        assert!(c.state(&t).error.is_some());
        assert!(health.wrote(1).is_some());
        let s = c.state(&t);
        assert!(s.active && s.error.is_none() && s.error_since.is_none(), "{s:?}");
        // Turning recording off forgets the error and shows it inactive at once.
        health.failed(0, 3, &full);
        let s = c.set(&t, false);
        assert!(!s.active && s.error.is_none(), "{s:?}");
    }
}
