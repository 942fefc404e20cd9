//! Simulated trains for railcast: N trains with M cameras each, sending real H.264 (and, with
//! `--audio tone`, Opus from a cab microphone) to a railcast server over QUIC, answering commands
//! and sending telemetry.
//!
//! # Layout
//! - [`audio`]: the cab microphone (`--audio tone`): a synthetic chime encoded to Opus.
//! - [`video`]: renders the test pattern (colour bars, moving box, burned-in counter and clock)
//!   and encodes it with openh264.
//! - [`train`]: one train — camera threads and a QUIC session with reconnect and backoff.
//! - [`connect`]: discovery over HTTP and a QUIC client that pins the server certificate.
//! - [`manifest`]: one JSON line per frame sent, for end-to-end integrity checks.
//! - [`credentials`]: the per-train tokens, read from a credentials file.

pub mod audio;
pub mod connect;
pub mod credentials;
mod font;
pub mod manifest;
pub mod train;
pub mod video;
