//! Load mode: `N` sensors and `M` units spread over Hamburg, publishing
//! round-robin at a target rate (or as fast as the broker takes them), for
//! the benchmarks. Deterministic for a seed like every scenario: places,
//! kinds and values come from the seed, times from the wall clock.

use std::f64::consts::TAU;

use ingest::wire::{
    SensorMetaMsg, SensorObsMsg, UnitMetaMsg, UnitPosMsg, UnitStatusMsg, WireTime,
    sensor_meta_topic, sensor_obs_topic, unit_meta_topic, unit_pos_topic, unit_status_topic,
};

use crate::geo::{LatLon, round_to};
use crate::rng::Rng;
use crate::scenario::Msg;

/// At most this many simulated sensors.
pub const MAX_LOAD_SENSORS: u32 = 1_000_000;
/// At most this many simulated units.
pub const MAX_LOAD_UNITS: u32 = 100_000;
/// Every this many positions a unit also reports a radio status.
const STATUS_EVERY: u64 = 10;
const PLACES_STREAM: u64 = 3_000;
const NOISE_STREAM: u64 = 3_001;

/// What a load publishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    /// Simulated sensors (observations).
    pub sensors: u32,
    /// Simulated units (positions, now and then a radio status).
    pub units: u32,
    /// Messages per second; 0 publishes as fast as the broker takes them.
    pub rate: f64,
}

impl LoadOptions {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), String> {
        if self.sensors == 0 && self.units == 0 {
            return Err("a load needs at least one sensor or unit".to_owned());
        }
        if self.sensors > MAX_LOAD_SENSORS || self.units > MAX_LOAD_UNITS {
            return Err(format!(
                "a load has at most {MAX_LOAD_SENSORS} sensors and {MAX_LOAD_UNITS} units"
            ));
        }
        if !(self.rate.is_finite() && self.rate >= 0.0 && self.rate <= 10_000_000.0) {
            return Err(format!(
                "rate must be 0 (as fast as possible) or a positive number of messages per second, got {}",
                self.rate
            ));
        }
        Ok(())
    }
}

/// Sensor kinds of a load, with their unit, typical value and swing.
const KINDS: &[(&str, &str, f64, f64)] = &[
    ("water_level", "m NHN", 2.5, 2.0),
    ("rain_rate", "mm/h", 8.0, 8.0),
    ("gas_co", "ppm", 10.0, 8.0),
    ("pm10", "µg/m³", 40.0, 30.0),
    ("wind_speed", "m/s", 12.0, 8.0),
    ("people_count", "persons", 200.0, 150.0),
    ("road_passable", "0/1", 0.5, 0.5),
    ("gate_closed", "0/1", 0.5, 0.5),
];

/// Hamburg, the box of the fusion benchmark.
const SOUTH: f64 = 53.40;
const NORTH: f64 = 53.73;
const WEST: f64 = 9.74;
const EAST: f64 = 10.32;

#[derive(Debug, Clone)]
struct LoadSensor {
    kind: usize,
    pos: LatLon,
    phase: f64,
    sent: u64,
}

#[derive(Debug, Clone)]
struct LoadUnit {
    pos: LatLon,
    heading: f64,
    sent: u64,
}

/// State of a load run.
#[derive(Debug, Clone)]
pub(crate) struct LoadScenario {
    opts: LoadOptions,
    space: String,
    sensors: Vec<LoadSensor>,
    units: Vec<LoadUnit>,
    noise: Rng,
    /// Round-robin position over sensors then units.
    next: usize,
    /// Messages counted against the rate so far.
    counted: u64,
    started_ms: Option<i64>,
    described: bool,
    seq_base: u64,
}

impl LoadScenario {
    pub(crate) fn new(opts: LoadOptions, space: &str, seed: u64) -> Self {
        let mut places = Rng::new(seed, PLACES_STREAM);
        let point = |r: &mut Rng| LatLon::new(r.range(SOUTH, NORTH), r.range(WEST, EAST));
        let sensors = (0..opts.sensors)
            .map(|_| LoadSensor {
                kind: places.index(KINDS.len()),
                pos: point(&mut places),
                phase: places.range(0.0, TAU),
                sent: 0,
            })
            .collect();
        let units = (0..opts.units)
            .map(|_| LoadUnit {
                pos: point(&mut places),
                heading: places.range(0.0, 360.0),
                sent: 0,
            })
            .collect();
        LoadScenario {
            opts,
            space: space.to_owned(),
            sensors,
            units,
            noise: Rng::new(seed, NOISE_STREAM),
            next: 0,
            counted: 0,
            started_ms: None,
            described: false,
            seq_base: 0,
        }
    }

    /// What is due at `wall_ms` at the target rate (one message at the very
    /// start, then the rate's share of the time since).
    pub(crate) fn step(&mut self, wall_ms: i64) -> Vec<Msg> {
        let started = *self.started_ms.get_or_insert(wall_ms);
        let elapsed_s = wall_ms.saturating_sub(started).max(0) as f64 / 1000.0;
        let due = (self.opts.rate * elapsed_s).floor() as u64 + 1;
        let n = due.saturating_sub(self.counted);
        self.burst(usize::try_from(n).unwrap_or(usize::MAX), wall_ms)
    }

    /// The next `n` messages round-robin, after the descriptions if they
    /// have not gone out yet (descriptions do not count).
    pub(crate) fn burst(&mut self, n: usize, wall_ms: i64) -> Vec<Msg> {
        let mut out = Vec::with_capacity(n.min(1 << 16));
        if !self.described {
            self.described = true;
            self.seq_base = u64::try_from(wall_ms).unwrap_or(0);
            self.describe(&mut out);
        }
        let total = self.sensors.len() + self.units.len();
        if total == 0 {
            return out;
        }
        let ts = WireTime::rfc3339(wall_ms);
        for _ in 0..n {
            let i = self.next % total;
            self.next = (i + 1) % total;
            self.counted += 1;
            if i < self.sensors.len() {
                self.observation(i, &ts, &mut out);
            } else {
                self.position(i - self.sensors.len(), &ts, &mut out);
            }
        }
        out
    }

    fn describe(&self, out: &mut Vec<Msg>) {
        for (i, s) in self.sensors.iter().enumerate() {
            let (kind, unit, ..) = KINDS[s.kind];
            let meta = SensorMetaMsg {
                kind: kind.to_owned(),
                unit: unit.to_owned(),
                lat: round_to(s.pos.lat, 6),
                lon: round_to(s.pos.lon, 6),
                name: None,
                thresholds: None,
            };
            out.extend(Msg::json(
                sensor_meta_topic(&self.space, &sensor_id(i)),
                &meta,
                true,
            ));
        }
        for i in 0..self.units.len() {
            let meta = UnitMetaMsg {
                callsign: format!("LAST {}", i + 1),
                unit_type: "HLF".to_owned(),
                org: "fire".to_owned(),
                strength: None,
            };
            out.extend(Msg::json(
                unit_meta_topic(&self.space, &unit_id(i)),
                &meta,
                true,
            ));
        }
    }

    fn observation(&mut self, i: usize, ts: &WireTime, out: &mut Vec<Msg>) {
        let s = &mut self.sensors[i];
        let (_, _, base, swing) = KINDS[s.kind];
        let wave = (s.phase + s.sent as f64 * 0.05).sin();
        let raw = base + swing * wave + self.noise.noise(swing * 0.02, swing * 0.06);
        let value = if swing == 0.5 && base == 0.5 {
            // A 0/1 kind.
            if wave >= 0.0 { 1.0 } else { 0.0 }
        } else {
            round_to(raw.max(0.0), 2)
        };
        let msg = SensorObsMsg {
            ts: ts.clone(),
            value,
            lat: None,
            lon: None,
            seq: Some(self.seq_base.saturating_add(s.sent)),
            quality: None,
        };
        s.sent += 1;
        out.extend(Msg::json(
            sensor_obs_topic(&self.space, &sensor_id(i)),
            &msg,
            false,
        ));
    }

    fn position(&mut self, i: usize, ts: &WireTime, out: &mut Vec<Msg>) {
        let u = &mut self.units[i];
        u.heading = (u.heading + self.noise.noise(10.0, 30.0)).rem_euclid(360.0);
        let h = u.heading.to_radians();
        let next = u.pos.offset_m(20.0 * h.cos(), 20.0 * h.sin());
        // Stay inside the box: turn round at its edges.
        if (SOUTH..NORTH).contains(&next.lat) && (WEST..EAST).contains(&next.lon) {
            u.pos = next;
        } else {
            u.heading = (u.heading + 180.0).rem_euclid(360.0);
        }
        let msg = UnitPosMsg {
            ts: ts.clone(),
            lat: round_to(u.pos.lat, 6),
            lon: round_to(u.pos.lon, 6),
            heading: Some(round_to(u.heading, 1).rem_euclid(360.0)),
            speed: Some(10.0),
            accuracy: Some(8.0),
            source: Some("tracker".to_owned()),
        };
        let status = u
            .sent
            .is_multiple_of(STATUS_EVERY)
            .then(|| [2u8, 3, 4, 1][(u.sent / STATUS_EVERY % 4) as usize]);
        u.sent += 1;
        out.extend(Msg::json(
            unit_pos_topic(&self.space, &unit_id(i)),
            &msg,
            false,
        ));
        if let Some(status) = status {
            let msg = UnitStatusMsg {
                ts: ts.clone(),
                status,
                source: None,
            };
            out.extend(Msg::json(
                unit_status_topic(&self.space, &unit_id(i)),
                &msg,
                false,
            ));
        }
    }
}

fn sensor_id(i: usize) -> String {
    format!("load-s-{i:07}")
}

fn unit_id(i: usize) -> String {
    format!("load-u-{i:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::T0_MS;

    fn opts(rate: f64) -> LoadOptions {
        LoadOptions {
            sensors: 50,
            units: 10,
            rate,
        }
    }

    #[test]
    fn keeps_its_rate_and_is_deterministic() {
        let run = |seed| {
            let mut l = LoadScenario::new(opts(1000.0), "drill-load", seed);
            let mut counted = Vec::new();
            let mut all = Vec::new();
            for k in 0..=20 {
                let msgs = l.step(T0_MS + k * 100);
                counted.push(l.counted);
                all.extend(msgs);
            }
            (counted, all)
        };
        let (counted, a) = run(3);
        // 1,000 per second over two seconds, plus the first.
        assert_eq!(counted.last(), Some(&2_001));
        assert_eq!(counted[10], 1_001);
        let (_, b) = run(3);
        assert_eq!(a, b);
        let (_, c) = run(4);
        assert_ne!(a, c);
        // Descriptions once, retained; the rest decode.
        let metas = a.iter().filter(|m| m.topic.ends_with("/meta")).count();
        assert_eq!(metas, 60);
        for m in &a {
            if m.topic.ends_with("/obs") {
                let o: SensorObsMsg = serde_json::from_slice(&m.payload).expect("obs");
                assert!(o.value.is_finite() && o.value >= 0.0);
            } else if m.topic.ends_with("/pos") {
                let p: UnitPosMsg = serde_json::from_slice(&m.payload).expect("pos");
                assert!((SOUTH..NORTH).contains(&p.lat) && (WEST..EAST).contains(&p.lon));
            }
        }
        assert!(a.iter().any(|m| m.topic.ends_with("/status")));
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(opts(0.0).validate().is_ok());
        assert!(opts(-1.0).validate().is_err());
        assert!(opts(f64::NAN).validate().is_err());
        let none = LoadOptions {
            sensors: 0,
            units: 0,
            rate: 1.0,
        };
        assert!(none.validate().is_err());
        let huge = LoadOptions {
            sensors: MAX_LOAD_SENSORS + 1,
            units: 0,
            rate: 1.0,
        };
        assert!(huge.validate().is_err());
    }
}
