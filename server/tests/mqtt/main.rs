//! Remote controls over MQTT through a real mosquitto (the shipped configuration, started on
//! free loopback ports by each test): exact frames, live remapping, commands, access control
//! per session, revocation, a broker restart, bad input, a subscriber that stops reading, and
//! shutdown.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod access_control;
mod bad_input;
mod broker_restart;
mod frames;
mod retained;
mod revocation;
mod shutdown;
mod slow_subscriber;
