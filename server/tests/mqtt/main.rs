//! Remote controls over MQTT through a real mosquitto (the shipped configuration, started on
//! free loopback ports by each test): exact frames, live remapping, commands, access control
//! per session, revocation, a broker restart, bad input, a retained command, a subscriber that
//! stops reading, and shutdown; WebRTC signaling over MQTT topics (`signaling_*`).
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod access_control;
mod bad_input;
mod broker_restart;
mod frames;
mod retained;
mod revocation;
mod shutdown;
mod signaling_bad_input;
mod signaling_isolation;
mod signaling_webrtc;
mod slow_subscriber;
