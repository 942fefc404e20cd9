//! Video packets: one chunk of one encoded frame.
//!
//! ```text
//!  0      2     3     4      5      6        8          12                20        22        24       26
//!  | "RC" | ver | kind| flags| codec| camera | frame seq | capture time µs | chunk # | chunks  | length | payload…
//!                 0x01   bit0 = keyframe
//! ```
//! All integers big-endian. A packet is exactly `26 + length` bytes: one datagram, one message.
//! The relay never rewrites a packet; it only reads the header to route and to drop whole frames.
//!
//! Audio travels in the same packets (codec [`Codec::Opus`]): one whole Opus packet per railcast
//! packet (chunk count 1), flagged keyframe since every Opus packet decodes on its own, so the
//! relay's drop policy and the receivers' reassembly treat it like a one-chunk keyframe. The
//! `camera` field is then the id of the audio source: cameras and audio sources share one id
//! space per train (docs/wire-format.md §2.7).

use bytes::{BufMut, Bytes};

use crate::error::{check_preamble, DecodeError};
use crate::ids::{CameraId, FrameSeq};

/// Kind byte of a video packet.
pub const KIND_VIDEO: u8 = 0x01;
/// Size of the fixed video header.
pub const HEADER_LEN: usize = 26;
/// `flags` bit: this chunk belongs to a keyframe (an IDR access unit that a decoder can start at).
pub const FLAG_KEYFRAME: u8 = 0x01;

/// Codec of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// H.264 access units in Annex B byte-stream format (start codes); keyframes carry SPS and PPS.
    H264AnnexB = 0x01,
    /// One Opus packet (RFC 6716), e.g. 20 ms of 48 kHz mono: audio, never split into chunks.
    Opus = 0x02,
}

impl Codec {
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            0x01 => Ok(Self::H264AnnexB),
            0x02 => Ok(Self::Opus),
            other => Err(DecodeError::UnknownCodec(other)),
        }
    }
    /// The name used in JSON messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::H264AnnexB => "h264",
            Self::Opus => "opus",
        }
    }
    /// Audio (an audio source's packets) rather than video (a camera's)?
    pub fn is_audio(self) -> bool {
        matches!(self, Self::Opus)
    }
}

/// The fixed header of a video packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoHeader {
    pub keyframe: bool,
    pub codec: Codec,
    pub camera: CameraId,
    pub seq: FrameSeq,
    /// Capture time of the frame, µs since the UNIX epoch on the sender's clock.
    pub capture_us: u64,
    pub chunk_index: u16,
    pub chunk_count: u16,
    pub payload_len: u16,
}

impl VideoHeader {
    /// Validate and parse a whole packet's header, checking that exactly `payload_len` bytes follow
    /// and that the payload is within `max_payload`. Never panics.
    pub fn parse(buf: &[u8], max_payload: usize) -> Result<Self, DecodeError> {
        check_video_preamble(buf)?;
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated { what: "video header", needed: HEADER_LEN, available: buf.len() });
        }
        let flags = buf[4];
        let codec = Codec::from_byte(buf[5])?;
        let camera = CameraId(u16::from_be_bytes([buf[6], buf[7]]));
        let seq = FrameSeq(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[12..20]);
        let capture_us = u64::from_be_bytes(ts);
        let chunk_index = u16::from_be_bytes([buf[20], buf[21]]);
        let chunk_count = u16::from_be_bytes([buf[22], buf[23]]);
        let payload_len = u16::from_be_bytes([buf[24], buf[25]]);
        if chunk_count == 0 || chunk_index >= chunk_count || codec.is_audio() && chunk_count != 1 {
            // An audio packet carries one whole Opus packet: never split (§2.7).
            return Err(DecodeError::BadChunk { index: chunk_index, count: chunk_count });
        }
        let actual = buf.len() - HEADER_LEN;
        if usize::from(payload_len) > max_payload {
            return Err(DecodeError::PayloadTooLarge { len: payload_len.into(), max: max_payload });
        }
        if actual < usize::from(payload_len) {
            return Err(DecodeError::Truncated {
                what: "video payload",
                needed: HEADER_LEN + usize::from(payload_len),
                available: buf.len(),
            });
        }
        if actual != usize::from(payload_len) {
            return Err(DecodeError::LengthMismatch { declared: payload_len.into(), actual });
        }
        if payload_len == 0 {
            return Err(DecodeError::EmptyPayload);
        }
        Ok(Self {
            keyframe: flags & FLAG_KEYFRAME != 0,
            codec,
            camera,
            seq,
            capture_us,
            chunk_index,
            chunk_count,
            payload_len,
        })
    }

    /// Write the 26 header bytes.
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_slice(&crate::MAGIC);
        out.put_u8(crate::VERSION);
        out.put_u8(KIND_VIDEO);
        out.put_u8(if self.keyframe { FLAG_KEYFRAME } else { 0 });
        out.put_u8(self.codec as u8);
        out.put_u16(self.camera.0);
        out.put_u32(self.seq.0);
        out.put_u64(self.capture_us);
        out.put_u16(self.chunk_index);
        out.put_u16(self.chunk_count);
        out.put_u16(self.payload_len);
    }

    /// First chunk of a frame?
    pub fn starts_frame(&self) -> bool {
        self.chunk_index == 0
    }
    /// First chunk of a keyframe: where a subscriber that lost data may resume.
    pub fn starts_keyframe(&self) -> bool {
        self.keyframe && self.chunk_index == 0
    }
}

/// The preamble (§1) and a video kind: what a video packet and each packet of a data-channel
/// message (§2.6) start with.
pub(crate) fn check_video_preamble(buf: &[u8]) -> Result<(), DecodeError> {
    let kind = check_preamble(buf, "video packet")?;
    if kind == KIND_VIDEO {
        Ok(())
    } else if crate::control::is_control_kind(kind) {
        Err(DecodeError::WrongKind { expected: "video", found: kind })
    } else {
        Err(DecodeError::UnknownKind(kind))
    }
}

/// A validated video packet: its parsed header and the bytes exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPacket {
    pub header: VideoHeader,
    /// The whole packet, header included (cheap to clone; forwarded unchanged).
    pub bytes: Bytes,
}

impl VideoPacket {
    /// Validate a received packet. `bytes` is kept as is, so forwarding it copies nothing.
    pub fn parse(bytes: Bytes, max_payload: usize) -> Result<Self, DecodeError> {
        let header = VideoHeader::parse(&bytes, max_payload)?;
        Ok(Self { header, bytes })
    }
    pub fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// Metadata of one encoded frame, for [`packetize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    pub keyframe: bool,
    pub codec: Codec,
    pub camera: CameraId,
    pub seq: FrameSeq,
    pub capture_us: u64,
}

/// Why a frame could not be split into packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketizeError {
    #[error("empty frame")]
    Empty,
    #[error("max payload must be 1..=65535, got {0}")]
    BadMaxPayload(usize),
    #[error("frame of {len} bytes needs more than 65535 chunks of {max_payload} bytes")]
    TooLarge { len: usize, max_payload: usize },
    /// An audio frame travels in one packet (§2.7); this one is larger than the payload limit.
    #[error("audio frame of {len} bytes does not fit one packet of {max_payload} payload bytes")]
    AudioTooLarge { len: usize, max_payload: usize },
}

/// Split an encoded frame into packets of at most `max_payload` payload bytes each, as evenly
/// sized as the limit allows (the last chunk is not a runt).
pub fn packetize(meta: FrameMeta, frame: &[u8], max_payload: usize) -> Result<Vec<Bytes>, PacketizeError> {
    if frame.is_empty() {
        return Err(PacketizeError::Empty);
    }
    if max_payload == 0 || max_payload > crate::MAX_PAYLOAD_LIMIT {
        return Err(PacketizeError::BadMaxPayload(max_payload));
    }
    let count = frame.len().div_ceil(max_payload);
    if meta.codec.is_audio() && count > 1 {
        return Err(PacketizeError::AudioTooLarge { len: frame.len(), max_payload });
    }
    let count16 = u16::try_from(count).map_err(|_| PacketizeError::TooLarge { len: frame.len(), max_payload })?;
    let base = frame.len() / count;
    let extra = frame.len() % count;
    let mut out = Vec::with_capacity(count);
    let mut offset = 0;
    for index in 0..count {
        let len = base + usize::from(index < extra);
        let header = VideoHeader {
            keyframe: meta.keyframe,
            codec: meta.codec,
            camera: meta.camera,
            seq: meta.seq,
            capture_us: meta.capture_us,
            chunk_index: index as u16,
            chunk_count: count16,
            payload_len: len as u16,
        };
        let mut buf = Vec::with_capacity(HEADER_LEN + len);
        header.write(&mut buf);
        buf.extend_from_slice(&frame[offset..offset + len]);
        offset += len;
        out.push(Bytes::from(buf));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> FrameMeta {
        FrameMeta {
            keyframe: true,
            codec: Codec::H264AnnexB,
            camera: CameraId(2),
            seq: FrameSeq(77),
            capture_us: 1_700_000_000_123_456,
        }
    }

    #[test]
    fn packetize_round_trip() {
        for len in [1usize, 2, 1149, 1150, 1151, 2300, 2301, 10_000] {
            let frame: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let packets = packetize(meta(), &frame, 1150).expect("packetize");
            assert_eq!(packets.len(), len.div_ceil(1150));
            let mut rebuilt = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                let pkt = VideoPacket::parse(p.clone(), 1150).expect("parse");
                assert_eq!(usize::from(pkt.header.chunk_index), i);
                assert_eq!(usize::from(pkt.header.chunk_count), packets.len());
                assert_eq!(pkt.header.seq, FrameSeq(77));
                assert!(pkt.header.keyframe);
                assert!(pkt.payload().len() <= 1150);
                rebuilt.extend_from_slice(pkt.payload());
            }
            assert_eq!(rebuilt, frame);
        }
    }

    #[test]
    fn chunks_are_even() {
        let packets = packetize(meta(), &[0u8; 1151], 1150).expect("packetize");
        let sizes: Vec<usize> = packets.iter().map(|p| p.len() - HEADER_LEN).collect();
        assert_eq!(sizes, vec![576, 575]);
    }

    #[test]
    fn packetize_rejects() {
        assert_eq!(packetize(meta(), &[], 1150), Err(PacketizeError::Empty));
        assert_eq!(packetize(meta(), &[1], 0), Err(PacketizeError::BadMaxPayload(0)));
        assert!(matches!(packetize(meta(), &vec![0; 65_536 * 2], 1), Err(PacketizeError::TooLarge { .. })));
    }

    #[test]
    fn audio_is_one_packet() {
        let opus = FrameMeta { codec: Codec::Opus, camera: CameraId(256), ..meta() };
        let packets = packetize(opus, &[0xfc; 80], 1150).expect("packetize");
        assert_eq!(packets.len(), 1);
        let pkt = VideoPacket::parse(packets[0].clone(), 1150).expect("parse");
        assert_eq!(pkt.header.codec, Codec::Opus);
        assert_eq!(pkt.header.codec.name(), "opus");
        assert!(pkt.header.codec.is_audio() && !Codec::H264AnnexB.is_audio());
        assert!(pkt.header.starts_keyframe());
        assert_eq!(
            packetize(opus, &[0; 1151], 1150),
            Err(PacketizeError::AudioTooLarge { len: 1151, max_payload: 1150 })
        );
        // A chunked Opus packet is invalid whatever its index: audio is never split.
        let mut b = packets[0].to_vec();
        b[20..24].copy_from_slice(&[0, 0, 0, 2]);
        assert_eq!(VideoHeader::parse(&b, 1150), Err(DecodeError::BadChunk { index: 0, count: 2 }));
        assert_eq!(Codec::from_byte(0x02), Ok(Codec::Opus));
        assert_eq!(Codec::from_byte(0x03), Err(DecodeError::UnknownCodec(3)));
    }

    #[test]
    fn parse_rejects() {
        let good = packetize(meta(), &[9u8; 100], 1150).expect("packetize").remove(0);
        let parse = |b: &[u8]| VideoHeader::parse(b, 1150);
        assert!(parse(&good).is_ok());
        assert!(matches!(parse(&good[..3]), Err(DecodeError::Truncated { .. })));
        assert!(matches!(parse(&good[..25]), Err(DecodeError::Truncated { .. })));
        assert!(matches!(parse(&good[..60]), Err(DecodeError::Truncated { .. })));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(parse(&long), Err(DecodeError::LengthMismatch { declared: 100, actual: 101 }));
        let mut b = good.to_vec();
        b[0] = b'X';
        assert!(matches!(parse(&b), Err(DecodeError::BadMagic { .. })));
        let mut b = good.to_vec();
        b[2] = 2;
        assert_eq!(parse(&b), Err(DecodeError::UnsupportedVersion(2)));
        let mut b = good.to_vec();
        b[3] = 0x7f;
        assert_eq!(parse(&b), Err(DecodeError::UnknownKind(0x7f)));
        let mut b = good.to_vec();
        b[3] = 0x12;
        assert!(matches!(parse(&b), Err(DecodeError::WrongKind { .. })));
        let mut b = good.to_vec();
        b[5] = 9;
        assert_eq!(parse(&b), Err(DecodeError::UnknownCodec(9)));
        let mut b = good.to_vec();
        b[20..24].copy_from_slice(&[0, 1, 0, 1]);
        assert_eq!(parse(&b), Err(DecodeError::BadChunk { index: 1, count: 1 }));
        let mut b = good.to_vec();
        b[22..24].copy_from_slice(&[0, 0]);
        assert!(matches!(parse(&b), Err(DecodeError::BadChunk { .. })));
        assert!(matches!(VideoHeader::parse(&good, 99), Err(DecodeError::PayloadTooLarge { len: 100, max: 99 })));
        let mut empty = good[..HEADER_LEN].to_vec();
        empty[24..26].copy_from_slice(&[0, 0]);
        assert_eq!(parse(&empty), Err(DecodeError::EmptyPayload));
    }
}
