//! Areas that must keep an available unit of given types: configured
//! sectors, and incidents whose keyword has requirements. Counts are kept
//! per event, so "left with no available HLF" is decided by the events
//! alone, not by when ticks happen.

use std::collections::{BTreeMap, HashMap};

use h3o::CellIndex;
use serde::Deserialize;

use crate::view::StatusClass;

/// A configured sector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sector {
    /// Stable id, e.g. `wilhelmsburg`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// GeoJSON Polygon or MultiPolygon.
    pub geometry: serde_json::Value,
    /// Unit types of which at least one must stay available inside.
    pub require: Vec<String>,
}

/// What a unit contributes to area counts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Presence {
    pub cell: CellIndex,
    pub class: StatusClass,
    pub unit_type: String,
}

#[derive(Debug)]
struct Area {
    name: String,
    require: Vec<String>,
    /// Available units inside, by required type.
    available: BTreeMap<String, u32>,
}

/// An area that just lost its last available unit of a type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shortage {
    pub area: String,
    pub name: String,
    pub unit_type: String,
}

/// All areas and which cells they cover.
#[derive(Debug, Default)]
pub(crate) struct Areas {
    areas: BTreeMap<String, Area>,
    by_cell: HashMap<CellIndex, Vec<String>>,
}

impl Areas {
    /// Adds (or replaces) an area covering `cells`, counting the units
    /// already inside.
    pub fn insert<'a>(
        &mut self,
        key: &str,
        name: &str,
        cells: &[CellIndex],
        require: &[String],
        units: impl Iterator<Item = &'a Presence>,
    ) {
        self.remove(key);
        if require.is_empty() {
            return;
        }
        for c in cells {
            self.by_cell.entry(*c).or_default().push(key.to_owned());
        }
        let mut available: BTreeMap<String, u32> = require.iter().map(|t| (t.clone(), 0)).collect();
        for p in units {
            if p.class == StatusClass::Available
                && cells.binary_search(&p.cell).is_ok()
                && let Some(n) = available.get_mut(&p.unit_type)
            {
                *n += 1;
            }
        }
        self.areas.insert(
            key.to_owned(),
            Area {
                name: name.to_owned(),
                require: require.to_vec(),
                available,
            },
        );
    }

    /// Removes an area.
    pub fn remove(&mut self, key: &str) {
        if self.areas.remove(key).is_some() {
            self.by_cell.retain(|_, keys| {
                keys.retain(|k| k != key);
                !keys.is_empty()
            });
        }
    }

    /// Whether any area exists (cheap early exit on the hot path).
    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// Updates counts for a unit that changed from `old` to `new`, and
    /// returns the areas that lost their last available unit of a type.
    pub fn unit_changed(
        &mut self,
        old: Option<&Presence>,
        new: Option<&Presence>,
    ) -> Vec<Shortage> {
        if old == new || self.areas.is_empty() {
            return Vec::new();
        }
        let available =
            |p: Option<&Presence>| p.filter(|p| p.class == StatusClass::Available).cloned();
        let (old, new) = (available(old), available(new));
        if let Some(n) = &new {
            for key in self.by_cell.get(&n.cell).into_iter().flatten() {
                if let Some(count) = self
                    .areas
                    .get_mut(key)
                    .and_then(|a| a.available.get_mut(&n.unit_type))
                {
                    *count += 1;
                }
            }
        }
        let mut short = Vec::new();
        if let Some(o) = &old {
            for key in self.by_cell.get(&o.cell).into_iter().flatten() {
                let Some(area) = self.areas.get_mut(key) else {
                    continue;
                };
                if let Some(count) = area.available.get_mut(&o.unit_type) {
                    *count = count.saturating_sub(1);
                    if *count == 0 && area.require.contains(&o.unit_type) {
                        short.push(Shortage {
                            area: key.clone(),
                            name: area.name.clone(),
                            unit_type: o.unit_type.clone(),
                        });
                    }
                }
            }
        }
        short
    }
}
