//! What leaves the engine: serialisable views of entities and cells, the
//! per-tick [`Delta`] and the [`Snapshot`]. Field names here are the
//! websocket and REST contract (DESIGN §5): change them only additively.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::EpochMs;
use crate::cell::{CellAgg, KindAgg};
use crate::fix::SourceView;
use crate::freshness::Freshness;
use crate::names::{NameId, name_of};

/// The operational meaning of a radio status, as far as the cell counts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// Status 1 (free on radio) and 2 (at station).
    Available,
    /// Status 3 (order accepted), 4 (on scene), 7 (patient aboard), 8 (at hospital).
    OnMission,
    /// Status 6 (out of service).
    Unavailable,
    /// No class-defining status reported yet.
    Unknown,
}

/// How far a sensor's last reading can be trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Passed every check.
    #[default]
    Ok,
    /// Plausible, not yet confirmed: the first reading after a suspect one,
    /// or one its neighbours disagree with.
    Provisional,
    /// Failed a check (out of range, spike, frozen): shown, but it raises
    /// no level and no alert.
    Suspect,
}

/// One cell at one resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct CellView {
    /// H3 index (serialised as the usual 15-hex-digit string).
    pub h3: h3o::CellIndex,
    /// Its resolution.
    pub res: u8,
    /// The aggregate (a copy: compact, usually nothing on the heap).
    pub agg: CellAgg,
    /// The picture's names, for the aggregate's name ids.
    pub(crate) names: Arc<Vec<Arc<str>>>,
}

impl CellView {
    /// Unit counts by type name.
    pub fn unit_types(&self) -> BTreeMap<String, u32> {
        self.agg
            .unit_type_ids()
            .map(|(id, n)| (name_of(&self.names, id).to_owned(), n))
            .collect()
    }

    /// Sensor aggregates by kind name.
    pub fn kinds(&self) -> BTreeMap<String, KindAgg> {
        self.agg
            .kind_ids()
            .map(|(id, k)| (name_of(&self.names, id).to_owned(), k))
            .collect()
    }
}

/// Entries by name id (from a function that lists them) written as a JSON
/// object keyed by name, in name order (so the output does not depend on
/// which name was seen first).
struct Named<'a, F>(F, &'a [Arc<str>]);

impl<F, I, V> Serialize for Named<'_, F>
where
    F: Fn() -> I,
    I: Iterator<Item = (NameId, V)>,
    V: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&str, V)> =
            (self.0)().map(|(id, v)| (name_of(self.1, id), v)).collect();
        entries.sort_unstable_by_key(|(name, _)| *name);
        let mut map = s.serialize_map(Some(entries.len()))?;
        for (k, v) in entries {
            map.serialize_entry(k, &v)?;
        }
        map.end()
    }
}

impl Serialize for CellView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = &self.agg;
        let mut st = s.serialize_struct("CellView", 13)?;
        st.serialize_field("h3", &format_args!("{}", self.h3))?;
        st.serialize_field("res", &self.res)?;
        st.serialize_field("units_available", &a.units_available)?;
        st.serialize_field("units_on_mission", &a.units_on_mission)?;
        st.serialize_field("units_unavailable", &a.units_unavailable)?;
        st.serialize_field("units_unknown", &a.units_unknown)?;
        st.serialize_field("unit_types", &Named(|| a.unit_type_ids(), &self.names))?;
        st.serialize_field("sensors", &a.sensors())?;
        st.serialize_field("kinds", &Named(|| a.kind_ids(), &self.names))?;
        st.serialize_field("incidents", &a.incidents)?;
        st.serialize_field("max_level", &a.max_level())?;
        st.serialize_field("hazard", &a.hazard)?;
        st.serialize_field("newest_ms", &a.newest_ms())?;
        st.end()
    }
}

/// A sensor as shown.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SensorView {
    /// Sensor id.
    pub id: Arc<str>,
    /// Kind, e.g. `water_level`.
    pub kind: Arc<str>,
    /// Unit of the value.
    pub unit: Arc<str>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    /// Position (None until known).
    pub lat: Option<f64>,
    /// Position (None until known).
    pub lon: Option<f64>,
    /// Last value.
    pub value: Option<f64>,
    /// Change per hour over the last hour (least squares), when there are
    /// enough observations spread over enough time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend_per_h: Option<f64>,
    /// Level 0–4 of the last value.
    pub level: u8,
    /// Event time of the last value.
    pub ts_ms: Option<EpochMs>,
    /// Freshness of the last value; absent in digests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
    /// How far the last reading can be trusted.
    pub quality: Quality,
    /// Why it is not `ok` (`out_of_range`, `spike`, `flat_line`,
    /// `after_suspect`, `neighbours_disagree`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_reason"
    )]
    pub quality_reason: Option<ReasonText>,
}

/// A unit as shown.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct UnitView {
    /// Unit id.
    pub id: Arc<str>,
    /// Call sign (the id until meta arrives).
    pub callsign: Arc<str>,
    /// Type, e.g. `HLF`.
    #[serde(rename = "type")]
    pub unit_type: Arc<str>,
    /// Organisation, e.g. `fire`.
    pub org: Arc<str>,
    /// Crew strength.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<u32>,
    /// Position (None until known).
    pub lat: Option<f64>,
    /// Position (None until known).
    pub lon: Option<f64>,
    /// Heading, degrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    /// Speed, m/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Accuracy, metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Source of the position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Arc<str>>,
    /// Last radio status 0–9.
    pub status: Option<u8>,
    /// What the status means (from the region's status table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_text: Option<Arc<str>>,
    /// Event time of the last status.
    pub status_ts_ms: Option<EpochMs>,
    /// Class derived from the status.
    pub status_class: StatusClass,
    /// Newest event time (position or status).
    pub ts_ms: Option<EpochMs>,
    /// Freshness of the newest report; absent in digests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
    /// In a status that expects reports (3, 4, 7) but silent for longer
    /// than allowed; absent in digests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
    /// How old the radio status is, ms; absent in digests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_age_ms: Option<i64>,
    /// The sources that reported a position, each with its last fix and its
    /// share of the fused position (`lat`/`lon`/`accuracy` above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceView>,
    /// Two sources disagree beyond their accuracies (a position-conflict
    /// alert was raised).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conflict: bool,
}

/// A quality reason (a name for the type keeps serde from taking the field
/// for a borrowed string).
pub type ReasonText = &'static str;

/// Reads a quality reason another picture showed (one of the reasons this
/// engine gives; anything else reads as none).
fn known_reason<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ReasonText>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(text
        .and_then(|t| crate::engine::checkpoint::Reason::known(&t))
        .map(|r| r.0))
}

/// An incident as shown.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct IncidentView {
    /// Incident id.
    pub id: String,
    /// Alarm keyword.
    pub keyword: String,
    /// Severity 0–4.
    pub severity: u8,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// GeoJSON geometry.
    pub geometry: serde_json::Value,
    /// Event time of the last update.
    pub ts_ms: EpochMs,
    /// When it ends by itself (then it is closed), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<EpochMs>,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AlertView {
    /// Stable id within the space, e.g. `A12`.
    pub id: String,
    /// What kind of alert, e.g. `threshold`.
    pub kind: String,
    /// The entity it is about.
    pub entity: String,
    /// A second entity it relates to (an incident or area), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<String>,
    /// The level reached.
    pub level: u8,
    /// A sentence for the operator.
    pub message: String,
    /// Event time that raised it.
    pub ts_ms: EpochMs,
    /// Whether an operator acknowledged it.
    pub acked: bool,
}

/// Everything that changed during one tick. Items are full views (upserts);
/// `*_removed` list ids that left the picture.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delta {
    /// Sequence number: one more than the previous delta's.
    pub seq: u64,
    /// Changed cells, at every served resolution.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<CellView>,
    /// Cells that became empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cells_removed: Vec<String>,
    /// Changed units.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitView>,
    /// Removed units.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units_removed: Vec<String>,
    /// Changed sensors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensors: Vec<SensorView>,
    /// Removed sensors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensors_removed: Vec<String>,
    /// Opened or changed incidents.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<IncidentView>,
    /// Closed incidents.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incidents_removed: Vec<String>,
    /// New or changed (e.g. acknowledged) alerts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertView>,
    /// The picture was replaced (a drill reset): clients drop what they
    /// hold and take a fresh snapshot instead of this delta.
    #[serde(skip)]
    pub resync: bool,
    /// Resolution of removed cells, for filtering (not serialised: the H3
    /// string carries it).
    #[serde(skip)]
    pub(crate) cells_removed_idx: Vec<h3o::CellIndex>,
    /// What every client's filter needs of this delta, found once for all
    /// of them: cell centres (finding one costs about as much as the rest
    /// of a client's filter per cell), items by latitude and by id.
    #[serde(skip)]
    pub(crate) index: DeltaIndex,
}

/// Lazily computed indexes of one delta, shared by every client that
/// filters it: cell centres, and per resolution the cells (and once the
/// positioned units and sensors) in a [`Grid`] by position, so that a
/// client looks only at the changes near its viewport instead of at every
/// change. Not part of what a delta is: two deltas compare equal whatever
/// their caches hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeltaIndex {
    centres: PerItem<h3o::LatLng>,
    /// Per resolution: (latitude of the centre, index in `cells`).
    cells_grid: [OnceLock<Grid>; 16],
    units_grid: OnceLock<Grid>,
    sensors_grid: OnceLock<Grid>,
    unit_keys: OnceLock<Keys>,
    sensor_keys: OnceLock<Keys>,
    /// The positions of the units and sensors that moved since the last
    /// delta showed them, ascending; `None` (a delta not from an engine's
    /// flush) counts every item as moved.
    moved_units: Option<Vec<u32>>,
    moved_sensors: Option<Vec<u32>>,
    /// Each cell's, unit's and sensor's JSON, written by the first client
    /// that sends it and copied by the others ([`crate::viewport::Cut`]).
    cell_texts: Texts,
    unit_texts: Texts,
    sensor_texts: Texts,
}

/// A value per item of a list, each made when first asked for (by any of
/// the clients filtering the delta, on any thread).
#[derive(Debug, Clone)]
struct PerItem<T>(OnceLock<Vec<OnceLock<T>>>);

impl<T> Default for PerItem<T> {
    fn default() -> Self {
        PerItem(OnceLock::new())
    }
}

impl<T> PerItem<T> {
    /// Item `i`'s value of a list of `len` (`None` past its end).
    fn get(&self, len: usize, i: usize, make: impl FnOnce() -> T) -> Option<&T> {
        let slots = self
            .0
            .get_or_init(|| (0..len).map(|_| OnceLock::new()).collect());
        slots.get(i).map(|slot| slot.get_or_init(make))
    }
}

/// The JSON text of each item of a list (empty for an item that cannot
/// be written).
type Texts = PerItem<String>;

impl Texts {
    fn text<'a, T: Serialize>(&'a self, items: &[T], i: usize) -> &'a str {
        self.get(items.len(), i, || {
            // Most items take a few hundred bytes: one allocation, kept
            // as it is (a delta lives for a tick).
            let mut text = Vec::with_capacity(512);
            items
                .get(i)
                .and_then(|item| serde_json::to_writer(&mut text, item).ok())
                .and_then(|()| String::from_utf8(text).ok())
                .unwrap_or_default()
        })
        .map_or("", String::as_str)
    }
}

/// The hash of an entity id: one hasher for the whole process, so that a
/// delta computes each id's hash once and every client's set of held ids
/// ([`crate::ViewFilter`]) looks it up with that number.
pub(crate) fn id_hash(id: &str) -> u64 {
    static HASHER: std::sync::LazyLock<ahash::RandomState> =
        std::sync::LazyLock::new(ahash::RandomState::new);
    HASHER.hash_one(id)
}

/// The address of a shared id: two live `Arc`s at one address are the same
/// id, so a lookup compares addresses before it compares text (the engine
/// hands out the registry's own `Arc` for an entity, delta after delta).
pub(crate) fn id_addr(id: &Arc<str>) -> usize {
    Arc::as_ptr(id).cast::<u8>().addr()
}

/// The ids of a delta's list: each item's id hash and address, and the
/// items by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys {
    /// `id_hash` and `id_addr` of item `i`'s id.
    pub(crate) keys: Vec<(u64, usize)>,
    by_id: hashbrown::HashTable<u32>,
}

impl Keys {
    pub(crate) fn new<'a>(ids: impl Iterator<Item = &'a Arc<str>>) -> Keys {
        let keys: Vec<(u64, usize)> = ids.map(|id| (id_hash(id), id_addr(id))).collect();
        let mut by_id = hashbrown::HashTable::with_capacity(keys.len());
        for (i, &(h, _)) in (0u32..).zip(&keys) {
            by_id.insert_unique(h, i, |&j| keys[j as usize].0);
        }
        Keys { keys, by_id }
    }

    /// The index of the item whose id is `id` (hash `h`); `id_at` gives an
    /// item's id (read only when the addresses differ).
    pub(crate) fn find<'a>(
        &self,
        h: u64,
        id: &Arc<str>,
        id_at: impl Fn(usize) -> &'a str,
    ) -> Option<u32> {
        let addr = id_addr(id);
        self.by_id
            .find(h, |&i| {
                let (eh, ea) = self.keys[i as usize];
                eh == h && (ea == addr || id_at(i as usize) == &**id)
            })
            .copied()
    }
}

/// Height of a [`Grid`]'s stripes, degrees of latitude (about 2.2 km):
/// a city viewport spans a few.
const STRIPE_DEG: f64 = 0.02;

/// Positioned items of one delta's list in stripes of latitude, each
/// sorted by longitude, so that a client finds the items near its box
/// with a few binary searches instead of testing every change of the tick
/// (or of a band of latitudes as wide as the picture).
#[derive(Debug, Clone, Default)]
pub(crate) struct Grid {
    /// (stripe, longitude, index in the list), sorted by stripe, then
    /// longitude.
    entries: Vec<(i32, f64, u32)>,
}

fn stripe(lat: f64) -> i32 {
    // Latitudes are within ±90 (and a box's edges within ±91 with a
    // margin): well inside i32.
    (lat / STRIPE_DEG).floor() as i32
}

impl Grid {
    /// A grid of `(lat, lon, index)` points; points without a finite
    /// position are left out.
    pub(crate) fn new(points: impl Iterator<Item = (Option<(f64, f64)>, usize)>) -> Grid {
        let mut entries: Vec<(i32, f64, u32)> = points
            .filter_map(|(p, i)| {
                let (lat, lon) = p?;
                let i = u32::try_from(i).ok()?;
                (lat.is_finite() && lon.is_finite()).then(|| (stripe(lat), lon, i))
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        Grid { entries }
    }

    /// The indexes of the items in the stripes that `[south, north]` meets
    /// with a longitude in `[west, east]` (a superset of those inside the
    /// box: the caller tests each), in no particular order. `west > east`
    /// (a box across the antimeridian) takes every longitude.
    pub(crate) fn near(&self, south: f64, north: f64, west: f64, east: f64) -> Vec<u32> {
        let (west, east) = if west <= east {
            (west, east)
        } else {
            (f64::NEG_INFINITY, f64::INFINITY)
        };
        let e = &self.entries;
        let (first, last) = (stripe(south), stripe(north));
        // The runs of entries first, then one allocation for them all.
        let mut runs: smallvec::SmallVec<[(usize, usize); 8]> = smallvec::SmallVec::new();
        let mut at = e.partition_point(|x| x.0 < first);
        while let Some(&(k, _, _)) = e.get(at) {
            if k > last {
                break;
            }
            let end = at + e[at..].partition_point(|x| x.0 == k);
            let stripe = &e[at..end];
            let lo = stripe.partition_point(|x| x.1 < west);
            let hi = stripe.partition_point(|x| x.1 <= east).max(lo);
            if hi > lo {
                runs.push((at + lo, at + hi));
            }
            at = end;
        }
        let mut out = Vec::with_capacity(runs.iter().map(|(lo, hi)| hi - lo).sum());
        for (lo, hi) in runs {
            out.extend(e[lo..hi].iter().map(|x| x.2));
        }
        out
    }
}

impl DeltaIndex {
    /// The centre of `cells[i]`.
    pub(crate) fn get(&self, cells: &[CellView], i: usize) -> h3o::LatLng {
        let centre = || h3o::LatLng::from(cells[i].h3);
        self.centres
            .get(cells.len(), i, centre)
            .copied()
            .unwrap_or_else(centre)
    }

    /// The cells at `res` by the positions of their centres.
    pub(crate) fn cells_at(&self, cells: &[CellView], res: h3o::Resolution) -> &Grid {
        self.cells_grid[usize::from(u8::from(res)).min(15)].get_or_init(|| {
            Grid::new(
                cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.h3.resolution() == res)
                    .map(|(i, _)| {
                        let c = self.get(cells, i);
                        (Some((c.lat(), c.lng())), i)
                    }),
            )
        })
    }

    /// Positioned units by position.
    pub(crate) fn units(&self, units: &[UnitView]) -> &Grid {
        self.units_grid
            .get_or_init(|| Grid::new(units.iter().enumerate().map(|(i, u)| (u.lat.zip(u.lon), i))))
    }

    /// Positioned sensors by position.
    pub(crate) fn sensors(&self, sensors: &[SensorView]) -> &Grid {
        self.sensors_grid.get_or_init(|| {
            Grid::new(
                sensors
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.lat.zip(s.lon), i)),
            )
        })
    }

    /// The units' ids.
    pub(crate) fn unit_keys(&self, units: &[UnitView]) -> &Keys {
        self.unit_keys
            .get_or_init(|| Keys::new(units.iter().map(|u| &u.id)))
    }

    /// The sensors' ids.
    pub(crate) fn sensor_keys(&self, sensors: &[SensorView]) -> &Keys {
        self.sensor_keys
            .get_or_init(|| Keys::new(sensors.iter().map(|s| &s.id)))
    }
}

impl DeltaIndex {
    /// Records which units and sensors moved (positions, ascending).
    pub(crate) fn moved(&mut self, units: Vec<u32>, sensors: Vec<u32>) {
        self.moved_units = Some(units);
        self.moved_sensors = Some(sensors);
    }

    /// The units that moved; `None`: any may have.
    pub(crate) fn moved_units(&self) -> Option<&[u32]> {
        self.moved_units.as_deref()
    }

    /// The sensors that moved; `None`: any may have.
    pub(crate) fn moved_sensors(&self) -> Option<&[u32]> {
        self.moved_sensors.as_deref()
    }

    /// The JSON of `cells[i]`.
    pub(crate) fn cell_text<'a>(&'a self, cells: &[CellView], i: usize) -> &'a str {
        self.cell_texts.text(cells, i)
    }

    /// The JSON of `units[i]`.
    pub(crate) fn unit_text<'a>(&'a self, units: &[UnitView], i: usize) -> &'a str {
        self.unit_texts.text(units, i)
    }

    /// The JSON of `sensors[i]`.
    pub(crate) fn sensor_text<'a>(&'a self, sensors: &[SensorView], i: usize) -> &'a str {
        self.sensor_texts.text(sensors, i)
    }
}

impl PartialEq for DeltaIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Delta {
    /// A delta that tells clients to drop what they hold and take a fresh
    /// snapshot (the picture was replaced).
    pub fn resync(seq: u64) -> Delta {
        Delta {
            seq,
            resync: true,
            ..Delta::default()
        }
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
            && self.cells_removed.is_empty()
            && self.units.is_empty()
            && self.units_removed.is_empty()
            && self.sensors.is_empty()
            && self.sensors_removed.is_empty()
            && self.incidents.is_empty()
            && self.incidents_removed.is_empty()
            && self.alerts.is_empty()
    }
}

/// The picture (or the part of it inside a viewport) at one sequence number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The sequence number of the last delta included.
    pub seq: u64,
    /// Resolution of `cells`.
    pub res: u8,
    /// Cells at `res`.
    pub cells: Vec<CellView>,
    /// Units.
    pub units: Vec<UnitView>,
    /// Sensors.
    pub sensors: Vec<SensorView>,
    /// Incidents.
    pub incidents: Vec<IncidentView>,
    /// Alerts.
    pub alerts: Vec<AlertView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_finds_every_point_in_a_box() {
        // A deterministic scatter over Hamburg, a few points without a
        // usable position, and boxes small, large, across stripes and
        // across the antimeridian.
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut pts: Vec<Option<(f64, f64)>> = (0..3_000)
            .map(|_| Some((53.3 + 0.4 * next(), 9.7 + 0.6 * next())))
            .collect();
        pts.extend([None, Some((f64::NAN, 10.0)), Some((53.5, f64::INFINITY))]);
        pts.push(Some((53.5, 179.9)));
        let grid = Grid::new(pts.iter().copied().enumerate().map(|(i, p)| (p, i)));
        let boxes = [
            (53.50, 53.53, 9.95, 10.00),
            (53.30, 53.70, 9.70, 10.30),
            (53.519, 53.521, 9.9, 9.91),
            (53.4, 53.6, 179.0, -179.0),
            (-90.0, 90.0, -180.0, 180.0),
            (54.0, 55.0, 9.0, 11.0),
        ];
        for (s, n, w, e) in boxes {
            let mut got = grid.near(s, n, w, e);
            got.sort_unstable();
            let inside = |&(lat, lon): &(f64, f64)| {
                lat >= s
                    && lat <= n
                    && (if w <= e {
                        lon >= w && lon <= e
                    } else {
                        lon >= w || lon <= e
                    })
            };
            let want: Vec<u32> = (0u32..)
                .zip(&pts)
                .filter(|(_, p)| {
                    p.is_some_and(|p| p.0.is_finite() && p.1.is_finite() && inside(&p))
                })
                .map(|(i, _)| i)
                .collect();
            // A superset (whole stripes of latitude), holding every point
            // inside and nothing from outside the stripes.
            assert!(
                want.iter().all(|i| got.binary_search(i).is_ok()),
                "{s} {n} {w} {e}"
            );
            assert!(got.iter().all(|&i| {
                let (lat, _) = pts[i as usize].expect("positioned");
                lat >= s - STRIPE_DEG && lat <= n + STRIPE_DEG
            }));
            if w <= e {
                assert!(got.iter().all(|&i| {
                    let (_, lon) = pts[i as usize].expect("positioned");
                    lon >= w && lon <= e
                }));
            }
        }
    }
}
