//! Viewports: the part of the picture one client looks at (a bounding box
//! and one resolution), and the per-client filter that cuts the global delta
//! down to it.

use std::collections::HashSet as StdHashSet;
use std::sync::Arc;

use h3o::{CellIndex, LatLng, Resolution};

/// The ids a client holds, checked for every unit and sensor of every
/// delta by every client: a fast hash (ids come from the picture, not
/// chosen per client, and each client's set is its own).
type HashSet<T> = StdHashSet<T, ahash::RandomState>;
use thiserror::Error;

use crate::view::{
    AlertView, Delta, DeltaIndex, Grid, Keys, SensorView, Snapshot, UnitView, id_hash,
};

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

    /// The part of `other` inside this box (which must not cross the
    /// antimeridian); `None` when they do not meet. A box `other` that
    /// crosses the antimeridian is cut down to this one.
    pub fn intersect(&self, other: &Bbox) -> Option<Bbox> {
        let (w, e) = if other.west <= other.east {
            (self.west.max(other.west), self.east.min(other.east))
        } else {
            (self.west, self.east)
        };
        let (s, n) = (self.south.max(other.south), self.north.min(other.north));
        (w <= e && s <= n).then_some(Bbox {
            west: w,
            south: s,
            east: e,
            north: n,
        })
    }

    /// Whether a GeoJSON geometry has a vertex inside, or its bounding box
    /// meets this one (a large area around a small box).
    pub fn meets_geometry(&self, geometry: &serde_json::Value) -> bool {
        let mut bounds: Option<[f64; 4]> = None;
        let mut inside = false;
        visit_positions(geometry.get("coordinates"), &mut |lon, lat| {
            inside |= self.contains(lat, lon, 0.0);
            let b = bounds.get_or_insert([lon, lat, lon, lat]);
            *b = [b[0].min(lon), b[1].min(lat), b[2].max(lon), b[3].max(lat)];
        });
        if let Some(geoms) = geometry.get("geometries").and_then(|g| g.as_array()) {
            return geoms.iter().any(|g| self.meets_geometry(g));
        }
        inside
            || bounds.is_some_and(|[w, s, e, n]| {
                Bbox::new(w, s, e, n).is_ok_and(|b| b.intersect(self).is_some())
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

/// Calls `f(lon, lat)` for every position in GeoJSON `coordinates`.
fn visit_positions(coords: Option<&serde_json::Value>, f: &mut impl FnMut(f64, f64)) {
    let Some(serde_json::Value::Array(items)) = coords else {
        return;
    };
    match (
        items.first().and_then(serde_json::Value::as_f64),
        items.get(1).and_then(serde_json::Value::as_f64),
    ) {
        (Some(lon), Some(lat)) => f(lon, lat),
        _ => {
            for item in items {
                visit_positions(Some(item), f);
            }
        }
    }
}

/// Cuts the global delta down to one client's viewport, remembering which
/// units and sensors the client holds so that one leaving the viewport is
/// sent once more (with its new position) and then no longer.
///
/// With an area ([`ViewFilter::limited_to`]: a role's limit, not the
/// client's choice) nothing outside the area reaches the client: an entity
/// leaving it is removed rather than sent with its new position, incidents
/// are those that meet the area, alerts those about what the client holds.
#[derive(Debug)]
pub struct ViewFilter {
    viewport: Viewport,
    units: Held,
    sensors: Held,
    area: Option<Bbox>,
    incidents: HashSet<String>,
}

impl ViewFilter {
    /// A filter that has sent nothing yet.
    pub fn new(viewport: Viewport) -> ViewFilter {
        ViewFilter {
            viewport,
            units: Held::default(),
            sensors: Held::default(),
            area: None,
            incidents: HashSet::default(),
        }
    }

    /// The same filter, limited to `area` (the viewport should already lie
    /// inside it).
    pub fn limited_to(mut self, area: Option<Bbox>) -> ViewFilter {
        self.area = area;
        self
    }

    /// Cuts a snapshot down to the area, if there is one: the cells, units
    /// and sensors are already the viewport's; incidents and alerts are
    /// the picture's and are filtered here. Then records what was sent.
    pub fn restrict_snapshot(&mut self, snapshot: &mut Snapshot) {
        if let Some(area) = self.area {
            snapshot.units.retain(|u| inside(&area, u.lat, u.lon));
            snapshot.sensors.retain(|s| inside(&area, s.lat, s.lon));
            snapshot
                .incidents
                .retain(|i| area.meets_geometry(&i.geometry));
            self.incidents = snapshot.incidents.iter().map(|i| i.id.clone()).collect();
        }
        self.sent_snapshot(&snapshot.units, &snapshot.sensors);
        if self.area.is_some() {
            let alerts = std::mem::take(&mut snapshot.alerts);
            snapshot.alerts = alerts.into_iter().filter(|a| self.concerns(a)).collect();
        }
    }

    /// Whether an alert is about something this (area-limited) client holds.
    fn concerns(&self, a: &AlertView) -> bool {
        let held = |id: &str| {
            self.units.contains(id) || self.sensors.contains(id) || self.incidents.contains(id)
        };
        held(&a.entity) || a.related.as_deref().is_some_and(held)
    }

    /// The viewport.
    pub fn viewport(&self) -> &Viewport {
        &self.viewport
    }

    /// Records what a snapshot sent to the client.
    pub fn sent_snapshot(&mut self, units: &[UnitView], sensors: &[SensorView]) {
        self.units = Held::of(units.iter().map(|u| &u.id));
        self.sensors = Held::of(sensors.iter().map(|s| &s.id));
    }

    /// The part of `delta` this client needs, with the same `seq`.
    pub fn filter(&mut self, delta: &Delta) -> Delta {
        self.cut(delta).to_delta(delta)
    }

    /// The part of `delta` this client needs, as positions in the delta's
    /// lists ([`Cut::to_json`] writes it from the items' shared JSON).
    pub fn cut(&mut self, delta: &Delta) -> Cut {
        let vp = self.viewport;
        let index = &delta.index;
        let cells: Vec<u32> = match vp.bbox {
            None => positions(&delta.cells, |c| c.h3.resolution() == vp.res),
            Some(b) => {
                // Only the cells near the box (with the cells' margin);
                // then the full test, in the delta's order.
                let margin = vp.res.edge_length_km() / 111.0 * 2.0;
                let near = index.cells_at(&delta.cells, vp.res).near(
                    b.south - margin,
                    b.north + margin,
                    b.west - margin,
                    b.east + margin,
                );
                let mut picked: Vec<u32> = near
                    .into_iter()
                    .filter(|i| {
                        let i = *i as usize;
                        vp.contains_cell_centred(delta.cells[i].h3, || index.get(&delta.cells, i))
                    })
                    .collect();
                picked.sort_unstable();
                picked
            }
        };
        let cells_removed = positions(&delta.cells_removed_idx, |c| vp.contains_cell(*c));
        let area = self.area;
        let mut units_removed = forget(&delta.units_removed, &mut self.units);
        let mut sensors_removed = forget(&delta.sensors_removed, &mut self.sensors);
        let unit_keys = index.unit_keys(&delta.units);
        let units = keep_moving(
            &delta.units,
            candidates(
                vp.bbox,
                || index.units(&delta.units),
                index.moved_units(),
                unit_keys,
                |i| &delta.units[i].id,
                &self.units,
            ),
            unit_keys,
            &mut self.units,
            |u| {
                let gone = area.is_some_and(|a| !inside(&a, u.lat, u.lon));
                (&u.id, vp.contains_point(u.lat, u.lon) && !gone, gone)
            },
        );
        let sensor_keys = index.sensor_keys(&delta.sensors);
        let sensors = keep_moving(
            &delta.sensors,
            candidates(
                vp.bbox,
                || index.sensors(&delta.sensors),
                index.moved_sensors(),
                sensor_keys,
                |i| &delta.sensors[i].id,
                &self.sensors,
            ),
            sensor_keys,
            &mut self.sensors,
            |s| {
                let gone = area.is_some_and(|a| !inside(&a, s.lat, s.lon));
                (&s.id, vp.contains_point(s.lat, s.lon) && !gone, gone)
            },
        );
        units_removed.extend(units.1);
        sensors_removed.extend(sensors.1);
        let (incidents, incidents_removed, alerts) = match area {
            None => (
                positions(&delta.incidents, |_| true),
                delta.incidents_removed.clone(),
                positions(&delta.alerts, |_| true),
            ),
            Some(area) => self.area_items(&area, delta),
        };
        Cut {
            seq: delta.seq,
            cells,
            cells_removed,
            units: units.0,
            units_removed,
            sensors: sensors.0,
            sensors_removed,
            incidents,
            incidents_removed,
            alerts,
        }
    }

    /// Incidents, closed incidents and alerts of `delta` for a client
    /// limited to `area`.
    fn area_items(&mut self, area: &Bbox, delta: &Delta) -> (Vec<u32>, Vec<String>, Vec<u32>) {
        let mut removed: Vec<String> = delta
            .incidents_removed
            .iter()
            .filter(|id| self.incidents.remove(id.as_str()))
            .cloned()
            .collect();
        let mut incidents = Vec::new();
        for (n, i) in (0u32..).zip(&delta.incidents) {
            if area.meets_geometry(&i.geometry) {
                self.incidents.insert(i.id.clone());
                incidents.push(n);
            } else if self.incidents.remove(&i.id) {
                removed.push(i.id.clone());
            }
        }
        let alerts = positions(&delta.alerts, |a| self.concerns(a));
        (incidents, removed, alerts)
    }
}

/// The positions of the items of a list that `keep` keeps.
fn positions<T>(items: &[T], keep: impl Fn(&T) -> bool) -> Vec<u32> {
    (0u32..)
        .zip(items)
        .filter(|(_, item)| keep(item))
        .map(|(i, _)| i)
        .collect()
}

/// One client's part of a delta ([`ViewFilter::cut`]): positions in the
/// delta's lists, and the ids the client is to drop. It writes the
/// client's message from the JSON of each item, serialised once per delta
/// for every client that gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    seq: u64,
    cells: Vec<u32>,
    cells_removed: Vec<u32>,
    units: Vec<u32>,
    units_removed: Vec<String>,
    sensors: Vec<u32>,
    sensors_removed: Vec<String>,
    incidents: Vec<u32>,
    incidents_removed: Vec<String>,
    alerts: Vec<u32>,
}

impl Cut {
    /// The delta it stands for (copies of the items).
    pub fn to_delta(&self, delta: &Delta) -> Delta {
        fn pick<T: Clone>(items: &[T], at: &[u32]) -> Vec<T> {
            at.iter()
                .filter_map(|&i| items.get(i as usize).cloned())
                .collect()
        }
        Delta {
            seq: self.seq,
            cells: pick(&delta.cells, &self.cells),
            cells_removed: pick(&delta.cells_removed, &self.cells_removed),
            units: pick(&delta.units, &self.units),
            units_removed: self.units_removed.clone(),
            sensors: pick(&delta.sensors, &self.sensors),
            sensors_removed: self.sensors_removed.clone(),
            incidents: pick(&delta.incidents, &self.incidents),
            incidents_removed: self.incidents_removed.clone(),
            alerts: pick(&delta.alerts, &self.alerts),
            resync: delta.resync,
            cells_removed_idx: Vec::new(),
            index: DeltaIndex::default(),
        }
    }

    /// The JSON object of [`Cut::to_delta`], byte for byte what serialising
    /// that delta gives, with `head` (e.g. `"type":"delta"`) as its first
    /// members. Cells, units and sensors are copied from their JSON text,
    /// written once per delta (by the first client that needs each).
    pub fn to_json(&self, delta: &Delta, head: &str) -> String {
        let index = &delta.index;
        let mut out = String::with_capacity(
            64 + 320 * self.cells.len() + 400 * (self.units.len() + self.sensors.len()),
        );
        out.push('{');
        if !head.is_empty() {
            out.push_str(head);
            out.push(',');
        }
        out.push_str("\"seq\":");
        out.push_str(&self.seq.to_string());
        members(
            &mut out,
            "cells",
            at(&self.cells).map(|i| index.cell_text(&delta.cells, i)),
        );
        strings(
            &mut out,
            "cells_removed",
            at(&self.cells_removed).filter_map(|i| delta.cells_removed.get(i)),
        );
        members(
            &mut out,
            "units",
            at(&self.units).map(|i| index.unit_text(&delta.units, i)),
        );
        strings(&mut out, "units_removed", self.units_removed.iter());
        members(
            &mut out,
            "sensors",
            at(&self.sensors).map(|i| index.sensor_text(&delta.sensors, i)),
        );
        strings(&mut out, "sensors_removed", self.sensors_removed.iter());
        items(&mut out, "incidents", &delta.incidents, &self.incidents);
        strings(&mut out, "incidents_removed", self.incidents_removed.iter());
        items(&mut out, "alerts", &delta.alerts, &self.alerts);
        out.push('}');
        out
    }
}

/// The positions in `list`.
fn at(list: &[u32]) -> impl Iterator<Item = usize> + '_ {
    list.iter().map(|&i| i as usize)
}

/// `,"name":[a,b,…]` from JSON texts, nothing for none; an empty text (an
/// item that could not be written) is left out.
fn members<'a>(out: &mut String, name: &str, texts: impl Iterator<Item = &'a str>) {
    let mut first = true;
    for t in texts.filter(|t| !t.is_empty()) {
        if first {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":[");
            first = false;
        } else {
            out.push(',');
        }
        out.push_str(t);
    }
    if !first {
        out.push(']');
    }
}

/// `,"name":["a",…]` for strings, nothing for none.
fn strings<'a>(out: &mut String, name: &str, ids: impl Iterator<Item = &'a String>) {
    let texts: Vec<String> = ids
        .filter_map(|id| serde_json::to_string(id).ok())
        .collect();
    members(out, name, texts.iter().map(String::as_str));
}

/// `,"name":[…]` for the items at positions `at` of `list`, each written here.
fn items<T: serde::Serialize>(out: &mut String, name: &str, list: &[T], at: &[u32]) {
    let texts: Vec<String> = at
        .iter()
        .filter_map(|&i| list.get(i as usize))
        .filter_map(|item| serde_json::to_string(item).ok())
        .collect();
    members(out, name, texts.iter().map(String::as_str));
}

/// Whether a position is inside an area (no position: not inside).
fn inside(area: &Bbox, lat: Option<f64>, lon: Option<f64>) -> bool {
    matches!((lat, lon), (Some(lat), Some(lon)) if area.contains(lat, lon, 0.0))
}

/// The same id: the same shared string, or equal text.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// The ids a client holds (units or sensors), by their [`id_hash`]: a
/// delta hashes each id once for all clients ([`Keys`]), so a client's
/// lookups compare numbers and, on a match, the id.
#[derive(Debug, Default)]
struct Held(hashbrown::HashTable<(u64, Arc<str>)>);

impl Held {
    fn of<'a>(ids: impl Iterator<Item = &'a Arc<str>>) -> Held {
        let mut held = Held::default();
        for id in ids {
            held.insert(id_hash(id), id);
        }
        held
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, id: &str) -> bool {
        let h = id_hash(id);
        self.0.find(h, |(eh, e)| *eh == h && **e == *id).is_some()
    }

    fn contains_hashed(&self, h: u64, id: &Arc<str>) -> bool {
        self.0.find(h, |(eh, e)| *eh == h && same(e, id)).is_some()
    }

    fn insert(&mut self, h: u64, id: &Arc<str>) {
        if let hashbrown::hash_table::Entry::Vacant(v) =
            self.0
                .entry(h, |(eh, e)| *eh == h && same(e, id), |(eh, _)| *eh)
        {
            v.insert((h, id.clone()));
        }
    }

    fn remove(&mut self, h: u64, id: &str) -> bool {
        match self.0.find_entry(h, |(eh, e)| *eh == h && **e == *id) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// [`Held::remove`] for a shared id (compared by address first).
    fn remove_shared(&mut self, h: u64, id: &Arc<str>) -> bool {
        match self.0.find_entry(h, |(eh, e)| *eh == h && same(e, id)) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }
}

/// The positions in a delta's list that may concern a client: those near
/// its viewport ([`Grid::near`]) and those it holds that moved (which may
/// have left), in the list's order; every position for a whole-world
/// viewport. `moved` lists the items that moved (`None`: any may have).
/// One that did not move is where the client last got it, inside its
/// viewport, so the grid finds it.
fn candidates<'a>(
    bbox: Option<Bbox>,
    grid: impl FnOnce() -> &'a Grid,
    moved: Option<&[u32]>,
    keys: &Keys,
    id_at: impl Fn(usize) -> &'a Arc<str>,
    held: &Held,
) -> Vec<u32> {
    let len = keys.keys.len();
    let Some(b) = bbox else {
        return (0..u32::try_from(len).unwrap_or(u32::MAX)).collect();
    };
    let mut out: Vec<u32> = grid().near(b.south, b.north, b.west, b.east);
    if !held.is_empty() {
        // The held items among those that moved: one lookup per item or
        // per held id, whichever are fewer (a client on a wide view may
        // hold far more than one tick changes).
        let is_held = |i: u32| {
            keys.keys
                .get(i as usize)
                .is_some_and(|&(h, _)| held.contains_hashed(h, id_at(i as usize)))
        };
        match moved {
            Some(moved) if moved.len() < held.len() => {
                out.extend(moved.iter().copied().filter(|&i| is_held(i)));
            }
            None if len < held.len() => {
                out.extend((0..u32::try_from(len).unwrap_or(u32::MAX)).filter(|&i| is_held(i)));
            }
            _ => out.extend(
                held.0
                    .iter()
                    .filter_map(|(h, id)| keys.find(*h, id, |i| &**id_at(i)))
                    .filter(|i| moved.is_none_or(|m| m.binary_search(i).is_ok())),
            ),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Of the `candidates` among `items`: those inside the viewport, plus those
/// the client holds that just left it; `probe` gives an item's id, whether
/// it is inside, and whether it left for good (outside the client's area:
/// then only its id is returned, as removed, second).
fn keep_moving<T>(
    items: &[T],
    candidates: Vec<u32>,
    keys: &Keys,
    held: &mut Held,
    probe: impl Fn(&T) -> (&Arc<str>, bool, bool),
) -> (Vec<u32>, Vec<String>) {
    let mut out = Vec::new();
    let mut gone = Vec::new();
    for i in candidates {
        let (Some(item), Some(&(h, _))) = (items.get(i as usize), keys.keys.get(i as usize)) else {
            continue;
        };
        let (id, inside, left_area) = probe(item);
        if inside {
            held.insert(h, id);
            out.push(i);
        } else if held.remove_shared(h, id) {
            if left_area {
                gone.push(id.to_string());
            } else {
                out.push(i);
            }
        }
    }
    (out, gone)
}

fn forget(ids: &[String], held: &mut Held) -> Vec<String> {
    ids.iter()
        .filter(|id| held.remove(id_hash(id), id.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_items_are_found_from_either_side() {
        let ids: Vec<Arc<str>> = (0..40).map(|i| Arc::from(format!("u{i}"))).collect();
        let keys = Keys::new(ids.iter());
        let grid = Grid::new([(Some((53.5, 9.95)), 3), (Some((53.6, 9.95)), 7)].into_iter());
        let b = Bbox::new(9.9, 53.45, 10.0, 53.55).expect("bbox");
        // Few held (looked up by id) and many held (each item tested):
        // the same candidates, sorted and without repeats.
        for held_n in [3usize, 400] {
            let names: Vec<Arc<str>> = (0..held_n)
                .map(|i| Arc::<str>::from(format!("u{}", i * 5)))
                .collect();
            let held = Held::of(names.iter());
            assert_eq!(held.len(), held_n);
            let got = candidates(Some(b), || &grid, None, &keys, |i| &ids[i], &held);
            let mut want: Vec<u32> = vec![3];
            want.extend((0..40u32).filter(|i| held.contains(&format!("u{i}"))));
            want.sort_unstable();
            want.dedup();
            assert_eq!(got, want, "{held_n} held");
            // Only the held items that moved are looked for; the grid's
            // are found anyway.
            let moved = [5u32, 10, 11];
            let got = candidates(Some(b), || &grid, Some(&moved), &keys, |i| &ids[i], &held);
            let mut want: Vec<u32> = vec![3];
            want.extend(moved.iter().filter(|i| held.contains(&format!("u{i}"))));
            want.sort_unstable();
            assert_eq!(got, want, "{held_n} held, some moved");
        }
        let mut held = Held::of(ids[..2].iter());
        assert!(held.remove(id_hash("u1"), "u1") && !held.remove(id_hash("u1"), "u1"));
        assert!(held.contains("u0") && !held.contains("u1"));
    }

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
