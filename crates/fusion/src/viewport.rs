//! Viewports: the part of the picture one client looks at (a bounding box
//! and one resolution), and the per-client filter that cuts the global delta
//! down to it.

use std::collections::HashSet;
use std::sync::Arc;

use h3o::{CellIndex, LatLng, Resolution};
use thiserror::Error;

use crate::view::{CellCentres, CellView, Delta, SensorView, UnitView};

/// A WGS 84 bounding box `[west, south, east, north]`, degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    /// West edge (longitude).
    pub west: f64,
    /// South edge (latitude).
    pub south: f64,
    /// East edge (longitude).
    pub east: f64,
    /// North edge (latitude).
    pub north: f64,
}

/// Why a bounding box was refused.
#[derive(Debug, Error, PartialEq)]
pub enum BboxError {
    /// A coordinate is NaN or infinite.
    #[error("bbox coordinates must be finite numbers")]
    NotFinite,
    /// Out of WGS 84 range or south above north.
    #[error(
        "bbox must be [west, south, east, north] with -180 <= lon <= 180, -90 <= south <= north <= 90"
    )]
    OutOfRange,
}

impl Bbox {
    /// Validates `[west, south, east, north]`. A west edge east of the east
    /// edge means the box crosses the antimeridian.
    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Bbox, BboxError> {
        if ![west, south, east, north].iter().all(|v| v.is_finite()) {
            return Err(BboxError::NotFinite);
        }
        let lon_ok = |v: f64| (-180.0..=180.0).contains(&v);
        let lat_ok = |v: f64| (-90.0..=90.0).contains(&v);
        if !(lon_ok(west) && lon_ok(east) && lat_ok(south) && lat_ok(north) && south <= north) {
            return Err(BboxError::OutOfRange);
        }
        Ok(Bbox {
            west,
            south,
            east,
            north,
        })
    }

    /// Whether the point is inside, with a margin in degrees.
    pub fn contains(&self, lat: f64, lon: f64, margin_deg: f64) -> bool {
        if lat < self.south - margin_deg || lat > self.north + margin_deg {
            return false;
        }
        let (w, e) = (self.west - margin_deg, self.east + margin_deg);
        if self.west <= self.east {
            lon >= w && lon <= e
        } else {
            lon >= w || lon <= e
        }
    }
}

/// What one client looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    /// The area; `None` is the whole picture.
    pub bbox: Option<Bbox>,
    /// The cell resolution the client draws.
    pub res: Resolution,
}

impl Viewport {
    /// Whether a point is inside.
    pub fn contains_point(&self, lat: Option<f64>, lon: Option<f64>) -> bool {
        match (self.bbox, lat, lon) {
            (None, _, _) => true,
            (Some(b), Some(lat), Some(lon)) => b.contains(lat, lon, 0.0),
            _ => false,
        }
    }

    /// Whether a cell at the viewport's resolution is (at least partly) inside.
    pub fn contains_cell(&self, cell: CellIndex) -> bool {
        self.contains_cell_centred(cell, || LatLng::from(cell))
    }

    /// [`Viewport::contains_cell`] with the cell's centre from `centre`,
    /// asked only when it is needed.
    fn contains_cell_centred(&self, cell: CellIndex, centre: impl FnOnce() -> LatLng) -> bool {
        if cell.resolution() != self.res {
            return false;
        }
        let Some(b) = self.bbox else {
            return true;
        };
        let center = centre();
        // Cell centres up to about one edge length outside the box can
        // still overlap it. One degree of latitude is ~111 km.
        let margin = self.res.edge_length_km() / 111.0 * 2.0;
        b.contains(center.lat(), center.lng(), margin)
    }
}

/// Cuts the global delta down to one client's viewport, remembering which
/// units and sensors the client holds so that one leaving the viewport is
/// sent once more (with its new position) and then no longer.
#[derive(Debug)]
pub struct ViewFilter {
    viewport: Viewport,
    units: HashSet<Arc<str>>,
    sensors: HashSet<Arc<str>>,
}

impl ViewFilter {
    /// A filter that has sent nothing yet.
    pub fn new(viewport: Viewport) -> ViewFilter {
        ViewFilter {
            viewport,
            units: HashSet::new(),
            sensors: HashSet::new(),
        }
    }

    /// The viewport.
    pub fn viewport(&self) -> &Viewport {
        &self.viewport
    }

    /// Records what a snapshot sent to the client.
    pub fn sent_snapshot(&mut self, units: &[UnitView], sensors: &[SensorView]) {
        self.units = units.iter().map(|u| u.id.clone()).collect();
        self.sensors = sensors.iter().map(|s| s.id.clone()).collect();
    }

    /// The part of `delta` this client needs, with the same `seq`.
    pub fn filter(&mut self, delta: &Delta) -> Delta {
        let vp = self.viewport;
        let cells: Vec<CellView> = delta
            .cells
            .iter()
            .enumerate()
            .filter(|(i, c)| vp.contains_cell_centred(c.h3, || delta.centres.get(&delta.cells, *i)))
            .map(|(_, c)| c.clone())
            .collect();
        let cells_removed = delta
            .cells_removed_idx
            .iter()
            .filter(|c| vp.contains_cell(**c))
            .map(ToString::to_string)
            .collect();
        let units = keep_moving(&delta.units, &mut self.units, |u| {
            (&u.id, vp.contains_point(u.lat, u.lon))
        });
        let sensors = keep_moving(&delta.sensors, &mut self.sensors, |s| {
            (&s.id, vp.contains_point(s.lat, s.lon))
        });
        let units_removed = forget(&delta.units_removed, &mut self.units);
        let sensors_removed = forget(&delta.sensors_removed, &mut self.sensors);
        Delta {
            seq: delta.seq,
            cells,
            cells_removed,
            units,
            units_removed,
            sensors,
            sensors_removed,
            incidents: delta.incidents.clone(),
            incidents_removed: delta.incidents_removed.clone(),
            alerts: delta.alerts.clone(),
            resync: delta.resync,
            cells_removed_idx: Vec::new(),
            centres: CellCentres::default(),
        }
    }
}

/// Items inside the viewport, plus those the client holds that just left it.
fn keep_moving<T: Clone>(
    items: &[T],
    held: &mut HashSet<Arc<str>>,
    probe: impl Fn(&T) -> (&Arc<str>, bool),
) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        let (id, inside) = probe(item);
        if inside {
            held.insert(id.clone());
            out.push(item.clone());
        } else if held.remove(id) {
            out.push(item.clone());
        }
    }
    out
}

fn forget(ids: &[String], held: &mut HashSet<Arc<str>>) -> Vec<String> {
    ids.iter()
        .filter(|id| held.remove(id.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_validates_and_contains() {
        assert_eq!(
            Bbox::new(f64::NAN, 0.0, 1.0, 1.0),
            Err(BboxError::NotFinite)
        );
        assert_eq!(Bbox::new(0.0, 2.0, 1.0, 1.0), Err(BboxError::OutOfRange));
        assert_eq!(Bbox::new(0.0, 0.0, 181.0, 1.0), Err(BboxError::OutOfRange));
        let b = Bbox::new(9.8, 53.4, 10.2, 53.7).expect("valid");
        assert!(b.contains(53.55, 9.99, 0.0));
        assert!(!b.contains(53.55, 10.3, 0.0));
        let across = Bbox::new(170.0, -10.0, -170.0, 10.0).expect("valid");
        assert!(across.contains(0.0, 179.0, 0.0));
        assert!(across.contains(0.0, -175.0, 0.0));
        assert!(!across.contains(0.0, 0.0, 0.0));
    }
}
