//! The merged picture of a scaled-out deployment (DESIGN §7): a gateway
//! receives each fusion shard's deltas (and a full picture now and then)
//! and combines them into one picture of the space. Shards own disjoint
//! regions, so every unit, sensor and incident comes from one shard, and a
//! cell that spans regions is the merge of the shards' aggregates
//! ([`CellAgg::merge`]): the merged picture equals, digest and all, the one
//! a single server fed the same events holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use h3o::{CellIndex, Resolution};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::EpochMs;
use crate::cell::{CellAgg, KindAgg};
use crate::freshness::Freshness;
use crate::names::Names;
use crate::view::{AlertView, CellView, Delta, IncidentView, SensorView, Snapshot, UnitView};
use crate::viewport::Viewport;

/// One cell as a shard's delta shows it (the websocket contract's cell).
#[derive(Debug, Clone, Deserialize)]
pub struct ShownCell {
    /// H3 index string.
    pub h3: String,
    /// Units available.
    pub units_available: u32,
    /// Units on a mission.
    pub units_on_mission: u32,
    /// Units unavailable.
    pub units_unavailable: u32,
    /// Units without a status.
    pub units_unknown: u32,
    /// Units by type.
    #[serde(default)]
    pub unit_types: BTreeMap<String, u32>,
    /// Sensors by kind.
    #[serde(default)]
    pub kinds: BTreeMap<String, KindAgg>,
    /// Incidents covering it.
    pub incidents: u32,
    /// Hazard 0–4.
    pub hazard: u8,
    /// Newest event time inside.
    pub newest_ms: Option<EpochMs>,
}

/// A shard's delta (or, with `full`, its whole picture) as published.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ShardDelta {
    /// The shard's delta sequence number.
    pub seq: u64,
    /// The whole picture (replaces what the gateway holds of the shard).
    pub full: bool,
    /// Changed cells, every resolution.
    pub cells: Vec<ShownCell>,
    /// Cells that became empty.
    pub cells_removed: Vec<String>,
    /// Changed units.
    pub units: Vec<UnitView>,
    /// Removed units.
    pub units_removed: Vec<String>,
    /// Changed sensors.
    pub sensors: Vec<SensorView>,
    /// Removed sensors.
    pub sensors_removed: Vec<String>,
    /// Changed incidents.
    pub incidents: Vec<IncidentView>,
    /// Closed incidents.
    pub incidents_removed: Vec<String>,
    /// New or changed alerts.
    pub alerts: Vec<AlertView>,
}

/// Why a shard's message was not taken.
#[derive(Debug, Error, PartialEq)]
pub enum MosaicError {
    /// No shard of that number.
    #[error("no shard {0}")]
    NoShard(u32),
    /// A delta before the shard's whole picture arrived, or out of
    /// sequence: the gateway needs the whole picture again.
    #[error("shard {shard}: delta {got} does not follow {held:?}")]
    Gap {
        /// The shard.
        shard: u32,
        /// The seq held, if any.
        held: Option<u64>,
        /// The seq received.
        got: u64,
    },
    /// A cell index that is not one.
    #[error("shard {shard}: bad cell {cell:?}")]
    BadCell {
        /// The shard.
        shard: u32,
        /// What it sent.
        cell: String,
    },
}

#[derive(Debug, Default)]
struct Part {
    seq: Option<u64>,
    online: bool,
    cells: HashMap<CellIndex, CellAgg>,
    units: HashMap<Arc<str>, UnitView>,
    sensors: HashMap<Arc<str>, SensorView>,
    incidents: HashMap<String, IncidentView>,
    /// By the id the gateway shows (`s<shard>-<id>`).
    alerts: BTreeMap<String, AlertView>,
}

#[derive(Debug, Default)]
struct Changed {
    cells: HashSet<CellIndex>,
    units: BTreeSet<Arc<str>>,
    sensors: BTreeSet<Arc<str>>,
    incidents: BTreeSet<String>,
    alerts: BTreeSet<String>,
}

/// Applies a shard's upserts and removals of units or sensors to what the
/// gateway holds of it, noting each id as changed.
fn take_entities<V>(
    held: &mut HashMap<Arc<str>, V>,
    changed: &mut BTreeSet<Arc<str>>,
    upserts: Vec<V>,
    removed: Vec<String>,
    id: impl Fn(&V) -> &Arc<str>,
) {
    for v in upserts {
        let id = id(&v).clone();
        changed.insert(id.clone());
        held.insert(id, v);
    }
    for id in removed {
        let id: Arc<str> = Arc::from(id);
        held.remove(&id);
        changed.insert(id);
    }
}

/// The merged picture of one space.
#[derive(Debug)]
pub struct Mosaic {
    resolutions: Vec<Resolution>,
    names: Names,
    parts: Vec<Part>,
    seq: u64,
    changed: Changed,
}

/// The id a gateway shows for a shard's alert.
pub fn gateway_alert_id(shard: u32, id: &str) -> String {
    format!("s{shard}-{id}")
}

/// The shard and the shard's own id of an alert id a gateway showed.
pub fn shard_alert_id(id: &str) -> Option<(u32, &str)> {
    let (shard, rest) = id.strip_prefix('s')?.split_once('-')?;
    Some((shard.parse().ok()?, rest))
}

impl Mosaic {
    /// A picture merged from `shards` shards serving `resolutions`.
    pub fn new(shards: u32, resolutions: &[Resolution]) -> Mosaic {
        let mut resolutions = resolutions.to_vec();
        resolutions.sort_unstable_by(|a, b| b.cmp(a));
        resolutions.dedup();
        Mosaic {
            resolutions,
            names: Names::default(),
            parts: (0..shards).map(|_| Part::default()).collect(),
            seq: 0,
            changed: Changed::default(),
        }
    }

    /// The sequence number of the last merged delta.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The served resolution closest to `res`.
    pub fn nearest_resolution(&self, res: u8) -> Resolution {
        crate::engine::nearest_resolution(&self.resolutions, res)
    }

    /// Each shard: whether it is online and the seq held (None before its
    /// whole picture arrived).
    pub fn shards(&self) -> Vec<(bool, Option<u64>)> {
        self.parts.iter().map(|p| (p.online, p.seq)).collect()
    }

    /// Takes one message of shard `shard`.
    pub fn apply(&mut self, shard: u32, d: ShardDelta) -> Result<(), MosaicError> {
        let names = &mut self.names;
        let changed = &mut self.changed;
        let part = self
            .parts
            .get_mut(shard as usize)
            .ok_or(MosaicError::NoShard(shard))?;
        if !d.full {
            match part.seq {
                // Already in the whole picture taken after it.
                Some(held) if d.seq <= held => return Ok(()),
                Some(held) if d.seq == held + 1 => {}
                held => {
                    return Err(MosaicError::Gap {
                        shard,
                        held,
                        got: d.seq,
                    });
                }
            }
        }
        let mut cells = Vec::with_capacity(d.cells.len());
        for c in &d.cells {
            let h3 =
                c.h3.parse::<CellIndex>()
                    .map_err(|_| MosaicError::BadCell {
                        shard,
                        cell: c.h3.chars().take(20).collect(),
                    })?;
            let agg = CellAgg::from_shown(
                [
                    c.units_available,
                    c.units_on_mission,
                    c.units_unavailable,
                    c.units_unknown,
                    c.incidents,
                ],
                &c.unit_types,
                &c.kinds,
                c.hazard,
                c.newest_ms,
                names,
            );
            cells.push((h3, agg));
        }
        part.online = true;
        if d.full {
            changed.cells.extend(part.cells.drain().map(|(c, _)| c));
            changed.units.extend(part.units.drain().map(|(k, _)| k));
            changed.sensors.extend(part.sensors.drain().map(|(k, _)| k));
            changed
                .incidents
                .extend(part.incidents.drain().map(|(k, _)| k));
            part.alerts.clear();
        }
        part.seq = Some(d.seq);
        for (h3, agg) in cells {
            changed.cells.insert(h3);
            part.cells.insert(h3, agg);
        }
        for c in &d.cells_removed {
            if let Ok(h3) = c.parse::<CellIndex>() {
                changed.cells.insert(h3);
                part.cells.remove(&h3);
            }
        }
        take_entities(
            &mut part.units,
            &mut changed.units,
            d.units,
            d.units_removed,
            |u| &u.id,
        );
        take_entities(
            &mut part.sensors,
            &mut changed.sensors,
            d.sensors,
            d.sensors_removed,
            |s| &s.id,
        );
        for i in d.incidents {
            changed.incidents.insert(i.id.clone());
            part.incidents.insert(i.id.clone(), i);
        }
        for id in d.incidents_removed {
            part.incidents.remove(&id);
            changed.incidents.insert(id);
        }
        for mut a in d.alerts {
            a.id = gateway_alert_id(shard, &a.id);
            changed.alerts.insert(a.id.clone());
            part.alerts.insert(a.id.clone(), a);
        }
        Ok(())
    }

    /// A shard went away (or came back): while away, everything it holds
    /// is shown lost, so the regions it owns read as stale, not as calm.
    pub fn set_online(&mut self, shard: u32, online: bool) {
        let Some(part) = self.parts.get_mut(shard as usize) else {
            return;
        };
        if part.online == online {
            return;
        }
        part.online = online;
        if !online {
            // Its next message must be a whole picture.
            part.seq = None;
            for u in part.units.values_mut() {
                u.freshness = Some(Freshness::Lost);
                self.changed.units.insert(u.id.clone());
            }
            for s in part.sensors.values_mut() {
                s.freshness = Some(Freshness::Lost);
                self.changed.sensors.insert(s.id.clone());
            }
        }
    }

    fn merged_cell(&self, cell: CellIndex) -> Option<CellAgg> {
        let mut merged: Option<CellAgg> = None;
        for p in &self.parts {
            if let Some(a) = p.cells.get(&cell) {
                match merged.as_mut() {
                    Some(m) => m.merge(a),
                    None => merged = Some(a.clone()),
                }
            }
        }
        merged.filter(|m| !m.is_empty())
    }

    fn view(&self, cell: CellIndex, agg: CellAgg) -> CellView {
        CellView {
            h3: cell,
            res: u8::from(cell.resolution()),
            agg,
            names: self.names.shared(),
        }
    }

    /// The newest of a unit's copies (a unit handed between shards can be
    /// held by both for a moment).
    fn unit(&self, id: &str) -> Option<&UnitView> {
        self.parts
            .iter()
            .filter_map(|p| p.units.get(id))
            .max_by_key(|u| u.ts_ms)
    }

    fn sensor(&self, id: &str) -> Option<&SensorView> {
        self.parts
            .iter()
            .filter_map(|p| p.sensors.get(id))
            .max_by_key(|s| s.ts_ms)
    }

    fn incident(&self, id: &str) -> Option<&IncidentView> {
        self.parts
            .iter()
            .filter_map(|p| p.incidents.get(id))
            .max_by_key(|i| i.ts_ms)
    }

    /// What changed since the last flush, as one merged delta.
    pub fn flush(&mut self) -> Option<Delta> {
        let changed = std::mem::take(&mut self.changed);
        let mut delta = Delta::default();
        let mut cells: Vec<CellIndex> = changed.cells.into_iter().collect();
        cells.sort_unstable();
        for c in cells {
            match self.merged_cell(c) {
                Some(agg) => delta.cells.push(self.view(c, agg)),
                None => {
                    delta.cells_removed.push(c.to_string());
                    delta.cells_removed_idx.push(c);
                }
            }
        }
        for id in changed.units {
            match self.unit(&id) {
                Some(u) => delta.units.push(u.clone()),
                None => delta.units_removed.push(id.to_string()),
            }
        }
        for id in changed.sensors {
            match self.sensor(&id) {
                Some(s) => delta.sensors.push(s.clone()),
                None => delta.sensors_removed.push(id.to_string()),
            }
        }
        for id in changed.incidents {
            match self.incident(&id) {
                Some(i) => delta.incidents.push(i.clone()),
                None => delta.incidents_removed.push(id),
            }
        }
        for id in changed.alerts {
            if let Some(a) = self.parts.iter().find_map(|p| p.alerts.get(&id)) {
                delta.alerts.push(a.clone());
            }
        }
        if delta.is_empty() {
            return None;
        }
        self.seq += 1;
        delta.seq = self.seq;
        Some(delta)
    }

    fn all_cells(&self) -> BTreeSet<CellIndex> {
        self.parts
            .iter()
            .flat_map(|p| p.cells.keys().copied())
            .collect()
    }

    fn all_units(&self) -> Vec<&UnitView> {
        let ids: BTreeSet<&Arc<str>> = self.parts.iter().flat_map(|p| p.units.keys()).collect();
        ids.into_iter().filter_map(|id| self.unit(id)).collect()
    }

    fn all_sensors(&self) -> Vec<&SensorView> {
        let ids: BTreeSet<&Arc<str>> = self.parts.iter().flat_map(|p| p.sensors.keys()).collect();
        ids.into_iter().filter_map(|id| self.sensor(id)).collect()
    }

    fn all_incidents(&self) -> Vec<&IncidentView> {
        let ids: BTreeSet<&String> = self.parts.iter().flat_map(|p| p.incidents.keys()).collect();
        ids.into_iter().filter_map(|id| self.incident(id)).collect()
    }

    fn all_alerts(&self) -> Vec<&AlertView> {
        let mut alerts: Vec<&AlertView> =
            self.parts.iter().flat_map(|p| p.alerts.values()).collect();
        alerts.sort_by(|a, b| (a.ts_ms, &a.id).cmp(&(b.ts_ms, &b.id)));
        alerts
    }

    /// The merged picture inside a viewport (at the served resolution
    /// nearest the viewport's).
    pub fn snapshot(&self, viewport: &Viewport) -> Snapshot {
        let vp = Viewport {
            bbox: viewport.bbox,
            res: self.nearest_resolution(u8::from(viewport.res)),
        };
        let cells = self
            .all_cells()
            .into_iter()
            .filter(|c| vp.contains_cell(*c))
            .filter_map(|c| self.merged_cell(c).map(|a| self.view(c, a)))
            .collect();
        Snapshot {
            seq: self.seq,
            res: u8::from(vp.res),
            cells,
            units: self
                .all_units()
                .into_iter()
                .filter(|u| vp.contains_point(u.lat, u.lon))
                .cloned()
                .collect(),
            sensors: self
                .all_sensors()
                .into_iter()
                .filter(|s| vp.contains_point(s.lat, s.lon))
                .cloned()
                .collect(),
            incidents: self.all_incidents().into_iter().cloned().collect(),
            alerts: self.all_alerts().into_iter().cloned().collect(),
        }
    }

    /// The digest of the merged picture: the same as [`crate::Picture::digest`]
    /// of one picture holding everything the shards hold.
    pub fn digest(&self) -> String {
        let cells: Vec<CellView> = self
            .all_cells()
            .into_iter()
            .filter_map(|c| self.merged_cell(c).map(|a| self.view(c, a)))
            .collect();
        let sensors = self
            .all_sensors()
            .into_iter()
            .map(|s| {
                let mut s = s.clone();
                s.freshness = None;
                s
            })
            .collect();
        let units = self
            .all_units()
            .into_iter()
            .map(|u| {
                let mut u = u.clone();
                u.freshness = None;
                u.silent = None;
                u.status_age_ms = None;
                u
            })
            .collect();
        // Clock alerts (shard ids `S<n>`) are outside digests.
        let alerts = self
            .all_alerts()
            .into_iter()
            .filter(|a| shard_alert_id(&a.id).is_some_and(|(_, id)| !id.starts_with('S')))
            .collect();
        canonical_digest(sensors, units, self.all_incidents(), cells, alerts)
    }
}

/// Hex SHA-256 of a picture's canonical content (views without anything
/// derived from the clock; cells sorted by index; alerts by content, their
/// ids being labels: shards number theirs independently).
pub(crate) fn canonical_digest(
    sensors: Vec<SensorView>,
    units: Vec<UnitView>,
    incidents: Vec<&IncidentView>,
    mut cells: Vec<CellView>,
    alerts: Vec<&AlertView>,
) -> String {
    #[derive(Serialize)]
    struct Alert<'a> {
        kind: &'a str,
        entity: &'a str,
        related: Option<&'a str>,
        level: u8,
        message: &'a str,
        ts_ms: EpochMs,
        acked: bool,
    }
    #[derive(Serialize)]
    struct Canonical<'a> {
        sensors: Vec<SensorView>,
        units: Vec<UnitView>,
        incidents: Vec<&'a IncidentView>,
        cells: Vec<CellView>,
        alerts: Vec<Alert<'a>>,
    }
    cells.sort_unstable_by_key(|c| c.h3);
    let mut alerts: Vec<Alert<'_>> = alerts
        .into_iter()
        .map(|a| Alert {
            kind: &a.kind,
            entity: &a.entity,
            related: a.related.as_deref(),
            level: a.level,
            message: &a.message,
            ts_ms: a.ts_ms,
            acked: a.acked,
        })
        .collect();
    alerts.sort_by(|a, b| {
        (
            a.ts_ms, a.kind, a.entity, a.related, a.level, a.message, a.acked,
        )
            .cmp(&(
                b.ts_ms, b.kind, b.entity, b.related, b.level, b.message, b.acked,
            ))
    });
    let canonical = Canonical {
        sensors,
        units,
        incidents,
        cells,
        alerts,
    };
    let mut hasher = Sha256::new();
    // Serialising plain structs of strings and numbers cannot fail; a
    // failure would only make the digest cover less, never panic.
    if let Ok(bytes) = serde_json::to_vec(&canonical) {
        hasher.update(&bytes);
    }
    hex::encode(hasher.finalize())
}
