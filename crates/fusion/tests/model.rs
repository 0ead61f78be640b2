//! The engine against a naive model, on random event sequences.
//!
//! The model keeps nothing but per-entity state, updated by the rules of
//! DESIGN §4 in their plainest form, and recomputes every cell at every
//! resolution from scratch after each flush by grouping the entities by
//! their H3 cell. No dirty tracking, no roll-up by merging, no incremental
//! anything: if the engine's bookkeeping drifts, the two disagree.
//!
//! Events are drawn over ~20 sensors and ~20 units in a few small spots
//! around Hamburg, so that entities share cells at every resolution, with
//! timestamps that repeat, go backwards and (rarely) lie beyond the future
//! tolerance. Alerts, incidents and the hazard that incidents contribute
//! are not modelled here (see [`incident_hazard`]).
//!
//! `PROPTEST_CASES` sets the number of cases (default 64).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use fusion::{
    Catalogue, Envelope, Event, Outcome, Picture, PictureConfig, Refusal, Resolution, SensorMeta,
    SensorObs, StatusClass, UnitMeta, UnitPos, UnitStatus, Viewport,
};
use h3o::{CellIndex, LatLng};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Event times are T0 plus up to a minute.
const T0: i64 = 1_790_000_000_000;
/// The picture's clock for every call: an hour after all ordinary events.
const NOW: i64 = T0 + 3_600_000;

const KINDS: [(&str, &str); 3] = [
    ("water_level", "m NHN"),
    ("rain_rate", "mm/h"),
    ("gas_co", "ppm"),
];
const UNIT_TYPES: [&str; 3] = ["HLF", "RTW", "DLK"];
/// Spots a few kilometres apart (two of them only ~200 m apart); entities
/// sit on a 4 × 4 grid of ~40 m steps at one of them.
const SPOTS: [(f64, f64); 8] = [
    (53.5500, 9.9900),
    (53.5512, 9.9921),
    (53.5458, 9.9700),
    (53.4980, 10.0060),
    (53.5300, 10.0500),
    (53.5900, 9.9300),
    (53.5700, 10.0800),
    (53.5100, 9.9000),
];

/// The engine's defaults without the plausibility checks: the model
/// follows the time, level and cell rules; plausibility (which keeps a
/// suspect reading from raising a level) is tested on its own.
fn config() -> PictureConfig {
    let mut config = PictureConfig::default();
    let kinds = config
        .catalogue
        .kinds()
        .map(|(name, spec)| {
            let mut spec = spec.clone();
            spec.range = None;
            spec.max_rate_per_min = None;
            spec.flat_after_ms = None;
            spec.neighbour_tolerance = None;
            (name.clone(), spec)
        })
        .collect();
    config.catalogue = Catalogue::new(kinds);
    config
}

// ---------------------------------------------------------------------------
// Generators

fn position() -> impl Strategy<Value = (f64, f64)> {
    (0..SPOTS.len(), 0u8..4, 0u8..4).prop_map(|(spot, dy, dx)| {
        let (lat, lon) = SPOTS[spot];
        (lat + f64::from(dy) * 0.0004, lon + f64::from(dx) * 0.0006)
    })
}

/// Values at, just above and inside the hysteresis band below every
/// threshold of the kinds in use (and of the custom thresholds), plus a few
/// far away. Computed with the engine's documented band: 1 % of the
/// threshold, at least 0.01.
fn interesting_values() -> Vec<f64> {
    let catalogue = PictureConfig::default().catalogue;
    let mut thresholds: Vec<f64> = KINDS
        .iter()
        .filter_map(|(k, _)| catalogue.get(k))
        .flat_map(|spec| spec.thresholds.iter().copied())
        .collect();
    thresholds.extend(CUSTOM_THRESHOLDS);
    let mut values = vec![-1.0, 0.0, 0.5, 10_000.0];
    for t in thresholds {
        let band = (t.abs() * 0.01).max(0.01);
        values.extend([t, t + 0.001, t - band / 2.0, t - band, t - band * 1.5]);
    }
    values
}

const CUSTOM_THRESHOLDS: [f64; 2] = [1.0, 2.0];

fn value() -> impl Strategy<Value = f64> {
    proptest::sample::select(interesting_values())
}

/// Mostly ordinary times (a 40 s window, so repeats and reordering are
/// common); rarely at or beyond the future tolerance.
fn ts() -> impl Strategy<Value = i64> {
    let tolerance = PictureConfig::default().future_tolerance_ms;
    prop_oneof![
        40 => (0i64..40).prop_map(|k| T0 + k * 1_000),
        1 => prop_oneof![Just(0), Just(1), Just(60_000)].prop_map(move |d| NOW + tolerance + d),
    ]
}

fn sensor_id() -> impl Strategy<Value = String> {
    (0u8..20).prop_map(|n| format!("s{n}"))
}

fn unit_id() -> impl Strategy<Value = String> {
    (0u8..20).prop_map(|n| format!("u{n}"))
}

fn sensor_meta() -> impl Strategy<Value = Event> {
    (
        sensor_id(),
        0..KINDS.len(),
        position(),
        prop_oneof![4 => Just(None), 1 => Just(Some("Pegel".to_owned()))],
        prop_oneof![6 => Just(None), 1 => Just(Some(CUSTOM_THRESHOLDS.to_vec()))],
    )
        .prop_map(|(id, k, (lat, lon), name, thresholds)| {
            Event::SensorMeta(SensorMeta {
                id,
                kind: KINDS[k].0.to_owned(),
                unit: KINDS[k].1.to_owned(),
                lat,
                lon,
                name,
                thresholds,
            })
        })
}

fn sensor_obs() -> impl Strategy<Value = Event> {
    (
        sensor_id(),
        ts(),
        value(),
        prop_oneof![5 => Just(None), 1 => position().prop_map(Some)],
        prop_oneof![2 => Just(None), 3 => (0u64..6).prop_map(Some)],
    )
        .prop_map(|(id, ts_ms, value, pos, seq)| {
            Event::SensorObs(SensorObs {
                id,
                ts_ms,
                value,
                lat: pos.map(|p| p.0),
                lon: pos.map(|p| p.1),
                seq,
                quality: None,
            })
        })
}

fn unit_meta() -> impl Strategy<Value = Event> {
    (unit_id(), 0..UNIT_TYPES.len(), prop::option::of(1u32..10)).prop_map(|(id, t, strength)| {
        Event::UnitMeta(UnitMeta {
            callsign: format!("{} {id}", UNIT_TYPES[t]),
            id,
            unit_type: UNIT_TYPES[t].to_owned(),
            org: "fire".to_owned(),
            strength,
        })
    })
}

fn unit_pos() -> impl Strategy<Value = Event> {
    (unit_id(), ts(), position()).prop_map(|(id, ts_ms, (lat, lon))| {
        Event::UnitPos(UnitPos {
            id,
            ts_ms,
            lat,
            lon,
            heading: None,
            speed: None,
            accuracy: None,
            source: None,
            ttl_ms: None,
        })
    })
}

fn unit_status() -> impl Strategy<Value = Event> {
    (unit_id(), ts(), 0u8..=9).prop_map(|(id, ts_ms, status)| {
        Event::UnitStatus(UnitStatus {
            id,
            ts_ms,
            status,
            source: None,
        })
    })
}

#[derive(Debug, Clone)]
enum Op {
    Apply(Event),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => sensor_meta().prop_map(Op::Apply),
        6 => sensor_obs().prop_map(Op::Apply),
        1 => unit_meta().prop_map(Op::Apply),
        4 => unit_pos().prop_map(Op::Apply),
        4 => unit_status().prop_map(Op::Apply),
        1 => Just(Op::Flush),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 0..400)
}

// ---------------------------------------------------------------------------
// The model

/// What happens to an event, in the model's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Refused: from the future beyond the tolerance. Changes nothing.
    Refused,
    /// Accepted and taken into the entity's state.
    Taken,
    /// Accepted but dropped: a duplicate, or not newer than the state.
    Dropped,
}

#[derive(Debug, Clone, PartialEq)]
struct ModelSensor {
    kind: String,
    unit: String,
    name: Option<String>,
    pos: Option<(f64, f64)>,
    thresholds: Option<Vec<f64>>,
    value: Option<f64>,
    ts_ms: Option<i64>,
    /// Sequence number of the newest taken observation that carried one.
    seq: Option<u64>,
    level: u8,
}

#[derive(Debug, Clone, PartialEq)]
struct ModelUnit {
    callsign: Option<String>,
    unit_type: String,
    org: String,
    strength: Option<u32>,
    pos: Option<(f64, f64)>,
    pos_ts_ms: Option<i64>,
    status: Option<u8>,
    status_ts_ms: Option<i64>,
    class: StatusClass,
}

impl ModelUnit {
    fn newest_ms(&self) -> Option<i64> {
        self.pos_ts_ms.max(self.status_ts_ms)
    }
}

struct Model {
    config: PictureConfig,
    sensors: BTreeMap<String, ModelSensor>,
    units: BTreeMap<String, ModelUnit>,
}

/// Radio status → class (DESIGN §4 and the FMS meaning of each status):
/// 1, 2 available; 3, 4, 7, 8 on a mission; 6 out of service; 0, 5, 9 are
/// requests, not states, and keep the previous class.
fn class_of(status: u8) -> Option<StatusClass> {
    match status {
        1 | 2 => Some(StatusClass::Available),
        3 | 4 | 7 | 8 => Some(StatusClass::OnMission),
        6 => Some(StatusClass::Unavailable),
        _ => None,
    }
}

/// Level 0–4: how many thresholds lie at or below `value`. Coming down, a
/// level is kept while the value stays within the hysteresis band below its
/// threshold (1 % of the threshold's magnitude, at least 0.01), never rising
/// above the previous level that way.
fn level(thresholds: &[f64], previous: u8, value: f64) -> u8 {
    let reached = |lowered: &dyn Fn(f64) -> f64| {
        let n = thresholds.iter().filter(|t| value >= lowered(**t)).count();
        u8::try_from(n.min(4)).expect("at most 4")
    };
    let plain = reached(&|t| t);
    if plain >= previous {
        plain
    } else {
        reached(&|t| t - (t.abs() * 0.01).max(0.01)).min(previous)
    }
}

/// The hazard that incidents covering `cell` contribute. Incidents are not
/// generated by this test yet; when they are, model their coverage here.
fn incident_hazard(_cell: CellIndex) -> u8 {
    0
}

/// A cell as the model computes it, and as the engine's aggregate is read
/// back for comparison (only the fields this test covers).
#[derive(Debug, Clone, Default, PartialEq)]
struct ModelCell {
    units_available: u32,
    units_on_mission: u32,
    units_unavailable: u32,
    units_unknown: u32,
    unit_types: BTreeMap<String, u32>,
    sensors: u32,
    /// kind → (n, max level, max value)
    kinds: BTreeMap<String, (u32, u8, Option<f64>)>,
    max_level: u8,
    hazard: u8,
    newest_ms: Option<i64>,
}

/// A sensor as compared.
#[derive(Debug, Clone, PartialEq)]
struct SensorState {
    kind: String,
    lat: Option<f64>,
    lon: Option<f64>,
    value: Option<f64>,
    level: u8,
    ts_ms: Option<i64>,
}

/// A unit as compared.
#[derive(Debug, Clone, PartialEq)]
struct UnitState {
    unit_type: String,
    lat: Option<f64>,
    lon: Option<f64>,
    status: Option<u8>,
    status_ts_ms: Option<i64>,
    class: StatusClass,
    ts_ms: Option<i64>,
}

/// Everything compared at one flush.
#[derive(Debug, Clone, PartialEq)]
struct State {
    /// Per served resolution, its cells.
    cells: BTreeMap<u8, BTreeMap<CellIndex, ModelCell>>,
    sensors: BTreeMap<String, SensorState>,
    units: BTreeMap<String, UnitState>,
}

fn event_time(e: &Event) -> Option<i64> {
    match e {
        Event::SensorObs(o) => Some(o.ts_ms),
        Event::UnitPos(p) => Some(p.ts_ms),
        Event::UnitStatus(s) => Some(s.ts_ms),
        Event::Incident(i) => Some(i.ts_ms),
        _ => None,
    }
}

impl Model {
    fn new() -> Model {
        Model {
            config: config(),
            sensors: BTreeMap::new(),
            units: BTreeMap::new(),
        }
    }

    fn thresholds(&self, s: &ModelSensor) -> Vec<f64> {
        s.thresholds.clone().unwrap_or_else(|| {
            self.config
                .catalogue
                .get(&s.kind)
                .map(|k| k.thresholds.clone())
                .unwrap_or_default()
        })
    }

    fn unit(&mut self, id: &str) -> &mut ModelUnit {
        self.units
            .entry(id.to_owned())
            .or_insert_with(|| ModelUnit {
                callsign: None,
                unit_type: "unknown".to_owned(),
                org: "unknown".to_owned(),
                strength: None,
                pos: None,
                pos_ts_ms: None,
                status: None,
                status_ts_ms: None,
                class: StatusClass::Unknown,
            })
    }

    fn apply(&mut self, e: &Event) -> Verdict {
        if event_time(e).is_some_and(|t| t - NOW > self.config.future_tolerance_ms) {
            return Verdict::Refused;
        }
        match e {
            Event::SensorMeta(m) => {
                let mut s = self.sensors.get(&m.id).cloned().unwrap_or(ModelSensor {
                    kind: m.kind.clone(),
                    unit: String::new(),
                    name: None,
                    pos: None,
                    thresholds: None,
                    value: None,
                    ts_ms: None,
                    seq: None,
                    level: 0,
                });
                let before = s.clone();
                s.kind = m.kind.clone();
                s.unit = m.unit.clone();
                s.name = m.name.clone();
                s.pos = Some((m.lat, m.lon));
                s.thresholds = m.thresholds.clone();
                if self.sensors.contains_key(&m.id) && s == before {
                    return Verdict::Dropped;
                }
                // A new scale (kind or thresholds) re-evaluates the last
                // value from scratch; a new name or position keeps the level
                // and with it the hysteresis.
                let same_scale = s.kind == before.kind && s.thresholds == before.thresholds;
                if let (Some(v), false) = (s.value, same_scale) {
                    s.level = level(&self.thresholds(&s), 0, v);
                }
                self.sensors.insert(m.id.clone(), s);
                Verdict::Taken
            }
            Event::SensorObs(o) => {
                // An observation of a sensor not yet described creates it,
                // of kind "unknown" (no thresholds), placed only if the
                // observation carries a position.
                let mut s = self.sensors.get(&o.id).cloned().unwrap_or(ModelSensor {
                    kind: "unknown".to_owned(),
                    unit: String::new(),
                    name: None,
                    pos: None,
                    thresholds: None,
                    value: None,
                    ts_ms: None,
                    seq: None,
                    level: 0,
                });
                let same_seq = o.seq.is_some() && o.seq == s.seq;
                let not_newer = s.ts_ms.is_some_and(|t| o.ts_ms <= t);
                if same_seq || not_newer {
                    return Verdict::Dropped;
                }
                s.level = level(&self.thresholds(&s), s.level, o.value);
                s.value = Some(o.value);
                s.ts_ms = Some(o.ts_ms);
                s.seq = o.seq.or(s.seq);
                if let (Some(lat), Some(lon)) = (o.lat, o.lon) {
                    s.pos = Some((lat, lon));
                }
                self.sensors.insert(o.id.clone(), s);
                Verdict::Taken
            }
            Event::UnitMeta(m) => {
                let u = self.unit(&m.id);
                if u.callsign.as_deref() == Some(m.callsign.as_str())
                    && u.unit_type == m.unit_type
                    && u.org == m.org
                    && u.strength == m.strength
                {
                    return Verdict::Dropped;
                }
                u.callsign = Some(m.callsign.clone());
                u.unit_type = m.unit_type.clone();
                u.org = m.org.clone();
                u.strength = m.strength;
                Verdict::Taken
            }
            Event::UnitPos(p) => {
                let u = self.unit(&p.id);
                if u.pos_ts_ms.is_some_and(|t| p.ts_ms <= t) {
                    return Verdict::Dropped;
                }
                u.pos = Some((p.lat, p.lon));
                u.pos_ts_ms = Some(p.ts_ms);
                Verdict::Taken
            }
            Event::UnitStatus(st) => {
                let u = self.unit(&st.id);
                if u.status_ts_ms.is_some_and(|t| st.ts_ms <= t) {
                    return Verdict::Dropped;
                }
                u.status = Some(st.status);
                u.status_ts_ms = Some(st.ts_ms);
                if let Some(c) = class_of(st.status) {
                    u.class = c;
                }
                Verdict::Taken
            }
            // Incidents (and whatever else) are not generated by this test.
            _ => unreachable!("an event kind this test does not generate"),
        }
    }

    /// The cell of a position at `res`: indexed at the finest served
    /// resolution, then its ancestor at `res` (DESIGN §4: indexed at the
    /// finest resolution and rolled up). This is computed per entity, not
    /// by merging finer cells.
    ///
    /// Not `LatLng::to_cell(res)`: H3 children do not tile their parent
    /// exactly, so for a few percent of positions the coarse cell that
    /// contains the point is not the parent of its finest cell (e.g.
    /// (53.53, 10.05) at res 6). A picture whose parents are the merge of
    /// their children must count such a point in the parent.
    fn cell_at(&self, (lat, lon): (f64, f64), res: Resolution) -> CellIndex {
        let finest = self
            .config
            .resolutions
            .iter()
            .copied()
            .max()
            .expect("some resolution");
        LatLng::new(lat, lon)
            .expect("valid position")
            .to_cell(finest)
            .parent(res)
            .expect("res is not finer than the finest")
    }

    fn state(&self) -> State {
        let mut cells = BTreeMap::new();
        for res in &self.config.resolutions {
            let mut at_res: BTreeMap<CellIndex, ModelCell> = BTreeMap::new();
            for u in self.units.values() {
                let Some(pos) = u.pos else { continue };
                let c = at_res.entry(self.cell_at(pos, *res)).or_default();
                match u.class {
                    StatusClass::Available => c.units_available += 1,
                    StatusClass::OnMission => c.units_on_mission += 1,
                    StatusClass::Unavailable => c.units_unavailable += 1,
                    StatusClass::Unknown => c.units_unknown += 1,
                }
                *c.unit_types.entry(u.unit_type.clone()).or_default() += 1;
                c.newest_ms = c.newest_ms.max(u.newest_ms());
            }
            for s in self.sensors.values() {
                let Some(pos) = s.pos else { continue };
                let c = at_res.entry(self.cell_at(pos, *res)).or_default();
                c.sensors += 1;
                let k = c.kinds.entry(s.kind.clone()).or_insert((0, 0, None));
                k.0 += 1;
                k.1 = k.1.max(s.level);
                k.2 = match (k.2, s.value) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                c.max_level = c.max_level.max(s.level);
                c.newest_ms = c.newest_ms.max(s.ts_ms);
            }
            for (cell, c) in &mut at_res {
                c.hazard = c.max_level.min(4).max(incident_hazard(*cell));
            }
            cells.insert(u8::from(*res), at_res);
        }
        State {
            cells,
            sensors: self
                .sensors
                .iter()
                .map(|(id, s)| {
                    (
                        id.clone(),
                        SensorState {
                            kind: s.kind.clone(),
                            lat: s.pos.map(|p| p.0),
                            lon: s.pos.map(|p| p.1),
                            value: s.value,
                            level: s.level,
                            ts_ms: s.ts_ms,
                        },
                    )
                })
                .collect(),
            units: self
                .units
                .iter()
                .map(|(id, u)| {
                    (
                        id.clone(),
                        UnitState {
                            unit_type: u.unit_type.clone(),
                            lat: u.pos.map(|p| p.0),
                            lon: u.pos.map(|p| p.1),
                            status: u.status,
                            status_ts_ms: u.status_ts_ms,
                            class: u.class,
                            ts_ms: u.newest_ms(),
                        },
                    )
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the engine back

fn engine_state(p: &Picture) -> State {
    let mut cells = BTreeMap::new();
    let mut sensors = BTreeMap::new();
    let mut units = BTreeMap::new();
    for res in p.resolutions() {
        let snap = p.snapshot(
            &Viewport {
                bbox: None,
                res: *res,
            },
            NOW,
        );
        let at_res: BTreeMap<CellIndex, ModelCell> = snap
            .cells
            .iter()
            .map(|c| {
                assert_eq!(c.res, u8::from(*res), "snapshot cell at its resolution");
                let a = &c.agg;
                (
                    c.h3,
                    ModelCell {
                        units_available: a.units_available,
                        units_on_mission: a.units_on_mission,
                        units_unavailable: a.units_unavailable,
                        units_unknown: a.units_unknown,
                        unit_types: c.unit_types(),
                        sensors: a.sensors(),
                        kinds: c
                            .kinds()
                            .iter()
                            .map(|(k, v)| (k.clone(), (v.n, v.max_level, v.max_value)))
                            .collect(),
                        max_level: a.max_level(),
                        hazard: a.hazard,
                        newest_ms: a.newest_ms(),
                    },
                )
            })
            .collect();
        assert_eq!(at_res.len(), snap.cells.len(), "no cell listed twice");
        cells.insert(u8::from(*res), at_res);
        sensors = snap
            .sensors
            .iter()
            .map(|s| {
                (
                    s.id.to_string(),
                    SensorState {
                        kind: s.kind.to_string(),
                        lat: s.lat,
                        lon: s.lon,
                        value: s.value,
                        level: s.level,
                        ts_ms: s.ts_ms,
                    },
                )
            })
            .collect();
        units = snap
            .units
            .iter()
            .map(|u| {
                (
                    u.id.to_string(),
                    UnitState {
                        unit_type: u.unit_type.to_string(),
                        lat: u.lat,
                        lon: u.lon,
                        status: u.status,
                        status_ts_ms: u.status_ts_ms,
                        class: u.status_class,
                        ts_ms: u.ts_ms,
                    },
                )
            })
            .collect();
    }
    State {
        cells,
        sensors,
        units,
    }
}

fn verdict_of(r: &Result<Outcome, Refusal>) -> Verdict {
    match r {
        // A gap in the source's sequence numbers is reported, but the
        // observation is taken all the same.
        Ok(Outcome::Applied | Outcome::Gap(_)) => Verdict::Taken,
        Ok(Outcome::Duplicate | Outcome::Outdated | Outcome::Elsewhere) => Verdict::Dropped,
        Err(Refusal::FromTheFuture { .. }) => Verdict::Refused,
        Err(other) => panic!("unexpected refusal: {other}"),
    }
}

fn env(event: &Event) -> Envelope {
    Envelope {
        space: "live".into(),
        received_ms: NOW,
        event: event.clone(),
    }
}

/// Compares two states, naming the first difference (the full states are
/// too large to read in a failure message).
fn first_difference(engine: &State, model: &State) -> Option<String> {
    for (res, model_cells) in &model.cells {
        let engine_cells = engine.cells.get(res).cloned().unwrap_or_default();
        let keys: BTreeSet<&CellIndex> = engine_cells.keys().chain(model_cells.keys()).collect();
        for k in keys {
            let (e, m) = (engine_cells.get(k), model_cells.get(k));
            if e != m {
                return Some(format!(
                    "res {res}, cell {k}:\n  engine {e:?}\n  model  {m:?}"
                ));
            }
        }
    }
    if engine.cells.len() != model.cells.len() {
        return Some("different resolutions served".to_owned());
    }
    entity_difference("sensor", &engine.sensors, &model.sensors)
        .or_else(|| entity_difference("unit", &engine.units, &model.units))
}

fn entity_difference<T: PartialEq + std::fmt::Debug>(
    what: &str,
    engine: &BTreeMap<String, T>,
    model: &BTreeMap<String, T>,
) -> Option<String> {
    let ids: BTreeSet<&String> = engine.keys().chain(model.keys()).collect();
    ids.into_iter().find_map(|id| {
        let (e, m) = (engine.get(id), model.get(id));
        (e != m).then(|| format!("{what} {id}:\n  engine {e:?}\n  model  {m:?}"))
    })
}

/// What the generated sequences exercised, summed over all cases, so that
/// a generator that drifted into testing nothing interesting is noticed.
#[derive(Debug, Default)]
struct Exercised {
    refused: u32,
    taken: u32,
    dropped: u32,
    flushes: u32,
    /// Finest cells holding more than one entity, at the end of each case.
    shared_finest_cells: u32,
    /// Finest cells merged into a parent with other finest cells.
    merged_finest_cells: u32,
}

impl Exercised {
    fn count_end_state(&mut self, state: &State) {
        let (Some(finest), Some(next)) = (state.cells.get(&10), state.cells.get(&9)) else {
            return;
        };
        let occupants = |c: &ModelCell| {
            c.sensors
                + c.units_available
                + c.units_on_mission
                + c.units_unavailable
                + c.units_unknown
        };
        let shared = finest.values().filter(|c| occupants(c) > 1).count();
        self.shared_finest_cells += u32::try_from(shared).expect("small");
        self.merged_finest_cells +=
            u32::try_from(finest.len() - next.len()).expect("parents are fewer");
    }
}

/// Runs one sequence through the engine (flushing where it says) and the
/// model, comparing at every flush and at the end; also runs it through two
/// more engines that flush after every event and only at the end, whose
/// verdicts and final digest must be the same.
fn check(ops: &[Op], exercised: &RefCell<Exercised>) -> Result<(), TestCaseError> {
    let mut engine = Picture::new(config());
    let mut eager = Picture::new(config());
    let mut lazy = Picture::new(config());
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Apply(event) => {
                let e = env(event);
                let got = engine.apply(&e, NOW);
                let expected = model.apply(event);
                let mut ex = exercised.borrow_mut();
                match expected {
                    Verdict::Refused => ex.refused += 1,
                    Verdict::Taken => ex.taken += 1,
                    Verdict::Dropped => ex.dropped += 1,
                }
                prop_assert_eq!(
                    verdict_of(&got),
                    expected,
                    "op {}: {:?} gave {:?}",
                    i,
                    event,
                    got
                );
                prop_assert_eq!(
                    &eager.apply(&e, NOW),
                    &got,
                    "op {}: same engine, same event",
                    i
                );
                eager.flush(NOW);
                prop_assert_eq!(
                    &lazy.apply(&e, NOW),
                    &got,
                    "op {}: same engine, same event",
                    i
                );
            }
            Op::Flush => {
                exercised.borrow_mut().flushes += 1;
                engine.flush(NOW);
                if let Some(d) = first_difference(&engine_state(&engine), &model.state()) {
                    return Err(TestCaseError::fail(format!("after op {i}: {d}")));
                }
            }
        }
    }
    engine.flush(NOW);
    lazy.flush(NOW);
    let end = model.state();
    if let Some(d) = first_difference(&engine_state(&engine), &end) {
        return Err(TestCaseError::fail(format!("at the end: {d}")));
    }
    exercised.borrow_mut().count_end_state(&end);
    prop_assert_eq!(
        engine.digest(),
        eager.digest(),
        "digest, flushed after every event"
    );
    prop_assert_eq!(
        engine.digest(),
        lazy.digest(),
        "digest, flushed only at the end"
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

#[test]
fn the_engine_agrees_with_the_naive_model() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let exercised = RefCell::new(Exercised::default());
    if let Err(e) = runner.run(&ops(), |ops| check(&ops, &exercised)) {
        panic!("{e}");
    }
    let ex = exercised.into_inner();
    eprintln!("{ex:?}");
    let cases = cases();
    if cases >= 16 {
        assert!(ex.refused > 0 && ex.taken > 0 && ex.dropped > 0, "{ex:?}");
        assert!(
            ex.dropped * 10 > ex.taken,
            "enough repeats and reordering: {ex:?}"
        );
        assert!(ex.flushes > cases, "{ex:?}");
        assert!(ex.shared_finest_cells > cases, "cells shared: {ex:?}");
        assert!(ex.merged_finest_cells > cases, "parents merged: {ex:?}");
    }
}

/// A few hand-written sequences through the same check, so that the rules
/// the generator only hits by chance are always exercised.
#[test]
fn the_model_check_covers_the_time_rules() {
    let tolerance = PictureConfig::default().future_tolerance_ms;
    let obs = |id: &str, ts_ms: i64, value: f64, seq: Option<u64>| {
        Op::Apply(Event::SensorObs(SensorObs {
            id: id.into(),
            ts_ms,
            value,
            lat: None,
            lon: None,
            seq,
            quality: None,
        }))
    };
    let meta = |id: &str, kind: usize, (lat, lon): (f64, f64)| {
        Op::Apply(Event::SensorMeta(SensorMeta {
            id: id.into(),
            kind: KINDS[kind].0.into(),
            unit: KINDS[kind].1.into(),
            lat,
            lon,
            name: None,
            thresholds: None,
        }))
    };
    let status = |id: &str, ts_ms: i64, status: u8| {
        Op::Apply(Event::UnitStatus(UnitStatus {
            id: id.into(),
            ts_ms,
            status,
            source: None,
        }))
    };
    let pos = |id: &str, ts_ms: i64, (lat, lon): (f64, f64)| {
        Op::Apply(Event::UnitPos(UnitPos {
            id: id.into(),
            ts_ms,
            lat,
            lon,
            heading: None,
            speed: None,
            accuracy: None,
            source: None,
            ttl_ms: None,
        }))
    };
    let sequence = vec![
        obs("s1", T0, 4.0, Some(1)),
        meta("s1", 0, SPOTS[0]),
        Op::Flush,
        obs("s1", T0 + 1_000, 4.7, Some(1)),
        obs("s1", T0 + 1_000, 4.61, Some(2)),
        obs("s1", T0 + 1_000, 4.61, Some(2)),
        obs("s1", T0 + 500, 9.0, Some(3)),
        obs("s1", T0 + 2_000, 4.58, None),
        Op::Flush,
        obs("s1", T0 + 3_000, 4.5, Some(2)),
        obs("s1", NOW + tolerance, 3.0, None),
        obs("s1", NOW + tolerance + 1, 9.0, None),
        meta("s1", 1, SPOTS[3]),
        pos("u1", T0, SPOTS[0]),
        status("u1", T0, 3),
        status("u1", T0 + 1_000, 5),
        status("u1", T0 + 500, 1),
        status("u1", T0 + 2_000, 6),
        pos("u1", T0 + 2_000, SPOTS[1]),
        pos("u1", T0 + 1_000, SPOTS[2]),
        Op::Flush,
        pos("u1", NOW + tolerance + 60_000, SPOTS[4]),
        status("u2", T0, 2),
    ];
    if let Err(e) = check(&sequence, &RefCell::new(Exercised::default())) {
        panic!("{e}");
    }
}
