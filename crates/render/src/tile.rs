//! The picture as one Mapbox Vector Tile (MVT 2.1, protobuf): a source
//! layer per colour (see [`crate::style`]), geometry in the tile's
//! coordinates, encoded with geozero.

use geo::orient::Direction;
use geo::{BooleanOps, Coord, LineString, MultiLineString, MultiPolygon, Orient, Polygon};
use geozero::ToMvt;
use geozero::mvt::{Message, Tile, tile};

use crate::frame::{EXTENT, Frame};
use crate::layout::{Layout, Rect};
use crate::style::Layer;
use crate::{Basemap, Scene};

/// How far outside the tile geometry is kept (tile units): enough that no
/// edge or marker rim shows at the border.
const MARGIN: f64 = 64.0;

/// Unit marker edge and rim, pixels.
const UNIT_PX: f64 = 10.0;
const RIM_PX: f64 = 2.0;
/// Sensor marker radius, pixels.
const SENSOR_PX: f64 = 4.5;
/// Incident outline width, pixels.
const INCIDENT_PX: f64 = 3.0;
/// Border line width, pixels.
const BORDER_PX: f64 = 1.2;
/// Cells at least this wide (pixels) are drawn a pixel smaller all round,
/// so neighbours stay apart.
const INSET_FROM_PX: f64 = 10.0;

/// Features per layer, in [`Layer::ALL`] order.
struct Layers {
    features: Vec<Vec<tile::Feature>>,
}

impl Layers {
    fn new() -> Layers {
        Layers {
            features: vec![Vec::new(); Layer::ALL.len()],
        }
    }

    fn slot(&mut self, layer: Layer) -> &mut Vec<tile::Feature> {
        let i = Layer::ALL.iter().position(|l| *l == layer).unwrap_or(0);
        &mut self.features[i]
    }

    /// Adds a polygon given in tile coordinates (rounded to the grid,
    /// outer ring oriented as MVT wants; degenerate rings dropped).
    fn polygon(&mut self, layer: Layer, polygon: &Polygon<f64>) {
        let snap = |ring: &LineString<f64>| -> Option<LineString<f64>> {
            let mut pts: Vec<Coord<f64>> = Vec::with_capacity(ring.0.len());
            for c in &ring.0 {
                let c = Coord {
                    x: c.x.round(),
                    y: c.y.round(),
                };
                if pts.last() != Some(&c) {
                    pts.push(c);
                }
            }
            if pts.first() != pts.last() {
                let first = pts[0];
                pts.push(first);
            }
            (pts.len() >= 4).then(|| LineString::new(pts))
        };
        let Some(exterior) = snap(polygon.exterior()) else {
            return;
        };
        let holes = polygon.interiors().iter().filter_map(snap).collect();
        // MVT: exterior rings have positive area in tile coordinates (y
        // down), which is geo's counter-clockwise orientation.
        let p = Polygon::new(exterior, holes).orient(Direction::Default);
        if let Ok(mut f) = geo_types::Geometry::Polygon(p).to_mvt() {
            f.set_type(tile::GeomType::Polygon);
            self.slot(layer).push(f);
        }
    }

    fn rect(&mut self, layer: Layer, x0: f64, y0: f64, x1: f64, y1: f64) {
        let ring = vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
        self.polygon(layer, &Polygon::new(LineString::from(ring), vec![]));
    }

    /// A line drawn as one rectangle per segment, `width` tile units wide
    /// (maplibre-rs's own lines are a fixed hairline).
    fn line(&mut self, layer: Layer, points: &[(f64, f64)], width: f64) {
        let hw = width / 2.0;
        for pair in points.windows(2) {
            let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
            let len = (bx - ax).hypot(by - ay);
            if len < 0.5 {
                continue;
            }
            // Along and across the segment, half a width each; the ends
            // reach half a width further so that corners close.
            let (ux, uy) = ((bx - ax) / len * hw, (by - ay) / len * hw);
            let (nx, ny) = (-uy, ux);
            let ring = vec![
                (ax - ux + nx, ay - uy + ny),
                (bx + ux + nx, by + uy + ny),
                (bx + ux - nx, by + uy - ny),
                (ax - ux - nx, ay - uy - ny),
                (ax - ux + nx, ay - uy + ny),
            ];
            self.polygon(layer, &Polygon::new(LineString::from(ring), vec![]));
        }
    }

    fn encode(self) -> Vec<u8> {
        let layers = Layer::ALL
            .iter()
            .zip(self.features)
            .filter(|(_, f)| !f.is_empty())
            .map(|(layer, features)| tile::Layer {
                version: 2,
                name: layer.name().to_owned(),
                features,
                keys: Vec::new(),
                values: Vec::new(),
                extent: Some(4096),
            })
            .collect();
        Tile { layers }.encode_to_vec()
    }
}

fn inside(x: f64, y: f64) -> bool {
    (-MARGIN..=EXTENT + MARGIN).contains(&x) && (-MARGIN..=EXTENT + MARGIN).contains(&y)
}

/// The tile's rectangle with its margin, as a polygon to clip against.
fn bounds() -> Polygon<f64> {
    let (a, b) = (-MARGIN, EXTENT + MARGIN);
    Polygon::new(
        LineString::from(vec![(a, a), (b, a), (b, b), (a, b), (a, a)]),
        vec![],
    )
}

fn project(frame: &Frame, ring: &LineString<f64>) -> LineString<f64> {
    ring.0
        .iter()
        .map(|c| {
            let (x, y) = frame.to_tile(c.y, c.x);
            Coord { x, y }
        })
        .collect()
}

/// The scene as an MVT tile for `frame`, with the image's furniture
/// (header band, legend panel and swatches) from `layout`.
pub fn encode(scene: &Scene, frame: &Frame, layout: &Layout, basemap: &Basemap) -> Vec<u8> {
    let mut out = Layers::new();
    let px = frame.tile_per_px();
    out.rect(
        Layer::Water,
        -MARGIN,
        -MARGIN,
        EXTENT + MARGIN,
        EXTENT + MARGIN,
    );
    base(&mut out, frame, basemap, px);
    cells(&mut out, scene, frame, px);
    incidents(&mut out, scene, frame, px);
    markers(&mut out, scene, frame, px);
    furniture(&mut out, scene, frame, layout);
    out.encode()
}

fn base(out: &mut Layers, frame: &Frame, basemap: &Basemap, px: f64) {
    let bounds = bounds();
    let land: MultiPolygon<f64> = basemap
        .land
        .iter()
        .map(|p| {
            Polygon::new(
                project(frame, p.exterior()),
                p.interiors().iter().map(|r| project(frame, r)).collect(),
            )
        })
        .collect();
    for p in land.intersection(&bounds) {
        out.polygon(Layer::Land, &p);
    }
    let borders: MultiLineString<f64> = basemap.borders.iter().map(|l| project(frame, l)).collect();
    for l in bounds.clip(&borders, false) {
        let pts: Vec<(f64, f64)> = l.0.iter().map(|c| (c.x, c.y)).collect();
        out.line(Layer::Border, &pts, BORDER_PX * px);
    }
}

fn cells(out: &mut Layers, scene: &Scene, frame: &Frame, px: f64) {
    for cell in &scene.snapshot.cells {
        let ring: Vec<(f64, f64)> = cell
            .h3
            .boundary()
            .iter()
            .map(|v| frame.to_tile(v.lat(), v.lng()))
            .collect();
        if ring.is_empty() || !ring.iter().any(|&(x, y)| inside(x, y)) {
            continue;
        }
        let n = ring.len() as f64;
        let (cx, cy) = ring
            .iter()
            .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
        let across = ring
            .iter()
            .map(|(x, y)| (x - cx).hypot(y - cy))
            .fold(0.0, f64::max)
            * 2.0
            / px;
        // One pixel off the radius.
        let shrink = if across >= INSET_FROM_PX {
            1.0 - 2.0 / across
        } else {
            1.0
        };
        let mut pts: Vec<(f64, f64)> = ring
            .iter()
            .map(|(x, y)| (cx + (x - cx) * shrink, cy + (y - cy) * shrink))
            .collect();
        pts.push(pts[0]);
        let layer = Layer::Hazard(cell.agg.hazard.min(4));
        out.polygon(layer, &Polygon::new(LineString::from(pts), vec![]));
    }
}

/// A ring or a list of points, (lon, lat).
type Points = Vec<(f64, f64)>;

/// Rings of a GeoJSON Polygon or MultiPolygon (lon, lat), or a Point.
fn incident_rings(geometry: &serde_json::Value) -> (Vec<Points>, Points) {
    let pair = |v: &serde_json::Value| Some((v.get(0)?.as_f64()?, v.get(1)?.as_f64()?));
    let ring = |r: &serde_json::Value| -> Vec<(f64, f64)> {
        r.as_array()
            .map(|a| a.iter().filter_map(pair).collect())
            .unwrap_or_default()
    };
    let coords = &geometry["coordinates"];
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    match geometry["type"].as_str() {
        Some("Polygon") => (list(coords).iter().map(ring).collect(), Vec::new()),
        Some("MultiPolygon") => (
            list(coords)
                .iter()
                .flat_map(|p| list(p).iter().map(ring).collect::<Vec<_>>())
                .collect(),
            Vec::new(),
        ),
        Some("Point") => (Vec::new(), pair(coords).into_iter().collect()),
        _ => (Vec::new(), Vec::new()),
    }
}

fn incidents(out: &mut Layers, scene: &Scene, frame: &Frame, px: f64) {
    for incident in &scene.snapshot.incidents {
        let (rings, points) = incident_rings(&incident.geometry);
        for r in rings {
            let pts: Vec<(f64, f64)> = r
                .iter()
                .map(|&(lon, lat)| frame.to_tile(lat, lon))
                .collect();
            out.line(Layer::Incident, &pts, INCIDENT_PX * px);
        }
        for (lon, lat) in points {
            let (x, y) = frame.to_tile(lat, lon);
            let r = 9.0 * px;
            let circle: Vec<(f64, f64)> = (0..=16)
                .map(|i| {
                    let a = f64::from(i) * std::f64::consts::TAU / 16.0;
                    (x + r * a.cos(), y + r * a.sin())
                })
                .collect();
            out.line(Layer::Incident, &circle, INCIDENT_PX * px);
        }
    }
}

fn markers(out: &mut Layers, scene: &Scene, frame: &Frame, px: f64) {
    let diamond = |x: f64, y: f64, r: f64| {
        Polygon::new(
            LineString::from(vec![
                (x, y - r),
                (x + r, y),
                (x, y + r),
                (x - r, y),
                (x, y - r),
            ]),
            vec![],
        )
    };
    for s in &scene.snapshot.sensors {
        let (Some(lat), Some(lon)) = (s.lat, s.lon) else {
            continue;
        };
        let (x, y) = frame.to_tile(lat, lon);
        if !inside(x, y) {
            continue;
        }
        out.polygon(Layer::MarkerRim, &diamond(x, y, (SENSOR_PX + RIM_PX) * px));
        out.polygon(Layer::Sensor, &diamond(x, y, SENSOR_PX * px));
    }
    for u in &scene.snapshot.units {
        let (Some(lat), Some(lon)) = (u.lat, u.lon) else {
            continue;
        };
        let (x, y) = frame.to_tile(lat, lon);
        if !inside(x, y) {
            continue;
        }
        let layer = if u.freshness == Some(fusion::Freshness::Lost) {
            Layer::UnitLost
        } else {
            match u.status_class {
                fusion::StatusClass::Available => Layer::UnitAvailable,
                fusion::StatusClass::OnMission => Layer::UnitOnMission,
                fusion::StatusClass::Unavailable => Layer::UnitUnavailable,
                fusion::StatusClass::Unknown => Layer::UnitUnknown,
            }
        };
        let (h, r) = (UNIT_PX / 2.0 * px, (UNIT_PX / 2.0 + RIM_PX) * px);
        out.rect(Layer::MarkerRim, x - r, y - r, x + r, y + r);
        out.rect(layer, x - h, y - h, x + h, y + h);
    }
}

fn furniture(out: &mut Layers, scene: &Scene, frame: &Frame, layout: &Layout) {
    let ring = |[x, y, w, h]: Rect| {
        let (x0, y0) = frame.pixel_to_tile(f64::from(x), f64::from(y));
        let (x1, y1) = frame.pixel_to_tile(f64::from(x + w), f64::from(y + h));
        LineString::from(vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
    };
    let band = if scene.drill {
        Layer::Exercise
    } else {
        Layer::Panel
    };
    out.polygon(band, &Polygon::new(ring(layout.header), vec![]));
    if let Some(legend) = layout.legend {
        // The panel lies above every map layer; the swatches are drawn in
        // their own layers below it, seen through holes in the panel.
        let holes = layout
            .rows
            .iter()
            .map(|&(_, swatch, _, _)| ring(swatch))
            .collect();
        out.polygon(Layer::Panel, &Polygon::new(ring(legend), holes));
    }
    for &(layer, swatch, _, _) in &layout.rows {
        out.polygon(layer, &Polygon::new(ring(swatch), vec![]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geozero::mvt::Tile;

    fn decode(bytes: &[u8]) -> Tile {
        Tile::decode(bytes).expect("a valid MVT tile")
    }

    #[test]
    fn a_polygon_is_encoded_with_mvt_commands_and_positive_area() {
        let mut l = Layers::new();
        // Given clockwise in y-up terms: must come out reoriented.
        l.rect(Layer::Land, 100.0, 100.0, 200.0, 300.0);
        let tile = decode(&l.encode());
        assert_eq!(tile.layers.len(), 1);
        let layer = &tile.layers[0];
        assert_eq!(
            (layer.name.as_str(), layer.extent, layer.version),
            ("land", Some(4096), 2)
        );
        let g = &layer.features[0].geometry;
        // MoveTo(1) x y, LineTo(3) 3 × (dx dy), ClosePath(1).
        assert_eq!(g[0], 9);
        assert_eq!(g[3], (3 << 3) | 2);
        assert_eq!(g[g.len() - 1], 15);
        assert_eq!(g.len(), 1 + 2 + 1 + 6 + 1);
        // Decode the zigzag deltas and check the area's sign (MVT 4.3.4.4).
        let zz = |v: u32| ((v >> 1) as i64) ^ -((v & 1) as i64);
        let mut pts = vec![(zz(g[1]), zz(g[2]))];
        for d in g[4..10].chunks(2) {
            let (x, y) = pts[pts.len() - 1];
            pts.push((x + zz(d[0]), y + zz(d[1])));
        }
        let area: i64 = (0..pts.len())
            .map(|i| {
                let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                a.0 * b.1 - b.0 * a.1
            })
            .sum();
        assert!(area > 0, "{pts:?}");
        assert_eq!(area, 2 * 100 * 200);
    }

    #[test]
    fn degenerate_and_tiny_geometry_is_dropped() {
        let mut l = Layers::new();
        l.rect(Layer::Land, 10.0, 10.0, 10.2, 10.2);
        l.line(Layer::Border, &[(5.0, 5.0), (5.1, 5.1)], 3.0);
        assert!(decode(&l.encode()).layers.is_empty());
    }

    #[test]
    fn incident_geometries_are_read() {
        let poly = serde_json::json!({"type": "Polygon", "coordinates": [[[9.9, 53.5], [10.0, 53.5], [10.0, 53.6], [9.9, 53.5]]]});
        let (rings, points) = incident_rings(&poly);
        assert_eq!((rings.len(), rings[0].len(), points.len()), (1, 4, 0));
        let multi = serde_json::json!({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[2, 2], [3, 2], [3, 3], [2, 2]]]]});
        assert_eq!(incident_rings(&multi).0.len(), 2);
        let point = serde_json::json!({"type": "Point", "coordinates": [9.9, 53.5]});
        assert_eq!(incident_rings(&point).1, vec![(9.9, 53.5)]);
        assert_eq!(
            incident_rings(&serde_json::json!({"type": "Nonsense"}))
                .0
                .len(),
            0
        );
    }
}
