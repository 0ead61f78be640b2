//! Covering incident geometries with H3 cells at the finest resolution, so
//! that an incident raises the hazard of exactly the cells it touches.
//!
//! Polygons use h3o's tiler in "covers" mode (every cell that touches the
//! area, and the cell around an area smaller than a cell): for a control
//! room, a cell partly inside a flooded area is affected. Lines follow the
//! grid path between their vertices; points are their own cell.

use std::collections::BTreeSet;

use geo::{LineString, Polygon};
use h3o::geom::{ContainmentMode, TilerBuilder};
use h3o::{CellIndex, LatLng, Resolution};
use serde_json::Value;

/// Why a geometry could not be covered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoverError {
    /// Not a supported GeoJSON geometry.
    #[error("geometry not coverable: {0}")]
    Geometry(String),
    /// It would take more cells than allowed.
    #[error("incident area needs about {cells} cells at the finest resolution (limit {limit})")]
    TooLarge {
        /// Estimated cells.
        cells: usize,
        /// The limit.
        limit: usize,
    },
}

fn bad(why: impl Into<String>) -> CoverError {
    CoverError::Geometry(why.into())
}

fn position(v: &Value) -> Result<(f64, f64), CoverError> {
    let a = v
        .as_array()
        .ok_or_else(|| bad("a position must be an array"))?;
    match (
        a.first().and_then(Value::as_f64),
        a.get(1).and_then(Value::as_f64),
    ) {
        (Some(lon), Some(lat)) => Ok((lon, lat)),
        _ => Err(bad("a position needs [lon, lat]")),
    }
}

fn positions(v: &Value) -> Result<Vec<(f64, f64)>, CoverError> {
    v.as_array()
        .ok_or_else(|| bad("expected an array of positions"))?
        .iter()
        .map(position)
        .collect()
}

fn cell(lon: f64, lat: f64, res: Resolution) -> Result<CellIndex, CoverError> {
    LatLng::new(lat, lon)
        .map(|ll| ll.to_cell(res))
        .map_err(|e| bad(e.to_string()))
}

fn polygon(rings: &Value) -> Result<Polygon, CoverError> {
    let rings = rings
        .as_array()
        .ok_or_else(|| bad("a polygon is an array of rings"))?;
    let mut rings = rings.iter().map(|r| positions(r).map(LineString::from));
    let exterior = rings
        .next()
        .ok_or_else(|| bad("a polygon needs an outer ring"))??;
    let holes = rings.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, holes))
}

/// Cells along a line: the grid path between consecutive vertices (or the
/// vertices alone where no grid path exists, e.g. across a pentagon).
fn line(
    points: &[(f64, f64)],
    res: Resolution,
    out: &mut BTreeSet<CellIndex>,
    limit: usize,
) -> Result<(), CoverError> {
    let cells = points
        .iter()
        .map(|(lon, lat)| cell(*lon, *lat, res))
        .collect::<Result<Vec<_>, _>>()?;
    out.extend(cells.iter().copied());
    for pair in cells.windows(2) {
        if let Ok(n) = pair[0].grid_path_cells_size(pair[1]) {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if out.len().saturating_add(n) > limit {
                return Err(CoverError::TooLarge {
                    cells: out.len().saturating_add(n),
                    limit,
                });
            }
            if let Ok(path) = pair[0].grid_path_cells(pair[1]) {
                out.extend(path.flatten());
            }
        }
    }
    Ok(())
}

/// The cells at `res` that a GeoJSON geometry covers, sorted, at most `limit`.
pub fn cover(
    geometry: &Value,
    res: Resolution,
    limit: usize,
) -> Result<Vec<CellIndex>, CoverError> {
    let kind = geometry
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let coords = geometry
        .get("coordinates")
        .ok_or_else(|| bad("missing coordinates"))?;
    let mut out = BTreeSet::new();
    match kind {
        "Point" => {
            let (lon, lat) = position(coords)?;
            out.insert(cell(lon, lat, res)?);
        }
        "MultiPoint" => {
            for (lon, lat) in positions(coords)? {
                out.insert(cell(lon, lat, res)?);
            }
        }
        "LineString" => line(&positions(coords)?, res, &mut out, limit)?,
        "MultiLineString" => {
            for l in coords.as_array().ok_or_else(|| bad("expected lines"))? {
                line(&positions(l)?, res, &mut out, limit)?;
            }
        }
        "Polygon" | "MultiPolygon" => {
            let polys = if kind == "Polygon" {
                vec![polygon(coords)?]
            } else {
                coords
                    .as_array()
                    .ok_or_else(|| bad("expected polygons"))?
                    .iter()
                    .map(polygon)
                    .collect::<Result<_, _>>()?
            };
            let mut tiler = TilerBuilder::new(res)
                .containment_mode(ContainmentMode::Covers)
                .build();
            for p in polys {
                tiler.add(p).map_err(|e| bad(e.to_string()))?;
            }
            let estimate = tiler.coverage_size_hint();
            if estimate > limit {
                return Err(CoverError::TooLarge {
                    cells: estimate,
                    limit,
                });
            }
            out.extend(tiler.into_coverage());
        }
        other => return Err(bad(format!("unsupported type {other:?}"))),
    }
    if out.len() > limit {
        return Err(CoverError::TooLarge {
            cells: out.len(),
            limit,
        });
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn polygons_lines_and_points_are_covered() {
        let res = Resolution::Ten;
        // About 1.1 km x 1.3 km in Wilhelmsburg.
        let poly = json!({"type":"Polygon","coordinates":[[[9.99,53.49],[10.01,53.49],[10.01,53.50],[9.99,53.50],[9.99,53.49]]]});
        let cells = cover(&poly, res, 100_000).expect("covered");
        // A res-10 cell is ~0.015 km²; the box is ~1.47 km².
        assert!((90..200).contains(&cells.len()), "{}", cells.len());
        let inside = LatLng::new(53.495, 10.0).expect("valid").to_cell(res);
        let outside = LatLng::new(53.52, 10.0).expect("valid").to_cell(res);
        assert!(cells.contains(&inside));
        assert!(!cells.contains(&outside));

        let pt = json!({"type":"Point","coordinates":[10.0,53.5]});
        assert_eq!(cover(&pt, res, 10).expect("point").len(), 1);

        let road = json!({"type":"LineString","coordinates":[[9.99,53.49],[10.01,53.49]]});
        let cells = cover(&road, res, 1_000).expect("line");
        assert!(cells.len() > 5, "a 1.3 km road crosses several cells");

        let city = json!({"type":"Polygon","coordinates":[[[9.0,53.0],[11.0,53.0],[11.0,54.0],[9.0,54.0],[9.0,53.0]]]});
        assert!(matches!(
            cover(&city, res, 100_000),
            Err(CoverError::TooLarge { .. })
        ));
    }
}
