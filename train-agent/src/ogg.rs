//! Ogg Opus (RFC 7845) read as a byte stream: pages (RFC 3533) into packets, the `OpusHead` and
//! `OpusTags` headers recognised and left out, every other packet one Opus packet as the encoder
//! wrote it. Sans-IO: bytes in, packets out. What `ffmpeg … -c:a libopus -f ogg` or GStreamer's
//! `opusenc ! oggmux` write.

/// Largest page: a 27-byte header, 255 lacing values, 255 × 255 bytes.
const MAX_PAGE: usize = 27 + 255 + 255 * 255;
/// A packet larger than this is garbage, dropped.
const MAX_PACKET: usize = 64 * 1024;

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The `OpusHead` header: channel count and the encoder's input sample rate.
    Head { channels: u8, input_rate: u32 },
    /// One Opus packet.
    Packet(Vec<u8>),
}

#[derive(Debug, Default)]
pub struct OggOpusReader {
    buf: Vec<u8>,
    /// A packet continued on the next page.
    partial: Vec<u8>,
    /// Bytes skipped to find a page ("OggS"), and packets dropped.
    pub skipped_bytes: u64,
    pub dropped_packets: u64,
}

impl OggOpusReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add bytes; returns what the complete pages among them held, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Item> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            // Find the capture pattern.
            match self.buf.windows(4).position(|w| w == b"OggS") {
                Some(0) => {}
                Some(i) => {
                    self.skipped_bytes += i as u64;
                    self.buf.drain(..i);
                }
                None => {
                    let keep = self.buf.len().min(3);
                    self.skipped_bytes += (self.buf.len() - keep) as u64;
                    self.buf.drain(..self.buf.len() - keep);
                    return out;
                }
            }
            if self.buf.len() < 27 {
                return out;
            }
            let segments = usize::from(self.buf[26]);
            if self.buf.len() < 27 + segments {
                return out;
            }
            let lacing = &self.buf[27..27 + segments];
            let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
            let total = 27 + segments + body_len;
            if self.buf[4] != 0 || total > MAX_PAGE {
                // Not a page of version 0: skip its capture pattern and look again.
                self.skipped_bytes += 4;
                self.buf.drain(..4);
                continue;
            }
            if self.buf.len() < total {
                return out;
            }
            let continued = self.buf[5] & 0x01 != 0;
            if !continued && !self.partial.is_empty() {
                // The previous page promised a continuation that did not come.
                self.dropped_packets += 1;
                self.partial.clear();
            }
            let lacing = lacing.to_vec();
            let mut pos = 27 + segments;
            for l in lacing {
                let l = usize::from(l);
                self.partial.extend_from_slice(&self.buf[pos..pos + l]);
                pos += l;
                if l < 255 {
                    let packet = std::mem::take(&mut self.partial);
                    if let Some(item) = self.classify(packet) {
                        out.push(item);
                    }
                }
            }
            if self.partial.len() > MAX_PACKET {
                self.dropped_packets += 1;
                self.partial.clear();
            }
            self.buf.drain(..total);
        }
    }

    fn classify(&mut self, packet: Vec<u8>) -> Option<Item> {
        if packet.starts_with(b"OpusHead") {
            if packet.len() < 19 {
                self.dropped_packets += 1;
                return None;
            }
            let input_rate = u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]);
            return Some(Item::Head { channels: packet[9], input_rate });
        }
        if packet.starts_with(b"OpusTags") {
            return None;
        }
        if packet.is_empty() || packet.len() > MAX_PACKET {
            self.dropped_packets += 1;
            return None;
        }
        Some(Item::Packet(packet))
    }
}

/// An Opus packet's duration in 48 kHz samples, from its TOC byte (RFC 6716 §3.1); `None` for
/// a malformed code-3 packet.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    Some(frame * frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page: header (version 0, flags, granule, serial, sequence, CRC left 0: not checked), the
    /// lacing values and the packets.
    fn page(flags: u8, packets: &[&[u8]]) -> Vec<u8> {
        let mut lacing = Vec::new();
        for p in packets {
            let mut n = p.len();
            while n >= 255 {
                lacing.push(255u8);
                n -= 255;
            }
            lacing.push(n as u8);
        }
        let mut out = b"OggS".to_vec();
        out.extend_from_slice(&[0, flags]);
        out.extend_from_slice(&[0; 8 + 4 + 4 + 4]);
        out.push(lacing.len() as u8);
        out.extend_from_slice(&lacing);
        for p in packets {
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn pages_become_opus_packets_whatever_the_chunks() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        let big = vec![0x7Cu8; 600]; // spans lacing values of 255
        let stream =
            [b"junk".to_vec(), page(2, &[&head]), page(0, &[b"OpusTags\0\0\0\0"]), page(0, &[&[0x78, 1, 2], &big])]
                .concat();
        for chunk in [1, 5, 64, 4096] {
            let mut r = OggOpusReader::new();
            let items: Vec<Item> = stream.chunks(chunk).flat_map(|c| r.push(c)).collect();
            assert_eq!(
                items,
                [
                    Item::Head { channels: 1, input_rate: 48_000 },
                    Item::Packet(vec![0x78, 1, 2]),
                    Item::Packet(big.clone())
                ],
                "chunks of {chunk}"
            );
            assert_eq!(r.skipped_bytes, 4);
        }
    }

    #[test]
    fn opus_packet_durations() {
        assert_eq!(packet_samples(&[0x78]), Some(960), "hybrid FB 20 ms, one frame");
        assert_eq!(packet_samples(&[0x19]), Some(2 * 2880), "SILK NB 60 ms, two frames");
        assert_eq!(packet_samples(&[0xFC]), Some(960), "CELT FB 20 ms");
        assert_eq!(packet_samples(&[0x7B, 0x03]), Some(3 * 960), "code 3, three frames");
        assert_eq!(packet_samples(&[0x7B]), None);
    }
}
