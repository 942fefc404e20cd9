//! The simulated camera of a train: renders a test pattern and encodes it to H.264.
//!
//! Real trains carry real cameras; the simulator needs something that looks and
//! behaves like one without any hardware or video files. Each [`Camera`] paints
//! a classic test picture directly into I420 (YUV 4:2:0) planes and encodes it
//! with OpenH264 (Cisco's encoder, built from its bundled source):
//!
//! * **75 % colour bars** (8 columns: white, yellow, cyan, green, magenta, red,
//!   blue, black; BT.601 limited-range values) over the upper part, so a viewer
//!   sees at once whether colours and levels survive the relay;
//! * a **moving white box** sliding horizontally through a grey band; its speed
//!   follows the train's speed (0 km/h = still), so a frozen picture is obvious;
//! * **burned-in text** (tiny bitmap font, see `font.rs`): the camera label,
//!   the UTC wall-clock time `HH:MM:SS.mmm` of capture, the frame counter
//!   `F 000123` and the speed `87 KM/H`. Comparing the burned-in time with a
//!   real clock shows the glass-to-glass latency by eye.
//!
//! Rendering straight into YUV (instead of RGB and a conversion) keeps the cost
//! negligible next to the encoder. The static part of the picture (bars, band
//! and text backgrounds) is rendered once into a template that is copied into
//! a reused frame buffer each time, so no picture buffers are allocated per
//! frame.
//!
//! The encoder emits H.264 **Annex B** access units (every NAL unit preceded by
//! `00 00 00 01`), Baseline profile, single slice, bitrate-mode rate control
//! with frame skipping disabled, and an IDR every [`VideoConfig::gop`] frames.
//! Every IDR access unit carries SPS and PPS in front of the IDR slice (OpenH264
//! writes them with every IDR; [`Camera`] additionally checks this and
//! prepends the last seen parameter sets if they were ever missing), so a
//! decoder can join the stream at any keyframe. [`EncodedFrame::keyframe`] is
//! derived from the NAL unit types actually present, not from a counter.

use std::fmt::Write as _;

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode, SpsPpsStrategy,
    UsageType, VuiConfig,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};

use railcast_protocol::h264::nal_units;

use crate::font;

/// Smallest accepted width/height in pixels.
pub const MIN_DIMENSION: u32 = 16;
/// Largest accepted width/height in pixels (OpenH264 further limits the
/// picture to 3840×2160 in either orientation, which is checked as well).
pub const MAX_DIMENSION: u32 = 4096;
/// Highest frame rate OpenH264 supports.
pub const MAX_FPS: u32 = 60;
/// Lowest accepted target bitrate (bits per second).
pub const MIN_BITRATE_BPS: u32 = 10_000;

/// NAL unit type of a non-IDR coded slice.
pub const NAL_SLICE: u8 = 1;
/// NAL unit types of an IDR coded slice (a keyframe), a sequence and a picture parameter set.
pub use railcast_protocol::h264::{NAL_IDR, NAL_PPS, NAL_SPS};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Picture size, frame rate and encoder settings of one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoConfig {
    /// Width in pixels: even, 16..=4096.
    pub width: u32,
    /// Height in pixels: even, 16..=4096.
    pub height: u32,
    /// Frames per second, 1..=60 (used for rate control and the box speed).
    pub fps: u32,
    /// Target bitrate in bits per second (at least 10 000).
    pub bitrate_bps: u32,
    /// IDR interval in frames; 0 means only the first frame is an IDR
    /// (later ones only on request via `force_keyframe`).
    pub gop: u32,
}

impl Default for VideoConfig {
    /// 640×480 at 30 fps, 1 Mbit/s, an IDR every 2 s.
    fn default() -> Self {
        Self { width: 640, height: 480, fps: 30, bitrate_bps: 1_000_000, gop: 60 }
    }
}

impl VideoConfig {
    /// Checks that the encoder can work with this configuration.
    ///
    /// # Errors
    ///
    /// [`VideoError::BadDimensions`], [`VideoError::BadFrameRate`] or
    /// [`VideoError::BadBitrate`] naming the offending value.
    pub fn validate(&self) -> Result<(), VideoError> {
        let (width, height) = (self.width, self.height);
        let bad = |reason: &'static str| Err(VideoError::BadDimensions { width, height, reason });
        if width % 2 != 0 || height % 2 != 0 {
            return bad("width and height must be even (4:2:0 chroma subsampling)");
        }
        let range = MIN_DIMENSION..=MAX_DIMENSION;
        if !range.contains(&width) || !range.contains(&height) {
            return bad("width and height must be within 16..=4096");
        }
        if width.max(height) > 3840 || width.min(height) > 2160 {
            return bad("the H.264 encoder supports at most 3840x2160 (or 2160x3840)");
        }
        if !(1..=MAX_FPS).contains(&self.fps) {
            return Err(VideoError::BadFrameRate(self.fps));
        }
        if self.bitrate_bps < MIN_BITRATE_BPS || i32::try_from(self.bitrate_bps).is_err() {
            return Err(VideoError::BadBitrate(self.bitrate_bps));
        }
        Ok(())
    }
}

/// Why a camera could not be created or could not encode a frame.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// Width/height not usable (odd, out of range, too large for the encoder).
    #[error("invalid video size {width}x{height}: {reason}")]
    BadDimensions {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Frame rate outside 1..=60.
    #[error("invalid frame rate {0} fps: must be within 1..=60")]
    BadFrameRate(u32),
    /// Bitrate too low or not representable by the encoder.
    #[error("invalid bitrate {0} bit/s: must be within 10000..=2147483647")]
    BadBitrate(u32),
    /// OpenH264 reported an error.
    #[error("H.264 encoder failed: {0}")]
    Encoder(#[from] openh264::Error),
    /// The encoder returned no coded picture for a frame, even after a retry.
    #[error("H.264 encoder produced no picture for frame {frame_no}")]
    EmptyFrame {
        /// The caller's frame number.
        frame_no: u64,
    },
    /// The encoder output did not have the expected Annex B shape.
    #[error("H.264 encoder output malformed for frame {frame_no}: {reason}")]
    Malformed {
        /// The caller's frame number.
        frame_no: u64,
        /// What was wrong.
        reason: &'static str,
    },
}

/// One encoded picture: a complete H.264 access unit in Annex B format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// NAL units, each preceded by the start code `00 00 00 01`. Keyframes
    /// begin with SPS and PPS, followed by the IDR slice.
    pub data: Vec<u8>,
    /// True iff the access unit contains an IDR slice (NAL unit type 5).
    pub keyframe: bool,
}

// ---------------------------------------------------------------------------
// Colours (BT.601, limited range: Y 16..=235, Cb/Cr 16..=240, neutral 128).
// ---------------------------------------------------------------------------

/// A colour as (Y, Cb, Cr).
type Yuv = (u8, u8, u8);

/// 75 % colour bars, left to right: white, yellow, cyan, green, magenta, red,
/// blue, black. Y = 16 + 219·E'y, Cb = 128 + 224·0.564·(E'b − E'y),
/// Cr = 128 + 224·0.713·(E'r − E'y) with E' = 0.75 for the lit primaries.
const BARS: [Yuv; 8] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
];
const BLACK_Y: u8 = 16;
const WHITE_Y: u8 = 235;
const BAND_Y: u8 = 64;
const NEUTRAL_C: u8 = 128;

/// Longest text line the layout reserves room for, in characters.
const LINE_CHARS: usize = 22;
/// Number of text lines.
const TEXT_LINES: usize = 3;

// ---------------------------------------------------------------------------
// Picture buffer
// ---------------------------------------------------------------------------

/// An I420 picture with tightly packed planes (strides = width, width / 2).
#[derive(Clone)]
struct Picture {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Picture {
    fn new(width: usize, height: usize) -> Self {
        let chroma = (width / 2) * (height / 2);
        Self { width, height, y: vec![BLACK_Y; width * height], u: vec![NEUTRAL_C; chroma], v: vec![NEUTRAL_C; chroma] }
    }

    fn copy_from(&mut self, other: &Self) {
        self.y.copy_from_slice(&other.y);
        self.u.copy_from_slice(&other.u);
        self.v.copy_from_slice(&other.v);
    }

    /// Fills the luma rectangle [x0, x1) × [y0, y1) (clipped) with `luma`.
    fn fill_luma(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, luma: u8) {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 {
            return;
        }
        for row in y0..y1 {
            let start = row * self.width;
            self.y[start + x0..start + x1].fill(luma);
        }
    }

    /// Fills the rectangle [x0, x1) × [y0, y1) (luma coordinates, clipped;
    /// chroma covers the 2×2 blocks that the rectangle touches) with `colour`.
    fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, colour: Yuv) {
        self.fill_luma(x0, y0, x1, y1, colour.0);
        let cw = self.width / 2;
        let (cx0, cy0) = (x0 / 2, y0 / 2);
        let (cx1, cy1) = (x1.div_ceil(2).min(cw), y1.div_ceil(2).min(self.height / 2));
        if cx0 >= cx1 {
            return;
        }
        for row in cy0..cy1 {
            let start = row * cw;
            self.u[start + cx0..start + cx1].fill(colour.1);
            self.v[start + cx0..start + cx1].fill(colour.2);
        }
    }

    fn luma_plane(&mut self) -> font::Plane<'_> {
        font::Plane { data: &mut self.y, stride: self.width, width: self.width, height: self.height }
    }
}

impl YUVSource for Picture {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

/// Where the parts of the test picture go (all luma rows/columns, all even).
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Colour bars cover rows 0..bars_h.
    bars_h: usize,
    /// The band with the moving box covers rows band_y..band_y + band_h.
    band_y: usize,
    band_h: usize,
    /// The text area covers rows text_y..height.
    text_y: usize,
    /// Font scale factor (font pixel → scale×scale picture pixels).
    scale: usize,
    /// Width of the moving box.
    box_w: usize,
}

impl Layout {
    fn new(width: usize, height: usize) -> Self {
        let even = |v: usize| v & !1;
        let block_h = |s: usize| even(TEXT_LINES * (font::GLYPH_H + 2) * s + 3 * s + 1);
        // 3× at 640×480, 2× at 320×240, 1× at 160×120; smaller if it would not fit.
        let mut scale = (width.min(height * 4 / 3) / 160).clamp(1, 3);
        while scale > 1 && (font::text_width(LINE_CHARS, scale) + 4 * scale > width || block_h(scale) > height / 3) {
            scale -= 1;
        }
        let text_h = block_h(scale).min(height);
        let band_h = even(height / 8).min(height - text_h);
        let bars_h = height - text_h - band_h;
        let box_w = even((width / 16).max(4));
        Self { bars_h, band_y: bars_h, band_h, text_y: bars_h + band_h, scale, box_w }
    }

    /// Horizontal room the box travels through before wrapping around.
    fn travel(&self, width: usize) -> usize {
        width.saturating_sub(self.box_w).max(1)
    }
}

/// The static part of the picture: bars, band background, text background.
fn render_background(pic: &mut Picture, layout: &Layout) {
    let (w, h) = (pic.width, pic.height);
    for (i, colour) in BARS.iter().enumerate() {
        pic.fill(i * w / 8, 0, (i + 1) * w / 8, layout.bars_h, *colour);
    }
    pic.fill(0, layout.band_y, w, layout.band_y + layout.band_h, (BAND_Y, NEUTRAL_C, NEUTRAL_C));
    pic.fill(0, layout.text_y, w, h, (BLACK_Y, NEUTRAL_C, NEUTRAL_C));
}

/// Formats `wallclock_us` (µs since the UNIX epoch) as UTC `HH:MM:SS.mmm`.
fn write_utc_time(out: &mut String, wallclock_us: u64) {
    let ms_total = wallclock_us / 1000;
    let secs = ms_total / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Writing into a String cannot fail.
    let _ = write!(out, "{h:02}:{m:02}:{s:02}.{:03}", ms_total % 1000);
}

// ---------------------------------------------------------------------------
// Camera
// ---------------------------------------------------------------------------

/// A simulated camera: test-pattern renderer plus H.264 encoder.
///
/// `Camera` is `Send` (it is meant to live on its own thread) but not shared:
/// every call to [`Camera::encode_next`] continues the same H.264 stream.
pub struct Camera {
    label: String,
    config: VideoConfig,
    layout: Layout,
    /// Static parts, rendered once.
    background: Picture,
    /// The picture being encoded, reused every frame.
    picture: Picture,
    encoder: Encoder,
    /// Position of the moving box, in pixels from the left of its travel.
    box_x: f64,
    /// Pictures handed to the encoder so far (drives the encoder timestamps).
    frames_encoded: u64,
    /// Last SPS / PPS NAL units seen (with start code), for repair.
    last_sps: Vec<u8>,
    last_pps: Vec<u8>,
    /// Scratch for the text lines.
    text: String,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("label", &self.label)
            .field("config", &self.config)
            .field("frames_encoded", &self.frames_encoded)
            .finish_non_exhaustive()
    }
}

impl Camera {
    /// Creates a camera whose pictures show `label` (e.g. `"train-1 cam 0"`).
    ///
    /// # Errors
    ///
    /// An invalid `config` (see [`VideoConfig::validate`]) or an encoder that
    /// cannot be created.
    pub fn new(label: &str, config: VideoConfig) -> Result<Camera, VideoError> {
        config.validate()?;
        let (width, height) = (config.width as usize, config.height as usize);
        let layout = Layout::new(width, height);
        let mut background = Picture::new(width, height);
        render_background(&mut background, &layout);
        let picture = background.clone();

        #[allow(clippy::cast_precision_loss)] // fps <= 60
        let encoder_config = EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            // Never skip: the relay needs one access unit per frame.
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.gop))
            // Keyframes only where asked for (GOP / force_keyframe), not on
            // the encoder's own scene-change guesses.
            .scene_change_detect(false)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .complexity(Complexity::Medium)
            // One encoder thread per camera: the camera already has its own thread.
            .num_threads(1)
            .vui(VuiConfig::bt601());
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), encoder_config)?;

        Ok(Camera {
            label: label.to_owned(),
            config,
            layout,
            background,
            picture,
            encoder,
            box_x: 0.0,
            frames_encoded: 0,
            last_sps: Vec::new(),
            last_pps: Vec::new(),
            text: String::with_capacity(64),
        })
    }

    /// Render the test pattern for frame number `frame_no` and encode it.
    ///
    /// `wallclock_us`: microseconds since the UNIX epoch, burned into the
    /// picture as HH:MM:SS.mmm (UTC). `speed_kmh`: moves the moving element
    /// faster/slower (0 = still, negative = backwards) and is burned in.
    /// `force_keyframe`: this frame must be an IDR.
    ///
    /// # Errors
    ///
    /// [`VideoError::Encoder`] if OpenH264 fails, [`VideoError::EmptyFrame`]
    /// if it produced no picture even when retried as an IDR,
    /// [`VideoError::Malformed`] if its output is not a usable access unit.
    pub fn encode_next(
        &mut self,
        frame_no: u64,
        wallclock_us: u64,
        speed_kmh: f32,
        force_keyframe: bool,
    ) -> Result<EncodedFrame, VideoError> {
        self.render(frame_no, wallclock_us, speed_kmh);

        let mut want_idr = force_keyframe;
        // Frame skipping is disabled, so the retry should never be needed; if
        // the encoder still returns nothing, ask for an IDR (never skipped).
        for _attempt in 0..2 {
            // The very first picture is an IDR anyway, and forcing before the
            // encoder is initialised (lazily, on the first encode) is not allowed.
            if want_idr && self.frames_encoded > 0 {
                self.encoder.force_intra_frame();
            }
            let timestamp = Timestamp::from_millis(self.frames_encoded * 1000 / u64::from(self.config.fps));
            self.frames_encoded += 1;
            let mut data = Vec::with_capacity(self.estimate_frame_bytes());
            let bitstream = self.encoder.encode_at(&self.picture, timestamp)?;
            bitstream.write_vec(&mut data);
            if data.is_empty() {
                tracing::warn!(camera = %self.label, frame_no, "encoder returned an empty frame, retrying as IDR");
                want_idr = true;
                continue;
            }
            return self.finish_access_unit(frame_no, data);
        }
        Err(VideoError::EmptyFrame { frame_no })
    }

    /// A capacity guess for one access unit, avoiding most reallocations.
    fn estimate_frame_bytes(&self) -> usize {
        let per_frame = self.config.bitrate_bps / 8 / self.config.fps.max(1);
        (per_frame as usize * 2).clamp(1024, 1 << 20)
    }

    /// Validates an access unit, records/repairs SPS and PPS and finds out
    /// whether it is a keyframe.
    fn finish_access_unit(&mut self, frame_no: u64, data: Vec<u8>) -> Result<EncodedFrame, VideoError> {
        if !data.starts_with(&START_CODE) {
            return Err(VideoError::Malformed { frame_no, reason: "does not start with 00 00 00 01" });
        }
        let (mut has_sps, mut has_pps, mut has_idr, mut has_slice) = (false, false, false, false);
        for nal in nal_units(&data) {
            match nal.nal_type() {
                NAL_SPS => {
                    has_sps = true;
                    self.last_sps.clear();
                    self.last_sps.extend_from_slice(nal.with_start_code);
                }
                NAL_PPS => {
                    has_pps = true;
                    self.last_pps.clear();
                    self.last_pps.extend_from_slice(nal.with_start_code);
                }
                NAL_IDR => {
                    has_idr = true;
                    has_slice = true;
                }
                NAL_SLICE => has_slice = true,
                _ => {}
            }
        }
        if !has_slice {
            return Err(VideoError::Malformed { frame_no, reason: "no coded slice in the access unit" });
        }
        if !has_idr || (has_sps && has_pps) {
            return Ok(EncodedFrame { data, keyframe: has_idr });
        }
        // An IDR without its parameter sets: put the last known ones in front.
        if (!has_sps && self.last_sps.is_empty()) || (!has_pps && self.last_pps.is_empty()) {
            return Err(VideoError::Malformed { frame_no, reason: "IDR without SPS/PPS and none seen before" });
        }
        tracing::debug!(camera = %self.label, frame_no, "prepending SPS/PPS to IDR access unit");
        let mut repaired = Vec::with_capacity(data.len() + self.last_sps.len() + self.last_pps.len());
        if !has_sps {
            repaired.extend_from_slice(&self.last_sps);
        }
        if !has_pps {
            repaired.extend_from_slice(&self.last_pps);
        }
        repaired.extend_from_slice(&data);
        Ok(EncodedFrame { data: repaired, keyframe: true })
    }

    /// Paints frame `frame_no` into `self.picture` and advances the box.
    fn render(&mut self, frame_no: u64, wallclock_us: u64, speed_kmh: f32) {
        let layout = self.layout;
        let width = self.picture.width;
        self.picture.copy_from(&self.background);

        // Moving box: at 100 km/h it crosses the picture in 2 s.
        let speed = if speed_kmh.is_finite() { f64::from(speed_kmh) } else { 0.0 };
        let travel = f64::from(u32::try_from(layout.travel(width)).unwrap_or(u32::MAX));
        let step = speed / 100.0 * f64::from(self.config.width) / (2.0 * f64::from(self.config.fps));
        self.box_x = (self.box_x + step).rem_euclid(travel);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 <= box_x < travel
        let x = (self.box_x as usize).min(travel as usize);
        let margin = (layout.band_h / 6).max(1);
        self.picture.fill_luma(
            x,
            layout.band_y + margin,
            x + layout.box_w,
            (layout.band_y + layout.band_h).saturating_sub(margin),
            WHITE_Y,
        );

        // Text: label / time / frame counter and speed.
        let scale = layout.scale;
        let left = 2 * scale;
        let pitch = (font::GLYPH_H + 2) * scale;
        let top = layout.text_y + 2 * scale;
        let mut plane = self.picture.luma_plane();
        font::draw_text(&mut plane, left, top, scale, &self.label, WHITE_Y);

        self.text.clear();
        write_utc_time(&mut self.text, wallclock_us);
        self.text.push_str(" UTC");
        font::draw_text(&mut plane, left, top + pitch, scale, &self.text, WHITE_Y);

        self.text.clear();
        // `+ 0.0` turns a rounded -0 into 0.
        let shown_speed = speed.round() + 0.0;
        let _ = write!(self.text, "F {frame_no:06}  {shown_speed:.0} KM/H");
        font::draw_text(&mut plane, left, top + 2 * pitch, scale, &self.text, WHITE_Y);
    }
}

// ---------------------------------------------------------------------------
// Annex B parsing
// ---------------------------------------------------------------------------

/// One NAL unit found in an Annex B byte stream.
#[cfg(test)]
mod tests {
    use super::*;
    use openh264::decoder::Decoder;

    fn small(gop: u32) -> VideoConfig {
        VideoConfig { width: 160, height: 120, fps: 30, bitrate_bps: 300_000, gop }
    }

    fn nal_types(data: &[u8]) -> Vec<u8> {
        nal_units(data).iter().map(|n| n.nal_type()).collect()
    }

    const T0: u64 = 1_700_000_000_123_456;

    #[test]
    fn validates_dimensions_and_rates() {
        let bad = [(161, 120), (160, 121), (14, 120), (160, 8), (4098, 120), (4096, 2400), (0, 0)];
        for (width, height) in bad {
            let cfg = VideoConfig { width, height, ..small(10) };
            let err = Camera::new("x", cfg).expect_err("bad size must be rejected");
            assert!(matches!(err, VideoError::BadDimensions { .. }), "{width}x{height}: {err}");
        }
        for (width, height) in [(16, 16), (160, 120), (3840, 2160), (2160, 3840)] {
            VideoConfig { width, height, ..small(10) }.validate().expect("valid size");
        }
        let err = Camera::new("x", VideoConfig { fps: 0, ..small(10) }).expect_err("fps 0");
        assert!(matches!(err, VideoError::BadFrameRate(0)));
        let err = Camera::new("x", VideoConfig { fps: 61, ..small(10) }).expect_err("fps 61");
        assert!(matches!(err, VideoError::BadFrameRate(61)));
        let err = Camera::new("x", VideoConfig { bitrate_bps: 0, ..small(10) }).expect_err("bitrate 0");
        assert!(matches!(err, VideoError::BadBitrate(0)));
        let err = Camera::new("x", VideoConfig { bitrate_bps: u32::MAX, ..small(10) }).expect_err("huge bitrate");
        assert!(matches!(err, VideoError::BadBitrate(_)));
    }

    #[test]
    fn camera_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Camera>();
        assert_send::<EncodedFrame>();
        assert_send::<VideoError>();
    }

    #[test]
    fn first_frame_is_idr_with_parameter_sets() {
        let mut cam = Camera::new("train-1 cam 0", small(0)).expect("camera");
        let f = cam.encode_next(0, T0, 80.0, false).expect("encode");
        assert!(f.keyframe);
        assert!(f.data.starts_with(&[0, 0, 0, 1]), "{:02x?}", &f.data[..8]);
        let types = nal_types(&f.data);
        let pos = |t: u8| types.iter().position(|&x| x == t).expect("NAL type present");
        assert!(pos(NAL_SPS) < pos(NAL_IDR) && pos(NAL_PPS) < pos(NAL_IDR), "{types:?}");
        // Every NAL unit uses a 4-byte start code.
        for nal in nal_units(&f.data) {
            assert!(nal.with_start_code.starts_with(&START_CODE));
        }
        // Baseline profile (profile_idc 66) in the SPS.
        let sps = nal_units(&f.data).into_iter().find(|n| n.nal_type() == NAL_SPS).expect("sps");
        assert_eq!(sps.payload[1], 66);

        // gop = 0: later frames are never IDR unless forced.
        for n in 1..15 {
            let f = cam.encode_next(n, T0 + n * 33_333, 80.0, false).expect("encode");
            assert!(!f.keyframe, "frame {n}");
            assert!(!f.data.is_empty());
            assert!(!nal_types(&f.data).contains(&NAL_IDR));
        }
    }

    #[test]
    fn gop_controls_keyframes_and_every_idr_has_sps_pps() {
        let mut cam = Camera::new("gop", small(10)).expect("camera");
        for n in 0..=25u64 {
            let f = cam.encode_next(n, T0 + n * 33_333, 120.0, false).expect("encode");
            let types = nal_types(&f.data);
            let expect_key = n % 10 == 0;
            assert_eq!(f.keyframe, expect_key, "frame {n}: {types:?}");
            assert_eq!(types.contains(&NAL_IDR), f.keyframe);
            if f.keyframe {
                assert_eq!(&types[..2], &[NAL_SPS, NAL_PPS], "frame {n}");
            } else {
                assert!(types.contains(&NAL_SLICE), "frame {n}: {types:?}");
            }
        }
    }

    #[test]
    fn force_keyframe_yields_idr() {
        let mut cam = Camera::new("force", small(0)).expect("camera");
        for n in 0..8u64 {
            let force = n == 4;
            let f = cam.encode_next(n, T0 + n * 33_333, 60.0, force).expect("encode");
            assert_eq!(f.keyframe, n == 0 || force, "frame {n}");
            if force {
                let types = nal_types(&f.data);
                assert!(types.contains(&NAL_SPS) && types.contains(&NAL_PPS), "{types:?}");
            }
        }
        // Forcing on the very first frame is fine too.
        let mut cam = Camera::new("force0", small(0)).expect("camera");
        assert!(cam.encode_next(0, T0, 0.0, true).expect("encode").keyframe);
    }

    #[test]
    fn consecutive_frames_differ() {
        let mut cam = Camera::new("diff", small(30)).expect("camera");
        let mut prev_planes: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut prev_data: Option<Vec<u8>> = None;
        for n in 0..6u64 {
            // Even a standing train (speed 0) changes the picture: counter and clock.
            let speed = if n < 3 { 0.0 } else { 90.0 };
            let f = cam.encode_next(n, T0 + n * 33_333, speed, false).expect("encode");
            let planes = (cam.picture.y.clone(), cam.picture.u.clone());
            if let Some(prev) = &prev_planes {
                assert_ne!(prev.0, planes.0, "luma of frame {n} equals frame {}", n - 1);
            }
            if let Some(prev) = &prev_data {
                assert_ne!(prev, &f.data, "encoded frame {n} equals frame {}", n - 1);
            }
            prev_planes = Some(planes);
            prev_data = Some(f.data);
        }
    }

    #[test]
    fn moving_box_follows_speed() {
        let mut cam = Camera::new("box", small(0)).expect("camera");
        cam.render(0, T0, 0.0);
        let still = cam.box_x;
        cam.render(1, T0, 0.0);
        assert!((cam.box_x - still).abs() < f64::EPSILON, "0 km/h must stand still");
        cam.render(2, T0, 100.0);
        let slow = cam.box_x - still;
        cam.render(3, T0, 200.0);
        let fast = cam.box_x - still - slow;
        assert!(slow > 0.0 && (fast - 2.0 * slow).abs() < 1e-9, "slow {slow} fast {fast}");
        // Non-finite speeds do not poison the position.
        cam.render(4, T0, f32::NAN);
        assert!(cam.box_x.is_finite());
        // The box is in the band: some band row has white pixels.
        let l = cam.layout;
        let row = l.band_y + l.band_h / 2;
        assert!(cam.picture.y[row * 160..(row + 1) * 160].contains(&WHITE_Y));
    }

    #[test]
    fn idr_without_parameter_sets_is_repaired() {
        let mut cam = Camera::new("repair", small(0)).expect("camera");
        let first = cam.encode_next(0, T0, 0.0, false).expect("encode");
        let bare_idr = vec![0, 0, 0, 1, 0x65, 0x88, 0x84];
        let f = cam.finish_access_unit(1, bare_idr.clone()).expect("repaired");
        assert!(f.keyframe);
        assert_eq!(nal_types(&f.data), vec![NAL_SPS, NAL_PPS, NAL_IDR]);
        assert!(f.data.ends_with(&bare_idr));
        let sps_pps_len = f.data.len() - bare_idr.len();
        assert_eq!(&f.data[..sps_pps_len], &first.data[..sps_pps_len]);
        // P slices pass through untouched; garbage is rejected.
        let p = vec![0, 0, 0, 1, 0x41, 0x9a];
        assert_eq!(cam.finish_access_unit(2, p.clone()).expect("p frame"), EncodedFrame { data: p, keyframe: false });
        assert!(matches!(cam.finish_access_unit(3, vec![1, 2, 3]), Err(VideoError::Malformed { .. })));
        assert!(matches!(cam.finish_access_unit(4, vec![0, 0, 0, 1, 0x67, 1]), Err(VideoError::Malformed { .. })));
        // Without any SPS/PPS seen before, a bare IDR cannot be repaired.
        let mut fresh = Camera::new("fresh", small(0)).expect("camera");
        assert!(matches!(fresh.finish_access_unit(0, bare_idr), Err(VideoError::Malformed { .. })));
    }

    #[test]
    fn utc_time_formatting() {
        let mut s = String::new();
        // 2023-11-14T22:13:20.123456Z
        write_utc_time(&mut s, T0);
        assert_eq!(s, "22:13:20.123");
        s.clear();
        write_utc_time(&mut s, 86_399_999_999);
        assert_eq!(s, "23:59:59.999");
    }

    #[test]
    fn bar_colours_match_bt601_formula() {
        let lit = [(1, 1, 1), (1, 1, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1), (1, 0, 0), (0, 0, 1), (0, 0, 0)];
        for ((r, g, b), bar) in lit.iter().zip(BARS) {
            let (r, g, b) = (0.75 * f64::from(*r), 0.75 * f64::from(*g), 0.75 * f64::from(*b));
            let ey = 0.299 * r + 0.587 * g + 0.114 * b;
            let y = 16.0 + 219.0 * ey;
            let cb = 128.0 + 224.0 * (b - ey) / 1.772;
            let cr = 128.0 + 224.0 * (r - ey) / 1.402;
            assert!((f64::from(bar.0) - y).abs() <= 1.0, "{bar:?} y {y}");
            assert!((f64::from(bar.1) - cb).abs() <= 1.0, "{bar:?} cb {cb}");
            assert!((f64::from(bar.2) - cr).abs() <= 1.0, "{bar:?} cr {cr}");
        }
    }

    #[test]
    fn layout_fits_common_sizes() {
        for (w, h, want_scale) in [(640, 480, 3), (320, 240, 2), (160, 120, 1), (1280, 720, 3)] {
            let l = Layout::new(w, h);
            assert_eq!(l.scale, want_scale, "{w}x{h}");
            assert!(l.bars_h >= h / 2, "{w}x{h}: bars {}", l.bars_h);
            assert!(l.text_y + 2 * l.scale + 3 * (font::GLYPH_H + 2) * l.scale <= h + 2 * l.scale);
            assert!(font::text_width(LINE_CHARS, l.scale) + 4 * l.scale <= w);
            assert_eq!(l.bars_h % 2 + l.band_h % 2 + l.text_y % 2, 0);
        }
        // Tiny pictures must not panic.
        let mut cam = Camera::new("tiny camera with a long label", VideoConfig { width: 16, height: 16, ..small(0) })
            .expect("camera");
        assert!(cam.encode_next(0, T0, 10.0, false).expect("encode").keyframe);
    }

    /// Mean of the luma samples in the given rectangle of a decoded picture.
    fn mean_luma(y: &[u8], stride: usize, x0: usize, x1: usize, y0: usize, y1: usize) -> f64 {
        let mut sum = 0u64;
        for row in y0..y1 {
            sum += y[row * stride + x0..row * stride + x1].iter().map(|&v| u64::from(v)).sum::<u64>();
        }
        sum as f64 / ((x1 - x0) * (y1 - y0)) as f64
    }

    #[test]
    fn decode_round_trip() {
        let cfg = VideoConfig { width: 160, height: 120, fps: 30, bitrate_bps: 500_000, gop: 5 };
        let mut cam = Camera::new("train-9 cam 1", cfg).expect("camera");
        let mut frames = Vec::new();
        for n in 0..8u64 {
            frames.push(cam.encode_next(n, T0 + n * 33_333, 100.0, false).expect("encode"));
        }
        let bars_h = cam.layout.bars_h;

        let check = |frames: &[EncodedFrame]| {
            let mut decoder = Decoder::new().expect("decoder");
            let mut decoded = 0;
            for f in frames {
                let Some(pic) = decoder.decode(&f.data).expect("decode") else {
                    continue;
                };
                decoded += 1;
                assert_eq!(pic.dimensions(), (160, 120));
                let stride = pic.strides().0;
                let bar_w = 160 / 8;
                let bar_luma = |i: usize| mean_luma(pic.y(), stride, i * bar_w + 4, (i + 1) * bar_w - 4, 4, bars_h - 4);
                for (i, bar) in BARS.iter().enumerate() {
                    let got = bar_luma(i);
                    assert!((got - f64::from(bar.0)).abs() < 12.0, "bar {i}: luma {got}, want {}", bar.0);
                }
                assert!(bar_luma(0) > 160.0, "first bar bright");
                assert!(bar_luma(7) < 40.0, "last bar dark");
                // Chroma of the blue bar: Cb high.
                let cstride = pic.strides().1;
                let (cx, cy) = ((6 * bar_w + bar_w / 2) / 2, bars_h / 4);
                let cb = pic.u()[cy * cstride + cx];
                assert!(cb > 190, "blue bar Cb {cb}");
            }
            decoded
        };
        // From the start of the stream...
        assert_eq!(check(&frames), 8);
        // ...and joining at the second keyframe (frame 5) with a fresh decoder.
        assert!(frames[5].keyframe);
        assert_eq!(check(&frames[5..]), 3);
    }
}
