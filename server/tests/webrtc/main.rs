//! Remote controls over WebRTC data channels (a webrtc-rs client, and aiortc as a foreign peer):
//! the server answering a client's offer, the signaling flow with exact frames, an aiortc session
//! end to end with a quiet server log, bad signaling input, half-open sessions, churn, TURN (static and time-limited credentials), how
//! video is packed into messages, and every session on one UDP port; and WHEP (`whep_*`): media
//! tracks verified frame by frame, keyframe requests, a remap, an ICE restart, shutdown, TURN, the
//! resource rules and bad input.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod aiortc_peer;
mod aiortc_whep;
mod answering;
mod rpc_errors;
mod rpc_media;
mod rpc_peers;
mod rpc_relay;
mod single_port;
mod webrtc_bad_input;
mod webrtc_churn;
mod webrtc_flow;
mod webrtc_half_open;
mod webrtc_turn;
mod webrtc_turn_rest;
mod webrtc_video_messages;
mod whep_audio;
mod whep_bad_input;
mod whep_frames;
mod whep_ice_restart;
mod whep_keyframe_request;
mod whep_remap;
mod whep_retransmit;
mod whep_shared_payloads;
mod whep_shutdown;
mod whep_signaling;
mod whep_turn;
