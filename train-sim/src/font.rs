//! A tiny embedded 5×7 bitmap font for burning text into video frames.
//!
//! The simulated cameras (see `video.rs`) draw their label, frame counter,
//! wall-clock time and speed straight into the luma plane of each picture so
//! that a person looking at the browser player can see at a glance which
//! train/camera they watch, whether the picture is live (the clock and the
//! counter advance) and how old it is (compare the burned-in time with a real
//! clock). A bitmap font keeps the simulator free of any font/rendering
//! dependency and is fast: a glyph is seven bytes.
//!
//! Only upper-case letters, digits and a little punctuation are defined;
//! lower-case letters are drawn with their upper-case glyph and every other
//! character is drawn as `?`.

/// Width of a glyph in font pixels (before scaling).
pub const GLYPH_W: usize = 5;
/// Height of a glyph in font pixels (before scaling).
pub const GLYPH_H: usize = 7;
/// Horizontal distance from one glyph to the next, in font pixels (glyph + 1 column gap).
pub const ADVANCE: usize = GLYPH_W + 1;

/// Rows of one glyph, top to bottom; bit 4 of each row is the leftmost pixel.
pub type Glyph = [u8; GLYPH_H];

const QUESTION: Glyph = [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04];

/// The glyph for `c` (lower-case letters map to upper case, unknown characters to `?`).
#[must_use]
pub fn glyph(c: char) -> Glyph {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0x00; GLYPH_H],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04],
        '\'' => [0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        _ => QUESTION,
    }
}

/// Width in pixels that `chars` characters take at `scale` (no trailing gap).
#[must_use]
pub fn text_width(chars: usize, scale: usize) -> usize {
    (chars * ADVANCE).saturating_sub(1) * scale
}

/// A mutable 8-bit plane (e.g. the luma plane of an I420 picture).
#[derive(Debug)]
pub struct Plane<'a> {
    /// Pixel data, `stride * height` bytes at least.
    pub data: &'a mut [u8],
    /// Bytes from one row to the next.
    pub stride: usize,
    /// Visible width in pixels.
    pub width: usize,
    /// Visible height in pixels.
    pub height: usize,
}

/// Draws `text` with its top-left corner at (`x`, `y`), each font pixel
/// becoming a `scale`×`scale` square of value `value`. Only the set pixels are
/// written (the background is left alone); everything outside the plane is
/// clipped. Returns the x coordinate just after the last glyph.
pub fn draw_text(plane: &mut Plane<'_>, x: usize, y: usize, scale: usize, text: &str, value: u8) -> usize {
    let scale = scale.max(1);
    let mut pen_x = x;
    for c in text.chars() {
        if pen_x >= plane.width {
            break;
        }
        draw_glyph(plane, pen_x, y, scale, glyph(c), value);
        pen_x += ADVANCE * scale;
    }
    pen_x
}

fn draw_glyph(plane: &mut Plane<'_>, x: usize, y: usize, scale: usize, glyph: Glyph, value: u8) {
    for (row, bits) in glyph.into_iter().enumerate() {
        if bits == 0 {
            continue;
        }
        let y0 = y + row * scale;
        for py in y0..(y0 + scale).min(plane.height) {
            let line_start = py * plane.stride;
            let Some(line) = plane.data.get_mut(line_start..line_start + plane.width) else {
                return;
            };
            for col in 0..GLYPH_W {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                let x0 = x + col * scale;
                let x1 = (x0 + scale).min(plane.width);
                if x0 < x1 {
                    line[x0..x1].fill(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_fit_in_five_columns_and_fallback_works() {
        for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ :.,-+=/_#%()!'?".chars() {
            assert!(glyph(c).iter().all(|row| row & !0x1F == 0), "glyph {c:?} wider than 5");
        }
        assert_eq!(glyph('k'), glyph('K'));
        assert_eq!(glyph('\u{00e9}'), QUESTION);
        assert_ne!(glyph('0'), glyph('8'));
    }

    #[test]
    fn draws_scaled_and_clipped() {
        let (w, h) = (20, 10);
        let mut buf = vec![0u8; w * h];
        let mut plane = Plane { data: &mut buf, stride: w, width: w, height: h };
        // '1' at scale 2: top row is 0x04 -> column 2 -> pixels x 4..6, rows 0..2.
        let end = draw_text(&mut plane, 0, 0, 2, "1", 200);
        assert_eq!(end, 12);
        assert_eq!(buf[4], 200);
        assert_eq!(buf[5], 200);
        assert_eq!(buf[3], 0);
        assert_eq!(buf[w + 5], 200);
        // Drawing far outside must not panic.
        let mut plane = Plane { data: &mut buf, stride: w, width: w, height: h };
        draw_text(&mut plane, 15, 8, 3, "888", 1);
        draw_text(&mut plane, 100, 100, 3, "888", 1);
        assert_eq!(text_width(3, 2), 34);
    }
}
