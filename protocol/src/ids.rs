//! Identifiers and sequence numbers.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest train id accepted, in bytes.
pub const MAX_TRAIN_ID_LEN: usize = 64;

/// A train's id: 1–64 characters from `A–Z a–z 0–9 . _ -`.
///
/// The character set keeps ids safe in URLs, metric labels, MQTT topics and file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrainId(String);

/// Why a train id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is {0} bytes long, the limit is {MAX_TRAIN_ID_LEN}")]
    TooLong(usize),
    #[error("id contains {0:?}; allowed are A-Z a-z 0-9 . _ -")]
    BadChar(char),
}

impl TrainId {
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        validate_id(&id)?;
        Ok(Self(id))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id rules shared by train ids and the server's other ids.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_TRAIN_ID_LEN {
        return Err(IdError::TooLong(id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(IdError::BadChar(c));
    }
    Ok(())
}

impl TryFrom<String> for TrainId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(s)
    }
}
impl From<TrainId> for String {
    fn from(id: TrainId) -> String {
        id.0
    }
}
impl fmt::Display for TrainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::str::FromStr for TrainId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

/// A camera's id within its train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CameraId(pub u16);

impl fmt::Display for CameraId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A frame sequence number: 32 bits, wrapping, compared by serial-number arithmetic (RFC 1982).
///
/// `a` is after `b` when `a - b (mod 2^32)` is in `1..2^31`. So `0` is after `u32::MAX`, and two
/// numbers exactly `2^31` apart are unordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FrameSeq(pub u32);

impl FrameSeq {
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
    /// Signed distance from `earlier` to `self`, or `None` when exactly half the space apart.
    pub fn distance_from(self, earlier: FrameSeq) -> Option<i32> {
        let d = self.0.wrapping_sub(earlier.0);
        if d == 1 << 31 {
            None
        } else {
            Some(d as i32)
        }
    }
    pub fn is_after(self, other: FrameSeq) -> bool {
        matches!(self.distance_from(other), Some(d) if d > 0)
    }
}

impl PartialOrd for FrameSeq {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.distance_from(*other).map(|d| d.cmp(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wraps() {
        let table: &[(u32, u32, Option<i32>)] = &[
            (1, 0, Some(1)),
            (0, 1, Some(-1)),
            (0, u32::MAX, Some(1)),
            (u32::MAX, 0, Some(-1)),
            (5, u32::MAX - 4, Some(10)),
            (1 << 31, 0, None),
            ((1 << 31) - 1, 0, Some(i32::MAX)),
            ((1 << 31) + 1, 0, Some(i32::MIN + 1)),
            (7, 7, Some(0)),
        ];
        for &(a, b, want) in table {
            assert_eq!(FrameSeq(a).distance_from(FrameSeq(b)), want, "{a} - {b}");
        }
        assert!(FrameSeq(0).is_after(FrameSeq(u32::MAX)));
        assert!(!FrameSeq(u32::MAX).is_after(FrameSeq(0)));
        assert_eq!(FrameSeq(u32::MAX).next(), FrameSeq(0));
        assert!(FrameSeq(2) > FrameSeq(u32::MAX - 1));
        assert_eq!(FrameSeq(1 << 31).partial_cmp(&FrameSeq(0)), None);
    }

    #[test]
    fn train_ids() {
        assert!(TrainId::new("train-1").is_ok());
        assert!(TrainId::new("A.b_c-9").is_ok());
        assert_eq!(TrainId::new(""), Err(IdError::Empty));
        assert_eq!(TrainId::new("a".repeat(65)), Err(IdError::TooLong(65)));
        assert!(TrainId::new("a".repeat(64)).is_ok());
        assert_eq!(TrainId::new("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(TrainId::new("é"), Err(IdError::BadChar('é')));
        assert!(serde_json::from_str::<TrainId>("\"a b\"").is_err());
    }
}
