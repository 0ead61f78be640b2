//! Text on the finished image: an 8×8 bitmap font (font8x8, Basic Latin
//! and Latin-1), scaled by whole pixels, white.

use font8x8::{BASIC_FONTS, LATIN_FONTS, UnicodeFonts};

/// Width of `text` at `scale`, pixels.
pub fn width(text: &str, scale: u32) -> u32 {
    u32::try_from(text.chars().count())
        .unwrap_or(u32::MAX)
        .saturating_mul(8 * scale)
}

/// An RGBA image to write on.
pub struct Canvas<'a> {
    rgba: &'a mut [u8],
    width: u32,
    height: u32,
}

impl<'a> Canvas<'a> {
    /// Wraps `rgba` (`width` × `height`, four bytes a pixel).
    pub fn new(rgba: &'a mut [u8], width: u32, height: u32) -> Canvas<'a> {
        Canvas {
            rgba,
            width,
            height,
        }
    }

    fn set(&mut self, x: u32, y: u32) {
        if x < self.width && y < self.height {
            let i = ((y * self.width + x) * 4) as usize;
            self.rgba[i..i + 4].copy_from_slice(&[255, 255, 255, 255]);
        }
    }

    /// Writes `text` with its top left corner at (`x`, `y`); characters
    /// the font lacks show as `?`; what falls outside is cut off.
    pub fn write(&mut self, x: u32, y: u32, text: &str, scale: u32) {
        let glyph = |c: char| {
            BASIC_FONTS
                .get(c)
                .or_else(|| LATIN_FONTS.get(c))
                .or_else(|| BASIC_FONTS.get('?'))
                .unwrap_or([0; 8])
        };
        let mut left = x;
        for c in text.chars() {
            for (row, bits) in (0u32..).zip(glyph(c)) {
                for col in 0..8u32 {
                    if bits & (1 << col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.set(left + col * scale + dx, y + row * scale + dy);
                            }
                        }
                    }
                }
            }
            left = left.saturating_add(8 * scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_drawn_where_asked_and_cut_at_the_edge() {
        let mut img = vec![0u8; 40 * 10 * 4];
        let mut c = Canvas::new(&mut img, 40, 10);
        c.write(1, 1, "I", 1);
        // font8x8's "I" is a bar in columns 1–4 of its first row.
        let lit = |img: &[u8], x: u32, y: u32| img[((y * 40 + x) * 4) as usize] == 255;
        assert!(lit(&img, 2, 1) && lit(&img, 3, 1) && !lit(&img, 0, 1));
        let before: usize = img.iter().filter(|&&b| b == 255).count();
        let mut c = Canvas::new(&mut img, 40, 10);
        c.write(36, 5, "WÄ€", 2); // the last is not in the font: a '?'
        assert!(img.iter().filter(|&&b| b == 255).count() > before);
        assert_eq!(width("EXERCISE", 2), 128);
    }
}
