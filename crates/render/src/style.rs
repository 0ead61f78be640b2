//! The image's layers, bottom to top, and their colours.
//!
//! maplibre-rs (0.0.3) styles a layer with one fill or line colour and no
//! filters or expressions, so every colour is its own source layer of the
//! tile. Colours are opaque: its headless output writes a fill's alpha
//! into the image instead of blending it with what lies below.

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// Hazard levels 0–4, as the web client colours them. Level 0 (a cell with
/// units or sensors but no hazard) is the client's grey-blue at 35 % over
/// the land, mixed here because layers are opaque.
pub const HAZARD: [Rgb; 5] = [
    [0x50, 0x5e, 0x6d],
    [0xf2, 0xd0, 0x24],
    [0xf2, 0x8c, 0x28],
    [0xe0, 0x30, 0x2a],
    [0x9b, 0x1f, 0xb0],
];

/// Every layer, bottom to top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The whole tile (sea and everything without land).
    Water,
    /// Natural Earth land.
    Land,
    /// Country borders.
    Border,
    /// Cells by hazard level 0–4.
    Hazard(u8),
    /// Incident outlines.
    Incident,
    /// Dark rims under unit and sensor markers.
    MarkerRim,
    /// Sensors.
    Sensor,
    /// Units available (status 1, 2).
    UnitAvailable,
    /// Units on a mission (3, 4, 7, 8).
    UnitOnMission,
    /// Units not available (6).
    UnitUnavailable,
    /// Units without a class-defining status yet.
    UnitUnknown,
    /// Units whose last report is lost (older than ten times their TTL).
    UnitLost,
    /// Header and legend panels.
    Panel,
    /// The EXERCISE band of a drill.
    Exercise,
}

impl Layer {
    /// All layers, bottom to top.
    pub const ALL: [Layer; 18] = [
        Layer::Water,
        Layer::Land,
        Layer::Border,
        Layer::Hazard(0),
        Layer::Hazard(1),
        Layer::Hazard(2),
        Layer::Hazard(3),
        Layer::Hazard(4),
        Layer::Incident,
        Layer::MarkerRim,
        Layer::Sensor,
        Layer::UnitAvailable,
        Layer::UnitOnMission,
        Layer::UnitUnavailable,
        Layer::UnitUnknown,
        Layer::UnitLost,
        Layer::Panel,
        Layer::Exercise,
    ];

    /// The tile's source-layer name.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Water => "water",
            Layer::Land => "land",
            Layer::Border => "border",
            Layer::Hazard(0) => "hazard_0",
            Layer::Hazard(1) => "hazard_1",
            Layer::Hazard(2) => "hazard_2",
            Layer::Hazard(3) => "hazard_3",
            Layer::Hazard(_) => "hazard_4",
            Layer::Incident => "incident",
            Layer::MarkerRim => "marker_rim",
            Layer::Sensor => "sensor",
            Layer::UnitAvailable => "unit_available",
            Layer::UnitOnMission => "unit_on_mission",
            Layer::UnitUnavailable => "unit_unavailable",
            Layer::UnitUnknown => "unit_unknown",
            Layer::UnitLost => "unit_lost",
            Layer::Panel => "panel",
            Layer::Exercise => "exercise",
        }
    }

    /// Its colour.
    pub fn color(self) -> Rgb {
        match self {
            Layer::Water => [0x0f, 0x2c, 0x47],
            Layer::Land => [0x2f, 0x39, 0x45],
            Layer::Border => [0x8b, 0x7f, 0xa3],
            Layer::Hazard(l) => HAZARD[usize::from(l.min(4))],
            Layer::Incident => [0xff, 0x4f, 0xa0],
            Layer::MarkerRim => [0x10, 0x10, 0x10],
            Layer::Sensor => [0x7f, 0xd4, 0xff],
            Layer::UnitAvailable => [0x1f, 0x9d, 0x55],
            Layer::UnitOnMission => [0xe0, 0x8a, 0x00],
            Layer::UnitUnavailable => [0x5a, 0x62, 0x70],
            Layer::UnitUnknown => [0x6b, 0x77, 0x87],
            Layer::UnitLost => [0xc9, 0xd1, 0xda],
            Layer::Panel => [0x0b, 0x16, 0x21],
            Layer::Exercise => [0xc0, 0x16, 0x2c],
        }
    }

    /// Its colour as CSS, for a style.
    pub fn css(self) -> String {
        let [r, g, b] = self.color();
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_colours_are_distinct() {
        let mut names: Vec<_> = Layer::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Layer::ALL.len());
        // Hazard colours appear nowhere else, so an image can be checked
        // for them.
        for l in Layer::ALL {
            if !matches!(l, Layer::Hazard(_)) {
                assert!(!HAZARD.contains(&l.color()), "{l:?}");
            }
        }
        assert_eq!(Layer::Hazard(3).css(), "#e0302a");
    }
}
