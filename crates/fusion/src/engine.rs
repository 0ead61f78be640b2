//! The engine: applies events to the picture, keeps cell aggregates at every
//! served resolution, and emits one coalesced [`Delta`] per flush.
//!
//! Event application updates the entity and moves its contribution in the
//! cell index at every resolution (see [`crate::store`]).
//! [`Picture::flush`] (called once per tick by the owner task) recomputes
//! the few cells whose maxima may have fallen and emits what changed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use h3o::{CellIndex, LatLng, Resolution};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use thiserror::Error;

use crate::EpochMs;
use crate::areas::{Areas, Presence, Sector, Shortage};
use crate::catalogue::{Catalogue, Checks};
use crate::cell::{CellAgg, Contribution};
use crate::coverage::{CoverError, cover};
use crate::event::{
    Envelope, Event, IncidentUpsert, SensorMeta, SensorObs, UnitMeta, UnitPos, UnitStatus,
};
use crate::fix::{
    CONFLICT_CLEAR_FACTOR, Fix, MAX_SOURCES_PER_UNIT, SourceConfig, SourceView, disagree,
    distance_m, fuse, jumped,
};
use crate::freshness::Freshness;
use crate::names::{NameId, Names, Texts};
use crate::registry::{Registry, Slot};
use crate::status::StatusTable;
use crate::store::{CellStore, Member, NO_SLOT};
use crate::trend::Trend;
use crate::view::{
    AlertView, CellView, Delta, IncidentView, Quality, SensorView, Snapshot, StatusClass, UnitView,
};
use crate::viewport::Viewport;

/// How often freshness classes are re-evaluated, in the picture's clock.
const FRESHNESS_SCAN_INTERVAL_MS: i64 = 1_000;
/// Entities (or cells) read ahead together before they are worked on
/// ([`Picture::read_ahead`]).
pub const READ_AHEAD: usize = 16;
/// Hysteresis below a threshold before a level falls back, as a fraction of
/// the threshold's magnitude (with a floor of [`HYSTERESIS_MIN`]).
const HYSTERESIS_FRACTION: f64 = 0.01;
const HYSTERESIS_MIN: f64 = 0.01;
/// Levels are 0–4.
const MAX_LEVEL: u8 = 4;

/// The resolution of `served` closest to `res` (8 when none is served).
pub(crate) fn nearest_resolution(served: &[Resolution], res: u8) -> Resolution {
    served
        .iter()
        .copied()
        .min_by_key(|r| u8::from(*r).abs_diff(res))
        .unwrap_or(Resolution::Eight)
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct PictureConfig {
    /// Served resolutions, any order; the finest is where entities are indexed.
    pub resolutions: Vec<Resolution>,
    /// How far in the future an event time may be before it is refused.
    pub future_tolerance_ms: i64,
    /// Time-to-live of a unit's newest report.
    pub unit_ttl_ms: i64,
    /// Sensor kinds.
    pub catalogue: Catalogue,
    /// Radio status meanings.
    pub status_table: StatusTable,
    /// Most finest-resolution cells one incident area may cover.
    pub max_incident_cells: usize,
    /// How long an entity that stopped reporting stays in the picture
    /// (marked lost) before it is removed.
    pub retention_ms: i64,
    /// A unit in a status that expects reports (3, 4, 7) silent for longer
    /// than this is flagged.
    pub silent_after_ms: i64,
    /// Sectors that must keep an available unit of given types.
    pub sectors: Vec<Sector>,
    /// Unit types an incident with a given keyword must keep available
    /// inside its area, e.g. `FEU3` → `["HLF", "DLK"]`.
    pub requirements: BTreeMap<String, Vec<String>>,
    /// How positions from several sources are weighed, and who they are.
    pub sources: SourceConfig,
    /// Most units, sensors and incidents the picture holds together: an
    /// event about a new id beyond it is refused and raises a `capacity`
    /// alert (a flood of invented ids must not take the memory).
    pub max_entities: usize,
    /// A shard of a scaled-out deployment (DESIGN §7): the regions this
    /// picture owns. A unit whose position lies elsewhere is handed over
    /// (it leaves this picture); None holds everything.
    pub shard: Option<crate::regions::Ownership>,
}

impl PictureConfig {
    /// Checks what the engine cannot check event by event: that every
    /// sector's area can be covered with cells.
    pub fn check(&self) -> Result<(), String> {
        let finest = self
            .resolutions
            .iter()
            .max()
            .copied()
            .unwrap_or(Resolution::Ten);
        for sector in &self.sectors {
            cover(&sector.geometry, finest, self.max_incident_cells)
                .map_err(|e| format!("sector {:?}: {e}", sector.id))?;
        }
        Ok(())
    }
}

impl Default for PictureConfig {
    fn default() -> Self {
        Self {
            resolutions: vec![
                Resolution::Ten,
                Resolution::Nine,
                Resolution::Eight,
                Resolution::Seven,
                Resolution::Six,
            ],
            future_tolerance_ms: 30_000,
            unit_ttl_ms: 5 * 60_000,
            catalogue: Catalogue::default(),
            status_table: StatusTable::default(),
            max_incident_cells: 200_000,
            retention_ms: 6 * 3_600_000,
            silent_after_ms: 10 * 60_000,
            sectors: Vec::new(),
            requirements: BTreeMap::new(),
            sources: SourceConfig::default(),
            max_entities: 1_000_000,
            shard: None,
        }
    }
}

/// Why an event was refused. Refused events change nothing.
#[derive(Debug, Error, PartialEq)]
pub enum Refusal {
    /// Event time too far ahead of the picture's clock.
    #[error("event time is {ahead_ms} ms in the future (tolerance {tolerance_ms} ms)")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: i64,
        /// The configured tolerance.
        tolerance_ms: i64,
    },
    /// The position cannot be indexed.
    #[error("position cannot be indexed on H3: {0}")]
    BadPosition(String),
    /// An incident's area cannot be covered with cells.
    #[error("{0}")]
    Area(#[from] CoverError),
    /// A radio status from a source that may not set it.
    #[error("radio status from source {0:?}, which may not set it (status sources are configured)")]
    StatusNotAuthoritative(String),
    /// A new entity while the picture holds its configured most.
    #[error(
        "the picture holds its limit of {0} entities (fusion.max_entities): new ids are refused"
    )]
    Capacity(usize),
}

impl Refusal {
    /// A short stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::FromTheFuture { .. } => "future_timestamp",
            Refusal::BadPosition(_) => "bad_position",
            Refusal::Area(CoverError::TooLarge { .. }) => "incident_area_too_large",
            Refusal::Area(CoverError::Geometry(_)) => "bad_geometry",
            Refusal::StatusNotAuthoritative(_) => "status_not_authoritative",
            Refusal::Capacity(_) => "entity_cap",
        }
    }
}

/// What happened to an accepted (not refused) event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The picture changed (or will at the next flush).
    Applied,
    /// Applied, and the source's `seq` skipped this many messages before it.
    Gap(u64),
    /// Same source and sequence number, or same time and content: dropped.
    Duplicate,
    /// Older than the entity's state: kept out of it.
    Outdated,
    /// A position in a region another shard owns: the unit left this
    /// picture (if it was in it).
    Elsewhere,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Incident {
    view: IncidentView,
    /// Finest-resolution cells the area covers, sorted.
    cells: Vec<CellIndex>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sensor {
    kind_id: NameId,
    /// The thresholds in force (the sensor's own, else its kind's) and the
    /// kind's time-to-live, resolved when the sensor is described rather
    /// than looked up by name on every observation and scan.
    scale: Arc<[f64]>,
    ttl_ms: i64,
    unit: Arc<str>,
    name: Option<Arc<str>>,
    pos: Option<(f64, f64)>,
    thresholds: Option<Vec<f64>>,
    value: Option<f64>,
    ts_ms: Option<EpochMs>,
    seq: Option<u64>,
    level: u8,
    cell: Option<CellIndex>,
    /// Where the cell index keeps `cell` (a hint, checked before use).
    #[serde(skip, default = "no_slot")]
    cell_slot: u32,
    shown: Option<Freshness>,
    /// The position the last delta showed (not kept in a checkpoint: a
    /// restored picture reports every entity as moved once).
    #[serde(skip)]
    sent_pos: Option<(f64, f64)>,
    trend: Trend,
    quality: Quality,
    quality_reason: Option<checkpoint::Reason>,
    /// Since when the value has not changed.
    same_since_ms: Option<EpochMs>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Unit {
    callsign: Option<Arc<str>>,
    type_id: NameId,
    org: Arc<str>,
    strength: Option<u32>,
    pos: Option<(f64, f64)>,
    heading: Option<f64>,
    speed: Option<f64>,
    accuracy: Option<f64>,
    source: Option<Arc<str>>,
    pos_ts_ms: Option<EpochMs>,
    status: Option<u8>,
    status_ts_ms: Option<EpochMs>,
    class: StatusClass,
    cell: Option<CellIndex>,
    /// Where the cell index keeps `cell` (a hint, checked before use).
    #[serde(skip, default = "no_slot")]
    cell_slot: u32,
    shown: Option<(Freshness, bool)>,
    /// The position the last delta showed (not kept in a checkpoint).
    #[serde(skip)]
    sent_pos: Option<(f64, f64)>,
    /// The last fix of each source, sorted by source.
    fixes: SmallVec<[Fix; 1]>,
    /// Two sources disagree beyond their accuracies.
    conflict: bool,
    /// Time-to-live the newest fix came with (CoT's `stale`), instead of
    /// the configured one.
    ttl_ms: Option<i64>,
}

fn no_slot() -> u32 {
    NO_SLOT
}

/// An entity that remembers where the cell index keeps its finest cell.
trait CellSlot {
    fn cell_slot(&mut self) -> &mut u32;
}

impl CellSlot for Sensor {
    fn cell_slot(&mut self) -> &mut u32 {
        &mut self.cell_slot
    }
}

impl CellSlot for Unit {
    fn cell_slot(&mut self) -> &mut u32 {
        &mut self.cell_slot
    }
}

/// Moves an entity's contribution in the cell index through the
/// finest-cell slot it remembers, and remembers the new one.
fn move_member<T: CellSlot>(
    cells: &mut CellStore,
    entities: &mut Registry<T>,
    member: Member,
    old: Option<(CellIndex, Contribution)>,
    new: Option<(CellIndex, Contribution)>,
) {
    let slot = match member {
        Member::Unit(s) | Member::Sensor(s) | Member::Incident(s) => s,
    };
    let Some(e) = entities.at_mut(slot) else {
        cells.change(member, old, new);
        return;
    };
    let remembered = e.cell_slot();
    *remembered = cells.change_hinted(member, old, new, *remembered);
}

impl Unit {
    /// Reads every part of the unit that applying a position or a status
    /// reads, its fixes included (for read-ahead).
    fn touch(&self) -> u64 {
        let fixes = self
            .fixes
            .iter()
            .fold(0, |seen, f| seen ^ f.ts_ms as u64 ^ f.source.len() as u64);
        let callsign = self
            .callsign
            .as_deref()
            .and_then(|c| c.as_bytes().first().copied())
            .unwrap_or(0);
        fixes
            ^ u64::from(callsign)
            ^ self.newest_ms().unwrap_or_default() as u64
            ^ u64::from(self.type_id)
            ^ u64::from(self.cell_slot)
            ^ self.cell.map_or(0, u64::from)
            ^ u64::from(self.conflict)
    }

    /// Reads what a view of the unit needs (for read-ahead).
    fn read(id: &Arc<str>, u: &Unit) -> u64 {
        let callsign = u.callsign.as_deref().map_or(0, |c| c.len());
        let first = id.as_bytes().first().copied().unwrap_or(0);
        u64::from(first) ^ (callsign as u64) ^ (u.fixes.len() as u64) ^ u64::from(u.cell_slot)
    }

    fn newest_ms(&self) -> Option<EpochMs> {
        self.pos_ts_ms.max(self.status_ts_ms)
    }

    /// What the unit adds to its cell.
    fn contribution(&self) -> Option<(CellIndex, Contribution)> {
        let c = Contribution::Unit {
            class: self.class,
            unit_type: self.type_id,
            ts: self.newest_ms(),
        };
        self.cell.map(|cell| (cell, c))
    }
}

impl Sensor {
    /// Reads every part of the sensor that applying an observation reads,
    /// wherever its fields lie (for read-ahead).
    fn touch(&self) -> u64 {
        let value = self.value.unwrap_or_default().to_bits();
        let ts = self.ts_ms.unwrap_or_default() as u64;
        let same = self.same_since_ms.unwrap_or_default() as u64;
        value
            ^ ts
            ^ same
            ^ self.seq.unwrap_or_default()
            ^ u64::from(self.trend.samples())
            ^ u64::from(self.level)
            ^ u64::from(self.kind_id)
            ^ u64::from(self.cell_slot)
            ^ self.cell.map_or(0, u64::from)
            ^ self.scale.first().map_or(0, |v| v.to_bits())
            ^ u64::from(self.quality == Quality::Suspect)
    }

    /// Reads what a view of the sensor needs (for read-ahead).
    fn read(id: &Arc<str>, s: &Sensor) -> u64 {
        let name = s.name.as_deref().map_or(0, |n| n.len());
        let first = id.as_bytes().first().copied().unwrap_or(0);
        u64::from(first) ^ (name as u64) ^ u64::from(s.trend.samples()) ^ u64::from(s.level)
    }

    /// What the sensor adds to its cell.
    fn contribution(&self) -> Option<(CellIndex, Contribution)> {
        let c = Contribution::Sensor {
            kind: self.kind_id,
            level: self.level,
            value: self.value,
            ts: self.ts_ms,
        };
        self.cell.map(|cell| (cell, c))
    }
}

impl Incident {
    /// What the incident adds to each cell it covers.
    fn contribution(&self) -> Contribution {
        Contribution::Incident {
            severity: self.view.severity,
            ts: self.view.ts_ms,
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// Slots of changed units and sensors (may repeat; a slot emptied
    /// since is skipped).
    units: Vec<Slot>,
    sensors: Vec<Slot>,
    units_removed: Vec<Arc<str>>,
    sensors_removed: Vec<Arc<str>>,
    incidents: BTreeSet<String>,
    alerts: BTreeSet<u64>,
    clock_alerts: BTreeSet<u64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.units.is_empty()
            && self.sensors.is_empty()
            && self.units_removed.is_empty()
            && self.sensors_removed.is_empty()
            && self.incidents.is_empty()
            && self.alerts.is_empty()
            && self.clock_alerts.is_empty()
    }
}

/// The situation picture of one space.
#[derive(Debug)]
pub struct Picture {
    config: PictureConfig,
    /// Served resolutions, finest first.
    resolutions: Vec<Resolution>,
    seq: u64,
    sensors: Registry<Sensor>,
    units: Registry<Unit>,
    incidents: Registry<Incident>,
    /// Alerts raised by events (ids `A<n>`): part of the digest.
    alerts: BTreeMap<u64, AlertView>,
    /// Alerts raised by the clock, such as a source going stale (ids
    /// `S<n>`): left out of the digest like every clock-derived field.
    clock_alerts: BTreeMap<u64, AlertView>,
    /// Unacknowledged alerts by what they are about, for the no-copy rule
    /// (level and key of each).
    open_alerts: HashMap<OpenKey, Vec<(u8, u64)>, ahash::RandomState>,
    /// Every non-empty cell at every served resolution, with the members
    /// of the finest ones.
    cells: CellStore,
    pending: Pending,
    last_scan_ms: Option<EpochMs>,
    areas: Areas,
    names: Names,
    /// Shared texts (units of measure, organisations, sources).
    texts: Texts,
    /// What the catalogue says of each kind, by name id (looked up by
    /// name once per kind, not per sensor or observation).
    kinds: Vec<Option<KindInfo>>,
    /// For the neighbour check: the sensors in each checked sensor's cell
    /// and the ring around it, by the sensor's slot, with the cell and
    /// the index's [`CellStore::sensor_moves`] they were listed at (stale
    /// once either differs). Sensors rarely move, so the ring is walked
    /// once rather than on every reading.
    rings: HashMap<Slot, Ring, ahash::RandomState>,
}

/// The sensors around a cell, as listed at one state of the index.
#[derive(Debug)]
struct Ring {
    cell: CellIndex,
    listed_at: u64,
    sensors: SmallVec<[Slot; 8]>,
}

/// A kind's catalogue entry as the engine uses it.
#[derive(Debug, Clone)]
struct KindInfo {
    /// Thresholds, shared by the kind's sensors.
    scale: Arc<[f64]>,
    ttl_ms: i64,
    checks: Checks,
}

/// What an alert is about: (clock series, kind, entity, related).
type OpenKey = (bool, Box<str>, Box<str>, Option<Box<str>>);

/// Which kind of entity an operator removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    /// A unit.
    Unit,
    /// A sensor.
    Sensor,
}

/// Why a removal was refused.
#[derive(Debug, Error, PartialEq)]
pub enum RemoveError {
    /// No such entity.
    #[error("no entity with id {0:?}")]
    Unknown(String),
}

/// The level of `value` on `scale`, given the current level: with
/// hysteresis on the way down so a value hovering at a threshold does not
/// flap.
fn level_for(scale: &[f64], current: u8, value: f64) -> u8 {
    let count = |f: &dyn Fn(f64) -> f64| {
        let n = scale.iter().filter(|t| value >= f(**t)).count();
        u8::try_from(n).unwrap_or(MAX_LEVEL).min(MAX_LEVEL)
    };
    let raw = count(&|t| t);
    if raw >= current {
        raw
    } else {
        let sticky = count(&|t| t - (t.abs() * HYSTERESIS_FRACTION).max(HYSTERESIS_MIN));
        sticky.min(current)
    }
}

/// The quality of reading `o` of sensor `s` (before `s` takes it), and
/// why when not ok. `neighbours`: the median of the kind's sensors around.
fn plausibility(
    s: &Sensor,
    checks: &Checks,
    o: &SensorObs,
    neighbours: Option<f64>,
) -> (Quality, Option<&'static str>) {
    let v = o.value;
    if checks.range.is_some_and(|[lo, hi]| v < lo || v > hi) {
        return (Quality::Suspect, Some("out_of_range"));
    }
    // Against the previous reading, unless that one was suspect itself
    // (coming back from a bad reading is no spike).
    let previous = s
        .value
        .zip(s.ts_ms)
        .filter(|_| s.quality != Quality::Suspect);
    if let (Some(rate), Some((prev, t))) = (checks.max_rate_per_min, previous) {
        // The rate over at least a minute: readings seconds apart may
        // differ by their noise without looking like a spike.
        let minutes = ((o.ts_ms - t) as f64 / 60_000.0).max(1.0);
        if (v - prev).abs() > rate * minutes {
            return (Quality::Suspect, Some("spike"));
        }
    }
    if let (Some(after), Some(since)) = (checks.flat_after_ms, s.same_since_ms)
        && s.value == Some(v)
        && o.ts_ms - since > after
    {
        return (Quality::Suspect, Some("flat_line"));
    }
    if s.quality == Quality::Suspect {
        return (Quality::Provisional, Some("after_suspect"));
    }
    if let (Some(tolerance), Some(median)) = (checks.neighbour_tolerance, neighbours)
        && (v - median).abs() > tolerance
    {
        return (Quality::Provisional, Some("neighbours_disagree"));
    }
    (Quality::Ok, None)
}

/// The key of an incident's area among the areas that need units.
pub(crate) fn incident_area_key(id: &str) -> String {
    format!("incident:{id}")
}

/// The name a shortage alert gives an incident's area.
pub(crate) fn incident_area_name(keyword: &str, title: Option<&str>, id: &str) -> String {
    format!("{keyword} {}", title.unwrap_or(id))
}

/// "12 min ago" style age for alert texts.
fn minutes_ago(ts: Option<EpochMs>, now_ms: EpochMs) -> String {
    match ts {
        Some(t) => format!("{} min", now_ms.saturating_sub(t) / 60_000),
        None => "ever".to_owned(),
    }
}

/// Why an acknowledgement was refused.
#[derive(Debug, Error, PartialEq)]
pub enum AckError {
    /// No alert with that id.
    #[error("no alert with id {0:?}")]
    Unknown(String),
}

/// Whether an entity at `pos` moved since a delta last showed it at
/// `sent` (one without a position counts as moved); `sent` becomes `pos`.
fn moved_since_shown(sent: &mut Option<(f64, f64)>, pos: Option<(f64, f64)>) -> bool {
    let moved = pos.is_none() || *sent != pos;
    *sent = pos;
    moved
}

impl Picture {
    /// An empty picture.
    pub fn new(config: PictureConfig) -> Picture {
        let mut resolutions = config.resolutions.clone();
        if resolutions.is_empty() {
            resolutions = PictureConfig::default().resolutions;
        }
        resolutions.sort_unstable_by(|a, b| b.cmp(a));
        resolutions.dedup();
        let mut areas = Areas::default();
        // Sectors that cannot be covered are skipped here; configuration
        // loading refuses them first (PictureConfig::check).
        for sector in &config.sectors {
            if let Ok(cells) = cover(&sector.geometry, resolutions[0], config.max_incident_cells) {
                let key = format!("sector:{}", sector.id);
                areas.insert(
                    &key,
                    &sector.name,
                    &cells,
                    &sector.require,
                    std::iter::empty(),
                );
            }
        }
        let cells = CellStore::new(resolutions.clone());
        Picture {
            areas,
            names: Names::default(),
            texts: Texts::default(),
            kinds: Vec::new(),
            config,
            resolutions,
            seq: 0,
            sensors: Registry::default(),
            units: Registry::default(),
            incidents: Registry::default(),
            alerts: BTreeMap::new(),
            clock_alerts: BTreeMap::new(),
            open_alerts: HashMap::default(),
            cells,
            pending: Pending::default(),
            last_scan_ms: None,
            rings: HashMap::default(),
        }
    }

    /// The sequence number of the last delta emitted.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Numbers the next delta after `seq`: a drill reset to a fresh picture
    /// keeps its clients' sequence going (`seq` is not part of the digest).
    pub fn continue_seq(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    /// Served resolutions, finest first.
    pub fn resolutions(&self) -> &[Resolution] {
        &self.resolutions
    }

    /// The served resolution closest to `res`.
    pub fn nearest_resolution(&self, res: u8) -> Resolution {
        nearest_resolution(&self.resolutions, res)
    }

    /// Applies one event at picture time `now_ms`.
    pub fn apply(&mut self, env: &Envelope, now_ms: EpochMs) -> Result<Outcome, Refusal> {
        if let Some(ts) = env.event.ts_ms() {
            let ahead_ms = ts - now_ms;
            if ahead_ms > self.config.future_tolerance_ms {
                return Err(Refusal::FromTheFuture {
                    ahead_ms,
                    tolerance_ms: self.config.future_tolerance_ms,
                });
            }
        }
        self.check_capacity(&env.event)?;
        match &env.event {
            Event::SensorMeta(m) => self.sensor_meta(m),
            Event::SensorObs(o) => self.sensor_obs(o),
            Event::UnitMeta(m) => Ok(self.unit_meta(m)),
            Event::UnitPos(p) => self.unit_pos(p),
            Event::UnitStatus(s) => self.unit_status(s),
            Event::Incident(i) => self.incident(i),
            Event::IncidentClosed(c) => Ok(if self.close_incident(&c.id) {
                Outcome::Applied
            } else {
                Outcome::Duplicate
            }),
        }
    }

    /// Reads, without changing anything, the memory that applying `envs`
    /// will touch first: each entity's index entry, the entity (every
    /// field `apply` reads, wherever it lies), its finest cell and that
    /// cell's ancestors, one step for all events before the
    /// next. A large picture does not fit in the processor's caches, and
    /// applying an event walks a chain of places in memory each found
    /// through the one before; read this way, the chains of several events
    /// are waited for together instead of one after another. Call it on
    /// the next few events (8 to 32) before applying them; the result
    /// means nothing (it keeps the reads from being left out).
    pub fn read_ahead<'a>(&self, envs: impl IntoIterator<Item = &'a Envelope>) -> u64 {
        // Each step for every event before the next: index entries, then
        // entities (and the sensors a neighbour check compares with),
        // then cells.
        let mut entities: SmallVec<[(bool, Slot); 32]> = SmallVec::new();
        for env in envs {
            let found = match &env.event {
                Event::SensorObs(o) => self.sensors.slot_of(&o.id).map(|slot| (true, slot)),
                Event::UnitPos(p) => self
                    .units
                    .slot_of(&self.unit_id(&p.id))
                    .map(|slot| (false, slot)),
                Event::UnitStatus(st) => self
                    .units
                    .slot_of(&self.unit_id(&st.id))
                    .map(|slot| (false, slot)),
                _ => None,
            };
            entities.extend(found);
        }
        let mut seen = 0u64;
        let mut cells: SmallVec<[u32; 32]> = SmallVec::new();
        let mut rings: SmallVec<[Slot; 32]> = SmallVec::new();
        for &(sensor, slot) in &entities {
            if sensor {
                let Some(s) = self.sensors.at(slot) else {
                    continue;
                };
                seen ^= s.touch();
                cells.push(s.cell_slot);
                let checked = self
                    .kinds
                    .get(usize::from(s.kind_id))
                    .and_then(Option::as_ref)
                    .is_some_and(|k| k.checks.neighbour_tolerance.is_some());
                if checked && let Some(ring) = self.rings.get(&slot) {
                    rings.extend(ring.sensors.iter().copied());
                }
            } else if let Some(u) = self.units.at(slot) {
                seen ^= u.touch();
                cells.push(u.cell_slot);
            }
        }
        for slot in rings {
            if let Some(s) = self.sensors.at(slot) {
                seen ^= u64::from(s.kind_id);
            }
        }
        seen ^ self.cells.read_ahead(&mut cells)
    }

    /// Refuses an event that would add an entity beyond `max_entities`,
    /// raising one `capacity` alert (until it is acknowledged).
    fn check_capacity(&mut self, event: &Event) -> Result<(), Refusal> {
        let held = self.units.len() + self.sensors.len() + self.incidents.len();
        if held < self.config.max_entities {
            return Ok(());
        }
        let id = event.entity_id();
        let known = match event {
            Event::SensorMeta(_) | Event::SensorObs(_) => self.sensors.slot_of(id).is_some(),
            Event::UnitMeta(_) | Event::UnitPos(_) | Event::UnitStatus(_) => {
                self.units.slot_of(id).is_some()
            }
            Event::Incident(_) => self.incidents.slot_of(id).is_some(),
            Event::IncidentClosed(_) => true,
        };
        if known {
            return Ok(());
        }
        let cap = self.config.max_entities;
        let message = format!(
            "Picture full: {cap} entities held, new ids are refused (first refused: {id}). \
             A flood of unknown sources? Raise fusion.max_entities if it is real."
        );
        self.raise(
            "capacity",
            "picture",
            None,
            3,
            message,
            event.ts_ms().unwrap_or(0),
        );
        Err(Refusal::Capacity(cap))
    }

    /// Closes an incident; false if there is none of that id.
    fn close_incident(&mut self, id: &str) -> bool {
        match self.incidents.remove(id) {
            Some((slot, _, old)) => {
                self.recover(slot, (&old.cells, Some(old.contribution())), (&[], None));
                self.areas.remove(&incident_area_key(id));
                self.pending.incidents.insert(id.to_owned());
                true
            }
            None => false,
        }
    }

    fn index(&self, lat: f64, lon: f64) -> Result<CellIndex, Refusal> {
        let ll = LatLng::new(lat, lon).map_err(|e| Refusal::BadPosition(e.to_string()))?;
        Ok(ll.to_cell(self.resolutions[0]))
    }

    fn sensor_meta(&mut self, m: &SensorMeta) -> Result<Outcome, Refusal> {
        let cell = self.index(m.lat, m.lon)?;
        let spec_unit = m.unit.clone();
        let kind_id = self.names.intern(&m.kind);
        let existing = self.sensors.get(&m.id);
        if let Some(s) = existing
            && s.kind_id == kind_id
            && *s.unit == *m.unit
            && s.name.as_deref() == m.name.as_deref()
            && s.pos == Some((m.lat, m.lon))
            && s.thresholds == m.thresholds
        {
            return Ok(Outcome::Duplicate);
        }
        let mut s = existing
            .cloned()
            .unwrap_or_else(|| self.empty_sensor(kind_id));
        let old = s.contribution();
        // A new name or position keeps the level (and its hysteresis); a
        // new scale re-evaluates it from scratch.
        let same_scale = s.kind_id == kind_id && s.thresholds == m.thresholds;
        s.scale = match &m.thresholds {
            Some(own) => Arc::from(own.as_slice()),
            None => self.kind_info(kind_id).scale.clone(),
        };
        s.ttl_ms = self.kind_info(kind_id).ttl_ms;
        s.kind_id = kind_id;
        s.unit = self.texts.share(&spec_unit);
        s.name = m.name.as_deref().map(Arc::from);
        s.pos = Some((m.lat, m.lon));
        s.thresholds = m.thresholds.clone();
        s.cell = Some(cell);
        if let (Some(v), false) = (s.value, same_scale) {
            s.level = level_for(&s.scale, 0, v);
        }
        let new = s.contribution();
        let slot = self.sensors.insert(&m.id, s);
        move_member(
            &mut self.cells,
            &mut self.sensors,
            Member::Sensor(slot),
            old,
            new,
        );
        self.pending.sensors.push(slot);
        Ok(Outcome::Applied)
    }

    fn sensor_obs(&mut self, o: &SensorObs) -> Result<Outcome, Refusal> {
        let new_cell = match (o.lat, o.lon) {
            (Some(lat), Some(lon)) => Some(self.index(lat, lon)?),
            _ => None,
        };
        let slot = match self.sensors.slot_of(&o.id) {
            Some(slot) => slot,
            None => {
                let unknown = self.names.intern(UNKNOWN);
                let sensor = self.empty_sensor(unknown);
                self.sensors.insert(&o.id, sensor)
            }
        };
        let Some(s) = self.sensors.at_mut(slot) else {
            unreachable!("slot {slot} was just looked up or filled")
        };
        if o.seq.is_some() && s.seq == o.seq {
            return Ok(Outcome::Duplicate);
        }
        if let Some(t) = s.ts_ms {
            if o.ts_ms == t && s.value == Some(o.value) {
                return Ok(Outcome::Duplicate);
            }
            if o.ts_ms <= t {
                return Ok(Outcome::Outdated);
            }
        }
        let missed = match (s.seq, o.seq) {
            (Some(prev), Some(new)) if new > prev + 1 => new - prev - 1,
            _ => 0,
        };
        let (kind_id, cell) = (s.kind_id, s.cell);
        let checks = self.kind_info(kind_id).checks;
        let neighbours = match (checks.neighbour_tolerance, cell) {
            (Some(_), Some(cell)) => self.neighbour_median(slot, kind_id, cell),
            _ => None,
        };
        let Some(s) = self.sensors.at_mut(slot) else {
            unreachable!("slot {slot} was just looked up or filled")
        };
        let (quality, reason) = plausibility(s, &checks, o, neighbours);
        if s.value != Some(o.value) {
            s.same_since_ms = Some(o.ts_ms);
        }
        let old = s.contribution();
        let old_level = s.level;
        let level = level_for(&s.scale, s.level, o.value);
        // A suspect reading is shown but raises nothing on its own.
        s.level = if quality == Quality::Suspect {
            level.min(s.level)
        } else {
            level
        };
        s.quality = quality;
        s.quality_reason = reason.map(checkpoint::Reason);
        s.value = Some(o.value);
        s.ts_ms = Some(o.ts_ms);
        s.seq = o.seq.or(s.seq);
        if quality != Quality::Suspect {
            s.trend.add(o.ts_ms, o.value);
        }
        if let (Some(lat), Some(lon), Some(c)) = (o.lat, o.lon, new_cell) {
            s.pos = Some((lat, lon));
            s.cell = Some(c);
        }
        let new = s.contribution();
        let level = s.level;
        let name = s.name.as_deref().unwrap_or(&o.id);
        let rose = (level > old_level).then(|| {
            let kind = self.names.name(s.kind_id);
            format!(
                "{name}: {kind} {} {} reached level {level}",
                o.value, s.unit
            )
        });
        let gap = (missed > 0).then(|| {
            let seq = o.seq.unwrap_or(0);
            format!("{name}: {missed} message(s) missing before seq {seq}")
        });
        if let Some(message) = rose {
            self.raise("threshold", &o.id, None, level, message, o.ts_ms);
        }
        if let Some(message) = gap {
            self.raise("seq_gap", &o.id, None, 1, message, o.ts_ms);
        }
        move_member(
            &mut self.cells,
            &mut self.sensors,
            Member::Sensor(slot),
            old,
            new,
        );
        self.pending.sensors.push(slot);
        Ok(if missed > 0 {
            Outcome::Gap(missed)
        } else {
            Outcome::Applied
        })
    }

    /// The catalogue's entry for a kind (no thresholds or checks and the
    /// default time-to-live for a kind the catalogue lacks).
    fn kind_info(&mut self, kind_id: NameId) -> &KindInfo {
        let i = usize::from(kind_id);
        if self.kinds.len() <= i {
            self.kinds.resize(i + 1, None);
        }
        let (names, catalogue) = (&self.names, &self.config.catalogue);
        self.kinds[i].get_or_insert_with(|| {
            let name = names.name(kind_id);
            KindInfo {
                scale: catalogue
                    .get(name)
                    .map_or_else(|| Arc::from([]), |k| Arc::from(k.thresholds.as_slice())),
                ttl_ms: catalogue.ttl_ms(name),
                checks: catalogue.checks(name),
            }
        })
    }

    /// The median of the current values of the other sensors of kind
    /// `kind` in `cell` and the ring around it (not suspect, at least
    /// two), for the neighbour check.
    fn neighbour_median(&mut self, me: Slot, kind: NameId, cell: CellIndex) -> Option<f64> {
        let moves = self.cells.sensor_moves();
        let listed = self
            .rings
            .get(&me)
            .is_some_and(|r| r.cell == cell && r.listed_at == moves);
        if !listed {
            let sensors = cell
                .grid_disk::<SmallVec<[CellIndex; 8]>>(1)
                .into_iter()
                .flat_map(|c| self.cells.members(c).iter().copied())
                .filter_map(|m| match m {
                    Member::Sensor(slot) if slot != me => Some(slot),
                    _ => None,
                })
                .collect();
            let ring = Ring {
                cell,
                listed_at: moves,
                sensors,
            };
            self.rings.insert(me, ring);
        }
        let ring = self.rings.get(&me)?;
        let mut values: SmallVec<[f64; 8]> = ring
            .sensors
            .iter()
            .filter_map(|slot| self.sensors.at(*slot))
            .filter(|s| s.kind_id == kind && s.quality != Quality::Suspect)
            .filter_map(|s| s.value)
            .collect();
        if values.len() < 2 {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        let mid = values.len() / 2;
        Some(if values.len().is_multiple_of(2) {
            (values[mid - 1] + values[mid]) / 2.0
        } else {
            values[mid]
        })
    }

    /// A sensor known by its id only, of the kind `kind_id`.
    fn empty_sensor(&mut self, kind_id: NameId) -> Sensor {
        let KindInfo { scale, ttl_ms, .. } = self.kind_info(kind_id).clone();
        Sensor {
            kind_id,
            scale,
            ttl_ms,
            quality: Quality::Ok,
            quality_reason: None,
            same_since_ms: None,
            unit: self.texts.share(""),
            name: None,
            pos: None,
            thresholds: None,
            value: None,
            ts_ms: None,
            seq: None,
            level: 0,
            cell: None,
            cell_slot: NO_SLOT,
            shown: None,
            sent_pos: None,
            trend: Trend::default(),
        }
    }

    /// What a unit contributes to area counts (none without a position, and
    /// none asked for while there are no areas: the hot path stays cheap).
    fn presence(&self, id: &str) -> Option<Presence> {
        if self.areas.is_empty() {
            return None;
        }
        self.presence_always(id)
    }

    fn presence_always(&self, id: &str) -> Option<Presence> {
        let u = self.units.get(id)?;
        Some(Presence {
            cell: u.cell?,
            class: u.class,
            unit_type: self.names.name(u.type_id).to_owned(),
        })
    }

    /// Updates area counts after unit `id` changed from `before`.
    fn unit_moved_in_areas(&mut self, id: &str, before: Option<Presence>, ts_ms: EpochMs) {
        if self.areas.is_empty() {
            return;
        }
        let after = self.presence(id);
        for Shortage {
            area,
            name,
            unit_type,
        } in self.areas.unit_changed(before.as_ref(), after.as_ref())
        {
            let message = format!("No available {unit_type} left in {name}");
            self.raise(
                "no_available_unit",
                &area,
                Some(&unit_type),
                2,
                message,
                ts_ms,
            );
        }
    }

    /// Raises an alert, unless one of the same kind about the same entity
    /// (and related entity) at this level or higher is still
    /// unacknowledged: a value crossing back and forth, or a unit wandering
    /// in and out of an area, must not bury the operator in copies.
    fn raise(
        &mut self,
        kind: &str,
        entity: &str,
        related: Option<&str>,
        level: u8,
        message: String,
        ts_ms: EpochMs,
    ) {
        self.raise_in(false, kind, entity, related, level, message, ts_ms);
    }

    /// Raises an alert in the event (`A`) or clock (`S`) series.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per alert kind reads best flat"
    )]
    fn raise_in(
        &mut self,
        clocked: bool,
        kind: &str,
        entity: &str,
        related: Option<&str>,
        level: u8,
        message: String,
        ts_ms: EpochMs,
    ) {
        let (alerts, pending, prefix) = if clocked {
            (&mut self.clock_alerts, &mut self.pending.clock_alerts, 'S')
        } else {
            (&mut self.alerts, &mut self.pending.alerts, 'A')
        };
        let key: OpenKey = (clocked, kind.into(), entity.into(), related.map(Into::into));
        let open = self.open_alerts.entry(key).or_default();
        if open.iter().any(|(l, _)| *l >= level) {
            return;
        }
        let n = alerts.keys().next_back().map_or(1, |k| k + 1);
        open.push((level, n));
        alerts.insert(
            n,
            AlertView {
                id: format!("{prefix}{n}"),
                kind: kind.to_owned(),
                entity: entity.to_owned(),
                related: related.map(str::to_owned),
                level,
                message,
                ts_ms,
                acked: false,
            },
        );
        pending.insert(n);
    }

    fn unit_entry(&mut self, id: &str) -> (Slot, &mut Unit) {
        let slot = match self.units.slot_of(id) {
            Some(slot) => slot,
            None => {
                let unknown = self.names.intern(UNKNOWN);
                self.units.insert(id, new_unit(unknown))
            }
        };
        let Some(u) = self.units.at_mut(slot) else {
            unreachable!("slot {slot} was just looked up or filled")
        };
        (slot, u)
    }
}

const UNKNOWN: &str = "unknown";

fn new_unit(type_id: NameId) -> Unit {
    Unit {
        callsign: None,
        type_id,
        org: Arc::from("unknown"),
        strength: None,
        pos: None,
        heading: None,
        speed: None,
        accuracy: None,
        source: None,
        pos_ts_ms: None,
        status: None,
        status_ts_ms: None,
        class: StatusClass::Unknown,
        cell: None,
        cell_slot: NO_SLOT,
        shown: None,
        sent_pos: None,
        fixes: SmallVec::new(),
        conflict: false,
        ttl_ms: None,
    }
}

impl Picture {
    fn unit_meta(&mut self, m: &UnitMeta) -> Outcome {
        let id = self.unit_id(&m.id);
        let id = id.as_ref();
        let before = self.presence(id);
        let type_id = self.names.intern(&m.unit_type);
        let org = self.texts.share(&m.org);
        let (slot, u) = self.unit_entry(id);
        if u.callsign.as_deref() == Some(m.callsign.as_str())
            && u.type_id == type_id
            && *u.org == *m.org
            && u.strength == m.strength
        {
            return Outcome::Duplicate;
        }
        let old = u.contribution();
        u.callsign = Some(Arc::from(m.callsign.as_str()));
        u.type_id = type_id;
        u.org = org;
        u.strength = m.strength;
        let new = u.contribution();
        // Descriptions carry no time: the unit's newest report dates the change.
        let ts = u.newest_ms().unwrap_or(0);
        move_member(
            &mut self.cells,
            &mut self.units,
            Member::Unit(slot),
            old,
            new,
        );
        self.pending.units.push(slot);
        self.unit_moved_in_areas(id, before, ts);
        Outcome::Applied
    }

    /// The unit id a source's identifier stands for (the identity table;
    /// itself when not listed).
    fn unit_id<'a>(&self, id: &'a str) -> Cow<'a, str> {
        match self.config.sources.identities.get(id) {
            Some(unit) => Cow::Owned(unit.clone()),
            None => Cow::Borrowed(id),
        }
    }

    fn unit_pos(&mut self, p: &UnitPos) -> Result<Outcome, Refusal> {
        let reported =
            LatLng::new(p.lat, p.lon).map_err(|e| Refusal::BadPosition(e.to_string()))?;
        if self
            .config
            .shard
            .as_ref()
            .is_some_and(|o| !o.owns(p.lat, p.lon))
        {
            // Handed over: the shard owning the new region takes the unit.
            let _ = self.remove(EntityKind::Unit, &p.id);
            return Ok(Outcome::Elsewhere);
        }
        let id = self.unit_id(&p.id);
        let id = id.as_ref();
        let before = self.presence(id);
        let text = p.source.as_deref().unwrap_or("");
        let (slot, type_id, previous, known) = {
            let (slot, u) = self.unit_entry(id);
            // This source's last fix; its text is shared from there (no
            // lookup).
            let previous = u.fixes.iter().position(|f| &*f.source == text);
            let known = previous.map(|i| u.fixes[i].source.clone());
            (slot, u.type_id, previous, known)
        };
        let source = known.unwrap_or_else(|| self.texts.share(text));
        let accuracy_m = p
            .accuracy
            .unwrap_or_else(|| self.config.sources.accuracy_of(&source));
        let drift = self.config.sources.drift_mps;
        let max_age = self.config.unit_ttl_ms;
        let max_speed = self.config.sources.max_speed_of(self.names.name(type_id));
        let finest = self.resolutions[0];
        let Some(u) = self.units.at_mut(slot) else {
            unreachable!("slot {slot} was just looked up or filled")
        };
        if let Some(f) = previous.map(|i| &u.fixes[i]) {
            if p.ts_ms == f.ts_ms && (f.lat, f.lon) == (p.lat, p.lon) {
                return Ok(Outcome::Duplicate);
            }
            if p.ts_ms <= f.ts_ms {
                return Ok(Outcome::Outdated);
            }
        }
        let mut fix = Fix {
            source: source.clone(),
            lat: p.lat,
            lon: p.lon,
            accuracy_m,
            ts_ms: p.ts_ms,
            speed: p.speed,
            jump: false,
            weight: 0.0,
        };
        // Judged against the same source's previous fix only, so that the
        // order in which sources arrive changes nothing.
        fix.jump = previous.is_some_and(|i| jumped(&u.fixes[i], &fix, max_speed));
        match previous {
            Some(i) => u.fixes[i] = fix,
            None => {
                if u.fixes.len() >= MAX_SOURCES_PER_UNIT {
                    // A flood of made-up sources: the oldest fix goes.
                    if let Some(oldest) = (0..u.fixes.len()).min_by_key(|i| u.fixes[*i].ts_ms) {
                        u.fixes.remove(oldest);
                    }
                }
                let at = u.fixes.partition_point(|f| f.source < fix.source);
                u.fixes.insert(at, fix);
            }
        }
        let old = u.contribution();
        let old_cell = u.cell;
        if let Some(f) = fuse(&u.fixes, drift, max_age) {
            u.pos = Some((f.lat, f.lon));
            u.pos_ts_ms = Some(f.ts_ms);
            u.accuracy = Some(f.accuracy_m);
            for (fix, w) in u.fixes.iter_mut().zip(&f.weights) {
                fix.weight = *w;
            }
        }
        // The cell of the fused position (with one source, the one reported).
        let fused = match (u.fixes.len(), u.pos) {
            (2.., Some((lat, lon))) => LatLng::new(lat, lon).unwrap_or(reported),
            _ => reported,
        };
        let cell = fused.to_cell(finest);
        if u.pos_ts_ms == Some(p.ts_ms) {
            u.heading = p.heading;
            u.speed = p.speed;
            u.source = p.source.as_ref().map(|_| source.clone());
            u.ttl_ms = p.ttl_ms;
        }
        u.cell = Some(cell);
        // Sources that disagree beyond their accuracies (with hysteresis:
        // raised at 1×, cleared below 0.7×).
        let at = u.pos_ts_ms.unwrap_or(p.ts_ms);
        let conflict = {
            let fresh: SmallVec<[&Fix; 4]> = u.fixes.iter().filter(|f| f.weight > 0.0).collect();
            let pair_beyond = |factor: f64| {
                fresh.iter().enumerate().find_map(|(i, a)| {
                    fresh[i + 1..]
                        .iter()
                        .find(|b| disagree(a, b, at, drift, factor))
                        .map(|b| ((*a).clone(), (*b).clone()))
                })
            };
            if u.conflict {
                u.conflict = pair_beyond(CONFLICT_CLEAR_FACTOR).is_some();
                None
            } else {
                let found = pair_beyond(1.0);
                u.conflict = found.is_some();
                found
            }
        };
        let callsign = u.callsign.clone().unwrap_or_else(|| Arc::from(id));
        let new = u.contribution();
        move_member(
            &mut self.cells,
            &mut self.units,
            Member::Unit(slot),
            old,
            new,
        );
        self.pending.units.push(slot);
        self.unit_moved_in_areas(id, before, p.ts_ms);
        if let Some((a, b)) = conflict {
            let km = distance_m((a.lat, a.lon), (b.lat, b.lon)) / 1000.0;
            let label = |f: &Fix| {
                if f.source.is_empty() {
                    "unnamed".to_owned()
                } else {
                    f.source.to_string()
                }
            };
            let message = format!(
                "{callsign}: sources {} and {} are {km:.1} km apart (accuracies {:.0} m and {:.0} m)",
                label(&a),
                label(&b),
                a.accuracy_m,
                b.accuracy_m
            );
            self.raise("position_conflict", id, None, 2, message, p.ts_ms);
        }
        if old_cell != Some(cell) {
            let before = self.incidents_at(old_cell);
            for inc in self.incidents_at(Some(cell)) {
                if before.contains(&inc) {
                    continue;
                }
                let Some(view) = self.incidents.at(inc).map(|i| i.view.clone()) else {
                    continue;
                };
                let what = view.title.as_deref().unwrap_or(&view.keyword);
                let message = format!("{callsign} entered the area of {} {what}", view.keyword);
                self.raise(
                    "unit_in_incident_area",
                    id,
                    Some(&view.id),
                    1,
                    message,
                    p.ts_ms,
                );
            }
        }
        Ok(Outcome::Applied)
    }

    fn unit_status(&mut self, s: &UnitStatus) -> Result<Outcome, Refusal> {
        if !self.config.sources.status_counts(s.source.as_deref()) {
            return Err(Refusal::StatusNotAuthoritative(
                s.source.clone().unwrap_or_default(),
            ));
        }
        let class = self.config.status_table.get(s.status).class;
        let id = self.unit_id(&s.id);
        let id = id.as_ref();
        let before = self.presence(id);
        let (slot, u) = self.unit_entry(id);
        if let Some(t) = u.status_ts_ms {
            if s.ts_ms == t && u.status == Some(s.status) {
                return Ok(Outcome::Duplicate);
            }
            if s.ts_ms <= t {
                return Ok(Outcome::Outdated);
            }
        }
        let old = u.contribution();
        u.status = Some(s.status);
        u.status_ts_ms = Some(s.ts_ms);
        if let Some(class) = class {
            u.class = class;
        }
        let new = u.contribution();
        move_member(
            &mut self.cells,
            &mut self.units,
            Member::Unit(slot),
            old,
            new,
        );
        self.pending.units.push(slot);
        self.unit_moved_in_areas(id, before, s.ts_ms);
        Ok(Outcome::Applied)
    }

    fn incident(&mut self, i: &IncidentUpsert) -> Result<Outcome, Refusal> {
        if let Some(old) = self.incidents.get(&i.id) {
            let v = &old.view;
            if i.ts_ms == v.ts_ms
                && v.keyword == i.keyword
                && v.severity == i.severity
                && v.geometry == i.geometry
                && v.title == i.title
                && v.expires_ms == i.expires_ms
            {
                return Ok(Outcome::Duplicate);
            }
            if i.ts_ms <= v.ts_ms {
                return Ok(Outcome::Outdated);
            }
        }
        let cells = match self.incidents.get(&i.id) {
            Some(old) if old.view.geometry == i.geometry => old.cells.clone(),
            _ => cover(
                &i.geometry,
                self.resolutions[0],
                self.config.max_incident_cells,
            )?,
        };
        let (old_cells, old) = self
            .incidents
            .get(&i.id)
            .map(|o| (o.cells.clone(), Some(o.contribution())))
            .unwrap_or_default();
        let key = incident_area_key(&i.id);
        match self.config.requirements.get(&i.keyword).cloned() {
            Some(require) => {
                let units: Vec<Presence> = self
                    .units
                    .iter()
                    .filter_map(|(_, id, _)| self.presence_always(id))
                    .collect();
                let name = incident_area_name(&i.keyword, i.title.as_deref(), &i.id);
                self.areas
                    .insert(&key, &name, &cells, &require, units.iter());
            }
            None => self.areas.remove(&key),
        }
        let slot = self.incidents.insert(
            &i.id,
            Incident {
                view: IncidentView {
                    id: i.id.clone(),
                    keyword: i.keyword.clone(),
                    severity: i.severity.min(MAX_LEVEL),
                    title: i.title.clone(),
                    geometry: i.geometry.clone(),
                    ts_ms: i.ts_ms,
                    expires_ms: i.expires_ms,
                },
                cells: cells.clone(),
            },
        );
        let new = self.incidents.at(slot).map(Incident::contribution);
        self.recover(slot, (&old_cells, old), (&cells, new));
        self.pending.incidents.insert(i.id.clone());
        Ok(Outcome::Applied)
    }

    /// Moves an incident's contribution from the `old` cells (sorted) to
    /// the `new` ones: severity or time may have changed even where the
    /// area did not.
    fn recover(
        &mut self,
        slot: Slot,
        (old_cells, old): (&[CellIndex], Option<Contribution>),
        (new_cells, new): (&[CellIndex], Option<Contribution>),
    ) {
        let member = Member::Incident(slot);
        for c in old_cells {
            let then = new_cells.binary_search(c).ok().and(new);
            self.cells
                .change(member, old.map(|k| (*c, k)), then.map(|k| (*c, k)));
        }
        for c in new_cells {
            if old_cells.binary_search(c).is_err() {
                self.cells.change(member, None, new.map(|k| (*c, k)));
            }
        }
    }

    /// Incidents whose area covers `cell`, by id (so alerts about several
    /// are raised in an order that depends on the incidents alone, not on
    /// the history of the cell's member list).
    fn incidents_at(&self, cell: Option<CellIndex>) -> Vec<Slot> {
        let mut found: Vec<(&str, Slot)> = cell
            .map(|c| self.cells.members(c))
            .into_iter()
            .flatten()
            .filter_map(|m| match m {
                Member::Incident(slot) => {
                    let (id, _) = self.incidents.entry_at(*slot)?;
                    Some((&**id, *slot))
                }
                _ => None,
            })
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, s)| s).collect()
    }

    /// An alert by id.
    pub fn alert(&self, id: &str) -> Option<&AlertView> {
        self.alerts
            .values()
            .chain(self.clock_alerts.values())
            .find(|a| a.id == id)
    }

    /// The id of the open (unacknowledged) clock alert about `kind`,
    /// `entity` and `related`, the newest if several.
    pub fn open_clock_alert(
        &self,
        kind: &str,
        entity: &str,
        related: Option<&str>,
    ) -> Option<String> {
        let key: OpenKey = (true, kind.into(), entity.into(), related.map(Into::into));
        let (_, n) = self.open_alerts.get(&key)?.last()?;
        self.clock_alerts.get(n).map(|a| a.id.clone())
    }

    /// Marks an alert acknowledged.
    pub fn ack(&mut self, alert_id: &str) -> Result<(), AckError> {
        for (alerts, pending) in [
            (&mut self.alerts, &mut self.pending.alerts),
            (&mut self.clock_alerts, &mut self.pending.clock_alerts),
        ] {
            if let Some((n, a)) = alerts.iter_mut().find(|(_, a)| a.id == alert_id) {
                if !a.acked {
                    a.acked = true;
                    pending.insert(*n);
                    let key: OpenKey = (
                        a.id.starts_with('S'),
                        a.kind.as_str().into(),
                        a.entity.as_str().into(),
                        a.related.as_deref().map(Into::into),
                    );
                    if let Some(open) = self.open_alerts.get_mut(&key) {
                        open.retain(|(_, k)| k != n);
                        if open.is_empty() {
                            self.open_alerts.remove(&key);
                        }
                    }
                }
                return Ok(());
            }
        }
        Err(AckError::Unknown(alert_id.to_owned()))
    }

    /// Removes a unit or sensor from the picture (an operator's decision,
    /// e.g. for a lost source that is no longer information).
    pub fn remove(&mut self, kind: EntityKind, id: &str) -> Result<(), RemoveError> {
        let found = match kind {
            EntityKind::Unit => {
                let before = self.presence(id);
                match self.units.remove(id) {
                    Some((slot, key, u)) => {
                        // Counts follow; a removal is no shortage news.
                        let _ = self.areas.unit_changed(before.as_ref(), None);
                        self.cells
                            .change(Member::Unit(slot), u.contribution(), None);
                        self.pending.units_removed.push(key);
                        true
                    }
                    None => false,
                }
            }
            EntityKind::Sensor => match self.sensors.remove(id) {
                Some((slot, key, s)) => {
                    self.cells
                        .change(Member::Sensor(slot), s.contribution(), None);
                    self.pending.sensors_removed.push(key);
                    true
                }
                None => false,
            },
        };
        if found {
            Ok(())
        } else {
            Err(RemoveError::Unknown(id.to_owned()))
        }
    }

    fn cell_view(&self, cell: CellIndex, agg: &CellAgg) -> CellView {
        CellView {
            h3: cell,
            res: u8::from(cell.resolution()),
            agg: agg.clone(),
            names: self.names.shared(),
        }
    }

    /// Re-evaluates freshness classes when due, so that an entity going
    /// stale shows up in the next delta even when nothing else happens.
    fn scan_freshness(&mut self, now_ms: EpochMs) {
        if self
            .last_scan_ms
            .is_some_and(|t| now_ms - t < FRESHNESS_SCAN_INTERVAL_MS && now_ms >= t)
        {
            return;
        }
        self.last_scan_ms = Some(now_ms);
        let expired = |ts: Option<EpochMs>| {
            ts.is_some_and(|t| now_ms.saturating_sub(t) > self.config.retention_ms)
        };
        let mut raise: Vec<(&str, Arc<str>, u8, String)> = Vec::new();
        let mut remove = Vec::new();
        for (slot, id, u) in self.units.iter() {
            if expired(u.newest_ms()) {
                remove.push((EntityKind::Unit, id.clone()));
                continue;
            }
            let now = (
                Freshness::classify(u.newest_ms(), self.unit_ttl(u), now_ms),
                self.is_silent(u, now_ms),
            );
            if u.shown == Some(now) {
                continue;
            }
            self.pending.units.push(slot);
            let name = u.callsign.as_deref().unwrap_or(id);
            if let Some((before, was_silent)) = u.shown {
                if now.1 && !was_silent {
                    let status = u.status.unwrap_or(0);
                    let text = &self.config.status_table.get(status).text;
                    let msg = format!(
                        "{name} in status {status} ({text}) has not reported since {}",
                        minutes_ago(u.newest_ms(), now_ms)
                    );
                    raise.push(("silent_unit", id.clone(), 2, msg));
                } else if now.0 == Freshness::Stale && before < Freshness::Stale {
                    let msg = format!(
                        "{name} has not reported for {}",
                        minutes_ago(u.newest_ms(), now_ms)
                    );
                    raise.push(("stale_source", id.clone(), 1, msg));
                }
            }
        }
        for (slot, id, s) in self.sensors.iter() {
            if expired(s.ts_ms) {
                remove.push((EntityKind::Sensor, id.clone()));
                continue;
            }
            let f = Freshness::classify(s.ts_ms, s.ttl_ms, now_ms);
            if s.shown == Some(f) {
                continue;
            }
            self.pending.sensors.push(slot);
            if f == Freshness::Stale && s.shown.is_some_and(|b| b < Freshness::Stale) {
                let name = s.name.as_deref().unwrap_or(id);
                let msg = format!(
                    "{name} has not reported for {}",
                    minutes_ago(s.ts_ms, now_ms)
                );
                raise.push(("stale_source", id.clone(), 1, msg));
            }
        }
        // Slot order depends on history; ids give the clock series a
        // stable order.
        raise.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
        for (kind, id, level, message) in raise {
            self.raise_in(true, kind, &id, None, level, message, now_ms);
        }
        for (kind, id) in remove {
            let _ = self.remove(kind, &id);
        }
        let mut ended: Vec<String> = self
            .incidents
            .iter()
            .filter(|(_, _, i)| i.view.expires_ms.is_some_and(|t| t <= now_ms))
            .map(|(_, id, _)| id.to_string())
            .collect();
        ended.sort_unstable();
        for id in ended {
            self.close_incident(&id);
        }
    }

    /// Emits everything that changed since the last flush as one delta with
    /// the next sequence number, or `None` when nothing changed.
    pub fn flush(&mut self, now_ms: EpochMs) -> Option<Delta> {
        self.scan_freshness(now_ms);
        if self.pending.is_empty() && self.cells.is_settled() {
            return None;
        }
        let pending = std::mem::take(&mut self.pending);
        self.seq += 1;
        let mut delta = Delta {
            seq: self.seq,
            ..Delta::default()
        };

        let (units, sensors, incidents) = (&self.units, &self.sensors, &self.incidents);
        let names = self.names.shared();
        delta.cells.reserve(self.cells.touched_len());
        self.cells.settle(
            |m| match m {
                Member::Unit(slot) => units.at(slot)?.contribution().map(|c| c.1),
                Member::Sensor(slot) => sensors.at(slot)?.contribution().map(|c| c.1),
                Member::Incident(slot) => incidents.at(slot).map(Incident::contribution),
            },
            |cell, agg| match agg {
                Some(agg) => delta.cells.push(CellView {
                    h3: cell,
                    res: u8::from(cell.resolution()),
                    agg: agg.clone(),
                    names: names.clone(),
                }),
                None => {
                    delta.cells_removed.push(cell.to_string());
                    delta.cells_removed_idx.push(cell);
                }
            },
        );
        let (mut units, mut sensors) = (pending.units, pending.sensors);
        units.sort_unstable();
        units.dedup();
        sensors.sort_unstable();
        sensors.dedup();
        delta.units.reserve(units.len());
        delta.sensors.reserve(sensors.len());
        // Which units and sensors moved since the last delta showed them:
        // a client's filter looks for those it holds only among these
        // (one that did not move is where the client last saw it).
        let mut moved_units = Vec::new();
        let mut moved_sensors = Vec::new();
        for group in units.chunks(READ_AHEAD) {
            std::hint::black_box(self.units.read_ahead(group, Unit::read));
            for &slot in group {
                let Some((id, u)) = self.units.entry_at(slot) else {
                    continue;
                };
                let v = self.unit_view(id, u, Some(now_ms));
                if let Some(u) = self.units.at_mut(slot) {
                    u.shown = v.freshness.zip(v.silent);
                    if moved_since_shown(&mut u.sent_pos, u.pos) {
                        moved_units.push(u32::try_from(delta.units.len()).unwrap_or(u32::MAX));
                    }
                }
                delta.units.push(v);
            }
        }
        delta
            .units_removed
            .extend(pending.units_removed.iter().map(|id| id.to_string()));
        for group in sensors.chunks(READ_AHEAD) {
            std::hint::black_box(self.sensors.read_ahead(group, Sensor::read));
            for &slot in group {
                let Some((id, s)) = self.sensors.entry_at(slot) else {
                    continue;
                };
                let v = self.sensor_view(id, s, Some(now_ms));
                if let Some(s) = self.sensors.at_mut(slot) {
                    s.shown = v.freshness;
                    if moved_since_shown(&mut s.sent_pos, s.pos) {
                        moved_sensors.push(u32::try_from(delta.sensors.len()).unwrap_or(u32::MAX));
                    }
                }
                delta.sensors.push(v);
            }
        }
        delta
            .sensors_removed
            .extend(pending.sensors_removed.iter().map(|id| id.to_string()));
        delta.index.moved(moved_units, moved_sensors);
        for id in pending.incidents {
            match self.incidents.get(&id) {
                Some(i) => delta.incidents.push(i.view.clone()),
                None => delta.incidents_removed.push(id),
            }
        }
        delta.alerts.extend(
            pending
                .alerts
                .iter()
                .filter_map(|n| self.alerts.get(n).cloned()),
        );
        delta.alerts.extend(
            pending
                .clock_alerts
                .iter()
                .filter_map(|n| self.clock_alerts.get(n).cloned()),
        );
        Some(delta)
    }

    /// In a status that expects reports, and silent for too long.
    /// A unit's time-to-live: its newest fix's own, else the configured.
    fn unit_ttl(&self, u: &Unit) -> i64 {
        u.ttl_ms.unwrap_or(self.config.unit_ttl_ms)
    }

    fn is_silent(&self, u: &Unit, now_ms: EpochMs) -> bool {
        u.status
            .is_some_and(|s| self.config.status_table.get(s).expects_reports)
            && u.newest_ms()
                .is_some_and(|t| now_ms - t > self.config.silent_after_ms)
    }

    fn unit_view(&self, id: &Arc<str>, u: &Unit, now_ms: Option<EpochMs>) -> UnitView {
        UnitView {
            id: id.clone(),
            callsign: u.callsign.clone().unwrap_or_else(|| id.clone()),
            unit_type: self.names.shared_name(u.type_id),
            org: u.org.clone(),
            strength: u.strength,
            lat: u.pos.map(|p| p.0),
            lon: u.pos.map(|p| p.1),
            heading: u.heading,
            speed: u.speed,
            accuracy: u.accuracy,
            source: u.source.clone(),
            status: u.status,
            status_text: u
                .status
                .map(|s| self.config.status_table.get(s).text.clone()),
            status_ts_ms: u.status_ts_ms,
            status_class: u.class,
            ts_ms: u.newest_ms(),
            freshness: now_ms.map(|now| Freshness::classify(u.newest_ms(), self.unit_ttl(u), now)),
            silent: now_ms.map(|now| self.is_silent(u, now)),
            status_age_ms: now_ms.zip(u.status_ts_ms).map(|(now, t)| now - t),
            sources: Self::source_views(u),
            conflict: u.conflict,
        }
    }

    /// Each source's last fix and its weight in the fused position.
    fn source_views(u: &Unit) -> Vec<SourceView> {
        if u.fixes.len() < 2 && u.fixes.iter().all(|f| f.source.is_empty()) {
            // One unnamed feed: nothing beyond the position itself.
            return Vec::new();
        }
        u.fixes
            .iter()
            .map(|f| SourceView {
                source: f.source.clone(),
                lat: f.lat,
                lon: f.lon,
                accuracy: f.accuracy_m,
                ts_ms: f.ts_ms,
                weight: f.weight,
                jump: f.jump,
            })
            .collect()
    }

    fn sensor_view(&self, id: &Arc<str>, s: &Sensor, now_ms: Option<EpochMs>) -> SensorView {
        SensorView {
            id: id.clone(),
            kind: self.names.shared_name(s.kind_id),
            unit: s.unit.clone(),
            name: s.name.clone(),
            lat: s.pos.map(|p| p.0),
            lon: s.pos.map(|p| p.1),
            value: s.value,
            trend_per_h: s.trend.per_hour(),
            level: s.level,
            ts_ms: s.ts_ms,
            freshness: now_ms.map(|now| Freshness::classify(s.ts_ms, s.ttl_ms, now)),
            quality: s.quality,
            quality_reason: s.quality_reason.map(|r| r.0),
        }
    }

    /// The picture inside `viewport` as of the last flush (call
    /// [`Picture::flush`] first for a snapshot consistent with `seq`).
    pub fn snapshot(&self, viewport: &Viewport, now_ms: EpochMs) -> Snapshot {
        let mut cells: Vec<CellView> = self
            .cells
            .iter()
            .filter(|(c, _)| viewport.contains_cell(*c))
            .map(|(c, agg)| self.cell_view(c, agg))
            .collect();
        cells.sort_unstable_by_key(|c| c.h3);
        Snapshot {
            seq: self.seq,
            res: u8::from(viewport.res),
            cells,
            units: self
                .units
                .sorted()
                .into_iter()
                .filter(|(_, u)| viewport.contains_point(u.pos.map(|p| p.0), u.pos.map(|p| p.1)))
                .map(|(id, u)| self.unit_view(id, u, Some(now_ms)))
                .collect(),
            sensors: self
                .sensors
                .sorted()
                .into_iter()
                .filter(|(_, s)| viewport.contains_point(s.pos.map(|p| p.0), s.pos.map(|p| p.1)))
                .map(|(id, s)| self.sensor_view(id, s, Some(now_ms)))
                .collect(),
            incidents: self
                .incidents
                .sorted()
                .into_iter()
                .map(|(_, i)| i.view.clone())
                .collect(),
            alerts: self
                .alerts
                .values()
                .chain(self.clock_alerts.values())
                .cloned()
                .collect(),
        }
    }

    /// Hex SHA-256 of the picture's canonical content: every entity, every
    /// cell at every resolution and every alert, in a fixed order, without
    /// anything derived from the clock (freshness), the space's name or the
    /// tick timing (seq). The same events in the same order give the same
    /// digest. Reflects the state as of the last flush.
    pub fn digest(&self) -> String {
        let cells: Vec<CellView> = self
            .cells
            .iter()
            .map(|(c, agg)| self.cell_view(c, agg))
            .collect();
        crate::mosaic::canonical_digest(
            self.sensors
                .sorted()
                .into_iter()
                .map(|(id, s)| self.sensor_view(id, s, None))
                .collect(),
            self.units
                .sorted()
                .into_iter()
                .map(|(id, u)| self.unit_view(id, u, None))
                .collect(),
            self.incidents
                .sorted()
                .into_iter()
                .map(|(_, i)| &i.view)
                .collect(),
            cells,
            self.alerts.values().collect(),
        )
    }

    /// Everything in the picture as one delta (every cell at every
    /// resolution, every entity and alert, freshness as of `now_ms`): what a
    /// shard publishes for gateways to start from.
    pub fn export(&self, now_ms: EpochMs) -> Delta {
        let everything = Viewport {
            bbox: None,
            res: self.resolutions[0],
        };
        let s = self.snapshot(&everything, now_ms);
        let mut cells: Vec<CellView> = self
            .cells
            .iter()
            .map(|(c, agg)| self.cell_view(c, agg))
            .collect();
        cells.sort_unstable_by_key(|c| c.h3);
        Delta {
            seq: s.seq,
            cells,
            units: s.units,
            sensors: s.sensors,
            incidents: s.incidents,
            alerts: s.alerts,
            ..Delta::default()
        }
    }

    /// Bytes held by the cell index (aggregates at every resolution, member
    /// lists, hash tables) and the number of finest-resolution cells.
    pub fn cell_index_bytes(&self) -> (usize, usize) {
        (self.cells.bytes(), self.cells.finest_len())
    }

    /// Numbers of entities and cells, for metrics.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.units.len(),
            self.sensors.len(),
            self.incidents.len(),
            self.cells.len(),
        )
    }
}

#[path = "checkpoint.rs"]
pub mod checkpoint;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
