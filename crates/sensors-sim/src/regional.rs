//! Region-aware publishing (DESIGN §7): every message goes to
//! `rm/v1/{space}/r/{region}/…`, the region being the H3 cell of its
//! entity's position, so that fusion shards can subscribe to the regions
//! they own only.
//!
//! A unit's description and radio status carry no position: they go to the
//! region of its last position. When a position crosses into another
//! region it is published to both (the old region's shard lets the unit
//! go), and the new region first gets the unit's description and last
//! status again (its shard takes the unit whole). A server that subscribes
//! to everything sees those repeats as duplicates and drops them.

use std::collections::HashMap;

use ingest::topic::{Route, parse, with_region};
use ingest::wire::{IncidentMsg, SensorMetaMsg, SensorObsMsg, UnitPosMsg, region_of};

use crate::Msg;

/// Rewrites contract topics into region-aware ones.
#[derive(Debug)]
pub struct Regionalizer {
    res: u8,
    sensors: HashMap<String, String>,
    units: HashMap<String, String>,
    incidents: HashMap<String, String>,
    /// The last description and status of each unit, for a new region.
    unit_meta: HashMap<String, Msg>,
    unit_status: HashMap<String, Msg>,
}

/// The first position of a GeoJSON geometry.
fn first_position(v: &serde_json::Value) -> Option<(f64, f64)> {
    let coords = v.get("coordinates")?;
    let mut c = coords;
    while let Some(first) = c.as_array()?.first() {
        if first.is_number() {
            let lon = first.as_f64()?;
            let lat = c.as_array()?.get(1)?.as_f64()?;
            return Some((lat, lon));
        }
        c = first;
    }
    None
}

impl Regionalizer {
    /// Regions of H3 resolution `res` (3 by default).
    pub fn new(res: u8) -> Regionalizer {
        Regionalizer {
            res,
            sensors: HashMap::new(),
            units: HashMap::new(),
            incidents: HashMap::new(),
            unit_meta: HashMap::new(),
            unit_status: HashMap::new(),
        }
    }

    fn to(&self, region: &str, msg: &Msg) -> Msg {
        Msg {
            topic: with_region(&msg.topic, region).unwrap_or_else(|| msg.topic.clone()),
            payload: msg.payload.clone(),
            retain: msg.retain,
        }
    }

    /// The messages to publish for one contract message. A message whose
    /// region is not known yet (a unit's description before its first
    /// position) is held back until it is.
    pub fn route(&mut self, msg: Msg) -> Vec<Msg> {
        let Ok(topic) = parse(&msg.topic) else {
            return vec![msg];
        };
        let res = self.res;
        match topic.route {
            Route::SensorMeta(id) => {
                let Ok(m) = serde_json::from_slice::<SensorMetaMsg>(&msg.payload) else {
                    return vec![msg];
                };
                let Some(region) = region_of(m.lat, m.lon, res) else {
                    return vec![msg];
                };
                self.sensors.insert(id.to_owned(), region.clone());
                vec![self.to(&region, &msg)]
            }
            Route::SensorObs(id) => {
                if let Ok(o) = serde_json::from_slice::<SensorObsMsg>(&msg.payload)
                    && let (Some(lat), Some(lon)) = (o.lat, o.lon)
                    && let Some(region) = region_of(lat, lon, res)
                {
                    self.sensors.insert(id.to_owned(), region);
                }
                match self.sensors.get(id) {
                    Some(region) => vec![self.to(region, &msg)],
                    None => vec![msg],
                }
            }
            Route::UnitMeta(id) | Route::UnitStatus(id) => {
                let id = id.to_owned();
                let out = self
                    .units
                    .get(&id)
                    .map(|region| vec![self.to(region, &msg)])
                    .unwrap_or_default();
                if matches!(topic.route, Route::UnitMeta(_)) {
                    self.unit_meta.insert(id, msg);
                } else {
                    self.unit_status.insert(id, msg);
                }
                out
            }
            Route::UnitPos(id) => {
                let Ok(p) = serde_json::from_slice::<UnitPosMsg>(&msg.payload) else {
                    return vec![msg];
                };
                let Some(region) = region_of(p.lat, p.lon, res) else {
                    return vec![msg];
                };
                let old = self.units.insert(id.to_owned(), region.clone());
                let mut out = Vec::new();
                if old.as_deref() != Some(region.as_str()) {
                    if let Some(old) = &old {
                        out.push(self.to(old, &msg));
                    }
                    if let Some(m) = self.unit_meta.get(id) {
                        out.push(self.to(&region, m));
                    }
                    if let Some(s) = self.unit_status.get(id) {
                        out.push(self.to(&region, s));
                    }
                }
                out.push(self.to(&region, &msg));
                out
            }
            Route::Incident(id) => {
                if let Ok(i) = serde_json::from_slice::<IncidentMsg>(&msg.payload)
                    && let Some((lat, lon)) = first_position(&i.geometry)
                    && let Some(region) = region_of(lat, lon, res)
                {
                    self.incidents.insert(id.to_owned(), region);
                }
                match self.incidents.get(id) {
                    Some(region) => vec![self.to(region, &msg)],
                    None => vec![msg],
                }
            }
            Route::DeadLetter => vec![msg],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &str, retain: bool) -> Msg {
        Msg {
            topic: topic.to_owned(),
            payload: payload.as_bytes().to_vec(),
            retain,
        }
    }

    #[test]
    fn a_unit_crossing_regions_is_handed_over() {
        let mut r = Regionalizer::new(7);
        // Held until the unit has a position.
        assert!(
            r.route(msg(
                "rm/v1/live/unit/u1/meta",
                r#"{"callsign":"HLF 1","type":"HLF","org":"fire"}"#,
                true
            ))
            .is_empty()
        );
        assert!(
            r.route(msg(
                "rm/v1/live/unit/u1/status",
                r#"{"ts":1,"status":2}"#,
                false
            ))
            .is_empty()
        );
        let here = region_of(53.55, 9.99, 7).expect("region");
        let there = region_of(53.60, 10.10, 7).expect("region");
        assert_ne!(here, there);
        let first = r.route(msg(
            "rm/v1/live/unit/u1/pos",
            r#"{"ts":2,"lat":53.55,"lon":9.99}"#,
            false,
        ));
        let topics: Vec<&str> = first.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                format!("rm/v1/live/r/{here}/unit/u1/meta"),
                format!("rm/v1/live/r/{here}/unit/u1/status"),
                format!("rm/v1/live/r/{here}/unit/u1/pos"),
            ]
        );
        assert!(first[0].retain && !first[2].retain);
        let same = r.route(msg(
            "rm/v1/live/unit/u1/pos",
            r#"{"ts":3,"lat":53.5501,"lon":9.9901}"#,
            false,
        ));
        assert_eq!(same.len(), 1);
        let moved = r.route(msg(
            "rm/v1/live/unit/u1/pos",
            r#"{"ts":4,"lat":53.60,"lon":10.10}"#,
            false,
        ));
        let topics: Vec<&str> = moved.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                format!("rm/v1/live/r/{here}/unit/u1/pos"),
                format!("rm/v1/live/r/{there}/unit/u1/meta"),
                format!("rm/v1/live/r/{there}/unit/u1/status"),
                format!("rm/v1/live/r/{there}/unit/u1/pos"),
            ]
        );
        let status = r.route(msg(
            "rm/v1/live/unit/u1/status",
            r#"{"ts":5,"status":3}"#,
            false,
        ));
        assert_eq!(
            status[0].topic,
            format!("rm/v1/live/r/{there}/unit/u1/status")
        );
    }

    #[test]
    fn sensors_and_incidents_go_to_their_region() {
        let mut r = Regionalizer::new(3);
        let m = r.route(msg(
            "rm/v1/live/sensor/g1/meta",
            r#"{"kind":"water_level","unit":"m NHN","lat":53.5456,"lon":9.9664}"#,
            true,
        ));
        assert_eq!(m[0].topic, "rm/v1/live/r/831f15fffffffff/sensor/g1/meta");
        let o = r.route(msg(
            "rm/v1/live/sensor/g1/obs",
            r#"{"ts":1,"value":4.2}"#,
            false,
        ));
        assert_eq!(o[0].topic, "rm/v1/live/r/831f15fffffffff/sensor/g1/obs");
        let i = r.route(msg("rm/v1/live/incident/i1", r#"{"ts":1,"keyword":"FLUT","severity":3,"geometry":{"type":"Polygon","coordinates":[[[9.96,53.54],[9.98,53.54],[9.98,53.55],[9.96,53.54]]]}}"#, true));
        assert_eq!(i[0].topic, "rm/v1/live/r/831f15fffffffff/incident/i1");
        let closed = r.route(msg("rm/v1/live/incident/i1", "", true));
        assert_eq!(closed[0].topic, "rm/v1/live/r/831f15fffffffff/incident/i1");
        // Unknown sensor: published as it is.
        let o = r.route(msg(
            "rm/v1/live/sensor/g9/obs",
            r#"{"ts":1,"value":4.2}"#,
            false,
        ));
        assert_eq!(o[0].topic, "rm/v1/live/sensor/g9/obs");
    }
}
