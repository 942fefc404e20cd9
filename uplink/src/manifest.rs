//! `--manifest FILE`: one JSON line per frame sent, so a client can prove end-to-end integrity.
//! The line format (keys, units, what is hashed) is documented in docs/configuration.md, "The
//! manifest"; changing [`Entry`] changes that contract.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// One frame as sent: every packet of it was handed to QUIC. An audio packet (Opus) is a frame of
/// its audio source: `camera` is then the audio source's id and `codec` says `"opus"`.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub train: &'a str,
    pub camera: u16,
    pub seq: u32,
    pub capture_us: u64,
    pub size: usize,
    pub keyframe: bool,
    pub chunks: usize,
    pub sha256: String,
    /// `"h264"` or `"opus"`, as the packets' codec byte (last, so the older keys keep their order).
    pub codec: &'static str,
}

/// SHA-256 of an encoded frame (the payloads of its packets in chunk order), lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[derive(Debug)]
pub struct Manifest {
    out: Mutex<BufWriter<File>>,
}

impl Manifest {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self { out: Mutex::new(BufWriter::new(File::create(path)?)) })
    }

    /// Append a line and flush it, before the frame is sent: a reader sees every frame sent so
    /// far (and perhaps the one being sent).
    pub fn record(&self, entry: &Entry<'_>) {
        let Ok(line) = serde_json::to_string(entry) else { return };
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            tracing::warn!("cannot write the manifest");
        }
    }
}
