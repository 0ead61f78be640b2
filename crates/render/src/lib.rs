//! RESCUE MATE map images: the situation picture as a PNG.
//!
//! The picture (cells by hazard level, units by status class, sensors,
//! incidents) and the offline base map are encoded in-process as one
//! Mapbox Vector Tile ([`tile`]) covering the requested area; maplibre-rs's
//! headless renderer draws it (feature `gpu`, [`gpu::Renderer`]); the
//! header's and legend's text is written onto the result ([`finish`]),
//! and the image is cut to the requested size and encoded as PNG.
//!
//! Without the `gpu` feature the crate builds and tests everything but the
//! drawing itself, so the default build stays lean.

pub mod frame;
pub mod layout;
pub mod style;
mod text;
pub mod tile;

#[cfg(feature = "gpu")]
pub mod gpu;

use geo::{LineString, Polygon};

pub use frame::Frame;
pub use layout::Layout;

/// Why no image came out.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The request cannot be drawn (bbox, size).
    #[error("{0}")]
    Request(String),
    /// The base map could not be read.
    #[error("base map: {0}")]
    Basemap(String),
    /// The renderer failed or is not running.
    #[error("renderer: {0}")]
    Renderer(String),
    /// Too many images are being drawn.
    #[error("{0} images are queued for the renderer; try again in a moment")]
    Busy(usize),
}

/// What one image shows.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The picture's part to draw (cells at one resolution).
    pub snapshot: fusion::Snapshot,
    /// The space's name.
    pub space: String,
    /// A drill space: the image is marked EXERCISE.
    pub drill: bool,
    /// The time the picture shows (epoch ms): now, or the `at=` asked for.
    pub at_ms: i64,
    /// Whether `at_ms` is a past picture rebuilt from the log.
    pub historic: bool,
}

impl Scene {
    /// A scene with nothing in it (a probe, a test).
    pub fn empty(space: &str, drill: bool) -> Scene {
        Scene {
            snapshot: fusion::Snapshot {
                seq: 0,
                res: 8,
                cells: Vec::new(),
                units: Vec::new(),
                sensors: Vec::new(),
                incidents: Vec::new(),
                alerts: Vec::new(),
            },
            space: space.to_owned(),
            drill,
            at_ms: 0,
            historic: false,
        }
    }
}

/// The offline base map: land polygons and country borders (lon, lat).
#[derive(Debug, Clone, Default)]
pub struct Basemap {
    /// Land.
    pub land: Vec<Polygon<f64>>,
    /// Borders between countries.
    pub borders: Vec<LineString<f64>>,
}

impl Basemap {
    /// Reads the web client's base map (a GeoJSON FeatureCollection whose
    /// features carry `properties.layer` `land` (MultiPolygon) or `border`
    /// (MultiLineString); anything else is ignored).
    pub fn from_geojson(bytes: &[u8]) -> Result<Basemap, RenderError> {
        let bad = |e: String| RenderError::Basemap(e);
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let features = doc["features"]
            .as_array()
            .ok_or_else(|| bad("not a FeatureCollection".into()))?;
        let ring = |r: &serde_json::Value| -> LineString<f64> {
            r.as_array()
                .map(|pts| {
                    pts.iter()
                        .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
                .into()
        };
        let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
        let mut map = Basemap::default();
        for f in features {
            let coords = &f["geometry"]["coordinates"];
            match (
                f["properties"]["layer"].as_str(),
                f["geometry"]["type"].as_str(),
            ) {
                (Some("land"), Some("MultiPolygon")) => {
                    for p in list(coords) {
                        let rings = list(&p);
                        let Some((outer, holes)) = rings.split_first() else {
                            continue;
                        };
                        map.land
                            .push(Polygon::new(ring(outer), holes.iter().map(ring).collect()));
                    }
                }
                (Some("border"), Some("MultiLineString")) => {
                    map.borders.extend(list(coords).iter().map(ring));
                }
                _ => {}
            }
        }
        Ok(map)
    }
}

/// Everything about one image but the drawing: frame, layout and tile.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the picture lands.
    pub frame: Frame,
    /// Header and legend.
    pub layout: Layout,
    /// The encoded vector tile.
    pub tile: Vec<u8>,
}

impl Plan {
    /// Plans `scene` for `frame`.
    pub fn new(scene: &Scene, frame: Frame, basemap: &Basemap) -> Plan {
        let layout = Layout::new(frame.width, frame.height);
        let tile = tile::encode(scene, &frame, &layout, basemap);
        Plan {
            frame,
            layout,
            tile,
        }
    }
}

/// The header's text: what, where, when.
pub fn header_text(scene: &Scene) -> (String, Option<&'static str>) {
    let when = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(scene.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{} ms", scene.at_ms));
    let what = if scene.historic { "as of " } else { "" };
    let left = format!("{}  {what}{when}", scene.space);
    (left, scene.drill.then_some("EXERCISE"))
}

/// Cuts the rendered square tile (`rgba`, `frame.size`² pixels, RGBA) to
/// the image, writes the header's and legend's text and encodes a PNG.
pub fn finish(plan: &Plan, scene: &Scene, rgba: &[u8]) -> Result<Vec<u8>, RenderError> {
    let Frame {
        width,
        height,
        size,
        ..
    } = plan.frame;
    let (cx, cy) = plan.frame.crop();
    let (w, h, s) = (width as usize, height as usize, size as usize);
    if rgba.len() != s * s * 4 {
        return Err(RenderError::Renderer(format!(
            "{} bytes for a {size}×{size} image",
            rgba.len()
        )));
    }
    let mut img = vec![0u8; w * h * 4];
    for y in 0..h {
        let from = ((y + cy as usize) * s + cx as usize) * 4;
        img[y * w * 4..(y + 1) * w * 4].copy_from_slice(&rgba[from..from + w * 4]);
    }
    // Opaque, whatever the renderer left in alpha.
    for px in img.chunks_exact_mut(4) {
        px[3] = 255;
    }
    let mut canvas = text::Canvas::new(&mut img, width, height);
    let (left, right) = header_text(scene);
    let [_, hy, hw, hh] = plan.layout.header;
    // Large letters where they fit, small ones where they do not.
    let right_w = |scale| right.map_or(0, |r| text::width(r, scale) + 12);
    let scale = if text::width(&left, 2) + right_w(2) + 12 <= hw {
        2
    } else {
        1
    };
    let ty = hy + hh.saturating_sub(8 * scale) / 2;
    canvas.write(6, ty, &left, scale);
    if let Some(r) = right {
        canvas.write(hw.saturating_sub(text::width(r, scale) + 6), ty, r, scale);
    }
    for &(_, _, (tx, ty), label) in &plan.layout.rows {
        canvas.write(tx, ty, label, 1);
    }
    encode_png(&img, width, height)
}

/// A PNG of an RGBA image.
pub fn encode_png(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .map_err(|e| RenderError::Renderer(format!("png: {e}")))?;
    writer
        .write_image_data(rgba)
        .map_err(|e| RenderError::Renderer(format!("png: {e}")))?;
    writer
        .finish()
        .map_err(|e| RenderError::Renderer(format!("png: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(drill: bool) -> Scene {
        Scene {
            at_ms: 1_796_000_000_000,
            ..Scene::empty("drill-sturmflut", drill)
        }
    }

    #[test]
    fn basemap_reads_land_and_borders_and_ignores_the_rest() {
        let doc = serde_json::json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"layer": "land"}, "geometry": {"type": "MultiPolygon",
              "coordinates": [[[[9, 53], [10, 53], [10, 54], [9, 53]], [[9.5, 53.2], [9.6, 53.2], [9.6, 53.3], [9.5, 53.2]]]]}},
            {"type": "Feature", "properties": {"layer": "border"}, "geometry": {"type": "MultiLineString",
              "coordinates": [[[9, 54], [10, 54.5]], [[8, 54], [8, 55]]]}},
            {"type": "Feature", "properties": {"layer": "lakes"}, "geometry": {"type": "Point", "coordinates": [9, 53]}}
        ]});
        let map = Basemap::from_geojson(doc.to_string().as_bytes()).expect("basemap");
        assert_eq!(map.land.len(), 1);
        assert_eq!(map.land[0].interiors().len(), 1);
        assert_eq!(map.borders.len(), 2);
        assert!(Basemap::from_geojson(b"[1, 2]").is_err());
        assert!(Basemap::from_geojson(b"{").is_err());
    }

    #[test]
    fn header_names_space_time_and_exercise() {
        let (left, right) = header_text(&scene(true));
        assert_eq!(left, "drill-sturmflut  2026-11-30 00:53:20 UTC");
        assert_eq!(right, Some("EXERCISE"));
        assert_eq!(header_text(&scene(false)).1, None);
    }

    #[test]
    fn finish_crops_writes_text_and_encodes_png() {
        let frame = Frame::new([9.9, 53.5, 10.1, 53.6], 400, 340).expect("frame");
        let s = scene(true);
        let plan = Plan::new(&s, frame, &Basemap::default());
        let size = frame.size as usize;
        // A tile of one colour, as if rendered.
        let rgba: Vec<u8> = [10u8, 20, 30, 0].repeat(size * size);
        let png = finish(&plan, &s, &rgba).expect("png");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!((info.width, info.height), (400, 340));
        let px = |x: usize, y: usize| &buf[(y * 400 + x) * 4..(y * 400 + x) * 4 + 4];
        assert_eq!(px(200, 200), [10, 20, 30, 255]);
        // Text is white in the header (and nowhere is the alpha left 0).
        let white = (0..400 * 22)
            .filter(|i| buf[i * 4..i * 4 + 3] == [255, 255, 255])
            .count();
        assert!(white > 200, "{white} white header pixels");
        assert!(buf.chunks(4).all(|p| p[3] == 255));
        assert!(finish(&plan, &s, &rgba[4..]).is_err());
    }
}
