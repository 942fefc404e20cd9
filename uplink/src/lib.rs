//! A train's side of railcast: everything a train needs to reach the server and speak the wire
//! format (docs/wire-format.md), whatever produces its video. Shared by the simulator
//! (`railcast-train-sim`) and the agent in front of real cameras (`railcast-train-agent`).
//!
//! # Layout
//! - [`connect`]: discovery over HTTP(S) and a QUIC client that checks the server's certificate.
//! - [`session`]: the QUIC session with reconnect and backoff, failing over across several servers
//!   ([`Source::Any`], [`Rotation`]); the train behind it is a [`Train`].
//! - [`manifest`]: one JSON line per frame sent, for end-to-end integrity checks.
//! - [`credentials`]: the per-train tokens, read from a credentials file.

pub mod connect;
pub mod credentials;
pub mod manifest;
pub mod session;

pub use session::{now_us, run, AckFuture, Frame, Rotation, Server, ServerOrder, Source, Train, UplinkConfig};
