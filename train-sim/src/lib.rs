//! Simulated trains for railcast: N trains with M cameras each, sending real H.264 (and, with
//! `--audio tone`, Opus from a cab microphone) to a railcast server over QUIC, answering commands
//! and sending telemetry.
//!
//! # Layout
//! - [`audio`]: the cab microphone (`--audio tone`): a synthetic chime encoded to Opus.
//! - [`video`]: renders the test pattern (colour bars, moving box, burned-in counter and clock)
//!   and encodes it with openh264.
//! - [`train`]: one train — camera threads, its behaviour behind the shared QUIC session.
//! - [`connect`], [`manifest`], [`credentials`]: from `railcast-uplink` (shared with the agent):
//!   discovery and certificate trust, the manifest of frames sent, the per-train tokens.

pub mod audio;
mod font;
pub mod train;
pub mod video;

pub use railcast_uplink::{connect, credentials, manifest};
