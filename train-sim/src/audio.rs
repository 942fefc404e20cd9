//! The cab microphone (`--audio tone`): a synthetic "ding-dong" chime, encoded to Opus, 48 kHz
//! mono, one packet per 20 ms (docs/wire-format.md §2.7).
//!
//! The signal is a pure function of the sample number ([`chime_sample`]), so tests can say what
//! any packet must sound like. Every two seconds an E5 (659 Hz) rings, then a C5 (523 Hz) half a
//! second later; each note has a 5 ms attack and an exponential decay and a weak octave above it
//! for a bell-like colour. The peak is about −10 dBFS, quiet enough never to clip after Opus.

use std::f64::consts::TAU;

/// Opus's rate, and the only one of wire format version 1.
pub const SAMPLE_RATE: u32 = 48_000;
/// One Opus packet every 20 ms: 50 packets per second.
pub const FRAME_MS: u32 = 20;
/// Samples per channel in one packet.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE / 1000 * FRAME_MS) as usize;
/// The microphone's id in the hello and the packets: cameras are 0 … M−1 and share its id space.
pub const AUDIO_ID: u16 = 256;
/// Opus target bitrate, bits/s: ≈ 80 bytes per packet.
pub const BITRATE_BPS: i32 = 32_000;
/// The largest Opus packet of one frame (RFC 6716 §3.4, R2).
pub const MAX_OPUS_PACKET: usize = 1275;

/// Chime period, seconds.
pub const CYCLE_S: f64 = 2.0;
/// The two notes: (onset within the cycle in seconds, frequency in Hz).
pub const NOTES: [(f64, f64); 2] = [(0.0, 659.255), (0.5, 523.251)];
const PEAK: f64 = 0.25;
const ATTACK_S: f64 = 0.005;
const DECAY_S: f64 = 0.35;
const OCTAVE: f64 = 0.2;

/// What `--audio` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AudioSource {
    /// No audio: the hello announces none and no audio packet is sent (as before audio existed).
    #[default]
    None,
    /// The chime, as the train's microphone.
    Tone,
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// Sample `n` (from the start of the stream) of the chime, in −1 … 1.
pub fn chime_sample(n: u64) -> f32 {
    let t = n as f64 / f64::from(SAMPLE_RATE);
    let in_cycle = t % CYCLE_S;
    let mut v = 0.0;
    for (onset, freq) in NOTES {
        // The note of this cycle, and the tail of the previous cycle's.
        for age in [in_cycle - onset, in_cycle - onset + CYCLE_S] {
            if age < 0.0 || t - age < 0.0 {
                continue;
            }
            let env = (age / ATTACK_S).min(1.0) * (-age / DECAY_S).exp();
            // The phase runs from the note's onset, so every ring starts at zero (no click).
            v += PEAK * env * ((TAU * freq * age).sin() + OCTAVE * (TAU * 2.0 * freq * age).sin());
        }
    }
    v as f32
}

/// The microphone: chime samples in, one Opus packet per 20 ms out.
pub struct Microphone {
    encoder: opus::Encoder,
    next_sample: u64,
    pcm: Vec<f32>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone").field("next_sample", &self.next_sample).finish_non_exhaustive()
    }
}

impl Microphone {
    /// `max_payload`: the packet payload limit; an Opus packet must fit one packet (§2.7).
    pub fn new(max_payload: usize) -> Result<Self, AudioError> {
        let mut encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(BITRATE_BPS))?;
        Ok(Self {
            encoder,
            next_sample: 0,
            pcm: vec![0.0; FRAME_SAMPLES],
            out: vec![0; max_payload.clamp(1, MAX_OPUS_PACKET)],
        })
    }

    /// The next 20 ms of the chime as one Opus packet.
    pub fn next_packet(&mut self) -> Result<Vec<u8>, AudioError> {
        for (i, s) in self.pcm.iter_mut().enumerate() {
            *s = chime_sample(self.next_sample + i as u64);
        }
        self.next_sample += FRAME_SAMPLES as u64;
        let n = self.encoder.encode_float(&self.pcm, &mut self.out)?;
        Ok(self.out[..n].to_vec())
    }
}

/// Power of `samples` at `freq` Hz (Goertzel), normalised by the length: for tests and checks.
pub fn tone_power(samples: &[f32], freq: f64) -> f64 {
    let w = TAU * freq / f64::from(SAMPLE_RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (samples.len() as f64).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(a: f64, b: f64) -> std::ops::Range<usize> {
        (a * f64::from(SAMPLE_RATE)) as usize..(b * f64::from(SAMPLE_RATE)) as usize
    }

    fn pcm(seconds: f64) -> Vec<f32> {
        (0..(seconds * f64::from(SAMPLE_RATE)) as u64).map(chime_sample).collect()
    }

    /// Which note dominates each window: the ding, then the dong, in every cycle.
    fn assert_ding_dong(signal: &[f32], what: &str) {
        let (ding, dong) = (NOTES[0].1, NOTES[1].1);
        for cycle in 0..2 {
            let at = cycle as f64 * CYCLE_S;
            let w = &signal[secs(at + 0.05, at + 0.3)];
            assert!(tone_power(w, ding) > 20.0 * tone_power(w, dong), "{what}: cycle {cycle}: the ding leads");
            let w = &signal[secs(at + 0.55, at + 0.8)];
            assert!(tone_power(w, dong) > 5.0 * tone_power(w, ding), "{what}: cycle {cycle}: then the dong");
            assert!(tone_power(w, dong) > 20.0 * tone_power(w, 1000.0), "{what}: cycle {cycle}: a tone, not noise");
        }
    }

    #[test]
    fn the_chime_rings_twice_per_cycle_at_a_sensible_level() {
        let s = pcm(4.0);
        let peak = s.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!((0.2..0.5).contains(&peak), "peak {peak}: about −10 dBFS, never clipping");
        assert_eq!(s[0], 0.0, "starts silent: no click");
        assert_ding_dong(&s, "pcm");
        // Periodic: the second cycle is the first one again plus the first cycle's faint tail.
        let n = secs(0.0, CYCLE_S).end;
        let diff = (0..n).map(|i| (s[i] - s[i + n]).abs()).fold(0.0f32, f32::max);
        assert!(diff < 0.01, "cycles differ by {diff}");
    }

    #[test]
    fn opus_round_trip_keeps_the_chime() {
        let mut mic = Microphone::new(1150).expect("encoder");
        let mut dec = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).expect("decoder");
        let mut decoded = Vec::new();
        let mut sizes = Vec::new();
        // Four seconds: 200 packets, 50 per second of audio.
        for _ in 0..200 {
            let p = mic.next_packet().expect("encode");
            assert!(!p.is_empty() && p.len() <= 1150);
            assert_eq!(dec.get_nb_samples(&p).expect("toc"), FRAME_SAMPLES, "20 ms per packet");
            sizes.push(p.len());
            let mut out = vec![0.0f32; FRAME_SAMPLES];
            let n = dec.decode_float(&p, &mut out, false).expect("decode");
            decoded.extend_from_slice(&out[..n]);
        }
        assert_eq!(decoded.len(), 4 * SAMPLE_RATE as usize);
        assert_ding_dong(&decoded, "after Opus");
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((40..=160).contains(&mean), "mean packet {mean} bytes at 32 kbit/s");
    }

    #[test]
    fn packets_fit_a_small_payload_limit() {
        let mut mic = Microphone::new(60).expect("encoder");
        for _ in 0..50 {
            assert!(mic.next_packet().expect("encode").len() <= 60);
        }
    }
}
