//! H3 cell aggregates.
//!
//! Every aggregate is *mergeable*: [`CellAgg::merge`] is associative and
//! commutative, and a parent cell's aggregate is exactly the merge of its
//! children's. That is what lets coarse resolutions be rolled up from fine
//! ones, and what will let shards be combined.
//!
//! The engine keeps aggregates up to date *incrementally*: an entity's
//! change is applied to its cell at every resolution as the removal of its
//! old [`Contribution`] and the addition of its new one. Counts follow
//! exactly; maxima follow exactly when they rise, and when the removed
//! contribution may have held a maximum, [`CellAgg::sub`] says so and the
//! cell is recomputed (from its members, or from its children) once per
//! flush.
//!
//! An aggregate is compact (56 bytes, nothing on the heap while a cell
//! holds one unit type or one sensor kind): names are interned ids, "no
//! time" and "no value" are sentinels instead of options.

use std::collections::BTreeMap;

use serde::Serialize;
use smallvec::SmallVec;

use crate::EpochMs;
use crate::names::NameId;
use crate::view::StatusClass;

/// "No time" in an aggregate.
const NO_TIME: EpochMs = EpochMs::MIN;

/// Sensors of one kind inside a cell, as shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct KindAgg {
    /// Number of sensors.
    pub n: u32,
    /// Highest level among them.
    pub max_level: u8,
    /// Highest current value among them (None until one reports).
    pub max_value: Option<f64>,
}

/// Units of one type or sensors of one kind, as stored (16 bytes; one
/// list holds both, unit types first).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KindEntry {
    /// Highest current value; NaN while none has reported (`f64::max`
    /// ignores NaN, so merging needs no special case). Sensors only.
    max_value: f64,
    n: u32,
    id: NameId,
    /// Highest level. Sensors only.
    max_level: u8,
    /// A sensor kind (else a unit type).
    sensor: bool,
}

impl PartialEq for KindEntry {
    /// Field by field, "no value" (NaN) equal to itself.
    fn eq(&self, other: &Self) -> bool {
        let same_value = self.max_value == other.max_value
            || (self.max_value.is_nan() && other.max_value.is_nan());
        same_value
            && self.key() == other.key()
            && (self.n, self.max_level) == (other.n, other.max_level)
    }
}

impl KindEntry {
    fn key(&self) -> (bool, NameId) {
        (self.sensor, self.id)
    }

    fn unit_type(id: NameId, n: u32) -> KindEntry {
        KindEntry {
            max_value: f64::NAN,
            n,
            id,
            max_level: 0,
            sensor: false,
        }
    }

    fn merge(&mut self, other: &KindEntry) {
        self.n += other.n;
        self.max_level = self.max_level.max(other.max_level);
        self.max_value = self.max_value.max(other.max_value);
    }
}

impl KindEntry {
    fn view(&self) -> KindAgg {
        KindAgg {
            n: self.n,
            max_level: self.max_level,
            max_value: (!self.max_value.is_nan()).then_some(self.max_value),
        }
    }
}

/// What one entity adds to the cell it is in (and to every ancestor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Contribution {
    /// A unit with a position.
    Unit {
        /// Its status class.
        class: StatusClass,
        /// Its type.
        unit_type: NameId,
        /// Its newest report.
        ts: Option<EpochMs>,
    },
    /// A sensor with a position.
    Sensor {
        /// Its kind.
        kind: NameId,
        /// Its level.
        level: u8,
        /// Its current value.
        value: Option<f64>,
        /// Its newest observation.
        ts: Option<EpochMs>,
    },
    /// An incident whose area covers the cell.
    Incident {
        /// Its severity 0–4.
        severity: u8,
        /// Its time.
        ts: EpochMs,
    },
}

impl Contribution {
    fn ts(&self) -> EpochMs {
        match self {
            Contribution::Unit { ts, .. } | Contribution::Sensor { ts, .. } => {
                ts.unwrap_or(NO_TIME)
            }
            Contribution::Incident { ts, .. } => *ts,
        }
    }

    fn hazard(&self) -> u8 {
        match self {
            Contribution::Unit { .. } => 0,
            Contribution::Sensor { level, .. } => (*level).min(4),
            Contribution::Incident { severity, .. } => (*severity).min(4),
        }
    }

    /// Level and value of a sensor of `kind`.
    fn sensor_of(&self, kind: NameId) -> Option<(u8, f64)> {
        match self {
            Contribution::Sensor {
                kind: k,
                level,
                value,
                ..
            } if *k == kind => Some((*level, value.unwrap_or(f64::NAN))),
            _ => None,
        }
    }
}

/// A sensor's reading replaced by a newer one of the same kind, as every
/// cell it is in sees it ("no value" as NaN, "no time" as the sentinel).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SensorChange {
    kind: NameId,
    l0: u8,
    l1: u8,
    v0: f64,
    v1: f64,
    t0: EpochMs,
    t1: EpochMs,
}

/// What replacing one contribution by another does, worked out once for
/// all the cells (finest and ancestors) it is replaced in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Replacement {
    /// A sensor's new reading.
    Sensor(SensorChange),
    /// Anything else: [`CellAgg::replace`] decides per cell.
    Other,
}

impl Replacement {
    pub(crate) fn new(old: &Contribution, new: &Contribution) -> Replacement {
        match (*old, *new) {
            (
                Contribution::Sensor {
                    kind,
                    level: l0,
                    value: v0,
                    ..
                },
                Contribution::Sensor {
                    kind: k1,
                    level: l1,
                    value: v1,
                    ..
                },
            ) if kind == k1 => Replacement::Sensor(SensorChange {
                kind,
                l0,
                l1,
                v0: v0.unwrap_or(f64::NAN),
                v1: v1.unwrap_or(f64::NAN),
                t0: old.ts(),
                t1: new.ts(),
            }),
            _ => Replacement::Other,
        }
    }
}

/// Whether removing a contribution's `old` share of a maximum `current`
/// may lower it, when `then` (the same entity's new share in the same
/// cell, if any) is added right after.
fn may_lower<T: PartialOrd>(old: T, current: T, then: Option<T>, neutral: T) -> bool {
    old > neutral && old >= current && then.is_none_or(|t| t < old)
}

/// Updates the maximum `current` for one holder's share going from `old`
/// to `new`; false when it may now be too high (the old share may have
/// been the maximum and the new one is lower).
fn keep_max<T: PartialOrd + Copy>(current: &mut T, old: T, new: T, neutral: T) -> bool {
    let exact = !may_lower(old, *current, Some(new), neutral);
    if new > *current {
        *current = new;
    }
    exact
}

/// What is inside one H3 cell.
#[derive(Debug, PartialEq)]
pub struct CellAgg {
    /// Units whose status class is available (radio status 1, 2).
    pub units_available: u32,
    /// Units on a mission (3, 4, 7, 8).
    pub units_on_mission: u32,
    /// Units not available (6).
    pub units_unavailable: u32,
    /// Units that have not reported a status yet.
    pub units_unknown: u32,
    /// Incidents whose area covers the cell.
    pub incidents: u32,
    newest: EpochMs,
    /// Hazard level 0–4: the maximum over sensor levels and the severities
    /// of covering incidents.
    pub hazard: u8,
    /// Unit counts by type, then sensors by kind, each sorted by name id.
    names: SmallVec<[KindEntry; 1]>,
}

impl CellAgg {
    /// Reads the aggregate and its name list (for read-ahead).
    pub(crate) fn read(&self) -> u64 {
        let first = self.names.first().map_or(0, |e| u64::from(e.n));
        first ^ u64::from(self.hazard)
    }
}

impl Clone for CellAgg {
    /// A field-by-field copy (the name lists hold plain values, copied as
    /// slices rather than element by element).
    fn clone(&self) -> Self {
        CellAgg {
            names: SmallVec::from_slice(&self.names),
            ..*self
        }
    }
}

impl Default for CellAgg {
    fn default() -> Self {
        CellAgg {
            units_available: 0,
            units_on_mission: 0,
            units_unavailable: 0,
            units_unknown: 0,
            incidents: 0,
            newest: NO_TIME,
            hazard: 0,
            names: SmallVec::new(),
        }
    }
}

impl CellAgg {
    /// True when nothing is inside: such a cell is removed from the picture.
    pub fn is_empty(&self) -> bool {
        self.units_available + self.units_on_mission + self.units_unavailable + self.units_unknown
            == 0
            && !self.names.last().is_some_and(|e| e.sensor)
            && self.incidents == 0
    }

    /// Number of sensors.
    pub fn sensors(&self) -> u32 {
        self.kinds().map(|k| k.n).sum()
    }

    /// Highest sensor level.
    pub fn max_level(&self) -> u8 {
        self.kinds().map(|k| k.max_level).max().unwrap_or(0)
    }

    /// Newest event time of anything inside.
    pub fn newest_ms(&self) -> Option<EpochMs> {
        (self.newest != NO_TIME).then_some(self.newest)
    }

    fn kinds(&self) -> impl Iterator<Item = &KindEntry> {
        self.names.iter().filter(|e| e.sensor)
    }

    /// Unit counts by type id, sorted by id.
    pub fn unit_type_ids(&self) -> impl Iterator<Item = (NameId, u32)> + '_ {
        self.names
            .iter()
            .take_while(|e| !e.sensor)
            .map(|e| (e.id, e.n))
    }

    /// Sensor aggregates by kind id, sorted by id.
    pub fn kind_ids(&self) -> impl Iterator<Item = (NameId, KindAgg)> + '_ {
        self.kinds().map(|k| (k.id, k.view()))
    }

    /// Bytes this aggregate holds on the heap (kinds or types beyond the
    /// inline capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        if self.names.spilled() {
            self.names.capacity() * std::mem::size_of::<KindEntry>()
        } else {
            0
        }
    }

    /// Makes this aggregate equal to `other`, with name lists no larger
    /// on the heap than they need to be (a recomputed cell keeps its
    /// size; the scratch it was computed in may have been larger).
    pub(crate) fn assign(&mut self, other: &CellAgg) {
        self.names.clear();
        self.names.extend_from_slice(&other.names);
        if self.names.spilled() && self.names.capacity() > self.names.len() {
            self.names.shrink_to_fit();
        }
        self.units_available = other.units_available;
        self.units_on_mission = other.units_on_mission;
        self.units_unavailable = other.units_unavailable;
        self.units_unknown = other.units_unknown;
        self.incidents = other.incidents;
        self.newest = other.newest;
        self.hazard = other.hazard;
    }

    /// Empties the aggregate, keeping its allocations for reuse.
    pub(crate) fn clear(&mut self) {
        let mut names = std::mem::take(&mut self.names);
        names.clear();
        *self = CellAgg {
            names,
            ..CellAgg::default()
        };
    }

    fn class_count(&mut self, class: StatusClass) -> &mut u32 {
        match class {
            StatusClass::Available => &mut self.units_available,
            StatusClass::OnMission => &mut self.units_on_mission,
            StatusClass::Unavailable => &mut self.units_unavailable,
            StatusClass::Unknown => &mut self.units_unknown,
        }
    }

    fn find(&self, sensor: bool, id: NameId) -> Result<usize, usize> {
        self.names
            .binary_search_by_key(&(sensor, id), KindEntry::key)
    }

    fn add_entry(&mut self, other: KindEntry) {
        match self.find(other.sensor, other.id) {
            Ok(i) => self.names[i].merge(&other),
            Err(i) => self.names.insert(i, other),
        }
    }

    fn remove_type(&mut self, id: NameId) {
        if let Ok(i) = self.find(false, id) {
            self.names[i].n -= 1;
            if self.names[i].n == 0 {
                self.names.remove(i);
            }
        }
    }

    /// Adds one entity's contribution. Always exact.
    pub(crate) fn add(&mut self, c: &Contribution) {
        match *c {
            Contribution::Unit {
                class, unit_type, ..
            } => {
                *self.class_count(class) += 1;
                self.add_entry(KindEntry::unit_type(unit_type, 1));
            }
            Contribution::Sensor {
                kind, level, value, ..
            } => {
                self.add_entry(KindEntry {
                    max_value: value.unwrap_or(f64::NAN),
                    n: 1,
                    id: kind,
                    max_level: level,
                    sensor: true,
                });
            }
            Contribution::Incident { .. } => self.incidents += 1,
        }
        self.hazard = self.hazard.max(c.hazard());
        self.newest = self.newest.max(c.ts());
    }

    /// Removes one entity's contribution `c` (which must have been added).
    /// `then` is what the same entity adds right after, in this cell, if
    /// anything: maxima it keeps up need no recomputation. Counts are
    /// always exact afterwards; returns false when a maximum may now be
    /// too high and the cell must be recomputed.
    pub(crate) fn sub(&mut self, c: &Contribution, then: Option<&Contribution>) -> bool {
        let mut exact = !may_lower(c.ts(), self.newest, then.map(Contribution::ts), NO_TIME)
            && !may_lower(c.hazard(), self.hazard, then.map(Contribution::hazard), 0);
        match *c {
            Contribution::Unit {
                class, unit_type, ..
            } => {
                let n = self.class_count(class);
                *n = n.saturating_sub(1);
                self.remove_type(unit_type);
            }
            Contribution::Sensor {
                kind, level, value, ..
            } => {
                if let Ok(i) = self.find(true, kind) {
                    let k = &mut self.names[i];
                    k.n -= 1;
                    if k.n == 0 {
                        self.names.remove(i);
                    } else {
                        let same = then.and_then(|t| t.sensor_of(kind));
                        exact &= !may_lower(level, k.max_level, same.map(|s| s.0), 0);
                        // NaN (no value) never lowers anything.
                        let v = value.unwrap_or(f64::NAN);
                        let held_max = v >= k.max_value;
                        let kept_up = same.is_some_and(|s| s.1 >= v);
                        exact &= !held_max || kept_up;
                    }
                }
            }
            Contribution::Incident { .. } => self.incidents = self.incidents.saturating_sub(1),
        }
        if self.is_empty() {
            // Nothing left: no maximum to doubt.
            self.clear();
            return true;
        }
        exact
    }

    /// [`CellAgg::replace`] for a sensor's new reading (same kind), the
    /// change worked out beforehand.
    #[inline]
    pub(crate) fn replace_sensor(&mut self, change: &SensorChange, new: &Contribution) -> bool {
        let Ok(i) = self.find(true, change.kind) else {
            // Not where it should be: let a recomputation decide.
            self.add(new);
            return false;
        };
        let k = &mut self.names[i];
        let SensorChange {
            l0,
            l1,
            v0,
            v1,
            t0,
            t1,
            ..
        } = *change;
        if k.n == 1 {
            // The only sensor of its kind here (the usual case in a
            // finest cell): its new reading is the kind's maximum, lower
            // or not, and without incidents the hazard is the highest
            // level of the kinds present. Exact, no recomputation from the
            // members.
            k.max_value = v1;
            k.max_level = l1;
            let newest = keep_max(&mut self.newest, t0, t1, NO_TIME);
            if self.incidents == 0 {
                self.hazard = self
                    .names
                    .iter()
                    .filter(|e| e.sensor)
                    .map(|e| e.max_level.min(4))
                    .max()
                    .unwrap_or(0);
                return newest;
            }
            return keep_max(&mut self.hazard, l0.min(4), l1.min(4), 0) && newest;
        }
        // NaN compares false: no value never held nor keeps a maximum.
        let held = v0 >= k.max_value;
        let kept_up = v1 >= v0;
        let mut exact = !held || kept_up;
        k.max_value = k.max_value.max(v1);
        exact &= keep_max(&mut k.max_level, l0, l1, 0);
        exact &= keep_max(&mut self.hazard, l0.min(4), l1.min(4), 0);
        exact &= keep_max(&mut self.newest, t0, t1, NO_TIME);
        exact
    }

    /// Replaces one entity's contribution `old` by `new` in this cell (an
    /// observation, a status change, a move inside the cell): what
    /// [`CellAgg::sub`] then [`CellAgg::add`] do, without taking the
    /// entity's name entry out and putting it back. Returns false when a
    /// maximum may now be too high.
    pub(crate) fn replace(&mut self, old: &Contribution, new: &Contribution) -> bool {
        if let Replacement::Sensor(change) = Replacement::new(old, new) {
            return self.replace_sensor(&change, new);
        }
        match (*old, *new) {
            (
                Contribution::Unit {
                    class: c0,
                    unit_type: u0,
                    ..
                },
                Contribution::Unit {
                    class: c1,
                    unit_type: u1,
                    ..
                },
            ) => {
                if c0 != c1 {
                    let n = self.class_count(c0);
                    *n = n.saturating_sub(1);
                    *self.class_count(c1) += 1;
                }
                if u0 != u1 {
                    self.remove_type(u0);
                    self.add_entry(KindEntry::unit_type(u1, 1));
                }
                keep_max(&mut self.newest, old.ts(), new.ts(), NO_TIME)
            }
            _ => {
                let exact = self.sub(old, Some(new));
                self.add(new);
                exact
            }
        }
    }

    /// An aggregate as another picture showed it (a shard's cell received
    /// by a gateway), its names interned in `names`.
    pub(crate) fn from_shown(
        counts: [u32; 5],
        unit_types: &BTreeMap<String, u32>,
        kinds: &BTreeMap<String, KindAgg>,
        hazard: u8,
        newest_ms: Option<EpochMs>,
        names: &mut crate::names::Names,
    ) -> CellAgg {
        let [available, on_mission, unavailable, unknown, incidents] = counts;
        let mut a = CellAgg {
            units_available: available,
            units_on_mission: on_mission,
            units_unavailable: unavailable,
            units_unknown: unknown,
            incidents,
            newest: newest_ms.unwrap_or(NO_TIME),
            hazard,
            names: SmallVec::new(),
        };
        for (name, n) in unit_types {
            a.add_entry(KindEntry::unit_type(names.intern(name), *n));
        }
        for (name, k) in kinds {
            a.add_entry(KindEntry {
                max_value: k.max_value.unwrap_or(f64::NAN),
                n: k.n,
                id: names.intern(name),
                max_level: k.max_level,
                sensor: true,
            });
        }
        a
    }

    /// Merges a sorted name list into this one (also sorted) in one pass
    /// over both: the usual case (the other's names are among these, as a
    /// coarse cell's children share their kinds) inserts nothing.
    fn merge_names(&mut self, other: &[KindEntry]) {
        if self.names.is_empty() {
            self.names.extend_from_slice(other);
            return;
        }
        let mut i = 0;
        for e in other {
            let key = e.key();
            while i < self.names.len() && self.names[i].key() < key {
                i += 1;
            }
            match self.names.get_mut(i) {
                Some(mine) if mine.key() == key => mine.merge(e),
                _ => self.names.insert(i, *e),
            }
            i += 1;
        }
    }

    /// Merges another aggregate into this one.
    pub fn merge(&mut self, other: &CellAgg) {
        self.units_available += other.units_available;
        self.units_on_mission += other.units_on_mission;
        self.units_unavailable += other.units_unavailable;
        self.units_unknown += other.units_unknown;
        self.merge_names(&other.names);
        self.incidents += other.incidents;
        self.hazard = self.hazard.max(other.hazard);
        self.newest = self.newest.max(other.newest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HLF: NameId = 0;
    const RTW: NameId = 1;
    const WATER: NameId = 2;

    fn unit(class: StatusClass, unit_type: NameId, ts: Option<EpochMs>) -> Contribution {
        Contribution::Unit {
            class,
            unit_type,
            ts,
        }
    }

    fn water(level: u8, value: f64, ts: EpochMs) -> Contribution {
        Contribution::Sensor {
            kind: WATER,
            level,
            value: Some(value),
            ts: Some(ts),
        }
    }

    fn sample(seed: u8) -> CellAgg {
        let mut a = CellAgg::default();
        a.add(&unit(StatusClass::Available, HLF, Some(i64::from(seed))));
        a.add(&water(seed % 4, f64::from(seed), 10));
        if seed.is_multiple_of(2) {
            a.add(&unit(StatusClass::OnMission, RTW, None));
        }
        if seed == 3 {
            a.add(&Contribution::Incident { severity: 4, ts: 5 });
        }
        a
    }

    #[test]
    fn merge_is_commutative_and_associative() {
        let (a, b, c) = (sample(1), sample(2), sample(3));
        let mut ab_c = a.clone();
        ab_c.merge(&b);
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        assert_eq!(ab_c, a_bc);
        let mut c_b_a = c.clone();
        c_b_a.merge(&b);
        c_b_a.merge(&a);
        assert_eq!(ab_c, c_b_a);
        assert_eq!(ab_c.units_available, 3);
        assert_eq!(ab_c.units_on_mission, 1);
        assert_eq!(
            ab_c.unit_type_ids().collect::<Vec<_>>(),
            [(HLF, 3), (RTW, 1)]
        );
        let kinds: Vec<_> = ab_c.kind_ids().collect();
        assert_eq!(kinds[0].1.n, 3);
        assert_eq!(kinds[0].1.max_value, Some(3.0));
        assert_eq!(ab_c.hazard, 4, "the incident's severity");
        assert_eq!(ab_c.max_level(), 3, "sensor levels alone");
        assert_eq!(ab_c.incidents, 1);
        assert_eq!(ab_c.newest_ms(), Some(10));
    }

    /// The one-pass merge of name lists gives what adding the other
    /// side's contributions one by one gives, for lists that interleave,
    /// coincide, or are disjoint.
    #[test]
    fn merge_of_interleaved_name_lists_equals_adding_one_by_one() {
        let sensor = |kind: NameId, level: u8, value: f64| Contribution::Sensor {
            kind,
            level,
            value: Some(value),
            ts: Some(1),
        };
        let sides: [&[Contribution]; 4] = [
            &[
                unit(StatusClass::Available, 3, None),
                sensor(5, 1, 2.0),
                sensor(9, 0, 1.0),
            ],
            &[
                unit(StatusClass::OnMission, 1, None),
                unit(StatusClass::Available, 3, None),
                sensor(7, 2, 4.0),
                sensor(9, 3, 0.5),
            ],
            &[sensor(5, 1, 2.0), sensor(9, 0, 1.0)],
            &[],
        ];
        for a in sides {
            for b in sides {
                let mut left = CellAgg::default();
                a.iter().for_each(|c| left.add(c));
                let mut right = CellAgg::default();
                b.iter().for_each(|c| right.add(c));
                let mut merged = left.clone();
                merged.merge(&right);
                let mut added = left.clone();
                b.iter().for_each(|c| added.add(c));
                assert_eq!(merged, added, "{a:?} + {b:?}");
            }
        }
    }

    #[test]
    fn empty_merge_is_identity_and_clear_keeps_nothing_but_capacity() {
        let a = sample(2);
        let mut m = CellAgg::default();
        m.merge(&a);
        assert_eq!(m, a);
        assert!(CellAgg::default().is_empty());
        assert!(!a.is_empty());
        m.clear();
        assert_eq!(m, CellAgg::default());
        assert_eq!(m.newest_ms(), None);
    }

    #[test]
    fn an_aggregate_with_one_name_is_compact_and_more_are_counted() {
        assert!(
            std::mem::size_of::<CellAgg>() <= 56,
            "{}",
            std::mem::size_of::<CellAgg>()
        );
        let mut a = CellAgg::default();
        a.add(&unit(StatusClass::Available, HLF, Some(1)));
        a.add(&unit(StatusClass::OnMission, HLF, Some(2)));
        assert_eq!(a.heap_bytes(), 0, "one unit type: inline");
        a.add(&water(1, 4.0, 3));
        assert!(
            a.heap_bytes() >= 2 * 16,
            "a type and a kind: on the heap, counted"
        );
        assert_eq!(a.unit_type_ids().collect::<Vec<_>>(), [(HLF, 2)]);
        assert_eq!((a.sensors(), a.max_level()), (1, 1));
    }

    /// Replacing a contribution is exact when the new one keeps every
    /// maximum up, and asks for a recomputation when it may not.
    #[test]
    fn sub_says_when_a_maximum_may_have_fallen() {
        let mut a = CellAgg::default();
        a.add(&water(2, 5.0, 10));
        a.add(&water(1, 3.0, 20));
        // The newest time's holder rises: exact.
        assert!(a.sub(&water(1, 3.0, 20), Some(&water(1, 4.0, 30))));
        a.add(&water(1, 4.0, 30));
        assert_eq!(a.newest_ms(), Some(30));
        // Not the maximum's holder: exact even though it falls.
        assert!(a.sub(&water(1, 4.0, 30), Some(&water(0, 1.0, 40))));
        a.add(&water(0, 1.0, 40));
        assert_eq!(a.kind_ids().next().map(|k| k.1.max_value), Some(Some(5.0)));
        // The maximum's holder falls: recompute.
        assert!(!a.sub(&water(2, 5.0, 10), Some(&water(2, 4.5, 50))));
        // Removing the last member empties the cell: nothing to recompute.
        let mut b = CellAgg::default();
        b.add(&unit(StatusClass::Available, HLF, Some(7)));
        assert!(b.sub(&unit(StatusClass::Available, HLF, Some(7)), None));
        assert!(b.is_empty());
        assert_eq!(b.unit_type_ids().count(), 0);
    }
}
