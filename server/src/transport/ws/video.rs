//! Video packets as WebSocket binary messages, written straight from the hub's shared buffers.
//!
//! A frame from server to client is not masked (RFC 6455 §5.1), so on the wire it is a 2-, 4- or
//! 10-byte header followed by the payload unchanged. A batch of packets becomes one vectored
//! write (header, packet, header, packet, …): the packet bytes, shared by every client of the
//! train, are never copied in user space. Copying them into tungstenite's write buffer once per
//! client was the largest user-space cost of the fan-out (docs/benchmarks-history.md, "Session 4:
//! the WebSocket write path and the hub queue").

use std::io::{self, IoSlice};

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The longest frame header: opcode byte, length byte, 64-bit extended length.
const MAX_HEADER: usize = 10;

/// The header of a final, unmasked binary frame carrying `len` bytes.
pub fn binary_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    h[0] = 0x80 | 0x2; // FIN, opcode binary
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

impl<P: AsRef<[u8]>> Extend<P> for Batch<P> {
    fn extend<I: IntoIterator<Item = P>>(&mut self, iter: I) {
        for p in iter {
            self.push(p);
        }
    }
}

/// Packets gathered for one write (the hub's [`crate::hub::Packet`]s; any bytes in tests).
#[derive(Debug)]
pub struct Batch<P = crate::hub::Packet> {
    packets: Vec<P>,
    headers: Vec<([u8; MAX_HEADER], usize)>,
}

impl<P: AsRef<[u8]>> Batch<P> {
    /// An empty batch; it allocates on its first packet, so an idle session holds none.
    pub fn new() -> Self {
        Self { packets: Vec::new(), headers: Vec::new() }
    }

    pub fn push(&mut self, packet: P) {
        self.headers.push(binary_header(packet.as_ref().len()));
        self.packets.push(packet);
    }

    /// Room left before `max` packets.
    pub fn room(&self, max: usize) -> usize {
        max.saturating_sub(self.packets.len())
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn packets(&self) -> &[P] {
        &self.packets
    }

    /// Write every packet as a binary message, in order, then empty the batch. The caller must
    /// make sure no other frame is half written on `w` (tungstenite's buffer flushed).
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        let mut slices = Vec::with_capacity(self.packets.len() * 2);
        for ((h, n), p) in self.headers.iter().zip(&self.packets) {
            slices.push(IoSlice::new(&h[..*n]));
            slices.push(IoSlice::new(p.as_ref()));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = w.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        drop(slices);
        self.packets.clear();
        self.headers.clear();
        w.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    fn parse(bytes: &[u8]) -> (FrameHeader, u64, usize) {
        let mut cur = std::io::Cursor::new(bytes);
        let (h, len) = FrameHeader::parse(&mut cur).expect("parse").expect("whole header");
        (h, len, cur.position() as usize)
    }

    #[test]
    fn headers_parse_back_with_tungstenite() {
        for len in [0usize, 1, 125, 126, 1137, 65_535, 65_536, 1 << 20] {
            let (h, n) = binary_header(len);
            let (fh, parsed_len, used) = parse(&h[..n]);
            assert!(fh.is_final, "len {len}");
            assert_eq!(fh.opcode, OpCode::Data(Data::Binary), "len {len}");
            assert!(fh.mask.is_none(), "len {len}");
            assert_eq!(parsed_len, len as u64);
            assert_eq!(used, n, "minimal length encoding for {len}");
        }
    }

    /// A writer that takes at most `step` bytes per call, to exercise partial vectored writes.
    struct Dribble {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Dribble {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_keep_every_byte_in_order() {
        let packets: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i; 100 + 300 * usize::from(i)])).collect();
        for step in [1, 3, 7, 1000, usize::MAX] {
            let mut batch = Batch::new();
            for p in &packets {
                batch.push(p.clone());
            }
            let mut w = Dribble { out: Vec::new(), step };
            batch.write_to(&mut w).await.expect("test");
            assert!(batch.is_empty());
            let mut at = 0;
            for p in &packets {
                let (fh, len, used) = parse(&w.out[at..]);
                assert_eq!(fh.opcode, OpCode::Data(Data::Binary));
                assert_eq!(len as usize, p.len());
                assert_eq!(&w.out[at + used..at + used + p.len()], &p[..], "step {step}");
                at += used + p.len();
            }
            assert_eq!(at, w.out.len());
        }
    }
}
