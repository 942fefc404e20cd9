//! Remote controls over WebSocket: fan-out with exact frames, audio (Opus) end to end, control frames among video, client
//! messages, live remapping, isolation between trains, shutdown, and what the welcome says.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod audio;
mod audio_malformed;
mod client_messages;
mod closing_handshake;
mod deleted;
mod isolation;
mod remap;
mod shutdown;
mod welcome_payload_limit;
mod ws_control_frames;
mod ws_fanout;
