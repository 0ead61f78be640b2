//! Where the picture lands in the image: Web Mercator, a square tile
//! rendered at `size` pixels, the requested image cut from its middle.

use crate::RenderError;

/// One tile's coordinate range (MVT's usual extent; maplibre-rs draws a
/// tile at exactly this extent).
pub const EXTENT: f64 = 4096.0;

/// Largest image edge, pixels.
pub const MAX_EDGE: u32 = 2048;
/// Smallest image edge, pixels.
pub const MIN_EDGE: u32 = 64;

/// Mercator's latitude limit.
const MAX_LAT: f64 = 85.051_128_78;
/// Earth's circumference at the equator in Web Mercator, metres.
const CIRCUMFERENCE_M: f64 = 40_075_016.686;

/// Web Mercator of a position, both in 0..1 (x east, y south: 0 at the
/// top of the world).
pub fn mercator(lat: f64, lon: f64) -> (f64, f64) {
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let x = (lon + 180.0) / 360.0;
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0;
    (x, y)
}

/// Inverse of [`mercator`]: (lat, lon) of Mercator `x`, `y` in 0..1.
pub fn unmercator(x: f64, y: f64) -> (f64, f64) {
    let lon = x * 360.0 - 180.0;
    let lat = (std::f64::consts::PI * (1.0 - 2.0 * y))
        .sinh()
        .atan()
        .to_degrees();
    (lat, lon)
}

/// The image asked for and the square tile it is cut from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// Requested area: west, south, east, north (degrees).
    pub bbox: [f64; 4],
    /// Image width, pixels.
    pub width: u32,
    /// Image height, pixels.
    pub height: u32,
    /// Edge of the rendered square tile, pixels (the larger of the two).
    pub size: u32,
    /// Mercator units per pixel (the same both ways).
    per_px: f64,
    /// Mercator of the tile's top left corner.
    origin: (f64, f64),
    /// Where the image starts inside the tile, pixels.
    crop: (u32, u32),
}

impl Frame {
    /// The frame showing at least `bbox` (west, south, east, north) in a
    /// `width` × `height` image; the bbox's aspect is kept, so the longer
    /// side decides the scale and the other shows a little more.
    pub fn new(bbox: [f64; 4], width: u32, height: u32) -> Result<Frame, RenderError> {
        let [w, s, e, n] = bbox;
        let bad = |why: String| Err(RenderError::Request(why));
        if !bbox.iter().all(|v| v.is_finite()) {
            return bad("bbox: not four numbers".into());
        }
        if !(-180.0..=180.0).contains(&w) || !(-180.0..=180.0).contains(&e) || w >= e {
            return bad(format!(
                "bbox: west {w} must lie west of east {e}, both within ±180 (an area across the antimeridian is not supported)"
            ));
        }
        if !(-MAX_LAT..=MAX_LAT).contains(&s) || !(-MAX_LAT..=MAX_LAT).contains(&n) || s >= n {
            return bad(format!(
                "bbox: south {s} must lie south of north {n}, both within ±{MAX_LAT:.2} (Web Mercator)"
            ));
        }
        for (name, v) in [("width", width), ("height", height)] {
            if !(MIN_EDGE..=MAX_EDGE).contains(&v) {
                return bad(format!(
                    "{name} {v}: must be {MIN_EDGE} to {MAX_EDGE} pixels"
                ));
            }
        }
        let (x0, y0) = mercator(n, w);
        let (x1, y1) = mercator(s, e);
        let per_px = ((x1 - x0) / f64::from(width)).max((y1 - y0) / f64::from(height));
        let size = width.max(height);
        let half = per_px * f64::from(size) / 2.0;
        let centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        Ok(Frame {
            bbox,
            width,
            height,
            size,
            per_px,
            origin: (centre.0 - half, centre.1 - half),
            crop: ((size - width) / 2, (size - height) / 2),
        })
    }

    /// Tile coordinates (0..[`EXTENT`] inside the tile, may lie outside).
    pub fn to_tile(&self, lat: f64, lon: f64) -> (f64, f64) {
        let (x, y) = mercator(lat, lon);
        let scale = EXTENT / (self.per_px * f64::from(self.size));
        ((x - self.origin.0) * scale, (y - self.origin.1) * scale)
    }

    /// Image pixel coordinates (0..width, 0..height inside the image).
    pub fn to_pixel(&self, lat: f64, lon: f64) -> (f64, f64) {
        let (x, y) = mercator(lat, lon);
        (
            (x - self.origin.0) / self.per_px - f64::from(self.crop.0),
            (y - self.origin.1) / self.per_px - f64::from(self.crop.1),
        )
    }

    /// Tile coordinates of an image pixel position.
    pub fn pixel_to_tile(&self, px: f64, py: f64) -> (f64, f64) {
        let k = EXTENT / f64::from(self.size);
        (
            (px + f64::from(self.crop.0)) * k,
            (py + f64::from(self.crop.1)) * k,
        )
    }

    /// The area the whole image shows (west, south, east, north): the
    /// bbox asked for, widened on one axis to the image's aspect.
    pub fn visible_bbox(&self) -> [f64; 4] {
        let corner = |px: u32, py: u32| {
            unmercator(
                self.origin.0 + f64::from(px + self.crop.0) * self.per_px,
                self.origin.1 + f64::from(py + self.crop.1) * self.per_px,
            )
        };
        let (n, w) = corner(0, 0);
        let (s, e) = corner(self.width, self.height);
        [w.max(-180.0), s, e.min(180.0), n]
    }

    /// Tile units per image pixel.
    pub fn tile_per_px(&self) -> f64 {
        EXTENT / f64::from(self.size)
    }

    /// Where the image starts inside the rendered tile, pixels.
    pub fn crop(&self) -> (u32, u32) {
        self.crop
    }

    /// Ground metres per pixel at the middle of the image.
    pub fn metres_per_px(&self) -> f64 {
        let lat = (self.bbox[1] + self.bbox[3]) / 2.0;
        self.per_px * CIRCUMFERENCE_M * lat.to_radians().cos()
    }

    /// The H3 resolution to draw: the finest of `allowed` whose cells are
    /// at least `min_px` pixels across; the coarsest allowed if none is.
    pub fn resolution(&self, allowed: &[u8], min_px: f64) -> Option<u8> {
        let mpp = self.metres_per_px();
        let across_px = |res: u8| {
            h3o::Resolution::try_from(res)
                .map(|r| 2.0 * r.edge_length_m() / mpp)
                .unwrap_or(0.0)
        };
        let fine_enough = allowed
            .iter()
            .copied()
            .filter(|&r| across_px(r) >= min_px)
            .max();
        fine_enough.or_else(|| allowed.iter().copied().min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAMBURG: [f64; 4] = [9.90, 53.50, 10.10, 53.56];

    #[test]
    fn mercator_matches_known_points() {
        let (x, y) = mercator(0.0, 0.0);
        assert!((x - 0.5).abs() < 1e-12 && (y - 0.5).abs() < 1e-12);
        let (x, y) = mercator(MAX_LAT, -180.0);
        assert!(x.abs() < 1e-12 && y.abs() < 1e-9, "{x} {y}");
        // Slippy-map tile of St. Pauli at zoom 12 (x 2161, y 1323).
        let (x, y) = mercator(53.5503, 9.9660);
        assert_eq!(((x * 4096.0) as u32, (y * 4096.0) as u32), (2161, 1323));
    }

    #[test]
    fn bbox_corners_land_inside_the_image_and_keep_aspect() {
        let f = Frame::new(HAMBURG, 800, 600).expect("frame");
        assert_eq!(f.size, 800);
        let (w, s, e, n) = (HAMBURG[0], HAMBURG[1], HAMBURG[2], HAMBURG[3]);
        let (x0, y0) = f.to_pixel(n, w);
        let (x1, y1) = f.to_pixel(s, e);
        // The longer side (here the width in Mercator) fills the image.
        assert!(x0.abs() < 1e-6 && (x1 - 800.0).abs() < 1e-6, "{x0} {x1}");
        assert!(
            y0 > 0.0 && y1 < 600.0 && (y0 + y1 - 600.0).abs() < 1e-6,
            "{y0} {y1}"
        );
        // The same point in tile units = pixel + crop, scaled.
        let (tx, ty) = f.to_tile(n, w);
        let (px, py) = f.pixel_to_tile(x0, y0);
        assert!((tx - px).abs() < 1e-6 && (ty - py).abs() < 1e-6);
        assert_eq!(f.crop(), (0, 100));
        // What the image shows: the bbox's width, and more than its height.
        let [vw, vs, ve, vn] = f.visible_bbox();
        assert!((vw - w).abs() < 1e-9 && (ve - e).abs() < 1e-9, "{vw} {ve}");
        assert!(vs < s && vn > n, "{vs} {vn}");
        let (lat, lon) = unmercator(mercator(53.55, 9.97).0, mercator(53.55, 9.97).1);
        assert!((lat - 53.55).abs() < 1e-9 && (lon - 9.97).abs() < 1e-9);
    }

    #[test]
    fn refuses_bad_requests() {
        for (bbox, w, h) in [
            ([10.0, 53.0, 9.0, 54.0], 400, 400),
            ([9.0, 54.0, 10.0, 53.0], 400, 400),
            ([170.0, 0.0, 190.0, 1.0], 400, 400),
            ([9.0, 53.0, 10.0, f64::NAN], 400, 400),
            ([9.0, 53.0, 10.0, 89.0], 400, 400),
            (HAMBURG, 10, 400),
            (HAMBURG, 400, 5000),
        ] {
            assert!(
                matches!(Frame::new(bbox, w, h), Err(RenderError::Request(_))),
                "{bbox:?} {w}×{h}"
            );
        }
    }

    #[test]
    fn resolution_follows_the_scale() {
        let all = [6, 7, 8, 9, 10];
        // The whole city on a wall display: coarse cells.
        let city = Frame::new([9.70, 53.35, 10.35, 53.75], 1024, 768).expect("frame");
        // One quarter on a tablet: fine cells.
        let quarter = Frame::new([9.95, 53.535, 9.99, 53.555], 1024, 768).expect("frame");
        let (c, q) = (
            city.resolution(&all, 8.0).expect("res"),
            quarter.resolution(&all, 8.0).expect("res"),
        );
        assert!(c < q, "city {c}, quarter {q}");
        assert_eq!(q, 10);
        // Nothing fine enough: the coarsest allowed.
        let world = Frame::new([-170.0, -60.0, 170.0, 70.0], 256, 256).expect("frame");
        assert_eq!(world.resolution(&all, 8.0), Some(6));
    }
}
