//! Slow paths to an operator: a client that stops reading or takes no data at all, and commands
//! that must get through while video saturates the link (WebSocket and WebRTC).
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).
//! Every test here runs alone (`testkit::serial`): each measures how the server copes with a
//! slow client against deadlines, as it did when each file was an executable of its own, and a
//! neighbour encoding video on the same two cores would eat into them.

mod slow_client;
mod webrtc_commands_under_saturation;
mod ws_commands_under_saturation;
mod ws_write_timeout;
