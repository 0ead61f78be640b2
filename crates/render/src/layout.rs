//! Where the header and the legend sit in the image (pixels). The panels
//! and swatches are drawn by the renderer as part of the tile; their text
//! is written onto the image afterwards (maplibre-rs 0.0.3 draws no text).

use crate::style::Layer;

/// A rectangle in image pixels: left, top, width, height.
pub type Rect = [u32; 4];

/// Height of the header band.
pub const HEADER_H: u32 = 22;
/// Height of one legend row.
const ROW_H: u32 = 16;
/// Legend width.
const LEGEND_W: u32 = 178;
/// Smallest image (both edges) that gets a legend.
pub const LEGEND_MIN_EDGE: u32 = 320;

/// The legend's rows: swatch layer, text.
pub const LEGEND_ROWS: [(Layer, &str); 11] = [
    (Layer::Hazard(4), "hazard 4 extreme"),
    (Layer::Hazard(3), "hazard 3 severe"),
    (Layer::Hazard(2), "hazard 2 high"),
    (Layer::Hazard(1), "hazard 1 elevated"),
    (Layer::Hazard(0), "no hazard"),
    (Layer::Incident, "incident area"),
    (Layer::UnitAvailable, "unit available"),
    (Layer::UnitOnMission, "unit on mission"),
    (Layer::UnitUnavailable, "unit unavailable"),
    (Layer::UnitLost, "unit lost"),
    (Layer::Sensor, "sensor"),
];

/// The image's furniture.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The header band across the top.
    pub header: Rect,
    /// The legend panel, bottom left, when the image is large enough.
    pub legend: Option<Rect>,
    /// Each legend row: its swatch layer, swatch and where its text starts.
    pub rows: Vec<(Layer, Rect, (u32, u32), &'static str)>,
}

impl Layout {
    /// The layout of a `width` × `height` image.
    pub fn new(width: u32, height: u32) -> Layout {
        let header = [0, 0, width, HEADER_H.min(height)];
        if width < LEGEND_MIN_EDGE || height < LEGEND_MIN_EDGE {
            return Layout {
                header,
                legend: None,
                rows: Vec::new(),
            };
        }
        let rows_n = u32::try_from(LEGEND_ROWS.len()).unwrap_or(u32::MAX);
        let legend_h = rows_n * ROW_H + 8;
        let legend = [8, height - 8 - legend_h, LEGEND_W, legend_h];
        let rows = LEGEND_ROWS
            .iter()
            .zip(0u32..)
            .map(|(&(layer, text), i)| {
                let top = legend[1] + 4 + i * ROW_H;
                (
                    layer,
                    [legend[0] + 6, top + 2, 12, 12],
                    (legend[0] + 24, top + 4),
                    text,
                )
            })
            .collect();
        Layout {
            header,
            legend: Some(legend),
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_fits_and_small_images_have_none() {
        let l = Layout::new(800, 600);
        let [x, y, w, h] = l.legend.expect("legend");
        assert!(x + w < 800 && y + h < 600 && y > HEADER_H);
        assert_eq!(l.rows.len(), LEGEND_ROWS.len());
        for (_, [sx, sy, sw, sh], (tx, ty), _) in &l.rows {
            assert!(*sx >= x && sx + sw <= x + w && *sy >= y && sy + sh <= y + h);
            assert!(*tx > sx + sw && *ty + 8 <= y + h);
        }
        let small = Layout::new(256, 256);
        assert!(small.legend.is_none() && small.rows.is_empty());
        assert_eq!(small.header, [0, 0, 256, HEADER_H]);
    }
}
