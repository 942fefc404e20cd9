//! A reading of the host's speed, taken on the tool's CPU before the scenarios, so that figures
//! from different days can be compared: the same build's cost per client moved by 1.3–1.9×
//! between hosts of one kind (docs/benchmarks-history.md, sessions 16 and 27), and CPU time is
//! the only cost measure where hardware counters are not available. Two costs dominate every
//! fan-out's per-client work: sealing a packet with AES-128-GCM (QUIC and SRTP both use ring's)
//! and a UDP datagram's way through the kernel over loopback.

use std::net::UdpSocket;
use std::time::Instant;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use serde::Serialize;

/// The size of a video datagram (a frame's packets are ≈ 1,111 bytes plus headers).
const MESSAGE: usize = 1_200;
/// Rounds of each measure; the median is reported.
const ROUNDS: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct HostProbe {
    /// AES-128-GCM sealing 1,200-byte messages in place (ring), MB/s.
    pub aes_gcm_mb_s: f64,
    /// A 1,200-byte UDP datagram sent and then received over loopback by one thread, µs.
    pub udp_loopback_us: f64,
}

impl HostProbe {
    /// About 0.4 s on a 2-core VM (5 rounds of 20,000 datagrams at ≈ 4 µs). `None` when
    /// loopback UDP cannot be used.
    pub fn take(messages: usize) -> Option<Self> {
        let aes = median((0..ROUNDS).map(|_| aes_gcm_mb_s(messages)).collect());
        let udp = median((0..ROUNDS).map(|_| udp_loopback_us(messages)).collect::<Option<Vec<_>>>()?);
        Some(Self { aes_gcm_mb_s: aes, udp_loopback_us: udp })
    }
}

fn aes_gcm_mb_s(messages: usize) -> f64 {
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).expect("a 16-byte key"));
    let mut buf = vec![0x5a_u8; MESSAGE];
    let started = Instant::now();
    for i in 0..messages {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        let (header, payload) = buf.split_at_mut(16);
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&*header), payload)
            .expect("sealed");
        header[0] ^= tag.as_ref()[0];
    }
    std::hint::black_box(&buf);
    (messages * MESSAGE) as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn udp_loopback_us(messages: usize) -> Option<f64> {
    let rx = UdpSocket::bind("127.0.0.1:0").ok()?;
    let tx = UdpSocket::bind("127.0.0.1:0").ok()?;
    tx.connect(rx.local_addr().ok()?).ok()?;
    rx.set_read_timeout(Some(std::time::Duration::from_secs(1))).ok()?;
    let out = [0xa5_u8; MESSAGE];
    let mut into = [0u8; 2 * MESSAGE];
    let started = Instant::now();
    for _ in 0..messages {
        tx.send(&out).ok()?;
        if rx.recv(&mut into).ok()? != MESSAGE {
            return None;
        }
    }
    Some(started.elapsed().as_secs_f64() * 1e6 / messages as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_positive_finite_costs() {
        let p = HostProbe::take(200).expect("loopback UDP");
        assert!(p.aes_gcm_mb_s.is_finite() && p.aes_gcm_mb_s > 0.0, "{p:?}");
        assert!(p.udp_loopback_us.is_finite() && p.udp_loopback_us > 0.0, "{p:?}");
    }
}
