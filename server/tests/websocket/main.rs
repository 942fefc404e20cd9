//! Remote controls over WebSocket: fan-out with exact frames, control frames among video, client
//! messages, live remapping, isolation between trains, and shutdown.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod client_messages;
mod closing_handshake;
mod isolation;
mod remap;
mod shutdown;
mod ws_control_frames;
mod ws_fanout;
