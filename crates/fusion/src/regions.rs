//! Regions for scale-out (DESIGN §7): the picture split by coarse H3 cells
//! (resolution 3 by default), each owned by one fusion shard.
//!
//! Which shard owns a region is a pure function of the region, the number of
//! shards and an optional table of explicit assignments, so every shard,
//! gateway and publisher agrees on it without talking to each other.

use std::collections::BTreeMap;

use h3o::{CellIndex, LatLng, Resolution};
use serde_json::json;

use crate::coverage::cover;
use crate::viewport::Bbox;

/// Most regions a shard may subscribe to (one topic filter each).
pub const MAX_REGIONS: usize = 60_000;

/// How regions map to shards.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionMap {
    res: Resolution,
    shards: u32,
    assign: BTreeMap<CellIndex, u32>,
}

impl RegionMap {
    /// Regions at `res`, split over `shards`; `assign` overrides the
    /// default (a hash of the region) for the regions it names.
    pub fn new(
        res: Resolution,
        shards: u32,
        assign: BTreeMap<CellIndex, u32>,
    ) -> Result<RegionMap, String> {
        if shards == 0 {
            return Err("the number of shards must be at least 1".to_owned());
        }
        if let Some((cell, s)) = assign
            .iter()
            .find(|(c, s)| **s >= shards || c.resolution() != res)
        {
            return Err(format!(
                "region {cell} assigned to shard {s}: regions are cells of resolution {} and shards are numbered 0 to {}",
                u8::from(res),
                shards - 1
            ));
        }
        Ok(RegionMap {
            res,
            shards,
            assign,
        })
    }

    /// The regions' resolution.
    pub fn res(&self) -> Resolution {
        self.res
    }

    /// The number of shards.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The region a position lies in (None for an invalid position).
    pub fn region_of(&self, lat: f64, lon: f64) -> Option<CellIndex> {
        LatLng::new(lat, lon).ok().map(|p| p.to_cell(self.res))
    }

    /// The shard that owns a region.
    pub fn shard_of(&self, region: CellIndex) -> u32 {
        if let Some(s) = self.assign.get(&region) {
            return *s;
        }
        // SplitMix64's finaliser: neighbouring indexes spread evenly.
        let mut x = u64::from(region);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x % u64::from(self.shards)) as u32
    }

    /// The regions of `shard` that meet `area` (every region on Earth
    /// without one), sorted; refused beyond [`MAX_REGIONS`].
    pub fn regions_of(&self, shard: u32, area: Option<&Bbox>) -> Result<Vec<CellIndex>, String> {
        let all: Vec<CellIndex> = match area {
            None => {
                let n = self.res.cell_count();
                if n > MAX_REGIONS as u64 * u64::from(self.shards) {
                    return Err(format!(
                        "{n} regions of resolution {} on Earth: name an area (the regions' resolution is too fine for the whole world)",
                        u8::from(self.res)
                    ));
                }
                CellIndex::base_cells()
                    .flat_map(|b| b.children(self.res))
                    .collect()
            }
            Some(b) => {
                let ring = json!({
                    "type": "Polygon",
                    "coordinates": [[
                        [b.west, b.south], [b.east, b.south], [b.east, b.north],
                        [b.west, b.north], [b.west, b.south]
                    ]]
                });
                cover(&ring, self.res, MAX_REGIONS * self.shards as usize)
                    .map_err(|e| format!("the shard area: {e}"))?
            }
        };
        let mut mine: Vec<CellIndex> = all
            .into_iter()
            .filter(|r| self.shard_of(*r) == shard)
            .collect();
        mine.sort_unstable();
        if mine.len() > MAX_REGIONS {
            return Err(format!(
                "shard {shard} would own {} regions, more than {MAX_REGIONS}: use more shards, a smaller area or coarser regions",
                mine.len()
            ));
        }
        Ok(mine)
    }
}

/// What one shard owns: the picture of a shard keeps only units whose
/// position lies in one of its regions, and hands the others over (they
/// leave its picture; the shard that owns their new region takes them).
#[derive(Debug, Clone, PartialEq)]
pub struct Ownership {
    /// The map.
    pub map: RegionMap,
    /// This shard's number, 0-based.
    pub shard: u32,
}

impl Ownership {
    /// Whether this shard owns the region of a position.
    pub fn owns(&self, lat: f64, lon: f64) -> bool {
        self.map
            .region_of(lat, lon)
            .is_some_and(|r| self.map.shard_of(r) == self.shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_split_over_shards_and_follow_assignments() {
        let map = RegionMap::new(Resolution::Three, 2, BTreeMap::new()).expect("map");
        let zero = map.regions_of(0, None).expect("regions");
        let one = map.regions_of(1, None).expect("regions");
        assert_eq!(zero.len() + one.len(), 41_162);
        // Spread roughly evenly.
        assert!(
            zero.len().abs_diff(one.len()) < 1_000,
            "{} {}",
            zero.len(),
            one.len()
        );
        assert!(zero.iter().all(|r| !one.contains(r)));
        let st_pauli = map.region_of(53.5456, 9.9664).expect("region");
        let owner = map.shard_of(st_pauli);
        let flipped = RegionMap::new(
            Resolution::Three,
            2,
            BTreeMap::from([(st_pauli, 1 - owner)]),
        )
        .expect("map");
        assert_eq!(flipped.shard_of(st_pauli), 1 - owner);
        let own = Ownership {
            map: flipped,
            shard: 1 - owner,
        };
        assert!(own.owns(53.5456, 9.9664));
        assert!(RegionMap::new(Resolution::Three, 0, BTreeMap::new()).is_err());
        assert!(RegionMap::new(Resolution::Three, 2, BTreeMap::from([(st_pauli, 2)])).is_err());
        let fine = RegionMap::new(Resolution::Seven, 2, BTreeMap::new()).expect("map");
        assert!(fine.regions_of(0, None).is_err());
        let hamburg = Bbox::new(9.74, 53.40, 10.32, 53.73).expect("bbox");
        let a = fine.regions_of(0, Some(&hamburg)).expect("regions");
        let b = fine.regions_of(1, Some(&hamburg)).expect("regions");
        assert!(a.len() > 50 && b.len() > 50, "{} {}", a.len(), b.len());
        let centre = fine.region_of(53.55, 10.0).expect("region");
        assert!(a.contains(&centre) || b.contains(&centre));
    }
}
