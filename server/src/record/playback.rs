//! Reading recordings back: index the segment files the recorder wrote, list the recorded spans,
//! and plan a time range as one MP4 (progressive, `moov` first) or as fragmented MP4.
//!
//! A response is a list of [`Piece`]s: bytes made here (the boxes) and extents of the segment
//! files (the samples, never copied into memory), so a long range costs its box tables only and
//! any byte range of it can be served ([`Pieces::slice`]). The boxes are `mp4-atom`'s.
//!
//! Times: a segment's samples have decode times from 0; its first fragment's `prft` gives the
//! wall-clock time of one decode time, which places every sample in wall-clock time. A range's
//! media time t is wall time `base + t` throughout, holes included (the sample before a hole lasts
//! until the next one), and an edit list starts the presentation at the requested time.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mp4_atom::{
    Atom, Co64, Edts, Elst, ElstEntry, Encode, FourCC, Ftyp, Header, Mdat, Moof, Moov, ReadAtom, ReadFrom, Stco, Stsc,
    StscEntry, Stss, Stsz, StszSamples, Stts, SttsEntry,
};

use super::fmp4::{from_ntp, moof, Run};

/// `sample_is_non_sync_sample`.
const NON_SYNC_BIT: u32 = 0x0001_0000;
/// Movie timescale of the files made here (ms).
const MOVIE_TIMESCALE: u32 = 1000;
/// Longest range one request may ask for.
pub const MAX_RANGE: Duration = Duration::from_secs(600);
/// Segments further apart than this are separate spans.
pub const SPAN_HOLE: Duration = Duration::from_secs(1);
/// Largest box (other than `mdat`) read from a segment file.
const MAX_BOX: usize = 64 << 20;

/// Why a file or a range cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PlaybackError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a recording: {why}")]
    Format { path: PathBuf, why: String },
    #[error("nothing recorded in that range")]
    Empty,
    #[error("encoding a box: {0}")]
    Encode(#[from] mp4_atom::Error),
    #[error(transparent)]
    Mux(#[from] super::fmp4::MuxError),
}

/// One sample of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in the track's timescale, from the segment's start.
    pub dts: u64,
    pub duration: u32,
    pub size: u32,
    pub sync: bool,
    /// Where its bytes start in the file.
    pub offset: u64,
}

/// A segment file, indexed: its track, where it sits in wall-clock time, its samples.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    /// The file's length when it was indexed (a segment being written grows).
    pub len: u64,
    pub moov: Moov,
    pub timescale: u32,
    /// The wall-clock time of decode time 0.
    pub wall0: SystemTime,
    pub samples: Vec<Sample>,
}

impl Segment {
    /// The wall-clock time of decode time `dts`.
    pub fn wall(&self, dts: u64) -> SystemTime {
        self.wall0 + ticks_to_duration(dts, self.timescale)
    }

    pub fn start(&self) -> SystemTime {
        self.wall(self.samples.first().map_or(0, |s| s.dts))
    }

    pub fn end(&self) -> SystemTime {
        self.wall(self.samples.last().map_or(0, |s| s.dts + u64::from(s.duration)))
    }

    /// `"video"` or `"audio"`, from the track's handler.
    pub fn kind(&self) -> &'static str {
        match self.moov.trak.first().map(|t| t.mdia.hdlr.handler) {
            Some(h) if h == FourCC::new(b"soun") => "audio",
            _ => "video",
        }
    }
}

fn ticks_to_duration(ticks: u64, timescale: u32) -> Duration {
    let ts = u64::from(timescale.max(1));
    Duration::from_secs(ticks / ts) + Duration::from_nanos((ticks % ts) * 1_000_000_000 / ts)
}

/// Signed `(a - b)` in ticks of `timescale`, rounded to the nearest.
fn ticks_between(a: SystemTime, b: SystemTime, timescale: u32) -> i64 {
    let (d, sign) = match a.duration_since(b) {
        Ok(d) => (d, 1),
        Err(e) => (e.duration(), -1),
    };
    let t = (d.as_nanos() * u128::from(timescale) + 500_000_000) / 1_000_000_000;
    sign * i64::try_from(t).unwrap_or(i64::MAX)
}

/// Index a segment file: its `moov`, and every fragment whose `mdat` is complete (a file being
/// written may end in the middle of one).
pub fn index(path: &Path) -> Result<Segment, PlaybackError> {
    let io = |error| PlaybackError::Io { path: path.to_owned(), error };
    let bad = |why: String| PlaybackError::Format { path: path.to_owned(), why };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut r = BufReader::new(file);
    let mut pos = 0u64;
    let mut moov: Option<Moov> = None;
    let mut wall0: Option<SystemTime> = None;
    let mut samples = Vec::new();
    while pos + 8 <= len {
        let header = match <Option<Header>>::read_from(&mut r) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("box header at {pos}: {e}"))),
        };
        let header_len = if header.size.is_some_and(|s| s + 8 > u32::MAX as usize) { 16 } else { 8 };
        let body = header.size.map_or(len - pos - header_len, |s| s as u64);
        let end = pos + header_len + body;
        if end > len {
            break; // A box still being written.
        }
        let kind = header.kind;
        if kind == Moov::KIND || kind == Moof::KIND || kind == mp4_atom::Prft::KIND {
            if body as usize > MAX_BOX {
                return Err(bad(format!("a {kind} box of {body} bytes")));
            }
            let mut bytes = Vec::new();
            (&mut r).take(body).read_to_end(&mut bytes).map_err(io)?;
            let atom = |e: mp4_atom::Error| bad(format!("{kind} at {pos}: {e}"));
            if kind == Moov::KIND {
                moov = Some(Moov::read_atom(&header, &mut bytes.as_slice()).map_err(atom)?);
            } else if kind == mp4_atom::Prft::KIND {
                let prft = mp4_atom::Prft::read_atom(&header, &mut bytes.as_slice()).map_err(atom)?;
                if wall0.is_none() {
                    let ts = timescale(moov.as_ref()).ok_or_else(|| bad("prft before moov".into()))?;
                    wall0 = Some(
                        from_ntp(prft.ntp_timestamp)
                            .checked_sub(ticks_to_duration(prft.media_time, ts))
                            .unwrap_or(SystemTime::UNIX_EPOCH),
                    );
                }
            } else {
                let moof = Moof::read_atom(&header, &mut bytes.as_slice()).map_err(atom)?;
                if !fragment_samples(&moof, pos, len, &mut samples) {
                    break; // Its mdat is not all there yet.
                }
            }
        } else {
            r.seek(SeekFrom::Start(end)).map_err(io)?;
        }
        pos = end;
    }
    let moov = moov.ok_or_else(|| bad("no moov".into()))?;
    let timescale = timescale(Some(&moov)).ok_or_else(|| bad("no track".into()))?;
    let wall0 = wall0.ok_or_else(|| bad("no prft".into()))?;
    Ok(Segment { path: path.to_owned(), len, moov, timescale, wall0, samples })
}

fn timescale(moov: Option<&Moov>) -> Option<u32> {
    moov?.trak.first().map(|t| t.mdia.mdhd.timescale).filter(|t| *t > 0)
}

/// Append the samples of `moof` (at `moof_at`); false when they reach past `len`.
fn fragment_samples(moof: &Moof, moof_at: u64, len: u64, out: &mut Vec<Sample>) -> bool {
    let Some(traf) = moof.traf.first() else { return true };
    let mut dts = traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time);
    let default_duration = traf.tfhd.default_sample_duration.unwrap_or(0);
    let default_size = traf.tfhd.default_sample_size.unwrap_or(0);
    let default_flags = traf.tfhd.default_sample_flags.unwrap_or(0);
    let mut added = Vec::new();
    for trun in &traf.trun {
        let mut offset = moof_at.saturating_add_signed(i64::from(trun.data_offset.unwrap_or(0)));
        for e in trun.samples.iter() {
            let size = e.size.unwrap_or(default_size);
            let duration = e.duration.unwrap_or(default_duration);
            let flags = e.flags.unwrap_or(default_flags);
            added.push(Sample { dts, duration, size, sync: flags & NON_SYNC_BIT == 0, offset });
            dts += u64::from(duration);
            offset += u64::from(size);
            if offset > len {
                return false;
            }
        }
    }
    out.append(&mut added);
    true
}

/// A recorded span of one source: segments with holes of at most [`SPAN_HOLE`] between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: SystemTime,
    pub end: SystemTime,
    pub segments: usize,
}

/// The spans of a source's segments (sorted by start).
pub fn spans(segments: &[Arc<Segment>]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in segments.iter().filter(|s| !s.samples.is_empty()) {
        let (start, end) = (s.start(), s.end());
        match out.last_mut() {
            Some(last) if start.duration_since(last.end).unwrap_or(Duration::ZERO) <= SPAN_HOLE => {
                last.end = last.end.max(end);
                last.segments += 1;
            }
            _ => out.push(Span { start, end, segments: 1 }),
        }
    }
    out
}

/// A part of a response: bytes made here, or an extent of a segment file.
#[derive(Debug, Clone)]
pub enum Piece {
    Bytes(bytes::Bytes),
    File { path: Arc<PathBuf>, offset: u64, len: u64 },
}

impl Piece {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

/// A response's pieces.
#[derive(Debug, Clone, Default)]
pub struct Pieces(pub Vec<Piece>);

impl Pieces {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Piece::is_empty)
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(Piece::len).sum()
    }

    fn bytes(&mut self, b: Vec<u8>) {
        self.0.push(Piece::Bytes(b.into()));
    }

    /// Add a file extent, merged with the previous one when it continues it.
    fn file(&mut self, path: &Arc<PathBuf>, offset: u64, len: u64) {
        if let Some(Piece::File { path: p, offset: o, len: l }) = self.0.last_mut() {
            if Arc::ptr_eq(p, path) && *o + *l == offset {
                *l += len;
                return;
            }
        }
        self.0.push(Piece::File { path: Arc::clone(path), offset, len });
    }

    /// The pieces covering bytes `first..=last` of the whole.
    pub fn slice(&self, first: u64, last: u64) -> Pieces {
        let mut out = Vec::new();
        let mut at = 0u64;
        for p in &self.0 {
            let (from, to) = (at, at + p.len()); // [from, to)
            at = to;
            if to <= first || from > last {
                continue;
            }
            let skip = first.saturating_sub(from);
            let take = (last + 1).min(to) - from - skip;
            out.push(match p {
                Piece::Bytes(b) => Piece::Bytes(b.slice(skip as usize..(skip + take) as usize)),
                Piece::File { path, offset, .. } => {
                    Piece::File { path: Arc::clone(path), offset: offset + skip, len: take }
                }
            });
        }
        Pieces(out)
    }
}

/// Output format of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One MP4 with `moov` first: plays and seeks in any player.
    Progressive,
    /// An init segment then fragments, as recorded.
    Fragmented,
}

/// A range, ready to send.
#[derive(Debug, Clone)]
pub struct Range {
    pub pieces: Pieces,
    /// The wall-clock time of media time 0 (after the edit list).
    pub media_start: SystemTime,
    /// The presented duration.
    pub duration: Duration,
    pub kind: &'static str,
}

/// A sample of the output: its segment, and its place on the output's timeline.
struct Out {
    seg: usize,
    sample: Sample,
    dts: u64,
    duration: u32,
}

/// Plan `[start, end)` of a source from its `segments` (sorted by time). Video begins at the last
/// keyframe at or before `start`; an edit list skips to `start`. Stops before a segment whose
/// codec configuration differs from the first one's (a new picture size).
pub fn range(
    segments: &[Arc<Segment>],
    start: SystemTime,
    end: SystemTime,
    format: Format,
) -> Result<Range, PlaybackError> {
    let first_seg = segments.iter().position(|s| !s.samples.is_empty() && s.end() > start && s.start() < end);
    let Some(first_seg) = first_seg else { return Err(PlaybackError::Empty) };
    let base = &segments[first_seg];
    let timescale = base.timescale;
    let stsd = &base.moov.trak[0].mdia.minf.stbl.stsd;
    // The first sample: the last sync sample at or before `start` (or the segment's first).
    let first = base.samples.iter().rposition(|s| s.sync && base.wall(s.dts) <= start).unwrap_or(0);
    let mut picked: Vec<(usize, Sample, SystemTime)> = Vec::new();
    for (i, seg) in segments.iter().enumerate().skip(first_seg) {
        if seg.samples.is_empty() {
            continue;
        }
        if seg.start() >= end || seg.timescale != timescale || seg.moov.trak[0].mdia.minf.stbl.stsd != *stsd {
            break;
        }
        let from = if i == first_seg { first } else { 0 };
        for s in &seg.samples[from..] {
            let wall = seg.wall(s.dts);
            if wall >= end {
                break;
            }
            picked.push((i, *s, wall));
        }
    }
    let Some(&(_, _, base_wall)) = picked.first() else { return Err(PlaybackError::Empty) };
    // The output timeline: each sample at its wall-clock offset from the first, lasting until the
    // next (a sample that would start at or before the previous one, from two segments' clocks
    // disagreeing, follows it by one tick); the last keeps its own duration, cut at `end`.
    let limit = u64::try_from(ticks_between(end, base_wall, timescale)).unwrap_or(0);
    let mut outs: Vec<Out> = Vec::with_capacity(picked.len());
    for &(seg, sample, wall) in &picked {
        let after = outs.last().map_or(0, |o: &Out| o.dts + 1);
        let at = u64::try_from(ticks_between(wall, base_wall, timescale)).unwrap_or(0).max(after);
        if at >= limit && !outs.is_empty() {
            break;
        }
        if let Some(prev) = outs.last_mut() {
            prev.duration = u32::try_from(at - prev.dts).unwrap_or(u32::MAX);
        }
        outs.push(Out { seg, sample, dts: at, duration: sample.duration.max(1) });
    }
    if let Some(last) = outs.last_mut() {
        let left = limit.saturating_sub(last.dts).max(1);
        last.duration = u32::try_from(left.min(u64::from(last.duration))).unwrap_or(last.duration);
    }
    let total = outs.last().map_or(0, |o| o.dts + u64::from(o.duration));
    let skip = u64::try_from(ticks_between(start, base_wall, timescale)).unwrap_or(0).min(total.saturating_sub(1));
    // The requested start, exactly, when the range begins there.
    let media_start = if start > base_wall && skip > 0 { start } else { base_wall };
    let duration = ticks_to_duration(total - skip, timescale);
    let template = &base.moov;
    let paths: Vec<Arc<PathBuf>> = segments.iter().map(|s| Arc::new(s.path.clone())).collect();
    let pieces = match format {
        Format::Progressive => progressive(template, timescale, &outs, skip, total, &paths)?,
        Format::Fragmented => fragmented(template, timescale, &outs, skip, total, &paths)?,
    };
    Ok(Range { pieces, media_start, duration, kind: base.kind() })
}

/// The edit list: present from media time `skip` to `total`.
fn edits(skip: u64, total: u64, timescale: u32) -> Edts {
    let ms = (total - skip) * u64::from(MOVIE_TIMESCALE) / u64::from(timescale);
    Edts {
        elst: Some(Elst {
            entries: vec![ElstEntry { segment_duration: ms, media_time: Some(skip), media_rate: 1.into() }],
        }),
    }
}

fn ftyp(brand: &[u8; 4]) -> Ftyp {
    Ftyp {
        major_brand: FourCC::new(brand),
        minor_version: 0,
        compatible_brands: vec![FourCC::new(brand), FourCC::new(b"isom"), FourCC::new(b"iso2"), FourCC::new(b"mp41")],
    }
}

/// `ftyp`, `moov` with complete sample tables, `mdat` (the samples, one chunk each).
fn progressive(
    template: &Moov,
    timescale: u32,
    outs: &[Out],
    skip: u64,
    total: u64,
    paths: &[Arc<PathBuf>],
) -> Result<Pieces, PlaybackError> {
    let data: u64 = outs.iter().map(|o| u64::from(o.sample.size)).sum();
    let large = data + (1 << 20) > u64::from(u32::MAX);
    let movie_ms = (total - skip) * u64::from(MOVIE_TIMESCALE) / u64::from(timescale);
    let mut moov = template.clone();
    moov.mvex = None;
    moov.mvhd.timescale = MOVIE_TIMESCALE;
    moov.mvhd.duration = movie_ms;
    let trak = &mut moov.trak[0];
    trak.tkhd.duration = movie_ms;
    trak.edts = Some(edits(skip, total, timescale));
    trak.mdia.mdhd.duration = total;
    let stbl = &mut trak.mdia.minf.stbl;
    let mut stts: Vec<SttsEntry> = Vec::new();
    for o in outs {
        match stts.last_mut() {
            Some(e) if e.sample_delta == o.duration => e.sample_count += 1,
            _ => stts.push(SttsEntry { sample_count: 1, sample_delta: o.duration }),
        }
    }
    stbl.stts = Stts { entries: stts };
    stbl.ctts = None;
    let sync: Vec<u32> = outs.iter().enumerate().filter(|(_, o)| o.sample.sync).map(|(i, _)| i as u32 + 1).collect();
    stbl.stss = (sync.len() < outs.len()).then_some(Stss { entries: sync });
    stbl.stsc = Stsc { entries: vec![StscEntry { first_chunk: 1, samples_per_chunk: 1, sample_description_index: 1 }] };
    stbl.stsz = Stsz { samples: StszSamples::Different { sizes: outs.iter().map(|o| o.sample.size).collect() } };
    // Offsets depend on the moov's size, which does not depend on them (fixed-width entries).
    let set_offsets = |stbl: &mut mp4_atom::Stbl, at: u64| {
        let mut offsets = Vec::with_capacity(outs.len());
        let mut at = at;
        for o in outs {
            offsets.push(at);
            at += u64::from(o.sample.size);
        }
        if large {
            stbl.stco = None;
            stbl.co64 = Some(Co64 { entries: offsets });
        } else {
            stbl.co64 = None;
            stbl.stco = Some(Stco { entries: offsets.into_iter().map(|o| o as u32).collect() });
        }
    };
    let mut head = Vec::new();
    ftyp(b"isom").encode(&mut head)?;
    let mdat_header = if data + 8 > u64::from(u32::MAX) { 16 } else { 8 };
    set_offsets(&mut moov.trak[0].mdia.minf.stbl, 0);
    let mut sized = Vec::new();
    moov.encode(&mut sized)?;
    let first = (head.len() + sized.len()) as u64 + mdat_header;
    set_offsets(&mut moov.trak[0].mdia.minf.stbl, first);
    moov.encode(&mut head)?;
    Header { kind: Mdat::KIND, size: Some(data as usize) }.encode(&mut head)?;
    debug_assert_eq!(head.len() as u64, first);
    let mut pieces = Pieces::default();
    pieces.bytes(head);
    for o in outs {
        pieces.file(&paths[o.seg], o.sample.offset, u64::from(o.sample.size));
    }
    Ok(pieces)
}

/// An init segment (the source's, with the edit list), then a fragment per run of samples that
/// are contiguous in one file (one recorded part).
fn fragmented(
    template: &Moov,
    timescale: u32,
    outs: &[Out],
    skip: u64,
    total: u64,
    paths: &[Arc<PathBuf>],
) -> Result<Pieces, PlaybackError> {
    let mut moov = template.clone();
    let movie_ms = (total - skip) * u64::from(MOVIE_TIMESCALE) / u64::from(timescale);
    moov.mvhd.timescale = MOVIE_TIMESCALE;
    moov.mvhd.duration = 0;
    if let Some(mvex) = &mut moov.mvex {
        mvex.mehd = Some(mp4_atom::Mehd { fragment_duration: movie_ms });
    }
    moov.trak[0].edts = Some(edits(skip, total, timescale));
    let track_id = moov.trak[0].tkhd.track_id;
    let mut pieces = Pieces::default();
    let mut head = Vec::new();
    ftyp(b"iso6").encode(&mut head)?;
    moov.encode(&mut head)?;
    pieces.bytes(head);
    let mut seq = 0;
    let mut run_start = 0;
    while run_start < outs.len() {
        let mut run_end = run_start + 1;
        while run_end < outs.len() && {
            let (a, b) = (&outs[run_end - 1], &outs[run_end]);
            a.seg == b.seg && a.sample.offset + u64::from(a.sample.size) == b.sample.offset
        } {
            run_end += 1;
        }
        let run = &outs[run_start..run_end];
        seq += 1;
        let runs: Vec<Run> =
            run.iter().map(|o| Run { duration: o.duration, size: o.sample.size, sync: o.sample.sync }).collect();
        let head = moof(seq, track_id, run[0].dts, &runs)?;
        let data: u64 = run.iter().map(|o| u64::from(o.sample.size)).sum();
        pieces.bytes(head);
        pieces.file(&paths[run[0].seg], run[0].sample.offset, data);
        run_start = run_end;
    }
    Ok(pieces)
}

/// Read `pieces` into memory (tests, small ranges).
pub fn read_all(pieces: &Pieces) -> Result<Vec<u8>, PlaybackError> {
    let mut out = Vec::with_capacity(pieces.len() as usize);
    for p in &pieces.0 {
        match p {
            Piece::Bytes(b) => out.extend_from_slice(b),
            Piece::File { path, offset, len } => read_extent(path, *offset, *len, &mut out)?,
        }
    }
    Ok(out)
}

/// Append `len` bytes of `path` from `offset` to `out`.
pub fn read_extent(path: &Path, offset: u64, len: u64, out: &mut Vec<u8>) -> Result<(), PlaybackError> {
    let io = |error| PlaybackError::Io { path: path.to_owned(), error };
    let mut f = File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let before = out.len();
    f.take(len).read_to_end(out).map_err(io)?;
    if (out.len() - before) as u64 != len {
        return Err(io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than indexed")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fmp4::{fragment, init_segment, length_prefixed, Sample as Mux, Track};
    use crate::record::test_vectors::{annex_b, boxes, PPS, SPS};
    use mp4_atom::Any;
    use std::time::UNIX_EPOCH;

    /// 10 fps at 90 kHz.
    const TICKS: u32 = 9000;

    /// Sample `n` of a segment: a keyframe every 5, bytes that name the segment and the sample.
    fn sample(seg: u8, n: u8) -> Mux {
        let key = n.is_multiple_of(5);
        let au = if key { annex_b(&[SPS, PPS, &[0x65, seg, n]]) } else { annex_b(&[&[0x41, seg, n, n]]) };
        Mux { data: length_prefixed(&au), duration: TICKS, sync: key }
    }

    /// A segment file of 20 samples at 10 fps starting at `wall`, in two fragments of 10.
    fn segment_file(dir: &Path, seg: u8, wall: SystemTime) -> PathBuf {
        let track = Track::from_keyframe(&annex_b(&[SPS, PPS, &[0x65]])).expect("track");
        let mut bytes = init_segment(&track, wall).expect("init");
        for part in 0..2u8 {
            let samples: Vec<Mux> = (part * 10..part * 10 + 10).map(|n| sample(seg, n)).collect();
            let dts = u64::from(part) * 10 * u64::from(TICKS);
            let at = wall + Duration::from_millis(u64::from(part) * 1000);
            bytes.extend(fragment(u32::from(part) + 1, dts, at, &samples).expect("fragment"));
        }
        let path = dir.join(format!("{seg}.mp4"));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("railcast-playback-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    const T0: Duration = Duration::from_secs(1_796_000_000);

    /// Segment 1 at T0 (2 s), a 0.5 s hole, segment 2 at T0 + 2.5 s (2 s).
    fn two_segments(dir: &Path) -> Vec<Arc<Segment>> {
        let a = segment_file(dir, 1, UNIX_EPOCH + T0);
        let b = segment_file(dir, 2, UNIX_EPOCH + T0 + Duration::from_millis(2500));
        vec![Arc::new(index(&a).expect("index a")), Arc::new(index(&b).expect("index b"))]
    }

    #[test]
    fn an_index_finds_every_sample_where_it_is() {
        let dir = scratch("index");
        let segs = two_segments(&dir);
        let bytes = std::fs::read(&segs[0].path).expect("read");
        assert_eq!(segs[0].samples.len(), 20);
        for (n, s) in segs[0].samples.iter().enumerate() {
            let want = sample(1, n as u8);
            assert_eq!(&bytes[s.offset as usize..][..s.size as usize], want.data.as_slice(), "sample {n}");
            assert_eq!((s.dts, s.duration, s.sync), (n as u64 * u64::from(TICKS), TICKS, want.sync));
        }
        assert_eq!(segs[0].start(), UNIX_EPOCH + T0);
        assert_eq!(segs[1].end(), UNIX_EPOCH + T0 + Duration::from_millis(4500));
        assert_eq!(segs[0].kind(), "video");
        // A file cut in its last mdat (a part being written) keeps its complete fragments.
        std::fs::write(dir.join("cut.mp4"), &bytes[..bytes.len() - 5]).expect("write");
        assert_eq!(index(&dir.join("cut.mp4")).expect("index").samples.len(), 10);
        std::fs::write(dir.join("junk.mp4"), b"not an mp4 at all, just text").expect("write");
        assert!(index(&dir.join("junk.mp4")).is_err());
    }

    #[test]
    fn a_short_hole_keeps_one_span_and_a_long_one_splits() {
        let dir = scratch("spans");
        let segs = two_segments(&dir);
        let spans = spans(&segs);
        assert_eq!(spans, vec![Span { start: segs[0].start(), end: segs[1].end(), segments: 2 }]);
        let far = segment_file(&dir, 3, UNIX_EPOCH + T0 + Duration::from_secs(60));
        let mut more = segs.clone();
        more.push(Arc::new(index(&far).expect("index")));
        assert_eq!(super::spans(&more).len(), 2);
    }

    /// The range 0.7 s..3.2 s: from keyframe 5 (0.5 s) of segment 1, across the hole, to sample
    /// 6 of segment 2 (3.1 s); the edit list skips 0.2 s.
    #[test]
    fn a_progressive_range_has_every_sample_in_place_and_an_edit_list() {
        let dir = scratch("progressive");
        let segs = two_segments(&dir);
        let at = |ms| UNIX_EPOCH + T0 + Duration::from_millis(ms);
        let r = range(&segs, at(700), at(3200), Format::Progressive).expect("range");
        assert_eq!(r.media_start, at(700));
        assert_eq!(r.duration, Duration::from_millis(2500));
        let bytes = read_all(&r.pieces).expect("read");
        assert_eq!(bytes.len() as u64, r.pieces.len());
        let boxes = boxes(&bytes);
        let [Any::Ftyp(_), Any::Moov(moov), Any::Mdat(_)] = boxes.as_slice() else { panic!("{boxes:?}") };
        assert!(moov.mvex.is_none());
        assert_eq!(moov.mvhd.duration, 2500);
        let trak = &moov.trak[0];
        let elst = &trak.edts.as_ref().and_then(|e| e.elst.as_ref()).expect("elst").entries[0];
        assert_eq!((elst.media_time, elst.segment_duration), (Some(18_000), 2500));
        let stbl = &trak.mdia.minf.stbl;
        let want: Vec<Mux> = (5..20).map(|n| sample(1, n)).chain((0..7).map(|n| sample(2, n))).collect();
        let StszSamples::Different { sizes } = &stbl.stsz.samples else { panic!("sizes") };
        assert_eq!(sizes.len(), want.len());
        let offsets = &stbl.stco.as_ref().expect("stco").entries;
        for (i, w) in want.iter().enumerate() {
            assert_eq!(&bytes[offsets[i] as usize..][..sizes[i] as usize], w.data.as_slice(), "sample {i}");
        }
        // Keyframes 5, 10, 15 of segment 1 and 0, 5 of segment 2 (1-based sample numbers).
        assert_eq!(stbl.stss.as_ref().expect("stss").entries, vec![1, 6, 11, 16, 21]);
        // 14 samples of 0.1 s, then the one before the hole lasts 0.6 s, then 6 + the last.
        let deltas: Vec<(u32, u32)> = stbl.stts.entries.iter().map(|e| (e.sample_count, e.sample_delta)).collect();
        assert_eq!(deltas, vec![(14, TICKS), (1, 6 * TICKS), (7, TICKS)]);
        assert_eq!(trak.mdia.mdhd.duration, 27 * u64::from(TICKS));
        // Any byte range is the same bytes.
        let (a, b) = (r.pieces.slice(0, 999), r.pieces.slice(1000, r.pieces.len() - 1));
        assert_eq!([read_all(&a).expect("a"), read_all(&b).expect("b")].concat(), bytes);
        let mid = r.pieces.slice(bytes.len() as u64 / 2, bytes.len() as u64 / 2 + 10);
        assert_eq!(read_all(&mid).expect("mid"), bytes[bytes.len() / 2..=bytes.len() / 2 + 10]);
    }

    #[test]
    fn a_fragmented_range_has_a_fragment_per_recorded_part() {
        let dir = scratch("fragmented");
        let segs = two_segments(&dir);
        let at = |ms| UNIX_EPOCH + T0 + Duration::from_millis(ms);
        let r = range(&segs, at(700), at(3200), Format::Fragmented).expect("range");
        let bytes = read_all(&r.pieces).expect("read");
        let boxes = boxes(&bytes);
        let moofs: Vec<&Moof> =
            boxes.iter().filter_map(|b| if let Any::Moof(m) = b { Some(m) } else { None }).collect();
        // Segment 1: samples 5..10 and 10..20 (two parts); segment 2: 0..7.
        let runs: Vec<(u64, usize)> = moofs
            .iter()
            .map(|m| (m.traf[0].tfdt.as_ref().expect("tfdt").base_media_decode_time, m.traf[0].trun[0].samples.len()))
            .collect();
        assert_eq!(runs, vec![(0, 5), (5 * u64::from(TICKS), 10), (20 * u64::from(TICKS), 7)]);
        assert!(matches!(boxes[1], Any::Moov(ref m) if m.mvex.is_some() && m.trak[0].edts.is_some()));
    }

    #[test]
    fn a_range_outside_the_recording_is_empty_and_one_before_it_starts_at_its_start() {
        let dir = scratch("outside");
        let segs = two_segments(&dir);
        let at = |ms| UNIX_EPOCH + T0 + Duration::from_millis(ms);
        assert!(matches!(range(&segs, at(5000), at(9000), Format::Progressive), Err(PlaybackError::Empty)));
        let r = range(&segs, at(0) - Duration::from_secs(3), at(1000), Format::Progressive).expect("range");
        assert_eq!((r.media_start, r.duration), (at(0), Duration::from_secs(1)));
    }
}
