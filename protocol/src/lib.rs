//! railcast wire format, version 1 — sans-IO.
//!
//! This crate encodes and decodes every byte railcast puts on a wire, and nothing else: no sockets,
//! no clocks, no async runtime. Time and buffers are passed in by the caller. The normative
//! description of the format is `docs/wire-format.md`; this crate is its reference implementation
//! and the golden vectors in `tests/vectors/` are shared with the TypeScript client.
//!
//! # Layout
//! - [`packet`]: video packets — one chunk of one encoded frame, sized to fit one QUIC datagram.
//!   The relay forwards them byte for byte. Audio (Opus) rides in the same packets, one whole
//!   Opus packet each.
//! - [`message`]: video messages on a WebRTC `video` data channel — one or more whole packets back
//!   to back (`docs/wire-format.md` §2.6); the server packs them, clients split them.
//! - [`control`]: control frames on the train's QUIC control stream (hello, command, ack, …),
//!   length-prefixed with a JSON body.
//! - [`client`]: the JSON messages between a remote control (browser) and the server, identical on
//!   every transport (WebSocket text, WebRTC `command` channel).
//! - [`assembler`]: rebuilds frames from packets on the receiving side (drops incomplete and late
//!   frames, waits for a keyframe after a loss).
//! - [`ids`]: validated identifiers and the wrap-aware frame sequence number.
//! - [`error`]: [`DecodeError`], one typed error for everything a decoder can reject.
//!
//! Decoding never panics, whatever the input: every length is checked before it is used.

pub mod assembler;
pub mod client;
pub mod control;
pub mod error;
pub mod h264;
pub mod ids;
pub mod message;
pub mod packet;

pub use control::{
    Action, AudioInfo, CameraInfo, CommandAck, ControlDecoder, ControlMessage, Hello, Secret, Telemetry,
};
pub use error::DecodeError;
pub use ids::{CameraId, FrameSeq, TrainId};
pub use packet::{Codec, VideoHeader, VideoPacket};

/// First two bytes of every packet and control frame: ASCII `RC`.
pub const MAGIC: [u8; 2] = *b"RC";
/// The wire-format version this crate speaks.
pub const VERSION: u8 = 1;
/// QUIC ALPN protocol id a train must offer.
pub const ALPN: &[u8] = b"railcast/1";
/// Default maximum video payload per packet, in bytes: with the 26-byte header a packet is
/// 1,176 bytes and fits a QUIC datagram on a 1,280-byte path MTU and a data-channel message.
pub const DEFAULT_MAX_PAYLOAD: usize = 1150;
/// Largest payload length the 16-bit length field can carry.
pub const MAX_PAYLOAD_LIMIT: usize = u16::MAX as usize;
