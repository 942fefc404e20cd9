//! Video messages on a data channel (docs/wire-format.md §2.6): one or more whole video packets
//! back to back. [`pack`] builds them (the server), [`split`] takes them apart (clients). Both are
//! sans-IO and never panic.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::{check_video_preamble, HEADER_LEN};

/// The packets of one message, in order; see [`split`].
#[derive(Debug, Clone)]
pub struct Split<'a> {
    rest: &'a [u8],
    started: bool,
}

/// Split a data-channel video message into its packets (§2.6). Each item is one packet's bytes
/// (`26 + payload length`), still to be validated on its own with
/// [`VideoHeader::parse`](crate::VideoHeader::parse); an `Err` ends the iteration and stands for
/// the rest of the message. An empty message gives one `Err` (`truncated`).
pub fn split(message: &[u8]) -> Split<'_> {
    Split { rest: message, started: false }
}

impl<'a> Iterator for Split<'a> {
    type Item = Result<&'a [u8], DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = !std::mem::replace(&mut self.started, true);
        if self.rest.is_empty() && !first {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        match packet_len(rest) {
            Ok(len) => {
                let (packet, tail) = rest.split_at(len);
                self.rest = tail;
                Some(Ok(packet))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// Length of the packet at the start of `buf`: steps 1–3 of §2.6.
fn packet_len(buf: &[u8]) -> Result<usize, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { what: "video header", needed: HEADER_LEN, available: buf.len() });
    }
    check_video_preamble(buf)?;
    let len = HEADER_LEN + usize::from(u16::from_be_bytes([buf[24], buf[25]]));
    if len > buf.len() {
        return Err(DecodeError::Truncated { what: "video payload", needed: len, available: buf.len() });
    }
    Ok(len)
}

/// [`split`] over a shared buffer: each packet is a [`Bytes`] pointing into `message` (no copy).
pub fn split_bytes(message: &Bytes) -> impl Iterator<Item = Result<Bytes, DecodeError>> + '_ {
    split(message).map(|r| r.map(|p| message.slice_ref(p)))
}

/// Messages packed from `packets`; see [`pack`].
#[derive(Debug, Clone)]
pub struct Pack<'a, P> {
    packets: &'a [P],
    next: usize,
    limit: usize,
}

/// Pack `packets`, in order, into messages of at most `limit` bytes (§2.6). Each item is a message
/// and the range of `packets` it holds; a packet longer than `limit` travels alone. Never waits
/// for more: the caller passes what is queued now.
pub fn pack<P: AsRef<[u8]>>(packets: &[P], limit: usize) -> Pack<'_, P> {
    Pack { packets, next: 0, limit }
}

impl<P: AsRef<[u8]>> Iterator for Pack<'_, P> {
    type Item = (BytesMut, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.next;
        let first = self.packets.get(start)?;
        let mut end = start + 1;
        let mut len = first.as_ref().len();
        while let Some(p) = self.packets.get(end) {
            if len + p.as_ref().len() > self.limit {
                break;
            }
            len += p.as_ref().len();
            end += 1;
        }
        let mut message = BytesMut::with_capacity(len);
        for p in &self.packets[start..end] {
            message.extend_from_slice(p.as_ref());
        }
        self.next = end;
        Some((message, start..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{packetize, Codec, FrameMeta};
    use crate::{CameraId, FrameSeq};

    fn frame(len: usize, seq: u32) -> Vec<Bytes> {
        let meta = FrameMeta {
            keyframe: seq == 0,
            codec: Codec::H264AnnexB,
            camera: CameraId(1),
            seq: FrameSeq(seq),
            capture_us: 7,
        };
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        packetize(meta, &data, 1150).expect("packetize")
    }

    #[test]
    fn packed_messages_split_back_into_the_same_packets() {
        let packets: Vec<Bytes> = (0..5).flat_map(|s| frame(3000 + 700 * s as usize, s)).collect();
        for limit in [1, 26, 1176, 4000, 16_384, 65_536, usize::MAX] {
            let mut out = Vec::new();
            let mut covered = 0;
            for (message, range) in pack(&packets, limit) {
                assert_eq!(range.start, covered, "in order, nothing skipped");
                covered = range.end;
                assert!(message.len() <= limit || range.len() == 1, "limit {limit}: {} bytes", message.len());
                let message = message.freeze();
                let got: Vec<Bytes> = split_bytes(&message).map(|r| r.expect("valid split")).collect();
                assert_eq!(got, packets[range].to_vec());
                out.extend(got);
            }
            assert_eq!(out, packets, "limit {limit}");
        }
        assert_eq!(pack(&packets, 65_536).count(), 1, "20 KB of packets fit one 64 KiB message");
        assert_eq!(pack(&packets, 1).count(), packets.len(), "below one packet: one packet per message");
    }

    #[test]
    fn an_error_ends_the_split_after_the_good_packets() {
        let packets = frame(2000, 3);
        let mut m = BytesMut::new();
        m.extend_from_slice(&packets[0]);
        m.extend_from_slice(&packets[1][..40]);
        let got: Vec<_> = split(&m).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_deref().ok(), Some(&packets[0][..]));
        assert_eq!(got[1].as_ref().map_err(DecodeError::label), Err("truncated"));
        let empty: Vec<_> = split(&[]).map(|r| r.map_err(|e| e.label())).collect();
        assert_eq!(empty, vec![Err("truncated")]);
    }
}
