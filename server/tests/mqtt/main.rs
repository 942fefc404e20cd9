//! Remote controls over MQTT through a real mosquitto (the shipped configuration, started on
//! free loopback ports by each test): exact frames, live remapping, commands, access control
//! per session, revocation, a broker restart, bad input and a subscriber that stops reading;
//! WebRTC signaling over MQTT topics (`signaling_*`).
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod access_control;
mod frames;
mod signaling_bad_input;
mod signaling_isolation;
mod signaling_webrtc;
