//! Video datagrams framed once for every session.
//!
//! A WebTransport datagram is the session's ID (a QUIC varint: one byte, `0x00`, for a browser's
//! one session on its connection) followed by the payload. web-transport-quinn's `send_datagram`
//! allocates and copies every datagram to put the header in front, so a packet fanned out to
//! 500 sessions was copied 500 times (≈ 4 % of the server's core at 500 clients went to those
//! allocations, copies and frees). [`Framing`] keeps the framed copies of the packets sent
//! last: the first session to send a packet frames it, the others with the same header share
//! those bytes.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Framed packets kept: about 18 frames of a 4 Mbit/s, 30 fps stream (≈ 300 KB), enough for
/// every session that is not far behind the others.
const RECENT: usize = 256;

/// The framed copies of the packets framed last.
#[derive(Debug, Default)]
pub struct Framing {
    recent: Mutex<VecDeque<Framed>>,
}

#[derive(Debug)]
struct Framed {
    /// The packet, held so that its memory cannot be reused while its address is a key.
    packet: Bytes,
    header: Bytes,
    datagram: Bytes,
}

impl Framing {
    /// `header` then `packet`, as bytes shared with every other caller that asked for the same
    /// packet (the same memory, not merely equal bytes) and header lately.
    pub fn datagram(&self, header: &Bytes, packet: &Bytes) -> Bytes {
        if header.is_empty() {
            return packet.clone();
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // The packet being fanned out is among the newest, whichever session asks: the sessions
        // of a stream are woken together and ask within a fraction of a millisecond, so a scan
        // from the newest ends within a frame's packets. (A `HashMap` with SipHash cost twice
        // the scan at 500 clients.) Only a session far behind scans them all and frames anew.
        if let Some(f) = recent.iter().rev().find(|f| same_memory(&f.packet, packet) && f.header == *header) {
            return f.datagram.clone();
        }
        let mut datagram = BytesMut::with_capacity(header.len() + packet.len());
        datagram.extend_from_slice(header);
        datagram.extend_from_slice(packet);
        let datagram = datagram.freeze();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Framed { packet: packet.clone(), header: header.clone(), datagram: datagram.clone() });
        datagram
    }
}

/// The same bytes in memory: while one of them is held, no other packet can have its address.
fn same_memory(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_with_the_same_header_share_one_framed_copy() {
        let framing = Framing::default();
        let zero = Bytes::from_static(&[0x00]);
        let packet = Bytes::from(vec![7u8; 1176]);
        let a = framing.datagram(&zero, &packet);
        let b = framing.datagram(&zero, &packet.clone());
        assert_eq!(&a[..1], &[0x00]);
        assert_eq!(&a[1..], &packet[..]);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the second session must get the first one's bytes");

        // Another header (a second session on one connection): its own framing, still shared.
        let four = Bytes::from_static(&[0x04]);
        let c = framing.datagram(&four, &packet);
        assert_eq!(c[0], 0x04);
        assert_ne!(c.as_ptr(), a.as_ptr());
        assert_eq!(framing.datagram(&four, &packet).as_ptr(), c.as_ptr());

        // Equal bytes elsewhere in memory are another packet: framed anew, and correctly.
        let equal = Bytes::from(vec![7u8; 1176]);
        let d = framing.datagram(&zero, &equal);
        assert_ne!(d.as_ptr(), a.as_ptr());
        assert_eq!(d, a);
    }

    #[test]
    fn no_header_is_the_packet_itself() {
        let packet = Bytes::from(vec![1u8; 100]);
        assert_eq!(Framing::default().datagram(&Bytes::new(), &packet).as_ptr(), packet.as_ptr());
    }

    #[test]
    fn old_packets_are_framed_again_and_memory_stays_bounded() {
        let framing = Framing::default();
        let zero = Bytes::from_static(&[0x00]);
        let packets: Vec<Bytes> = (0..RECENT + 10).map(|i| Bytes::from(vec![i as u8; 64])).collect();
        let first = framing.datagram(&zero, &packets[0]);
        for p in &packets[1..] {
            framing.datagram(&zero, p);
        }
        assert_eq!(framing.recent.lock().expect("lock").len(), RECENT);
        let again = framing.datagram(&zero, &packets[0]);
        assert_ne!(again.as_ptr(), first.as_ptr(), "evicted: framed anew");
        assert_eq!(again, first);
    }
}
