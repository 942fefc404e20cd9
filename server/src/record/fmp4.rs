//! Fragmented MP4 for one track of a train, sans-IO: bytes in, bytes out, boxes by `mp4-atom`.
//!
//! A segment file is an init segment ([`init_segment`]: `ftyp` + `moov` with one track) followed
//! by fragments ([`fragment`]: `prft` + `moof` + `mdat`). The track ([`Track`]) is either
//! - a camera: `avc1` at 90 kHz ([`TIMESCALE`]), whose `avcC` holds the first keyframe's SPS and
//!   PPS; samples are the train's access units with each Annex B start code replaced by a 4-byte
//!   length ([`length_prefixed`]); parameter sets stay in the keyframes, so every sample decodes
//!   on its own terms and the bytes match the train's frame one for one; or
//! - an audio source: `Opus` with `dOps` at 48 kHz ([`AUDIO_TIMESCALE`]); each sample is one Opus
//!   packet exactly as the train sent it, and every sample is a sync sample.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mp4_atom::{
    Audio, Avc1, Avcc, Codec, Dinf, Dops, Dref, Encode, FourCC, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Mfhd, Minf, Moof, Moov,
    Mvex, Mvhd, Prft, ReferenceTime, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, Url,
    Visual, Vmhd,
};
use railcast_protocol::h264::{self, NAL_PPS, NAL_SPS};

/// Video's media timescale: 90 kHz, as RTP video.
pub const TIMESCALE: u32 = 90_000;
/// Audio's media timescale: 48 kHz, Opus's own rate (and the only one of the wire format).
pub const AUDIO_TIMESCALE: u32 = 48_000;
/// The one track's id.
const TRACK: u32 = 1;
/// `sample_depends_on = 2` (an I picture): a sync sample.
const SYNC: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample`.
const NON_SYNC: u32 = 0x0101_0000;
/// Seconds from 1904-01-01 (MP4) and from 1900-01-01 (NTP) to the Unix epoch.
const MP4_EPOCH: u64 = 2_082_844_800;
const NTP_EPOCH: u64 = 2_208_988_800;

/// Why a track's frames cannot be muxed.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("the keyframe has no SPS and PPS")]
    NoParameterSets,
    #[error("the SPS gives no picture size")]
    BadSps,
    #[error("encoding a box: {0}")]
    Encode(#[from] mp4_atom::Error),
}

/// The codec configuration of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Track {
    /// H.264 from a keyframe ([`Track::from_keyframe`]).
    Avc(Avc),
    /// Opus (RFC 6716), 48 kHz.
    Opus { channels: u8 },
}

/// An H.264 track's parameter sets and picture size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avc {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub width: u16,
    pub height: u16,
}

impl Track {
    /// The first SPS and PPS of an Annex B keyframe, and the picture size the SPS gives.
    pub fn from_keyframe(access_unit: &[u8]) -> Result<Self, MuxError> {
        let units = h264::nal_units(access_unit);
        let find = |t| units.iter().find(|n| n.nal_type() == t).map(|n| n.payload.to_vec());
        let (Some(sps), Some(pps)) = (find(NAL_SPS), find(NAL_PPS)) else { return Err(MuxError::NoParameterSets) };
        let (w, h) = h264::sps_dimensions(&sps).ok_or(MuxError::BadSps)?;
        let (width, height) =
            (u16::try_from(w).map_err(|_| MuxError::BadSps)?, u16::try_from(h).map_err(|_| MuxError::BadSps)?);
        Ok(Self::Avc(Avc { sps, pps, width, height }))
    }

    /// The media timescale: [`TIMESCALE`] for video, [`AUDIO_TIMESCALE`] for audio.
    pub fn timescale(&self) -> u32 {
        match self {
            Self::Avc(_) => TIMESCALE,
            Self::Opus { .. } => AUDIO_TIMESCALE,
        }
    }
}

/// The duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1); `None`
/// for an empty or malformed packet.
pub fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = u32::from(toc >> 3);
    // Per frame, in 48 kHz samples: SILK 10/20/40/60 ms, hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = frame * frames;
    // At most 120 ms per packet (§3.2.5).
    (frames > 0 && total <= 5760).then_some(total)
}

/// One sample of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Length-prefixed NAL units ([`length_prefixed`]), or one Opus packet.
    pub data: Vec<u8>,
    /// In the track's timescale.
    pub duration: u32,
    pub sync: bool,
}

/// An Annex B access unit as MP4 stores it: each NAL unit preceded by its length (4 bytes, big
/// endian) instead of a start code.
pub fn length_prefixed(access_unit: &[u8]) -> Vec<u8> {
    let units = h264::nal_units(access_unit);
    let mut out = Vec::with_capacity(access_unit.len() + 4);
    for n in units.iter().filter(|n| !n.payload.is_empty()) {
        out.extend_from_slice(&(n.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(n.payload);
    }
    out
}

fn seconds_since(t: SystemTime, epoch_offset: u64) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() + epoch_offset
}

/// NTP timestamp (32.32 fixed point from 1900) of `t`.
pub fn ntp(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    // Rounded up, so that reading it back (rounding down) gives the same nanosecond.
    let frac = (u64::from(since.subsec_nanos()) << 32).div_ceil(1_000_000_000);
    ((since.as_secs() + NTP_EPOCH) << 32) | frac
}

/// The wall-clock time of an NTP timestamp.
pub fn from_ntp(ntp: u64) -> SystemTime {
    let secs = (ntp >> 32).saturating_sub(NTP_EPOCH);
    let nanos = ((ntp & 0xFFFF_FFFF) * 1_000_000_000) >> 32;
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos)
}

/// `ftyp` + `moov`: one track, fragmented (`mvex`), created at `start` (`mvhd`/`tkhd`/`mdhd`
/// creation time, whole seconds; the fragments' `prft` has the exact time).
pub fn init_segment(track: &Track, start: SystemTime) -> Result<Vec<u8>, MuxError> {
    let created = seconds_since(start, MP4_EPOCH);
    let mut brands = vec![FourCC::new(b"iso6"), FourCC::new(b"isom"), FourCC::new(b"mp41")];
    let (codec, handler, name, (width, height), mut minf): (Codec, _, _, _, Minf) = match track {
        Track::Avc(avc) => {
            brands.insert(2, FourCC::new(b"avc1"));
            let codec = Avc1 {
                visual: Visual { width: avc.width, height: avc.height, ..Default::default() },
                avcc: Avcc::new(&avc.sps, &avc.pps)?,
                ..Default::default()
            }
            .into();
            let minf = Minf { vmhd: Some(Vmhd::default()), ..Default::default() };
            (codec, b"vide", "railcast video", (avc.width, avc.height), minf)
        }
        Track::Opus { channels } => {
            let codec = mp4_atom::Opus {
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: u16::from(*channels),
                    sample_size: 16,
                    sample_rate: (AUDIO_TIMESCALE as u16).into(),
                },
                // No pre-skip: a segment starts mid-stream, and media time must stay wall time.
                dops: Dops {
                    output_channel_count: *channels,
                    pre_skip: 0,
                    input_sample_rate: AUDIO_TIMESCALE,
                    output_gain: 0,
                    channel_mapping: None,
                },
                btrt: None,
            }
            .into();
            let minf = Minf { smhd: Some(Smhd::default()), ..Default::default() };
            (codec, b"soun", "railcast audio", (0, 0), minf)
        }
    };
    minf.dinf = Dinf { dref: Dref { entries: vec![Url::default().into()] } };
    minf.stbl = Stbl { stsd: Stsd { codecs: vec![codec] }, stco: Some(Stco::default()), ..Default::default() };
    let ftyp = Ftyp { major_brand: FourCC::new(b"iso6"), minor_version: 0, compatible_brands: brands };
    let moov = Moov {
        mvhd: Mvhd {
            creation_time: created,
            modification_time: created,
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: TRACK + 1,
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: vec![Trex { track_id: TRACK, default_sample_description_index: 1, ..Default::default() }],
        }),
        trak: vec![Trak {
            tkhd: Tkhd {
                creation_time: created,
                modification_time: created,
                track_id: TRACK,
                enabled: true,
                in_movie: true,
                volume: if matches!(track, Track::Opus { .. }) { 1.into() } else { 0.into() },
                width: width.into(),
                height: height.into(),
                ..Default::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    creation_time: created,
                    modification_time: created,
                    timescale: track.timescale(),
                    duration: 0,
                    language: "und".into(),
                },
                hdlr: Hdlr { handler: FourCC::new(handler), name: name.into() },
                minf,
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out)
}

/// One fragment: `prft` (the wall-clock time `wall` of its first sample), `moof` (sequence number
/// `seq`, decode time `decode_time` in the track's timescale, each sample's size, duration and
/// sync flag) and `mdat` (the samples).
pub fn fragment(seq: u32, decode_time: u64, wall: SystemTime, samples: &[Sample]) -> Result<Vec<u8>, MuxError> {
    let prft = Prft {
        reference_track_id: TRACK,
        ntp_timestamp: ntp(wall),
        media_time: decode_time,
        utc_time_semantics: ReferenceTime::Input,
    };
    let runs: Vec<Run> =
        samples.iter().map(|s| Run { duration: s.duration, size: s.data.len() as u32, sync: s.sync }).collect();
    let head = moof(seq, TRACK, decode_time, &runs)?;
    let data: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = Vec::with_capacity(head.len() + data + 64);
    prft.encode(&mut out)?;
    out.extend_from_slice(&head);
    for s in samples {
        out.extend_from_slice(&s.data);
    }
    Ok(out)
}

/// What a `trun` says of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub duration: u32,
    pub size: u32,
    pub sync: bool,
}

/// A fragment's `moof` (sequence number `seq`, `track`, decode time `decode_time`, one `trun`
/// entry per sample) and the header of the `mdat` that must follow it with the samples' bytes,
/// in order: the `trun`'s data offset points past that header.
pub fn moof(seq: u32, track: u32, decode_time: u64, samples: &[Run]) -> Result<Vec<u8>, MuxError> {
    let entries: Vec<TrunEntry> = samples
        .iter()
        .map(|s| TrunEntry {
            duration: Some(s.duration),
            size: Some(s.size),
            flags: Some(if s.sync { SYNC } else { NON_SYNC }),
            cts: None,
        })
        .collect();
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number: seq },
        traf: vec![Traf {
            tfhd: Tfhd { track_id: track, default_base_is_moof: true, ..Default::default() },
            tfdt: Some(Tfdt { base_media_decode_time: decode_time }),
            trun: vec![Trun { data_offset: Some(0), samples: entries.into() }],
            ..Default::default()
        }],
    };
    // The data offset counts from the moof's first byte to the first sample, past mdat's header.
    let mut sized = Vec::new();
    moof.encode(&mut sized)?;
    moof.traf[0].trun[0].data_offset = Some(sized.len() as i32 + 8);
    let data: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    let mut out = Vec::with_capacity(sized.len() + 16);
    moof.encode(&mut out)?;
    mp4_atom::Header { kind: <Mdat as mp4_atom::Atom>::KIND, size: Some(data as usize) }.encode(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_vectors::{annex_b, boxes as decode_all, PPS, SPS};
    use super::*;
    use mp4_atom::{Any, TrunSamples};

    #[test]
    fn length_prefixes_replace_start_codes() {
        let au = [&[0, 0, 0, 1, 0x67, 1, 2][..], &[0, 0, 1, 0x65, 9][..]].concat();
        assert_eq!(length_prefixed(&au), vec![0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x65, 9]);
    }

    #[test]
    fn the_init_segment_decodes_to_one_avc1_track() {
        let key = annex_b(&[SPS, PPS, &[0x65, 0x88, 0x84]]);
        let track = Track::from_keyframe(&key).expect("track");
        let Track::Avc(avc) = &track else { panic!("avc") };
        assert_eq!((avc.width, avc.height), (320, 240));
        let start = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let boxes = decode_all(&init_segment(&track, start).expect("init"));
        let [Any::Ftyp(_), Any::Moov(moov)] = boxes.as_slice() else { panic!("ftyp + moov: {boxes:?}") };
        assert_eq!(moov.mvhd.creation_time, 1_796_000_000 + MP4_EPOCH);
        assert_eq!(moov.mvex.as_ref().expect("mvex").trex[0].track_id, TRACK);
        let trak = &moov.trak[0];
        assert_eq!(trak.mdia.mdhd.timescale, TIMESCALE);
        let mp4_atom::Codec::Avc1(avc1) = &trak.mdia.minf.stbl.stsd.codecs[0] else { panic!("avc1") };
        assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
        assert_eq!(avc1.avcc.sequence_parameter_sets, vec![SPS.to_vec()]);
        assert_eq!(avc1.avcc.picture_parameter_sets, vec![PPS.to_vec()]);
        assert!(Track::from_keyframe(&annex_b(&[&[0x65, 1]])).is_err(), "no parameter sets");
    }

    #[test]
    fn the_opus_init_segment_decodes_to_one_audio_track_with_dops() {
        let start = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let boxes = decode_all(&init_segment(&Track::Opus { channels: 2 }, start).expect("init"));
        let [Any::Ftyp(ftyp), Any::Moov(moov)] = boxes.as_slice() else { panic!("ftyp + moov: {boxes:?}") };
        assert!(!ftyp.compatible_brands.contains(&FourCC::new(b"avc1")));
        let trak = &moov.trak[0];
        assert_eq!(trak.mdia.mdhd.timescale, AUDIO_TIMESCALE);
        assert_eq!(trak.mdia.hdlr.handler, FourCC::new(b"soun"));
        assert!(trak.mdia.minf.smhd.is_some() && trak.mdia.minf.vmhd.is_none());
        let mp4_atom::Codec::Opus(opus) = &trak.mdia.minf.stbl.stsd.codecs[0] else { panic!("Opus") };
        assert_eq!(opus.audio.channel_count, 2);
        assert_eq!(opus.audio.sample_rate.integer(), 48_000);
        let d = &opus.dops;
        assert_eq!((d.output_channel_count, d.pre_skip, d.input_sample_rate, d.output_gain), (2, 0, 48_000, 0));
        assert_eq!(d.channel_mapping, None, "family 0: mono or stereo");
    }

    #[test]
    fn a_fragment_of_opus_packets_keeps_them_whole_and_sync() {
        let samples: Vec<_> =
            (0..3u8).map(|i| Sample { data: vec![0xfc, i, i, i], duration: 960, sync: true }).collect();
        let bytes = fragment(1, 48_000, UNIX_EPOCH, &samples).expect("fragment");
        let boxes = decode_all(&bytes);
        let [Any::Prft(prft), Any::Moof(moof), Any::Mdat(mdat)] = boxes.as_slice() else { panic!("{boxes:?}") };
        assert_eq!(prft.media_time, 48_000);
        let TrunSamples::Explicit(entries) = &moof.traf[0].trun[0].samples else { panic!("explicit samples") };
        assert!(entries.iter().all(|e| e.duration == Some(960) && e.size == Some(4) && e.flags == Some(SYNC)));
        assert_eq!(mdat.data, samples.iter().flat_map(|s| s.data.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn opus_packet_durations_come_from_the_toc() {
        // config 31 (CELT FB 20 ms), code 0: one frame; the simulator's packets.
        assert_eq!(opus_samples(&[0xf8, 1]), Some(960));
        assert_eq!(opus_samples(&[0xf9]), Some(1920), "code 1: two frames");
        assert_eq!(opus_samples(&[0x08]), Some(960), "SILK NB 20 ms");
        assert_eq!(opus_samples(&[0x18]), Some(2880), "SILK NB 60 ms");
        assert_eq!(opus_samples(&[0x63, 0x03]), Some(1440), "hybrid 10 ms, code 3: three frames");
        assert_eq!(opus_samples(&[0x1b, 0x03]), None, "3 × 60 ms: longer than 120 ms");
        assert_eq!(opus_samples(&[0xfb]), None, "code 3 without its frame count");
        assert_eq!(opus_samples(&[]), None);
    }

    #[test]
    fn a_fragment_decodes_to_its_samples() {
        let samples = vec![
            Sample { data: length_prefixed(&annex_b(&[SPS, PPS, &[0x65, 1, 2, 3]])), duration: 3000, sync: true },
            Sample { data: length_prefixed(&annex_b(&[&[0x41, 4, 5]])), duration: 3003, sync: false },
        ];
        let wall = UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let bytes = fragment(7, 90_000, wall, &samples).expect("fragment");
        let boxes = decode_all(&bytes);
        let [Any::Prft(prft), Any::Moof(moof), Any::Mdat(mdat)] = boxes.as_slice() else { panic!("{boxes:?}") };
        let since = from_ntp(prft.ntp_timestamp).duration_since(UNIX_EPOCH).expect("after 1970");
        assert_eq!(since.as_millis(), 1_796_000_000_123);
        assert_eq!(prft.media_time, 90_000);
        assert_eq!(moof.mfhd.sequence_number, 7);
        let traf = &moof.traf[0];
        assert_eq!(traf.tfdt.as_ref().expect("tfdt").base_media_decode_time, 90_000);
        let trun = &traf.trun[0];
        let TrunSamples::Explicit(entries) = &trun.samples else { panic!("explicit samples") };
        let got: Vec<_> = entries.iter().map(|e| (e.size, e.duration, e.flags)).collect();
        let want: Vec<_> = samples
            .iter()
            .map(|s| (Some(s.data.len() as u32), Some(s.duration), Some(if s.sync { SYNC } else { NON_SYNC })))
            .collect();
        assert_eq!(got, want);
        // The data offset points at the first sample: just past mdat's 8-byte header.
        let moof_at = bytes.len() - mdat.data.len() - 8 - moof_len(&bytes);
        let first = moof_at + trun.data_offset.expect("offset") as usize;
        assert_eq!(&bytes[first..first + samples[0].data.len()], samples[0].data.as_slice());
        assert_eq!(mdat.data, [samples[0].data.clone(), samples[1].data.clone()].concat());
    }

    /// The size of the `moof` box in `bytes` (after a `prft`).
    fn moof_len(bytes: &[u8]) -> usize {
        let prft = u32::from_be_bytes(bytes[0..4].try_into().expect("4")) as usize;
        u32::from_be_bytes(bytes[prft..prft + 4].try_into().expect("4")) as usize
    }
}
