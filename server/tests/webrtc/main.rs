//! Remote controls over WebRTC data channels (a webrtc-rs client, and aiortc as a foreign peer):
//! the server answering a client's offer, the signaling flow with exact frames, an aiortc session
//! end to end with a quiet server log, bad signaling input, half-open sessions, churn, TURN, how
//! video is packed into messages, and every session on one UDP port.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod aiortc_peer;
mod answering;
mod single_port;
mod webrtc_bad_input;
mod webrtc_churn;
mod webrtc_flow;
mod webrtc_half_open;
mod webrtc_turn;
mod webrtc_video_messages;
