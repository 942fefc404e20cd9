//! Random and mutated bytes never panic the decoders; they decode or give a typed error.

use bytes::Bytes;
use railcast_protocol::client::ClientMessage;
use railcast_protocol::{ControlMessage, VideoPacket};
use rand::{Rng, SeedableRng};

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("vectors dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "hex") {
            let text = std::fs::read_to_string(&path).expect("read");
            let bytes: Vec<u8> = text
                .lines()
                .flat_map(|l| {
                    l.split('#').next().unwrap_or("").split_whitespace().map(str::to_owned).collect::<Vec<_>>()
                })
                .map(|t| u8::from_str_radix(&t, 16).expect("hex"))
                .collect();
            out.push(bytes);
        }
    }
    out
}

fn decode_all(bytes: &[u8]) {
    let _ = VideoPacket::parse(Bytes::copy_from_slice(bytes), 1150);
    let _ = VideoPacket::parse(Bytes::copy_from_slice(bytes), 65_535);
    // As a data-channel message (§2.6): the packets are consecutive pieces of the input, and an
    // error, if any, comes last.
    let mut at = 0;
    let mut ended = false;
    for r in railcast_protocol::message::split(bytes) {
        assert!(!ended, "nothing after an error");
        match r {
            Ok(p) => {
                assert_eq!(p, &bytes[at..at + p.len()]);
                assert!(p.len() >= railcast_protocol::packet::HEADER_LEN);
                at += p.len();
            }
            Err(_) => ended = true,
        }
    }
    assert!(ended || at == bytes.len(), "the split covers the message");
    let mut at = 0;
    while at < bytes.len() {
        match ControlMessage::decode(&bytes[at..], 65_536) {
            Ok((_, used)) => {
                assert!(used > 0);
                at += used;
            }
            Err(_) => break,
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = ClientMessage::parse(text);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..50_000 {
        let len = rng.random_range(0..1300);
        let buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        decode_all(&buf);
        // Valid preamble, random rest: reaches the deeper checks.
        let mut b = buf.clone();
        if b.len() >= 4 {
            b[..3].copy_from_slice(b"RC\x01");
            b[3] = [0x01, 0x10, 0x12, 0x13, 0x14, 0x15, 0x16][rng.random_range(0..7)];
            decode_all(&b);
        }
    }
}

#[test]
fn mutated_vectors_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let seeds = seeds();
    assert!(!seeds.is_empty());
    for _ in 0..100_000 {
        let mut b = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..6) {
            match rng.random_range(0..4) {
                0 if !b.is_empty() => {
                    let i = rng.random_range(0..b.len());
                    b[i] = rng.random();
                }
                1 if !b.is_empty() => {
                    let n = rng.random_range(0..b.len());
                    b.truncate(n);
                }
                2 => {
                    let i = rng.random_range(0..=b.len());
                    b.insert(i, rng.random());
                }
                _ if !b.is_empty() => {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
                _ => {}
            }
        }
        decode_all(&b);
    }
}
