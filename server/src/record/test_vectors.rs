//! What the record module's unit tests share: a real SPS and PPS, Annex B framing, box decoding.

use mp4_atom::{Any, Decode};

/// A 320×240 High SPS (libx264's, as in `railcast_protocol::h264`'s tests) and a PPS.
pub const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03,
    0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
pub const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// NAL units as an Annex B access unit (4-byte start codes).
pub fn annex_b(units: &[&[u8]]) -> Vec<u8> {
    units.iter().flat_map(|u| [0, 0, 0, 1].iter().chain(u.iter()).copied()).collect()
}

/// Every top-level box of `bytes`.
pub fn boxes(mut bytes: &[u8]) -> Vec<Any> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(Any::decode(&mut bytes).expect("a box"));
    }
    out
}
