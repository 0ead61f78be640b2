//! H3 cell aggregates.
//!
//! Every aggregate is *mergeable*: [`CellAgg::merge`] is associative and
//! commutative, and a parent cell's aggregate is exactly the merge of its
//! children's. That is what lets coarse resolutions be rolled up from fine
//! ones, and what will let shards be combined.
//!
//! Names (unit types, sensor kinds) are interned ids, kept in small sorted
//! vectors: a cell costs a few dozen bytes, and recomputing one into a
//! reused scratch aggregate allocates nothing.

use serde::Serialize;

use crate::EpochMs;
use crate::names::NameId;
use crate::view::StatusClass;

/// Sensors of one kind inside a cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KindAgg {
    /// Number of sensors.
    pub n: u32,
    /// Highest level among them.
    pub max_level: u8,
    /// Highest current value among them (None until one reports).
    pub max_value: Option<f64>,
}

impl KindAgg {
    fn merge(&mut self, other: &KindAgg) {
        self.n += other.n;
        self.max_level = self.max_level.max(other.max_level);
        self.max_value = match (self.max_value, other.max_value) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What is inside one H3 cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellAgg {
    /// Units whose status class is available (radio status 1, 2).
    pub units_available: u32,
    /// Units on a mission (3, 4, 7, 8).
    pub units_on_mission: u32,
    /// Units not available (6).
    pub units_unavailable: u32,
    /// Units that have not reported a status yet.
    pub units_unknown: u32,
    /// Number of sensors.
    pub sensors: u32,
    /// Incidents whose area covers the cell.
    pub incidents: u32,
    /// Highest sensor level.
    pub max_level: u8,
    /// Hazard level 0–4: the maximum over sensor levels and the severities
    /// of covering incidents.
    pub hazard: u8,
    /// Newest event time of anything inside.
    pub newest_ms: Option<EpochMs>,
    /// Unit counts by unit type (name id), sorted by id.
    pub unit_types: Vec<(NameId, u32)>,
    /// Sensors by kind (name id), sorted by id.
    pub kinds: Vec<(NameId, KindAgg)>,
}

/// Adds `v` under `id` in a vector sorted by id.
fn upsert<V>(list: &mut Vec<(NameId, V)>, id: NameId, v: V, merge: impl FnOnce(&mut V, &V)) {
    match list.binary_search_by_key(&id, |(k, _)| *k) {
        Ok(i) => merge(&mut list[i].1, &v),
        Err(i) => list.insert(i, (id, v)),
    }
}

impl CellAgg {
    /// True when nothing is inside: such a cell is removed from the picture.
    pub fn is_empty(&self) -> bool {
        self.units_available + self.units_on_mission + self.units_unavailable + self.units_unknown
            == 0
            && self.sensors == 0
            && self.incidents == 0
    }

    /// Empties the aggregate, keeping its allocations for reuse.
    pub(crate) fn clear(&mut self) {
        let (mut types, mut kinds) = (
            std::mem::take(&mut self.unit_types),
            std::mem::take(&mut self.kinds),
        );
        types.clear();
        kinds.clear();
        *self = CellAgg {
            unit_types: types,
            kinds,
            ..CellAgg::default()
        };
    }

    /// Adds one unit.
    pub(crate) fn add_unit(&mut self, class: StatusClass, unit_type: NameId, ts: Option<EpochMs>) {
        match class {
            StatusClass::Available => self.units_available += 1,
            StatusClass::OnMission => self.units_on_mission += 1,
            StatusClass::Unavailable => self.units_unavailable += 1,
            StatusClass::Unknown => self.units_unknown += 1,
        }
        upsert(&mut self.unit_types, unit_type, 1, |a, b| *a += b);
        self.touch(ts);
    }

    /// Adds one sensor.
    pub(crate) fn add_sensor(
        &mut self,
        kind: NameId,
        level: u8,
        value: Option<f64>,
        ts: Option<EpochMs>,
    ) {
        self.sensors += 1;
        let one = KindAgg {
            n: 1,
            max_level: level,
            max_value: value,
        };
        upsert(&mut self.kinds, kind, one, KindAgg::merge);
        self.max_level = self.max_level.max(level);
        self.hazard = self.hazard.max(level.min(4));
        self.touch(ts);
    }

    /// Adds one covering incident.
    pub(crate) fn add_incident(&mut self, severity: u8, ts: Option<EpochMs>) {
        self.incidents += 1;
        self.hazard = self.hazard.max(severity.min(4));
        self.touch(ts);
    }

    fn touch(&mut self, ts: Option<EpochMs>) {
        self.newest_ms = self.newest_ms.max(ts);
    }

    /// Merges another aggregate into this one.
    pub fn merge(&mut self, other: &CellAgg) {
        self.units_available += other.units_available;
        self.units_on_mission += other.units_on_mission;
        self.units_unavailable += other.units_unavailable;
        self.units_unknown += other.units_unknown;
        for (t, n) in &other.unit_types {
            upsert(&mut self.unit_types, *t, *n, |a, b| *a += b);
        }
        self.sensors += other.sensors;
        for (k, agg) in &other.kinds {
            upsert(&mut self.kinds, *k, *agg, KindAgg::merge);
        }
        self.incidents += other.incidents;
        self.max_level = self.max_level.max(other.max_level);
        self.hazard = self.hazard.max(other.hazard);
        self.touch(other.newest_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HLF: NameId = 0;
    const RTW: NameId = 1;
    const WATER: NameId = 2;

    fn sample(seed: u8) -> CellAgg {
        let mut a = CellAgg::default();
        a.add_unit(StatusClass::Available, HLF, Some(i64::from(seed)));
        a.add_sensor(WATER, seed % 4, Some(f64::from(seed)), Some(10));
        if seed % 2 == 0 {
            a.add_unit(StatusClass::OnMission, RTW, None);
        }
        if seed == 3 {
            a.add_incident(4, Some(5));
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
        assert_eq!(ab_c.unit_types, [(HLF, 3), (RTW, 1)]);
        assert_eq!(ab_c.kinds[0].1.n, 3);
        assert_eq!(ab_c.kinds[0].1.max_value, Some(3.0));
        assert_eq!(ab_c.hazard, 4, "the incident's severity");
        assert_eq!(ab_c.max_level, 3, "sensor levels alone");
        assert_eq!(ab_c.incidents, 1);
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
    }
}
