//! One track's recording (a camera or an audio source), sans-IO: frames in, file operations out.
//!
//! A segment opens at a keyframe (for audio, any packet: every Opus packet decodes on its own) and gathers samples into a part; a part is emitted whole
//! ([`Out::Create`] with the init segment for a segment's first, [`Out::Append`] after) once the
//! next frame shows it spans `part` of capture time, so a part on disk always ends at a frame
//! boundary with every duration known. A keyframe at least `segment` after the segment's start,
//! or with other parameter sets, closes it and opens the next (audio: any packet that far in). [`Segmenter::cut`] ends the
//! segment at once (a loss, the train going offline, shutdown): the part in progress is emitted,
//! and the next segment waits for a keyframe. Decode times come from the train's capture
//! timestamps, so a dropped frame leaves a gap in time rather than shifting what follows.

use std::time::{Duration, SystemTime};

use super::fmp4::{self, MuxError, Sample, Track, TIMESCALE};

/// What a track holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// H.264 (Annex B access units), 90 kHz.
    Video,
    /// Opus packets, 48 kHz, with this many channels (the hello's).
    Audio { channels: u8 },
}

impl Kind {
    fn timescale(self) -> u32 {
        match self {
            Self::Video => TIMESCALE,
            Self::Audio { .. } => fmp4::AUDIO_TIMESCALE,
        }
    }
}

/// A capture-time step outside (0, this] is not trusted (the train's clock jumped): the sample
/// gets the previous duration instead.
const MAX_STEP: Duration = Duration::from_secs(10);
/// The duration of a segment's last video sample when nothing came after it (and no earlier one
/// is known): one frame at 30 fps. An Opus packet's own duration is in its TOC byte.
const DEFAULT_TICKS: u32 = TIMESCALE / 30;
/// An Opus packet whose TOC does not tell: 20 ms, the simulator's.
const DEFAULT_AUDIO_TICKS: u32 = fmp4::AUDIO_TIMESCALE / 50;

/// A file operation for the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Create `name`.mp4 (the segment's UTC start) and write `bytes`: the init segment and the
    /// first part.
    Create { name: String, bytes: Vec<u8> },
    /// Append one part to the file last created.
    Append(Vec<u8>),
    /// The segment is complete: close the file.
    Close,
}

/// An H.264 access unit (Annex B) or an Opus packet from the train.
#[derive(Debug, Clone, Copy)]
pub struct FrameIn<'a> {
    pub capture_us: u64,
    pub keyframe: bool,
    pub data: &'a [u8],
}

#[derive(Debug)]
struct Open {
    name: String,
    track: Track,
    /// The init segment, until the first part goes out with it.
    init: Option<Vec<u8>>,
    /// The segment's wall-clock start.
    wall: SystemTime,
    /// Parts emitted (the next part's `mfhd` sequence number is this + 1).
    parts: u32,
    /// Samples of the part in progress, and the decode time of its first.
    pending: Vec<Sample>,
    part_start: u64,
    /// Decode time and capture time of the latest sample.
    last_dts: u64,
    last_capture_us: u64,
    last_ticks: u32,
    /// A capture time and its decode time: later ones count from it (so rounding never adds up),
    /// moved when the train's clock jumps.
    anchor_capture_us: u64,
    anchor_dts: u64,
}

/// One track's segments.
#[derive(Debug)]
pub struct Segmenter {
    kind: Kind,
    segment_ticks: u64,
    part_ticks: u64,
    open: Option<Open>,
}

/// `d` in ticks of `timescale`, rounded to the nearest.
fn ticks(d: Duration, timescale: u32) -> u64 {
    ((d.as_micros() as u64).saturating_mul(u64::from(timescale)) + 500_000) / 1_000_000
}

/// `20261202T064500.123Z`: a segment's UTC start, as its file name.
pub fn file_name(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl Segmenter {
    pub fn new(kind: Kind, segment: Duration, part: Duration) -> Self {
        let scale = kind.timescale();
        Self { kind, segment_ticks: ticks(segment, scale), part_ticks: ticks(part, scale).max(1), open: None }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The track of a segment opening with `frame` (a keyframe).
    fn track(&self, frame: &[u8]) -> Result<Track, MuxError> {
        match self.kind {
            Kind::Video => Track::from_keyframe(frame),
            Kind::Audio { channels } => Ok(Track::Opus { channels }),
        }
    }

    /// A frame as a sample's bytes.
    fn sample_data(&self, frame: &[u8]) -> Vec<u8> {
        match self.kind {
            Kind::Video => fmp4::length_prefixed(frame),
            Kind::Audio { .. } => frame.to_vec(),
        }
    }

    /// The duration a sample has of its own, when it says (an Opus packet's TOC).
    fn own_ticks(&self, frame: &[u8]) -> Option<u32> {
        match self.kind {
            Kind::Video => None,
            Kind::Audio { .. } => fmp4::opus_samples(frame),
        }
    }

    /// Whether a segment is open (frames are being recorded).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Take a frame received at `now`. Frames before a segment's first keyframe are skipped.
    pub fn push(&mut self, mut frame: FrameIn<'_>, now: SystemTime) -> Result<Vec<Out>, MuxError> {
        let mut out = Vec::new();
        if matches!(self.kind, Kind::Audio { .. }) {
            frame.keyframe = true;
        }
        let scale = self.kind.timescale();
        let own = self.own_ticks(frame.data);
        let data = self.sample_data(frame.data);
        let video = self.kind == Kind::Video;
        if let Some(open) = &mut self.open {
            let step = frame.capture_us.checked_sub(open.last_capture_us).map(Duration::from_micros);
            let dts = match step {
                Some(s) if !s.is_zero() && s <= MAX_STEP => {
                    let since = Duration::from_micros(frame.capture_us - open.anchor_capture_us);
                    (open.anchor_dts + ticks(since, scale)).max(open.last_dts + 1)
                }
                _ => {
                    let dts = open.last_dts + u64::from(open.last_ticks);
                    (open.anchor_capture_us, open.anchor_dts) = (frame.capture_us, dts);
                    dts
                }
            };
            let dur = u32::try_from(dts - open.last_dts).unwrap_or(u32::MAX);
            if let Some(last) = open.pending.last_mut() {
                last.duration = dur;
            }
            open.last_ticks = dur;
            let rollover = frame.keyframe
                && (dts >= self.segment_ticks
                    || (video && Track::from_keyframe(frame.data).is_ok_and(|t| t != open.track)));
            if rollover {
                out.extend(self.cut()?);
            } else {
                if dts - open.part_start >= self.part_ticks {
                    out.extend(Self::flush(open)?);
                    open.part_start = dts;
                }
                open.last_dts = dts;
                open.last_capture_us = frame.capture_us;
                open.pending.push(Sample { data, duration: own.unwrap_or(dur), sync: frame.keyframe });
                return Ok(out);
            }
        }
        if !frame.keyframe {
            return Ok(out);
        }
        let track = self.track(frame.data)?;
        let init = fmp4::init_segment(&track, now)?;
        let first = own.unwrap_or(if video { DEFAULT_TICKS } else { DEFAULT_AUDIO_TICKS });
        self.open = Some(Open {
            name: file_name(now),
            track,
            init: Some(init),
            wall: now,
            parts: 0,
            pending: vec![Sample { data, duration: first, sync: true }],
            part_start: 0,
            last_dts: 0,
            last_capture_us: frame.capture_us,
            last_ticks: first,
            anchor_capture_us: frame.capture_us,
            anchor_dts: 0,
        });
        Ok(out)
    }

    /// End the segment now: the part in progress (its last sample lasting as long as the one
    /// before), then [`Out::Close`]. Nothing when no segment is open.
    pub fn cut(&mut self) -> Result<Vec<Out>, MuxError> {
        let Some(mut open) = self.open.take() else { return Ok(Vec::new()) };
        let mut out = Self::flush(&mut open)?;
        if open.parts > 0 {
            out.push(Out::Close);
        }
        Ok(out)
    }

    /// Forget the open segment without emitting anything (its file already ends at a part
    /// boundary): the writer lost a part.
    pub fn abandon(&mut self) {
        self.open = None;
    }

    fn flush(open: &mut Open) -> Result<Vec<Out>, MuxError> {
        if open.pending.is_empty() {
            return Ok(Vec::new());
        }
        let offset = Duration::from_micros(open.part_start * 1_000_000 / u64::from(open.track.timescale()));
        let part = fmp4::fragment(open.parts + 1, open.part_start, open.wall + offset, &open.pending)?;
        open.pending.clear();
        open.parts += 1;
        Ok(vec![match open.init.take() {
            Some(mut init) => {
                init.extend_from_slice(&part);
                Out::Create { name: open.name.clone(), bytes: init }
            }
            None => Out::Append(part),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_vectors::{annex_b, PPS, SPS};
    use super::*;

    fn key() -> Vec<u8> {
        annex_b(&[SPS, PPS, &[0x65, 1, 2, 3]])
    }

    /// `n` frames at 10 fps (a keyframe every `gop`), through `s`; the operations.
    fn feed(s: &mut Segmenter, n: u64, gop: u64) -> Vec<Out> {
        let delta = [0, 0, 0, 1, 0x41, 9, 9];
        let key = key();
        let mut out = Vec::new();
        for i in 0..n {
            let keyframe = i % gop == 0;
            let frame =
                FrameIn { capture_us: 5_000_000 + i * 100_000, keyframe, data: if keyframe { &key } else { &delta } };
            out.extend(s.push(frame, SystemTime::UNIX_EPOCH + Duration::from_millis(i * 100)).expect("push"));
        }
        out
    }

    fn kinds(out: &[Out]) -> String {
        out.iter()
            .map(|o| match o {
                Out::Create { .. } => 'C',
                Out::Append(_) => 'A',
                Out::Close => 'X',
            })
            .collect()
    }

    #[test]
    fn parts_are_cut_by_capture_time_and_segments_at_keyframes() {
        // 1 s parts, 2 s segments, a keyframe every 1.5 s: frames 0..40 (4 s).
        let mut s = Segmenter::new(Kind::Video, Duration::from_secs(2), Duration::from_secs(1));
        let mut out = feed(&mut s, 40, 15);
        // Segment 1: frames 0..30 (the keyframe at 3.0 s is the first after 2 s): parts at 1 s
        // and 2 s, the rest at the cut. Segment 2 from frame 30: its first part still in progress.
        assert_eq!(kinds(&out), "CAAX");
        let Out::Create { name, .. } = &out[0] else { panic!("create") };
        assert_eq!(name, "19700101T000000.000Z");
        out = s.cut().expect("cut");
        assert_eq!(kinds(&out), "CX");
        let Out::Create { name, .. } = &out[0] else { panic!("create") };
        assert_eq!(name, "19700101T000003.000Z");
        assert!(!s.is_open());
    }

    /// The durations in the `trun` of a part.
    fn durations(part: &[u8]) -> Vec<u32> {
        use mp4_atom::{Any, Decode};
        let mut rest = part;
        while !rest.is_empty() {
            if let Any::Moof(moof) = Any::decode(&mut rest).expect("box") {
                return moof.traf[0].trun[0].samples.iter().map(|e| e.duration.expect("duration")).collect();
            }
        }
        panic!("no moof")
    }

    /// The sync flags in the `trun` of a part.
    fn sync_flags(part: &[u8]) -> Vec<bool> {
        use mp4_atom::{Any, Decode};
        let mut rest = part;
        while !rest.is_empty() {
            if let Any::Moof(moof) = Any::decode(&mut rest).expect("box") {
                return moof.traf[0].trun[0]
                    .samples
                    .iter()
                    .map(|e| e.flags.is_some_and(|f| f & 0x0001_0000 == 0))
                    .collect();
            }
        }
        panic!("no moof")
    }

    #[test]
    fn decode_times_follow_capture_times_without_drift_or_jumps() {
        // 15 fps (66,666.67 µs apart: 5,999.97 ticks, truncated 5,999): 30 frames are exactly 2 s,
        // so the keyframe of frame 30 starts the next 2 s segment.
        let mut s = Segmenter::new(Kind::Video, Duration::from_secs(2), Duration::from_secs(10));
        let (key, delta) = (key(), [0, 0, 0, 1, 0x41, 9]);
        let mut out = Vec::new();
        for i in 0..31u64 {
            let frame = FrameIn {
                capture_us: i * 1_000_000 / 15,
                keyframe: i % 15 == 0,
                data: if i % 15 == 0 { &key } else { &delta },
            };
            out.extend(s.push(frame, SystemTime::UNIX_EPOCH).expect("push"));
        }
        assert_eq!(kinds(&out), "CX", "rolled over at frame 30");
        let Out::Create { bytes, .. } = &out[0] else { panic!("create") };
        let d = durations(bytes);
        assert_eq!(d.len(), 30);
        assert_eq!(d.iter().map(|&t| u64::from(t)).sum::<u64>(), 180_000, "{d:?}");
        // The train's clock jumps back, then 20 s ahead: each such frame lasts as the one before.
        let mut s = Segmenter::new(Kind::Video, Duration::from_secs(60), Duration::from_secs(10));
        for capture_us in [10_000_000, 10_100_000, 5_000_000, 5_050_000, 25_050_000, 25_100_000] {
            let keyframe = capture_us == 10_000_000;
            let frame = FrameIn { capture_us, keyframe, data: if keyframe { &key } else { &delta } };
            assert!(s.push(frame, SystemTime::UNIX_EPOCH).expect("push").is_empty());
        }
        let out = s.cut().expect("cut");
        let Out::Create { bytes, .. } = &out[0] else { panic!("create") };
        assert_eq!(durations(bytes), [9000, 9000, 4500, 4500, 4500, 4500]);
    }

    #[test]
    fn nothing_is_recorded_before_a_keyframe() {
        let mut s = Segmenter::new(Kind::Video, Duration::from_secs(60), Duration::from_secs(1));
        let delta = [0, 0, 0, 1, 0x41, 9];
        let out =
            s.push(FrameIn { capture_us: 1, keyframe: false, data: &delta }, SystemTime::UNIX_EPOCH).expect("push");
        assert!(out.is_empty() && !s.is_open());
        assert!(s.cut().expect("cut").is_empty());
        // A segment cut before its first part was due still goes out whole, then closes.
        let key = key();
        s.push(FrameIn { capture_us: 1, keyframe: true, data: &key }, SystemTime::UNIX_EPOCH).expect("push");
        assert_eq!(kinds(&s.cut().expect("cut")), "CX");
    }

    #[test]
    fn audio_segments_cut_at_any_packet_and_every_sample_is_sync() {
        // 20 ms Opus packets (TOC 0xf8: CELT 20 ms), 1 s segments, 500 ms parts, 2.5 s of audio;
        // the train flags them keyframes, but the segmenter does not rely on it.
        let mut s = Segmenter::new(Kind::Audio { channels: 1 }, Duration::from_secs(1), Duration::from_millis(500));
        let mut out = Vec::new();
        for i in 0..125u64 {
            let frame = FrameIn { capture_us: 7_000_000 + i * 20_000, keyframe: false, data: &[0xf8, 1, 2] };
            out.extend(s.push(frame, SystemTime::UNIX_EPOCH + Duration::from_millis(i * 20)).expect("push"));
        }
        out.extend(s.cut().expect("cut"));
        assert_eq!(kinds(&out), "CAXCAXCX", "packets 0..50, 50..100, 100..125");
        let names: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Out::Create { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["19700101T000000.000Z", "19700101T000001.000Z", "19700101T000002.000Z"]);
        let Out::Create { bytes, .. } = &out[0] else { panic!("create") };
        assert_eq!(durations(bytes), [960; 25], "the first part: 500 ms at 48 kHz");
        let sync = sync_flags(bytes);
        assert!(sync.len() == 25 && sync.iter().all(|&k| k), "every Opus packet is a sync sample");
        // The last packet of a segment lasts what its TOC says.
        let Out::Create { bytes, .. } = &out[6] else { panic!("create") };
        assert_eq!(durations(bytes), [960; 25]);
    }
}
