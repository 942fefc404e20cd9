//! The one error type of the wire decoders.

/// Why bytes could not be decoded.
///
/// [`DecodeError::Incomplete`] is not a fault: a stream decoder returns it when the buffer holds
/// only the start of a frame, and the caller reads more. Every other variant means the input is
/// invalid and must be discarded (a datagram) or the stream closed (a control stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed before the frame can be decoded (stream framing only).
    #[error("incomplete: need {needed} more bytes")]
    Incomplete { needed: usize },
    /// The buffer is shorter than the fixed header or than the length it declares.
    #[error("truncated: {what} needs {needed} bytes, {available} available")]
    Truncated { what: &'static str, needed: usize, available: usize },
    #[error("bad magic {found:02x?}, expected \"RC\"")]
    BadMagic { found: [u8; 2] },
    #[error("unsupported wire version {0}, this decoder speaks version 1")]
    UnsupportedVersion(u8),
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("expected a {expected} message, found kind 0x{found:02x}")]
    WrongKind { expected: &'static str, found: u8 },
    #[error("unknown codec 0x{0:02x}")]
    UnknownCodec(u8),
    #[error("declared payload length {declared} but {actual} bytes follow the header")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("message body of {len} bytes exceeds the limit of {max}")]
    BodyTooLarge { len: usize, max: usize },
    #[error("empty payload")]
    EmptyPayload,
    #[error("chunk index {index} out of range for chunk count {count}")]
    BadChunk { index: u16, count: u16 },
    #[error("invalid {kind} body: {reason}")]
    BadBody { kind: &'static str, reason: String },
}

impl DecodeError {
    /// A short stable label for counters and logs (`"truncated"`, `"bad_magic"`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Incomplete { .. } => "incomplete",
            Self::Truncated { .. } => "truncated",
            Self::BadMagic { .. } => "bad_magic",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::UnknownKind(_) => "unknown_kind",
            Self::WrongKind { .. } => "wrong_kind",
            Self::UnknownCodec(_) => "unknown_codec",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::EmptyPayload => "empty_payload",
            Self::BadChunk { .. } => "bad_chunk",
            Self::BadBody { .. } => "bad_body",
        }
    }
}

/// Check the 4-byte preamble shared by video packets and control frames; returns the kind byte.
pub(crate) fn check_preamble(buf: &[u8], what: &'static str) -> Result<u8, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Truncated { what, needed: 4, available: buf.len() });
    }
    if buf[0..2] != crate::MAGIC {
        return Err(DecodeError::BadMagic { found: [buf[0], buf[1]] });
    }
    if buf[2] != crate::VERSION {
        return Err(DecodeError::UnsupportedVersion(buf[2]));
    }
    Ok(buf[3])
}
