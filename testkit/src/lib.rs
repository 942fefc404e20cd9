//! Test kit: the real `railcast-server` and `railcast-train-sim` binaries as processes on
//! loopback, a plain HTTP client, clients that reassemble and verify frames over WebSocket and
//! WebRTC, a hand-driven train, a bottleneck link and the console driven in Chromium. The
//! integration tests (`server/tests/`) and the load tool (`bench/`) use it.
//!
//! Credentials: unless a test passes `--auth-file`, the server generates demo credentials and
//! writes them to the scratch directory; [`Server`] keeps the tokens, [`Sim`] is given the file,
//! and [`api`] and [`Server::ws_url`] act as the admin (use [`api_as`] and
//! [`Server::ws_url_as`] for other roles or none).
//!
//! Layout:
//! - `process`: finding the binaries, scratch directories, [`Server`], [`Sim`] and its [`Manifest`];
//! - `api`: JSON calls ([`api`], [`api_as`], [`call`]) and the admin steps tests repeat;
//! - `train`: [`RawTrain`] and the pieces of its hello;
//! - [`ws`], [`webrtc`], [`wt`] (WebTransport): remote controls recording what they receive;
//!   [`whep`]: a WHEP player (webrtc-rs) that depacketizes H.264 and verifies frames;
//!   [`mqtt`]: a real mosquitto (the shipped configuration) and an MQTT remote control;
//!   [`nats`]: a real nats-server, for the server's cluster;
//!   [`mqtt_signaling`]: a webrtc-rs remote control that offers over MQTT signaling topics;
//!   [`link`]: a bottleneck on the path to one; [`console`]: the operator console in Chromium;
//!   [`tls`]: a test CA and an HTTPS client that trusts only it; [`record`]: the server's
//!   recordings as ffprobe and ffmpeg read them.

pub mod agent;
pub mod console;
pub mod link;
pub mod mqtt;
pub mod mqtt_signaling;
pub mod nats;
pub mod record;
pub mod rpc;
pub mod tls;
pub mod webrtc;
pub mod whep;
pub mod ws;
pub mod wt;

mod api;
mod process;
mod train;

pub use api::*;
pub use process::*;
pub use train::*;

pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as u64
}

/// Percentile of a sorted slice.
pub fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// SHA-256 of a frame, hex, as [`ws::Received::sha256`] has it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Held by each test that must run alone in its test binary (the binaries run one after the
/// other; the tests inside one run on parallel threads). A binary whose every test takes it runs
/// as with `--test-threads=1`.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
