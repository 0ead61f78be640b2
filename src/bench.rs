//! `rescuemate bench fusion`: how fast the fusion engine takes events, next
//! to the bare cost of what it must do at least (find the H3 cell of a point
//! and bump a counter in a hash map), and how much memory the picture needs
//! per active finest-resolution cell.
//!
//! Everything is generated before any clock starts: a deterministic
//! workload over a Hamburg-sized area (static sensors, moving units, radio
//! status changes; see [`Mix`]). The engine part applies every event and
//! flushes every [`FLUSH_EVERY`] events, as the owner task does once per
//! tick. The raw part looks up the cell of the same point for every event.
//! Both run several times, interleaved, and the median is reported.
//!
//! Memory is the growth of the resident set size while the first picture is
//! built, divided by the number of cells at the finest resolution: it covers
//! everything the picture holds (entities, cell members, aggregates at every
//! resolution, alerts), which is what a deployment pays per active cell.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use fusion::{
    Catalogue, Envelope, Event, Outcome, Picture, PictureConfig, READ_AHEAD, Resolution,
    SensorMeta, SensorObs, UnitMeta, UnitPos, UnitStatus, Viewport,
};
use h3o::{CellIndex, LatLng};
use ingest::log::{EventLog, LogConfig, Record, Window};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Events per second through the fusion engine, the raw h3o + hash-map
    /// rate on the same points, and memory per active finest cell.
    Fusion(FusionArgs),
    /// Messages per second our server accepts from Mosquitto, next to a
    /// bare MQTT subscriber on the same broker (`ingest_ratio`).
    Ingest(crate::bench_ingest::IngestArgs),
    /// The whole pipeline: ingest ratio, publish → websocket latency under
    /// load with many clients, server CPU and memory, first-snapshot time.
    E2e(crate::bench_e2e::E2eArgs),
}

/// Options of `bench fusion`.
#[derive(Debug, Args)]
pub struct FusionArgs {
    /// Print one JSON object with the figures as the last line.
    #[arg(long)]
    json: bool,
    /// Number of events. The populations scale with it (one sensor per 50
    /// events, one unit per 500) up to 20,000 sensors and 2,000 units.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Seed of the workload generator: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timed runs of each part; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Runs a benchmark to completion.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Fusion(a) => fusion_bench(&a),
        BenchCommand::Ingest(a) => crate::bench_ingest::ingest_bench(&a),
        BenchCommand::E2e(a) => crate::bench_e2e::e2e_bench(&a),
    }
}

/// Events per flush: a 50 ms tick's worth at 20,000 events per second.
const FLUSH_EVERY: usize = 1_000;
/// Picture clock speed of the workload: events per second of event time.
const EVENTS_PER_PICTURE_SECOND: i64 = 20_000;
/// Start of the picture clock (2026-09-20T12:00:00Z).
const T0_MS: i64 = 1_789_905_600_000;
/// The targets.
const TARGET_RATIO: f64 = 0.5;
const TARGET_BYTES_PER_CELL: f64 = 256.0;
/// Events per second replay must read from the log (issue: event log).
const TARGET_REPLAY: f64 = 1_000_000.0;

const MIN_EVENTS: usize = 1_000;
const MAX_EVENTS: usize = 50_000_000;
const MAX_SENSORS: usize = 20_000;
const MAX_UNITS: usize = 2_000;
const EVENTS_PER_SENSOR: usize = 50;
const EVENTS_PER_UNIT: usize = 500;

/// Shares of the event stream after the retained meta messages. They follow
/// from report intervals: a sensor every 30 s (20,000 → 667/s), a vehicle
/// position every 10 s (2,000 → 200/s), a radio status change every 70 s
/// or so per unit during a major incident (→ ~28/s): about 75 / 22 / 3.
const SHARE_OBS: f64 = 0.75;
const SHARE_POS: f64 = 0.22;
/// Of the observations, this many are QoS 1 re-deliveries of the sensor's
/// previous message (same `seq`): the engine drops them as duplicates.
const SHARE_REDELIVERED: f64 = 0.005;
/// Sensors that sit where the hazard is: their values swing across the
/// first two or three thresholds. The others stay below the first.
const SHARE_HAZARD_SENSORS: f64 = 0.2;
/// Units moving (radio status 1, 3, 7) at the start; the rest are parked.
const MOVING_STATUSES: [u8; 3] = [1, 3, 7];

/// Hamburg's extent, roughly: 37 km × 39 km.
const AREA: Area = Area {
    south: 53.40,
    north: 53.73,
    west: 9.74,
    east: 10.32,
};

/// Where half the sensors cluster (St. Pauli, HafenCity, Wilhelmsburg).
const HOTSPOTS: [(f64, f64); 3] = [(53.5457, 9.9666), (53.5413, 10.0008), (53.4960, 10.0110)];
/// Spread of a hotspot cluster, metres.
const HOTSPOT_SIGMA_M: f64 = 1_500.0;

/// Sensor kinds by share of the sensor population (names from the
/// catalogue, which also gives their units and thresholds).
const KIND_SHARES: [(&str, f64); 8] = [
    ("water_level", 0.10),
    ("rain_rate", 0.15),
    ("wind_speed", 0.10),
    ("pm10", 0.15),
    ("gas_co", 0.10),
    ("people_count", 0.10),
    ("gate_closed", 0.05),
    ("road_passable", 0.25),
];

/// Unit types with their organisation.
const UNIT_TYPES: [(&str, &str); 8] = [
    ("HLF", "fire"),
    ("LF", "fire"),
    ("DLK", "fire"),
    ("RTW", "ems"),
    ("NEF", "ems"),
    ("GW-W", "thw"),
    ("MTW", "thw"),
    ("FuStW", "police"),
];

const METRES_PER_DEGREE_LAT: f64 = 111_320.0;

#[derive(Debug, Clone, Copy)]
struct Area {
    south: f64,
    north: f64,
    west: f64,
    east: f64,
}

impl Area {
    fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.south..=self.north).contains(&lat) && (self.west..=self.east).contains(&lon)
    }
}

/// A small deterministic generator (SplitMix64): fast, portable, and the
/// same sequence on every machine for a given seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index in `0..n` (`n` ≥ 1).
    fn index(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// Standard normal.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Picks by weight from `(item, weight)` pairs.
    fn pick<'a, T>(&mut self, items: &'a [(T, f64)]) -> &'a T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.unit() * total;
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }
}

/// Moves a point `metres` along `heading` (radians, clockwise from north).
fn step(lat: f64, lon: f64, metres: f64, heading: f64) -> (f64, f64) {
    let dlat = metres * heading.cos() / METRES_PER_DEGREE_LAT;
    let dlon = metres * heading.sin() / (METRES_PER_DEGREE_LAT * lat.to_radians().cos());
    (lat + dlat, lon + dlon)
}

/// How a sensor's values evolve.
#[derive(Debug, Clone)]
enum Model {
    /// A slow swing between `lo` and `hi` with noise.
    Swing {
        lo: f64,
        hi: f64,
        noise: f64,
        period: f64,
        phase: f64,
    },
    /// A head count drifting around a base.
    Count { base: f64 },
    /// 0/1 that flips now and then.
    Binary { value: f64 },
}

#[derive(Debug)]
struct SensorGen {
    id: String,
    lat: f64,
    lon: f64,
    model: Model,
    /// Observations so far (also the `seq` of the last one).
    seq: u64,
    last: Option<(i64, f64)>,
}

impl SensorGen {
    fn value(&mut self, rng: &mut Rng) -> f64 {
        let k = self.seq as f64;
        match &mut self.model {
            Model::Swing {
                lo,
                hi,
                noise,
                period,
                phase,
            } => {
                let s = 0.5 + 0.5 * (*phase + std::f64::consts::TAU * k / *period).sin();
                (*lo + (*hi - *lo) * s + rng.normal() * *noise).max(0.0)
            }
            Model::Count { base } => {
                let v = *base + 0.4 * *base * (k / 20.0).sin() + rng.normal() * 5.0;
                v.max(0.0).round()
            }
            Model::Binary { value } => {
                if rng.chance(0.02) {
                    *value = 1.0 - *value;
                }
                *value
            }
        }
    }
}

#[derive(Debug)]
struct UnitGen {
    id: String,
    lat: f64,
    lon: f64,
    heading: f64,
    status: u8,
    last_ts: i64,
}

impl UnitGen {
    fn moving(&self) -> bool {
        MOVING_STATUSES.contains(&self.status)
    }

    /// One position fix: a few metres of jitter when parked, 20–250 m
    /// along a wandering heading when driving (a res-10 cell is ~130 m
    /// across, so a driving unit changes cells every other fix or so).
    fn advance(&mut self, rng: &mut Rng) {
        let (metres, heading) = if self.moving() {
            self.heading += rng.normal() * 0.3;
            (rng.range(20.0, 250.0), self.heading)
        } else {
            (rng.range(0.0, 5.0), rng.range(0.0, std::f64::consts::TAU))
        };
        let (lat, lon) = step(self.lat, self.lon, metres, heading);
        if AREA.contains(lat, lon) {
            (self.lat, self.lon) = (lat, lon);
        } else {
            self.heading += std::f64::consts::PI;
        }
    }

    /// The next radio status of a simplified mission cycle: at station (2)
    /// → order accepted (3) → on scene (4) → patient aboard (7) → at
    /// hospital (8) → free on radio (1) → at station; now and then out of
    /// service (6) for a while.
    fn next_status(&mut self, rng: &mut Rng) -> u8 {
        self.status = match self.status {
            2 if rng.chance(0.05) => 6,
            2 | 6 => 3,
            3 => 4,
            4 if rng.chance(0.5) => 7,
            4 | 8 => 1,
            7 => 8,
            _ => 2,
        };
        self.status
    }
}

/// What the workload is made of.
#[derive(Debug, Default, Clone, Copy)]
struct Mix {
    sensor_meta: usize,
    unit_meta: usize,
    obs: usize,
    redelivered: usize,
    pos: usize,
    status: usize,
}

/// The pre-generated events, and for each event the point it is about.
#[derive(Debug)]
struct Workload {
    events: Vec<Envelope>,
    points: Vec<(f64, f64)>,
    sensors: usize,
    units: usize,
    mix: Mix,
}

/// The picture's clock when event `i` is applied.
fn clock(i: usize) -> i64 {
    T0_MS + i as i64 * 1_000 / EVENTS_PER_PICTURE_SECOND
}

fn envelope(event: Event, received_ms: i64) -> Envelope {
    Envelope {
        space: fusion::space::LIVE.to_owned(),
        received_ms,
        event,
    }
}

fn place_sensor(rng: &mut Rng) -> (f64, f64) {
    loop {
        let (lat, lon) = if rng.chance(0.5) {
            (
                rng.range(AREA.south, AREA.north),
                rng.range(AREA.west, AREA.east),
            )
        } else {
            let (clat, clon) = HOTSPOTS[rng.index(HOTSPOTS.len())];
            let (n, e) = (rng.normal(), rng.normal());
            let (lat, lon) = step(clat, clon, n * HOTSPOT_SIGMA_M, 0.0);
            step(lat, lon, e * HOTSPOT_SIGMA_M, std::f64::consts::FRAC_PI_2)
        };
        if AREA.contains(lat, lon) {
            return (lat, lon);
        }
    }
}

fn make_sensor(i: usize, rng: &mut Rng, catalogue: &Catalogue) -> (SensorGen, SensorMeta) {
    let kind = *rng.pick(&KIND_SHARES);
    let spec = catalogue.get(kind);
    let unit = spec.map_or_else(String::new, |s| s.unit.clone());
    let thresholds = spec.map_or(&[][..], |s| &s.thresholds[..]);
    let model = match (thresholds.first(), kind) {
        (Some(&t0), _) => {
            let top = thresholds.get(2).copied().unwrap_or(t0);
            let (lo, hi) = if rng.chance(SHARE_HAZARD_SENSORS) {
                (0.5 * t0, top * 1.02)
            } else {
                (0.2 * t0, 0.8 * t0)
            };
            Model::Swing {
                lo,
                hi,
                noise: 0.01 * t0,
                period: rng.range(20.0, 80.0),
                phase: rng.range(0.0, std::f64::consts::TAU),
            }
        }
        (None, "people_count") => Model::Count {
            base: rng.range(10.0, 400.0),
        },
        (None, _) => Model::Binary {
            value: if rng.chance(0.9) { 1.0 } else { 0.0 },
        },
    };
    let (lat, lon) = place_sensor(rng);
    let id = format!("s{i:05}");
    let meta = SensorMeta {
        id: id.clone(),
        kind: kind.to_owned(),
        unit,
        lat,
        lon,
        name: Some(format!("{kind} {i}")),
        thresholds: None,
    };
    let sensor = SensorGen {
        id,
        lat,
        lon,
        model,
        seq: 0,
        last: None,
    };
    (sensor, meta)
}

fn make_unit(i: usize, rng: &mut Rng) -> (UnitGen, UnitMeta) {
    let (unit_type, org) = UNIT_TYPES[rng.index(UNIT_TYPES.len())];
    let status = *rng.pick(&[
        (2u8, 0.55),
        (1, 0.15),
        (3, 0.1),
        (4, 0.1),
        (7, 0.05),
        (6, 0.05),
    ]);
    let unit = UnitGen {
        id: format!("u{i:04}"),
        lat: rng.range(AREA.south + 0.02, AREA.north - 0.02),
        lon: rng.range(AREA.west + 0.03, AREA.east - 0.03),
        heading: rng.range(0.0, std::f64::consts::TAU),
        status,
        last_ts: 0,
    };
    let meta = UnitMeta {
        id: unit.id.clone(),
        callsign: format!("{unit_type} {}-{}", 10 + i % 90, 1 + i / 90 % 9),
        unit_type: unit_type.to_owned(),
        org: org.to_owned(),
        strength: Some(if org == "ems" { 2 } else { 6 + (i % 4) as u32 }),
    };
    (unit, meta)
}

/// Generates `n` events: the retained meta messages of every sensor and
/// unit first (as a fresh subscription receives them), then the mix.
fn generate(n: usize, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let catalogue = Catalogue::default();
    let n_sensors = (n / EVENTS_PER_SENSOR).clamp(1, MAX_SENSORS);
    let n_units = (n / EVENTS_PER_UNIT).clamp(1, MAX_UNITS);
    let mut events = Vec::with_capacity(n);
    let mut points = Vec::with_capacity(n);
    let mut mix = Mix::default();

    let mut sensors = Vec::with_capacity(n_sensors);
    for i in 0..n_sensors {
        let (s, meta) = make_sensor(i, &mut rng, &catalogue);
        points.push((s.lat, s.lon));
        events.push(envelope(Event::SensorMeta(meta), clock(events.len())));
        sensors.push(s);
        mix.sensor_meta += 1;
    }
    let mut units = Vec::with_capacity(n_units);
    for i in 0..n_units {
        let (u, meta) = make_unit(i, &mut rng);
        points.push((u.lat, u.lon));
        events.push(envelope(Event::UnitMeta(meta), clock(events.len())));
        units.push(u);
        mix.unit_meta += 1;
    }

    while events.len() < n {
        let now = clock(events.len());
        let r = rng.unit();
        if r < SHARE_OBS {
            let s = &mut sensors[rng.index(n_sensors)];
            let redeliver = rng.chance(SHARE_REDELIVERED);
            let (ts, value, seq) = match s.last {
                Some((ts, value)) if redeliver => {
                    mix.redelivered += 1;
                    (ts, value, s.seq)
                }
                last => {
                    s.seq += 1;
                    let ts = last.map_or(now, |(t, _)| now.max(t + 1));
                    let value = s.value(&mut rng);
                    s.last = Some((ts, value));
                    (ts, value, s.seq)
                }
            };
            points.push((s.lat, s.lon));
            let obs = SensorObs {
                id: s.id.clone(),
                ts_ms: ts,
                value,
                lat: None,
                lon: None,
                seq: Some(seq),
                quality: None,
            };
            events.push(envelope(Event::SensorObs(obs), now));
            mix.obs += 1;
        } else if r < SHARE_OBS + SHARE_POS {
            let u = &mut units[rng.index(n_units)];
            u.advance(&mut rng);
            u.last_ts = now.max(u.last_ts + 1);
            let speed = if u.moving() {
                rng.range(8.0, 20.0)
            } else {
                0.0
            };
            points.push((u.lat, u.lon));
            let pos = UnitPos {
                id: u.id.clone(),
                ts_ms: u.last_ts,
                lat: u.lat,
                lon: u.lon,
                heading: Some(u.heading.to_degrees().rem_euclid(360.0)),
                speed: Some(speed),
                accuracy: Some(rng.range(3.0, 15.0)),
                source: Some("avl".to_owned()),
                ttl_ms: None,
            };
            events.push(envelope(Event::UnitPos(pos), now));
            mix.pos += 1;
        } else {
            let u = &mut units[rng.index(n_units)];
            u.last_ts = now.max(u.last_ts + 1);
            let status = UnitStatus {
                id: u.id.clone(),
                ts_ms: u.last_ts,
                status: u.next_status(&mut rng),
                source: None,
            };
            points.push((u.lat, u.lon));
            events.push(envelope(Event::UnitStatus(status), now));
            mix.status += 1;
        }
    }
    Workload {
        events,
        points,
        sensors: n_sensors,
        units: n_units,
        mix,
    }
}

/// What the engine said to the events of one run.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    applied: usize,
    duplicate: usize,
    /// Outdated (and any other accepted outcome).
    other: usize,
    refused: usize,
    flushes: usize,
}

/// Events per turn of [`read_ahead_pair`].
const PAIR_TURN: usize = 5 * FLUSH_EVERY;

/// Drives `picture` through `events[range]` as the owner task would:
/// [`Picture::read_ahead`] on each [`READ_AHEAD`] events (if `read_ahead`),
/// `apply` with the workload's clock, a flush every [`FLUSH_EVERY`]
/// events of the whole stream. Counts outcomes and flushes into `tally`;
/// returns the time spent in `flush`.
fn drive(
    picture: &mut Picture,
    events: &[Envelope],
    range: std::ops::Range<usize>,
    read_ahead: bool,
    tally: &mut Tally,
) -> Duration {
    let mut in_flush = Duration::ZERO;
    for i in range.clone() {
        let now = clock(i);
        if read_ahead && (i - range.start).is_multiple_of(READ_AHEAD) {
            let upto = (i + READ_AHEAD).min(range.end);
            black_box(picture.read_ahead(&events[i..upto]));
        }
        match picture.apply(&events[i], now) {
            Ok(Outcome::Applied) => tally.applied += 1,
            Ok(Outcome::Duplicate) => tally.duplicate += 1,
            Ok(_) => tally.other += 1,
            Err(_) => tally.refused += 1,
        }
        if (i + 1).is_multiple_of(FLUSH_EVERY) {
            let f = Instant::now();
            black_box(picture.flush(now));
            in_flush += f.elapsed();
            tally.flushes += 1;
        }
    }
    in_flush
}

/// The engine with and without [`Picture::read_ahead`], side by side: two
/// pictures take the same events in turns of [`PAIR_TURN`] (each driven
/// as [`engine_run`] drives it), so both see the machine at the same
/// speed within milliseconds. Returns both rates (with, without).
fn read_ahead_pair(events: &[Envelope]) -> (f64, f64) {
    let mut pictures = [
        Picture::new(PictureConfig::default()),
        Picture::new(PictureConfig::default()),
    ];
    let mut took = [Duration::ZERO; 2];
    let mut tally = Tally::default();
    for turn in 0..events.len().div_ceil(PAIR_TURN) {
        let range = turn * PAIR_TURN..((turn + 1) * PAIR_TURN).min(events.len());
        // Who goes first alternates, so neither always finds the other's
        // data in the caches.
        for k in [turn % 2, 1 - turn % 2] {
            let start = Instant::now();
            drive(&mut pictures[k], events, range.clone(), k == 0, &mut tally);
            took[k] += start.elapsed();
        }
    }
    (
        per_second(events.len(), took[0]),
        per_second(events.len(), took[1]),
    )
}

/// One timed run of the engine: apply every event, flush every
/// [`FLUSH_EVERY`] events and once at the end. Returns the total time, the
/// part of it spent in `flush`, and the picture (dropped by the caller,
/// outside the timing).
fn engine_run(events: &[Envelope], read_ahead: bool) -> (Duration, Duration, Picture, Tally) {
    let mut picture = Picture::new(PictureConfig::default());
    let mut tally = Tally::default();
    let start = Instant::now();
    let mut in_flush = drive(
        &mut picture,
        events,
        0..events.len(),
        read_ahead,
        &mut tally,
    );
    let f = Instant::now();
    black_box(picture.flush(clock(events.len())));
    in_flush += f.elapsed();
    tally.flushes += 1;
    (start.elapsed(), in_flush, picture, tally)
}

/// One timed run of the floor: the finest cell of every event's point and
/// a count per cell in a hash map.
fn raw_run(points: &[(f64, f64)], res: Resolution) -> (Duration, usize) {
    let mut counts: HashMap<CellIndex, u64> = HashMap::new();
    let start = Instant::now();
    for &(lat, lon) in points {
        if let Ok(ll) = LatLng::new(lat, lon) {
            *counts.entry(ll.to_cell(res)).or_insert(0) += 1;
        }
    }
    let elapsed = start.elapsed();
    (elapsed, black_box(counts).len())
}

/// Resident set size of this process in bytes (Linux), if readable.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn per_second(count: usize, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64().max(1e-9)
}

fn list(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// What the memory measurement found.
#[derive(Debug)]
struct Memory {
    rss_delta: Option<u64>,
    /// Bytes held by the cell index (aggregates at every resolution,
    /// members, tables), counted from its allocations.
    index_bytes: usize,
    cells_finest: usize,
    cells_total: usize,
    finest: Resolution,
    alerts: usize,
}

/// What checkpointing the bench's picture measured.
struct CheckpointFigures {
    bytes: usize,
    /// Taking the checkpoint and serialising it (what the owner task does
    /// before a new segment).
    take_ms: f64,
    /// Parsing it and restoring the picture (what a restart does).
    restore_ms: f64,
}

/// `digest`: the picture's, which the restored one must have.
fn checkpoint_bench(picture: &Picture, digest: &str) -> anyhow::Result<CheckpointFigures> {
    let start = Instant::now();
    let cp = picture
        .checkpoint()
        .context("the bench flushes before it ends")?;
    let text = serde_json::to_vec(&cp)?;
    let take_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let back: fusion::Checkpoint = serde_json::from_slice(&text)?;
    let restored = Picture::restore(PictureConfig::default(), back)?;
    let restore_ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(restored.digest() == digest, "restored digest differs");
    Ok(CheckpointFigures {
        bytes: text.len(),
        take_ms,
        restore_ms,
    })
}

/// What writing and reading the workload as an event log measured.
struct LogFigures {
    write_rates: Vec<f64>,
    write_per_s: f64,
    read_rates: Vec<f64>,
    read_per_s: f64,
    /// Recovery: the log read and applied to a new picture, flushed per
    /// tick of log time, as a restart does.
    recover_rates: Vec<f64>,
    recover_per_s: f64,
    bytes_per_event: f64,
}

/// Replay's floor: the workload written to an event log in a temporary
/// folder (in batches of 256, as the owner task writes), then read back
/// into events `runs` times; then recovered from it into a new picture
/// `runs` times, each of which must end with `digest` (the engine's).
fn log_bench(events: &[Envelope], runs: usize, digest: &str) -> anyhow::Result<LogFigures> {
    let dir = std::env::temp_dir().join(format!("rm-bench-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let records: Vec<Record> = events.iter().cloned().map(Record::Event).collect();
    let mut write_rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = EventLog::open(LogConfig::new(&dir))?;
        let start = Instant::now();
        for chunk in records.chunks(256) {
            log.append(fusion::space::LIVE, chunk, chunk[0].received_ms())?;
        }
        log.close()?;
        write_rates.push(per_second(records.len(), start.elapsed()));
    }
    let space = dir.join(fusion::space::LIVE);
    let bytes: u64 = ingest::log::segments(&space)?
        .iter()
        .filter_map(|s| std::fs::metadata(&s.path).ok())
        .map(|m| m.len())
        .sum();
    let mut read_rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut n = 0usize;
        let start = Instant::now();
        let report = ingest::log::read_space(&space, Window::default(), |r| {
            black_box(&r);
            n += 1;
        })?;
        read_rates.push(per_second(n, start.elapsed()));
        anyhow::ensure!(
            n == records.len() && report.damaged.is_empty(),
            "the log gave back {n} of {} events ({:?})",
            records.len(),
            report.damaged
        );
    }
    let mut recover_rates = Vec::with_capacity(runs);
    // One tick of log time: the workload's clock over `FLUSH_EVERY` events.
    let tick_ms = clock(FLUSH_EVERY) - clock(0);
    for _ in 0..runs {
        let mut picture = Picture::new(PictureConfig::default());
        let start = Instant::now();
        let (report, _) =
            crate::driver::replay_log(&mut picture, &space, 0, Window::default(), tick_ms)?;
        recover_rates.push(per_second(records.len(), start.elapsed()));
        anyhow::ensure!(
            report.records == records.len() as u64 && report.damaged.is_empty(),
            "recovery read {} of {} events ({:?})",
            report.records,
            records.len(),
            report.damaged
        );
        anyhow::ensure!(
            picture.digest() == digest,
            "the recovered picture differs from the engine's"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(LogFigures {
        write_per_s: median(write_rates.clone()),
        write_rates,
        read_per_s: median(read_rates.clone()),
        read_rates,
        recover_per_s: median(recover_rates.clone()),
        recover_rates,
        bytes_per_event: bytes as f64 / records.len().max(1) as f64,
    })
}

fn fusion_bench(a: &FusionArgs) -> anyhow::Result<()> {
    if !(MIN_EVENTS..=MAX_EVENTS).contains(&a.events) {
        bail!("--events must be between {MIN_EVENTS} and {MAX_EVENTS}");
    }
    if !(1..=100).contains(&a.runs) {
        bail!("--runs must be between 1 and 100");
    }
    let fma = cfg!(target_feature = "fma");
    let avx2 = cfg!(target_feature = "avx2");
    println!(
        "rescuemate bench fusion: {} events, seed {}, {} runs per part; built with FMA: {}, AVX2: {}",
        a.events,
        a.seed,
        a.runs,
        yes_no(fma),
        yes_no(avx2)
    );
    let gen_start = Instant::now();
    let w = generate(a.events, a.seed);
    let m = w.mix;
    println!(
        "workload: {} sensors, {} units over {:.2}°N–{:.2}°N, {:.2}°E–{:.2}°E (generated in {:.1} s)",
        w.sensors,
        w.units,
        AREA.south,
        AREA.north,
        AREA.west,
        AREA.east,
        gen_start.elapsed().as_secs_f64()
    );
    println!(
        "  {} sensor meta + {} unit meta, {} sensor observations ({} re-delivered), {} unit positions, {} status changes",
        m.sensor_meta, m.unit_meta, m.obs, m.redelivered, m.pos, m.status
    );

    let mut engine_rates = Vec::with_capacity(a.runs);
    let mut flush_shares = Vec::with_capacity(a.runs);
    let mut raw_rates = Vec::with_capacity(a.runs);
    let mut first: Option<(Tally, Memory)> = None;
    let mut cp: Option<CheckpointFigures> = None;
    let mut digest = String::new();
    let mut raw_cells = 0;
    let finest = Picture::new(PictureConfig::default())
        .resolutions()
        .first()
        .copied()
        .unwrap_or(Resolution::Ten);
    // The engine with and without reading ahead (`Picture::read_ahead`),
    // side by side in each run: the gain whatever the machine's speed.
    let mut gains = Vec::with_capacity(a.runs);
    let mut plain_rates = Vec::with_capacity(a.runs);
    let mut paired_rates = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let before = rss_bytes();
        let (took, in_flush, picture, tally) = engine_run(&w.events, true);
        let after = rss_bytes();
        engine_rates.push(per_second(w.events.len(), took));
        flush_shares.push(in_flush.as_secs_f64() / took.as_secs_f64().max(1e-9));
        if first.is_none() {
            let everything = Viewport {
                bbox: None,
                res: finest,
            };
            let now = clock(w.events.len());
            let snapshot = picture.snapshot(&everything, now);
            let memory = Memory {
                rss_delta: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
                index_bytes: picture.cell_index_bytes().0,
                cells_finest: snapshot.cells.len(),
                cells_total: picture.counts().3,
                finest,
                alerts: snapshot.alerts.len(),
            };
            drop(snapshot);
            first = Some((tally, memory));
            digest = picture.digest();
            cp = Some(checkpoint_bench(&picture, &digest)?);
        }
        drop(picture);
        let (ahead_rate, plain_rate) = read_ahead_pair(&w.events);
        plain_rates.push(plain_rate);
        paired_rates.push(ahead_rate);
        gains.push(ahead_rate / plain_rate.max(1e-9));
        let (took, cells) = raw_run(&w.points, finest);
        raw_rates.push(per_second(w.points.len(), took));
        raw_cells = cells;
    }
    let (tally, memory) = first.context("no run was made")?;
    let log = log_bench(&w.events, a.runs, &digest)?;
    let cp = cp.context("no checkpoint was taken")?;

    let events_per_s = median(engine_rates.clone());
    let raw_events_per_s = median(raw_rates.clone());
    let ratio = events_per_s / raw_events_per_s.max(1e-9);
    let flush_share = median(flush_shares);
    let plain_events_per_s = median(plain_rates.clone());
    let read_ahead_gain = median(gains);
    let rss_delta = memory.rss_delta.unwrap_or(0);
    let bytes_per_cell = memory.index_bytes as f64 / memory.cells_finest.max(1) as f64;
    let rss_per_cell = rss_delta as f64 / memory.cells_finest.max(1) as f64;
    let rss_per_entity = rss_delta as f64 / (w.sensors + w.units).max(1) as f64;

    println!(
        "outcomes: {} applied, {} duplicate, {} outdated, {} refused; {} flushes (one per {FLUSH_EVERY} events); {} alerts raised",
        tally.applied, tally.duplicate, tally.other, tally.refused, tally.flushes, memory.alerts
    );
    println!(
        "engine  apply + flush:  {events_per_s:>10.0} events/s median ({}), {:.0} % of it in flush",
        list(&engine_rates),
        flush_share * 100.0
    );
    println!(
        "        side by side, reading ahead or not: {:.0} / {plain_events_per_s:.0} events/s median ({} / {}): {read_ahead_gain:.2}× as fast (median of the runs)",
        median(paired_rates.clone()),
        list(&paired_rates),
        list(&plain_rates)
    );
    println!(
        "raw     h3o + HashMap:  {raw_events_per_s:>10.0} events/s median ({}), {raw_cells} cells",
        list(&raw_rates)
    );
    println!(
        "ratio   {ratio:.3} (target ≥ {TARGET_RATIO}: {})",
        verdict(ratio >= TARGET_RATIO)
    );
    println!(
        "memory  cell index {:.1} MiB for {} cells at all resolutions: {bytes_per_cell:.0} bytes per active \
         res-{} cell ({} cells; target ≤ {TARGET_BYTES_PER_CELL:.0}: {})",
        memory.index_bytes as f64 / (1024.0 * 1024.0),
        memory.cells_total,
        u8::from(memory.finest),
        memory.cells_finest,
        verdict(bytes_per_cell <= TARGET_BYTES_PER_CELL),
    );
    match memory.rss_delta {
        Some(d) => println!(
            "        the whole picture (entities, names, alerts and the index) grew the resident set by \
             {:.1} MiB: {rss_per_cell:.0} bytes per active res-{} cell, {rss_per_entity:.0} per entity",
            d as f64 / (1024.0 * 1024.0),
            u8::from(memory.finest),
        ),
        None => {
            println!("        resident set not measured: /proc/self/status is not readable here")
        }
    }
    println!(
        "log     written {:>10.0} events/s median ({}), {:.1} bytes per event on disk (LZ4)",
        log.write_per_s,
        list(&log.write_rates),
        log.bytes_per_event
    );
    println!(
        "replay  read    {:>10.0} events/s median ({}) from the log into events for the engine (target ≥ {TARGET_REPLAY:.0}: {})",
        log.read_per_s,
        list(&log.read_rates),
        verdict(log.read_per_s >= TARGET_REPLAY)
    );
    println!(
        "recover         {:>10.0} events/s median ({}) from the log into a new picture, flushed per tick",
        log.recover_per_s,
        list(&log.recover_rates),
    );
    println!(
        "checkpoint of the whole picture: {:.1} MiB JSON, taken and serialised in {:.0} ms, parsed and restored in {:.0} ms",
        cp.bytes as f64 / (1024.0 * 1024.0),
        cp.take_ms,
        cp.restore_ms
    );
    if a.json {
        println!(
            "{{\"checkpoint_bytes\":{},\"checkpoint_ms\":{:.0},\"restore_ms\":{:.0},\
             \"replay_events_per_s\":{:.0},\"recover_events_per_s\":{:.0},\"log_write_events_per_s\":{:.0},\"log_bytes_per_event\":{:.1},\
             \"events\":{},\"sensors\":{},\"units\":{},\"seed\":{},\"runs\":{},\
             \"events_per_s\":{events_per_s:.0},\"raw_events_per_s\":{raw_events_per_s:.0},\
             \"ratio\":{ratio:.4},\"flush_share\":{flush_share:.4},\
             \"events_per_s_no_read_ahead\":{plain_events_per_s:.0},\"read_ahead_gain\":{read_ahead_gain:.3},\
             \"bytes_per_cell\":{bytes_per_cell:.1},\"index_bytes\":{},\
             \"rss_bytes_per_cell\":{rss_per_cell:.1},\"rss_bytes_per_entity\":{rss_per_entity:.1},\
             \"rss_delta_bytes\":{rss_delta},\"cells_res10\":{},\"cells_total\":{},\
             \"fma\":{fma},\"avx2\":{avx2}}}",
            cp.bytes,
            cp.take_ms,
            cp.restore_ms,
            log.read_per_s,
            log.recover_per_s,
            log.write_per_s,
            log.bytes_per_event,
            w.events.len(),
            w.sensors,
            w.units,
            a.seed,
            a.runs,
            memory.index_bytes,
            memory.cells_finest,
            memory.cells_total,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_is_deterministic_and_well_formed() {
        let a = generate(5_000, 7);
        let b = generate(5_000, 7);
        assert_eq!(a.events, b.events);
        assert_eq!(a.events.len(), 5_000);
        assert_eq!(a.points.len(), 5_000);
        assert_ne!(generate(5_000, 8).events, a.events);
        assert!(a.points.iter().all(|&(lat, lon)| AREA.contains(lat, lon)));
        let m = a.mix;
        assert_eq!(m.sensor_meta, 100);
        assert_eq!(m.unit_meta, 10);
        assert_eq!(
            m.sensor_meta + m.unit_meta + m.obs + m.pos + m.status,
            5_000
        );
        assert!(m.status > 0 && m.pos > m.status && m.obs > m.pos);
    }

    #[test]
    fn the_engine_accepts_the_workload() {
        let w = generate(5_000, 3);
        let (_, _, picture, tally) = engine_run(&w.events, true);
        assert_eq!(tally.refused, 0);
        assert_eq!(tally.duplicate, w.mix.redelivered);
        assert_eq!(tally.applied + tally.duplicate + tally.other, 5_000);
        let (units, sensors, _, cells) = picture.counts();
        assert_eq!((units, sensors), (w.units, w.sensors));
        assert!(cells > w.sensors / 2);
        let (with, without) = read_ahead_pair(&w.events);
        assert!(with > 0.0 && without > 0.0);
        // Reading ahead changes nothing.
        let (_, _, plain, plain_tally) = engine_run(&w.events, false);
        assert_eq!(plain.digest(), picture.digest());
        assert_eq!(plain.seq(), picture.seq());
        assert_eq!(plain_tally.applied, tally.applied);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
