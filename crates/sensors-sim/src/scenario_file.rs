//! Scenario files: a scenario as data, so drill staff can write their own
//! without Rust. The format is TOML and documented in `SCENARIOS.md`; this
//! module reads a file into a checked [`Spec`] (every reference resolved,
//! every number in range) or says exactly what is wrong and where: syntax
//! and type errors with line and column (from the TOML reader), rule
//! violations with the path of the offending field, e.g.
//! `unit[2] "fw-hlf-27-1" timeline[3].to: unknown place "brandstelle"`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::geo::LatLon;

/// At most this many jobs one `[[jobs]]` group may generate.
const MAX_JOBS: u32 = 5_000;
/// At most this long a scenario's timeline may be (a week).
const MAX_DURATION_S: f64 = 7.0 * 86_400.0;
/// Areas, cells and plumes larger than this are mistakes (50 km).
const MAX_RADIUS_M: f64 = 50_000.0;
/// A unit's default driving speed, m/s (about 43 km/h through a city).
const DEFAULT_SPEED_MPS: f64 = 12.0;

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: RawHeader,
    #[serde(default)]
    places: BTreeMap<String, [f64; 2]>,
    #[serde(default)]
    sensor: Vec<RawSensor>,
    #[serde(default)]
    unit: Vec<RawUnit>,
    #[serde(default)]
    incident: Vec<RawIncident>,
    #[serde(default)]
    plume: Vec<RawPlume>,
    #[serde(default)]
    rain_cell: Vec<RawRainCell>,
    #[serde(default)]
    jobs: Vec<RawJobs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    duration: Time,
    #[serde(default = "yes")]
    repeat: bool,
}

fn yes() -> bool {
    true
}

/// A scenario time or a span: seconds as a number, or `"HH:MM"`,
/// `"HH:MM:SS"`, `"90s"`, `"10m"`, `"2h"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Time {
    Seconds(f64),
    Text(String),
}

/// A place: the name of an entry of `[places]`, or `[lat, lon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Where {
    Place(String),
    Point([f64; 2]),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSensor {
    id: String,
    kind: String,
    unit: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    place: Option<Where>,
    #[serde(default)]
    follows: Option<String>,
    #[serde(default)]
    thresholds: Option<Vec<f64>>,
    #[serde(default)]
    curve: Vec<(Time, f64)>,
    #[serde(default)]
    step: bool,
    #[serde(default)]
    tide: Option<RawTide>,
    #[serde(default)]
    surge: Option<RawSurge>,
    #[serde(default)]
    noise: Option<f64>,
    #[serde(default)]
    plume: Option<String>,
    #[serde(default)]
    plume_peak: Option<f64>,
    #[serde(default)]
    rain: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    decimals: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTide {
    amplitude: f64,
    #[serde(default)]
    period: Option<Time>,
    high_water: Time,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSurge {
    height: f64,
    peak: Time,
    width: Time,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMissions {
    to: Vec<Where>,
    #[serde(default)]
    spread_m: Option<f64>,
    #[serde(default)]
    first_wait: Option<[Time; 2]>,
    wait: [Time; 2],
    on_scene: [Time; 2],
    #[serde(default)]
    speak: Option<f64>,
    #[serde(default)]
    transport: Vec<Where>,
    #[serde(default)]
    handover: Option<[Time; 2]>,
    #[serde(default)]
    pause: Option<f64>,
    #[serde(default)]
    pause_for: Option<[Time; 2]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnit {
    id: String,
    callsign: String,
    #[serde(rename = "type")]
    unit_type: String,
    org: String,
    #[serde(default)]
    strength: Option<u32>,
    station: Where,
    #[serde(default)]
    speed_mps: Option<f64>,
    #[serde(default)]
    timeline: Vec<RawUnitStep>,
    #[serde(default)]
    dispatch: Option<String>,
    #[serde(default)]
    missions: Option<RawMissions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnitStep {
    at: Time,
    status: u8,
    #[serde(default)]
    to: Option<Where>,
    #[serde(default)]
    then: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncident {
    id: String,
    keyword: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    polygon: Option<Vec<Where>>,
    #[serde(default)]
    circle: Option<RawCircle>,
    #[serde(default)]
    plume: Option<String>,
    #[serde(default)]
    track: Option<Vec<RawTrackPoint>>,
    #[serde(default)]
    radius_m: Option<f64>,
    timeline: Vec<RawIncidentStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCircle {
    centre: Where,
    radius_m: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrackPoint {
    at: Time,
    place: Where,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncidentStep {
    at: Time,
    #[serde(default)]
    severity: Option<u8>,
    #[serde(default)]
    keyword: Option<String>,
    #[serde(default)]
    closed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlume {
    id: String,
    source: Where,
    start: Time,
    end: Time,
    wind_from: Vec<(Time, f64)>,
    #[serde(default)]
    length_m: Option<f64>,
    #[serde(default)]
    spread_deg: Option<f64>,
    #[serde(default)]
    ramp: Option<Time>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRainCell {
    from: Where,
    heading_deg: f64,
    speed_mps: f64,
    radius_m: f64,
    peak_mm_h: f64,
    start: Time,
    end: Time,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    id: String,
    count: u32,
    keyword: String,
    title: String,
    #[serde(default)]
    severity: Option<u8>,
    centre: Where,
    radius_m: f64,
    start: Time,
    end: Time,
    #[serde(default)]
    peak: Option<Time>,
    work: [Time; 2],
    #[serde(default)]
    turn_out: Option<[Time; 2]>,
    #[serde(default)]
    size_m: Option<f64>,
}

// ---------------------------------------------------------------------------
// The checked scenario.

/// A scenario read from a file, every reference resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    /// Length of the timeline, scenario seconds.
    pub duration_s: f64,
    /// Start again after `duration_s` (otherwise hold the last state).
    pub repeat: bool,
    pub sensors: Vec<SensorSpec>,
    pub units: Vec<UnitSpec>,
    pub incidents: Vec<IncidentSpec>,
    pub plumes: Vec<Plume>,
    pub rain_cells: Vec<RainCell>,
    pub jobs: Vec<Jobs>,
}

/// Piecewise-linear (or, with `step`, piecewise-constant) keyframes over
/// scenario time; before the first and after the last it holds their value.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Curve {
    pub points: Vec<(f64, f64)>,
    pub step: bool,
}

impl Curve {
    pub fn at(&self, t: f64) -> f64 {
        let (Some(&(t0, v0)), Some(&(tn, vn))) = (self.points.first(), self.points.last()) else {
            return 0.0;
        };
        if t <= t0 {
            return v0;
        }
        if t >= tn {
            return vn;
        }
        let i = self.points.partition_point(|p| p.0 <= t);
        let (a, b) = (self.points[i - 1], self.points[i]);
        if self.step || b.0 <= a.0 {
            a.1
        } else {
            a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tide {
    pub amplitude: f64,
    pub period_s: f64,
    pub high_water_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SensorSpec {
    pub id: String,
    pub kind: String,
    pub unit: String,
    pub name: Option<String>,
    pub pos: LatLon,
    /// Index of the unit that carries it (a measuring vehicle).
    pub follows: Option<usize>,
    pub thresholds: Option<Vec<f64>>,
    pub curve: Curve,
    pub tide: Option<Tide>,
    pub surge: Option<Surge>,
    pub noise: f64,
    /// Index of the plume and the value on its axis at the source.
    pub plume: Option<(usize, f64)>,
    /// Share of the rain cells' intensity.
    pub rain: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub decimals: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnitStep {
    pub at: f64,
    pub status: u8,
    pub to: Option<LatLon>,
    pub then: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnitSpec {
    pub id: String,
    pub callsign: String,
    pub unit_type: String,
    pub org: String,
    pub strength: Option<u32>,
    pub station: LatLon,
    pub speed_mps: f64,
    pub timeline: Vec<UnitStep>,
    /// Index of the `[[jobs]]` group this unit is dispatched to.
    pub dispatch: Option<usize>,
    /// Missions planned from the seed, one after the other.
    pub missions: Option<Missions>,
}

/// A unit's own missions, drawn from the seed: wait at the station (2),
/// drive to one of `to` (3), work on scene (4, now and then 5 to speak),
/// carry a patient to one of `transport` (7, 8) if given, return (1),
/// now and then restock (6).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Missions {
    pub to: Vec<LatLon>,
    pub spread_m: f64,
    pub first_wait_s: (f64, f64),
    pub wait_s: (f64, f64),
    pub on_scene_s: (f64, f64),
    pub speak: f64,
    pub transport: Vec<LatLon>,
    pub handover_s: (f64, f64),
    pub pause: f64,
    pub pause_s: (f64, f64),
}

/// A Gaussian bump over time (a storm set-up).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Surge {
    pub height: f64,
    pub peak_s: f64,
    pub width_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Area {
    /// Closed ring, `[lon, lat]` as GeoJSON has it.
    Polygon(Vec<[f64; 2]>),
    Circle {
        centre: LatLon,
        radius_m: f64,
    },
    /// The cone of a plume, following its wind.
    Plume(usize),
    /// A circle moving along a track (e.g. a drifting ship).
    Track {
        points: Vec<(f64, LatLon)>,
        radius_m: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IncidentSpec {
    pub id: String,
    pub keyword: String,
    pub title: String,
    pub area: Area,
    /// From each time on: severity and keyword, or `None` for closed.
    pub timeline: Vec<(f64, Option<(u8, String)>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plume {
    pub source: LatLon,
    pub start_s: f64,
    pub end_s: f64,
    /// Direction the wind comes from, degrees, over time.
    pub wind_from: Curve,
    pub length_m: f64,
    pub spread_deg: f64,
    pub ramp_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RainCell {
    pub from: LatLon,
    pub heading_deg: f64,
    pub speed_mps: f64,
    pub radius_m: f64,
    pub peak_mm_h: f64,
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Jobs {
    pub id: String,
    pub count: u32,
    pub keyword: String,
    pub title: String,
    pub severity: u8,
    pub centre: LatLon,
    pub radius_m: f64,
    pub start_s: f64,
    pub end_s: f64,
    pub peak_s: Option<f64>,
    pub work_s: (f64, f64),
    pub turn_out_s: (f64, f64),
    pub size_m: f64,
}

// ---------------------------------------------------------------------------
// Reading and checking.

/// Reads and checks a scenario file's text. `origin` names it in errors
/// (a path, or `built-in storm-surge`).
pub(crate) fn parse(origin: &str, text: &str) -> Result<Spec, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    Checker::default()
        .check(raw)
        .map_err(|e| format!("{origin}: {e}"))
}

/// `HH:MM:SS` of a scenario time, for messages.
pub(crate) fn clock(t: f64) -> String {
    let s = t.max(0.0).round() as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn time_of(t: &Time, field: &str) -> Result<f64, String> {
    let secs = match t {
        Time::Seconds(s) => *s,
        Time::Text(text) => parse_time_text(text).ok_or_else(|| {
            format!("{field}: {text:?} is not a time like \"01:30\", \"01:30:15\", \"90s\", \"10m\" or \"2h\"")
        })?,
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!(
            "{field}: a time must be a number of seconds ≥ 0, got {secs}"
        ));
    }
    Ok(secs)
}

fn parse_time_text(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let mut secs = 0.0;
        for (i, p) in parts.iter().enumerate() {
            let n: f64 = p.parse().ok()?;
            if n < 0.0 || (i > 0 && n >= 60.0) {
                return None;
            }
            secs = secs * 60.0 + n;
        }
        // "HH:MM" counts hours and minutes.
        Some(if parts.len() == 2 { secs * 60.0 } else { secs })
    } else {
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, unit) = text.split_at(split);
        let n: f64 = num.parse().ok()?;
        match unit {
            "s" => Some(n),
            "m" | "min" => Some(n * 60.0),
            "h" => Some(n * 3600.0),
            _ => None,
        }
    }
}

/// An id of the MQTT contract: 1 to 64 of `[A-Za-z0-9._-]`.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_point(p: [f64; 2], field: &str) -> Result<LatLon, String> {
    let [lat, lon] = p;
    if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
        return Err(format!(
            "{field}: latitude {lat} is outside -90…90 (points are [lat, lon])"
        ));
    }
    if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
        return Err(format!(
            "{field}: longitude {lon} is outside -180…180 (points are [lat, lon])"
        ));
    }
    Ok(LatLon::new(lat, lon))
}

fn check_positive(x: f64, max: f64, field: &str) -> Result<f64, String> {
    if x.is_finite() && x > 0.0 && x <= max {
        Ok(x)
    } else {
        Err(format!(
            "{field}: must be above 0 and at most {max}, got {x}"
        ))
    }
}

fn check_finite(x: f64, field: &str) -> Result<f64, String> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("{field}: must be a finite number, got {x}"))
    }
}

fn check_status(s: u8, field: &str) -> Result<u8, String> {
    if s <= 9 {
        Ok(s)
    } else {
        Err(format!("{field}: a radio status is 0…9, got {s}"))
    }
}

fn check_severity(s: u8, field: &str) -> Result<u8, String> {
    if s <= 4 {
        Ok(s)
    } else {
        Err(format!("{field}: a severity is 0…4, got {s}"))
    }
}

/// Times of a list must increase.
fn check_after(prev: Option<f64>, t: f64, field: &str) -> Result<(), String> {
    match prev {
        Some(p) if t <= p => Err(format!(
            "{field}: {} is not after the entry before it ({})",
            clock(t),
            clock(p)
        )),
        _ => Ok(()),
    }
}

/// A `[min, max]` pair of times.
fn time_range(r: &[Time; 2], field: &str) -> Result<(f64, f64), String> {
    let lo = time_of(&r[0], &format!("{field}[0]"))?;
    let hi = time_of(&r[1], &format!("{field}[1]"))?;
    if hi < lo {
        return Err(format!("{field}: the second time is before the first"));
    }
    Ok((lo, hi))
}

fn check_share(p: f64, field: &str) -> Result<f64, String> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{field}: a share is 0…1, got {p}"))
    }
}

/// A timeline entry after the end would never happen: a mistake.
fn check_within(t: f64, duration_s: f64, field: &str) -> Result<(), String> {
    if t < duration_s {
        Ok(())
    } else {
        Err(format!(
            "{field}: {} is not before the end of the scenario ({})",
            clock(t),
            clock(duration_s)
        ))
    }
}

#[derive(Debug, Default)]
struct Checker {
    places: BTreeMap<String, LatLon>,
}

impl Checker {
    fn place(&self, w: &Where, field: &str) -> Result<LatLon, String> {
        match w {
            Where::Point(p) => check_point(*p, field),
            Where::Place(name) => self.places.get(name).copied().ok_or_else(|| {
                format!("{field}: unknown place {name:?} (name one of [places] or give [lat, lon])")
            }),
        }
    }

    fn missions(&self, m: &RawMissions, f: &str) -> Result<Missions, String> {
        if m.to.is_empty() {
            return Err(format!("{f}.to: needs at least one place"));
        }
        let places = |list: &[Where], field: &str| -> Result<Vec<LatLon>, String> {
            list.iter()
                .enumerate()
                .map(|(i, w)| self.place(w, &format!("{f}.{field}[{i}]")))
                .collect()
        };
        let wait_s = time_range(&m.wait, &format!("{f}.wait"))?;
        let on_scene_s = time_range(&m.on_scene, &format!("{f}.on_scene"))?;
        if on_scene_s.0 <= 0.0 {
            return Err(format!(
                "{f}.on_scene: the work on scene must take some time"
            ));
        }
        Ok(Missions {
            to: places(&m.to, "to")?,
            spread_m: match m.spread_m {
                Some(x) => check_positive(x, MAX_RADIUS_M, &format!("{f}.spread_m"))?,
                None => 60.0,
            },
            first_wait_s: match &m.first_wait {
                Some(r) => time_range(r, &format!("{f}.first_wait"))?,
                None => (0.0, 600.0),
            },
            wait_s,
            on_scene_s,
            speak: check_share(m.speak.unwrap_or(0.0), &format!("{f}.speak"))?,
            transport: places(&m.transport, "transport")?,
            handover_s: match &m.handover {
                Some(r) => time_range(r, &format!("{f}.handover"))?,
                None => (600.0, 1_200.0),
            },
            pause: check_share(m.pause.unwrap_or(0.0), &format!("{f}.pause"))?,
            pause_s: match &m.pause_for {
                Some(r) => time_range(r, &format!("{f}.pause_for"))?,
                None => (600.0, 1_500.0),
            },
        })
    }

    fn curve(&self, points: &[(Time, f64)], step: bool, field: &str) -> Result<Curve, String> {
        let mut out = Vec::with_capacity(points.len());
        let mut prev = None;
        for (i, (t, v)) in points.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let t = time_of(t, &f)?;
            check_after(prev, t, &f)?;
            check_finite(*v, &f)?;
            prev = Some(t);
            out.push((t, *v));
        }
        Ok(Curve { points: out, step })
    }

    fn check(mut self, raw: RawFile) -> Result<Spec, String> {
        let h = raw.scenario;
        if !(1..=32).contains(&h.name.len())
            || !h
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "scenario.name: {:?} must be 1 to 32 of [a-z0-9-]",
                h.name
            ));
        }
        let duration_s = time_of(&h.duration, "scenario.duration")?;
        check_positive(duration_s, MAX_DURATION_S, "scenario.duration")?;

        for (name, p) in &raw.places {
            let pos = check_point(*p, &format!("places.{name}"))?;
            self.places.insert(name.clone(), pos);
        }

        // Plumes and job groups first: sensors, incidents and units name them.
        let mut plume_ids = BTreeMap::new();
        let mut plumes = Vec::new();
        for (i, p) in raw.plume.iter().enumerate() {
            let f = format!("plume[{i}] {:?}", p.id);
            if plume_ids.insert(p.id.clone(), i).is_some() {
                return Err(format!("{f}: a second plume with this id"));
            }
            let start_s = time_of(&p.start, &format!("{f}.start"))?;
            let end_s = time_of(&p.end, &format!("{f}.end"))?;
            check_after(Some(start_s), end_s, &format!("{f}.end"))?;
            let wind_from = self.curve(&p.wind_from, false, &format!("{f}.wind_from"))?;
            if wind_from.points.is_empty() {
                return Err(format!("{f}.wind_from: needs at least one [time, degrees]"));
            }
            plumes.push(Plume {
                source: self.place(&p.source, &format!("{f}.source"))?,
                start_s,
                end_s,
                wind_from,
                length_m: check_positive(
                    p.length_m.unwrap_or(4_000.0),
                    MAX_RADIUS_M,
                    &format!("{f}.length_m"),
                )?,
                spread_deg: check_positive(
                    p.spread_deg.unwrap_or(10.0),
                    60.0,
                    &format!("{f}.spread_deg"),
                )?,
                ramp_s: match &p.ramp {
                    Some(r) => time_of(r, &format!("{f}.ramp"))?,
                    None => 600.0,
                },
            });
        }

        let mut rain_cells = Vec::new();
        for (i, c) in raw.rain_cell.iter().enumerate() {
            let f = format!("rain_cell[{i}]");
            let start_s = time_of(&c.start, &format!("{f}.start"))?;
            let end_s = time_of(&c.end, &format!("{f}.end"))?;
            check_after(Some(start_s), end_s, &format!("{f}.end"))?;
            rain_cells.push(RainCell {
                from: self.place(&c.from, &format!("{f}.from"))?,
                heading_deg: check_finite(c.heading_deg, &format!("{f}.heading_deg"))?,
                speed_mps: check_positive(c.speed_mps, 100.0, &format!("{f}.speed_mps"))?,
                radius_m: check_positive(c.radius_m, MAX_RADIUS_M, &format!("{f}.radius_m"))?,
                peak_mm_h: check_positive(c.peak_mm_h, 500.0, &format!("{f}.peak_mm_h"))?,
                start_s,
                end_s,
            });
        }

        let mut job_ids = BTreeMap::new();
        let mut jobs = Vec::new();
        for (i, j) in raw.jobs.iter().enumerate() {
            let f = format!("jobs[{i}] {:?}", j.id);
            if !valid_id(&j.id) || j.id.len() > 56 {
                return Err(format!(
                    "{f}.id: must be 1 to 56 of [A-Za-z0-9._-] (job ids are <id>-<n>)"
                ));
            }
            if job_ids.insert(j.id.clone(), i).is_some() {
                return Err(format!("{f}: a second job group with this id"));
            }
            if j.count == 0 || j.count > MAX_JOBS {
                return Err(format!(
                    "{f}.count: must be 1 to {MAX_JOBS}, got {}",
                    j.count
                ));
            }
            let start_s = time_of(&j.start, &format!("{f}.start"))?;
            let end_s = time_of(&j.end, &format!("{f}.end"))?;
            check_after(Some(start_s), end_s, &format!("{f}.end"))?;
            let peak_s = match &j.peak {
                Some(p) => {
                    let p = time_of(p, &format!("{f}.peak"))?;
                    if !(start_s..=end_s).contains(&p) {
                        return Err(format!(
                            "{f}.peak: {} is not between start and end",
                            clock(p)
                        ));
                    }
                    Some(p)
                }
                None => None,
            };
            let range = |r: &[Time; 2], field: &str| time_range(r, &format!("{f}.{field}"));
            let work_s = range(&j.work, "work")?;
            if work_s.0 <= 0.0 {
                return Err(format!("{f}.work: the work on scene must take some time"));
            }
            jobs.push(Jobs {
                id: j.id.clone(),
                count: j.count,
                keyword: j.keyword.clone(),
                title: j.title.clone(),
                severity: check_severity(j.severity.unwrap_or(1), &format!("{f}.severity"))?,
                centre: self.place(&j.centre, &format!("{f}.centre"))?,
                radius_m: check_positive(j.radius_m, MAX_RADIUS_M, &format!("{f}.radius_m"))?,
                start_s,
                end_s,
                peak_s,
                work_s,
                turn_out_s: match &j.turn_out {
                    Some(r) => range(r, "turn_out")?,
                    None => (120.0, 360.0),
                },
                size_m: check_positive(j.size_m.unwrap_or(30.0), 2_000.0, &format!("{f}.size_m"))?,
            });
        }

        let mut units = Vec::new();
        let mut unit_ids = BTreeMap::new();
        let mut dispatched = BTreeSet::new();
        for (i, u) in raw.unit.iter().enumerate() {
            let f = format!("unit[{i}] {:?}", u.id);
            if !valid_id(&u.id) {
                return Err(format!("{f}.id: must be 1 to 64 of [A-Za-z0-9._-]"));
            }
            if unit_ids.insert(u.id.clone(), i).is_some() {
                return Err(format!("{f}: a second unit with this id"));
            }
            for (field, text) in [
                ("callsign", &u.callsign),
                ("type", &u.unit_type),
                ("org", &u.org),
            ] {
                if text.trim().is_empty() {
                    return Err(format!("{f}.{field}: must not be empty"));
                }
            }
            let dispatch = match &u.dispatch {
                Some(name) => {
                    let Some(&g) = job_ids.get(name) else {
                        return Err(format!("{f}.dispatch: no [[jobs]] group {name:?}"));
                    };
                    if !u.timeline.is_empty() || u.missions.is_some() {
                        return Err(format!(
                            "{f}: a unit follows a timeline, is dispatched to jobs or plans its missions: one of them"
                        ));
                    }
                    dispatched.insert(g);
                    Some(g)
                }
                None => None,
            };
            let mut timeline = Vec::new();
            let mut prev = None;
            for (k, s) in u.timeline.iter().enumerate() {
                let sf = format!("{f}.timeline[{k}]");
                let at = time_of(&s.at, &format!("{sf}.at"))?;
                check_after(prev, at, &format!("{sf}.at"))?;
                check_within(at, duration_s, &format!("{sf}.at"))?;
                prev = Some(at);
                let then = match s.then {
                    Some(t) => {
                        if s.to.is_none() {
                            return Err(format!(
                                "{sf}.then: only a step with `to` arrives somewhere"
                            ));
                        }
                        Some(check_status(t, &format!("{sf}.then"))?)
                    }
                    None => None,
                };
                timeline.push(UnitStep {
                    at,
                    status: check_status(s.status, &format!("{sf}.status"))?,
                    to: match &s.to {
                        Some(w) => Some(self.place(w, &format!("{sf}.to"))?),
                        None => None,
                    },
                    then,
                });
            }
            if u.missions.is_some() && !u.timeline.is_empty() {
                return Err(format!(
                    "{f}: a unit follows a timeline, is dispatched to jobs or plans its missions: one of them"
                ));
            }
            let missions = match &u.missions {
                Some(m) => Some(self.missions(m, &format!("{f}.missions"))?),
                None => None,
            };
            units.push(UnitSpec {
                id: u.id.clone(),
                callsign: u.callsign.clone(),
                unit_type: u.unit_type.clone(),
                org: u.org.clone(),
                strength: u.strength,
                station: self.place(&u.station, &format!("{f}.station"))?,
                speed_mps: check_positive(
                    u.speed_mps.unwrap_or(DEFAULT_SPEED_MPS),
                    60.0,
                    &format!("{f}.speed_mps"),
                )?,
                timeline,
                dispatch,
                missions,
            });
        }
        for (g, j) in jobs.iter().enumerate() {
            if !dispatched.contains(&g) {
                return Err(format!(
                    "jobs[{g}] {:?}: no unit is dispatched to it (give units dispatch = {:?})",
                    j.id, j.id
                ));
            }
        }

        let mut sensors = Vec::new();
        let mut sensor_ids = BTreeSet::new();
        for (i, s) in raw.sensor.iter().enumerate() {
            let f = format!("sensor[{i}] {:?}", s.id);
            if !valid_id(&s.id) {
                return Err(format!("{f}.id: must be 1 to 64 of [A-Za-z0-9._-]"));
            }
            if !sensor_ids.insert(s.id.clone()) {
                return Err(format!("{f}: a second sensor with this id"));
            }
            if s.kind.trim().is_empty() || s.unit.trim().is_empty() {
                return Err(format!("{f}: kind and unit must not be empty"));
            }
            let follows = match &s.follows {
                Some(uid) => Some(
                    *unit_ids
                        .get(uid)
                        .ok_or_else(|| format!("{f}.follows: no unit {uid:?}"))?,
                ),
                None => None,
            };
            let pos = match (&s.place, follows) {
                (Some(w), _) => self.place(w, &format!("{f}.place"))?,
                (None, Some(u)) => units[u].station,
                (None, None) => {
                    return Err(format!(
                        "{f}: needs a place (or follows = \"<unit id>\" for a sensor on a vehicle)"
                    ));
                }
            };
            if let Some(th) = &s.thresholds
                && (th.iter().any(|x| !x.is_finite()) || th.windows(2).any(|w| w[0] >= w[1]))
            {
                return Err(format!("{f}.thresholds: must be finite and ascending"));
            }
            let plume = match (&s.plume, s.plume_peak) {
                (Some(p), Some(peak)) => {
                    let Some(&k) = plume_ids.get(p) else {
                        return Err(format!("{f}.plume: no [[plume]] {p:?}"));
                    };
                    Some((k, check_finite(peak, &format!("{f}.plume_peak"))?))
                }
                (Some(_), None) => {
                    return Err(format!(
                        "{f}.plume_peak: a sensor in a plume needs the value on its axis at the source"
                    ));
                }
                (None, Some(_)) => return Err(format!("{f}.plume_peak: set without a plume")),
                (None, None) => None,
            };
            let tide = match &s.tide {
                Some(t) => Some(Tide {
                    amplitude: check_finite(t.amplitude, &format!("{f}.tide.amplitude"))?,
                    period_s: match &t.period {
                        Some(p) => check_positive(
                            time_of(p, &format!("{f}.tide.period"))?,
                            MAX_DURATION_S,
                            &format!("{f}.tide.period"),
                        )?,
                        None => 12.42 * 3600.0,
                    },
                    high_water_s: time_of(&t.high_water, &format!("{f}.tide.high_water"))?,
                }),
                None => None,
            };
            let surge = match &s.surge {
                Some(b) => Some(Surge {
                    height: check_finite(b.height, &format!("{f}.surge.height"))?,
                    peak_s: time_of(&b.peak, &format!("{f}.surge.peak"))?,
                    width_s: check_positive(
                        time_of(&b.width, &format!("{f}.surge.width"))?,
                        MAX_DURATION_S,
                        &format!("{f}.surge.width"),
                    )?,
                }),
                None => None,
            };
            let noise = s.noise.unwrap_or(0.0);
            if !(noise.is_finite() && noise >= 0.0) {
                return Err(format!("{f}.noise: must be ≥ 0, got {noise}"));
            }
            if let (Some(lo), Some(hi)) = (s.min, s.max)
                && !(lo.is_finite() && hi.is_finite() && lo <= hi)
            {
                return Err(format!("{f}: min must not be above max"));
            }
            let decimals = s.decimals.unwrap_or(2);
            if decimals > 6 {
                return Err(format!("{f}.decimals: at most 6, got {decimals}"));
            }
            sensors.push(SensorSpec {
                id: s.id.clone(),
                kind: s.kind.clone(),
                unit: s.unit.clone(),
                name: s.name.clone(),
                pos,
                follows,
                thresholds: s.thresholds.clone(),
                curve: self.curve(&s.curve, s.step, &format!("{f}.curve"))?,
                tide,
                surge,
                noise,
                plume,
                rain: match s.rain {
                    Some(r) => Some(check_finite(r, &format!("{f}.rain"))?),
                    None => None,
                },
                min: s.min,
                max: s.max,
                decimals,
            });
        }

        let mut incidents = Vec::new();
        let mut incident_ids = BTreeSet::new();
        for (i, inc) in raw.incident.iter().enumerate() {
            let f = format!("incident[{i}] {:?}", inc.id);
            if !valid_id(&inc.id) {
                return Err(format!("{f}.id: must be 1 to 64 of [A-Za-z0-9._-]"));
            }
            if !incident_ids.insert(inc.id.clone()) {
                return Err(format!("{f}: a second incident with this id"));
            }
            if inc.keyword.trim().is_empty() {
                return Err(format!("{f}.keyword: must not be empty"));
            }
            let given = [
                inc.polygon.is_some(),
                inc.circle.is_some(),
                inc.plume.is_some(),
                inc.track.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(format!(
                    "{f}: give exactly one of polygon, circle, plume or track"
                ));
            }
            if inc.radius_m.is_some() && inc.track.is_none() {
                return Err(format!(
                    "{f}.radius_m: only a track has a radius (a circle has its own)"
                ));
            }
            let area = if let Some(points) = &inc.polygon {
                if points.len() < 3 {
                    return Err(format!("{f}.polygon: needs at least 3 points"));
                }
                let mut ring = Vec::with_capacity(points.len() + 1);
                for (k, w) in points.iter().enumerate() {
                    let p = self.place(w, &format!("{f}.polygon[{k}]"))?;
                    ring.push([p.lon, p.lat]);
                }
                if ring.first() != ring.last() {
                    ring.push(ring[0]);
                }
                Area::Polygon(ring)
            } else if let Some(c) = &inc.circle {
                Area::Circle {
                    centre: self.place(&c.centre, &format!("{f}.circle.centre"))?,
                    radius_m: check_positive(
                        c.radius_m,
                        MAX_RADIUS_M,
                        &format!("{f}.circle.radius_m"),
                    )?,
                }
            } else if let Some(p) = &inc.plume {
                Area::Plume(
                    *plume_ids
                        .get(p)
                        .ok_or_else(|| format!("{f}.plume: no [[plume]] {p:?}"))?,
                )
            } else {
                let track = inc.track.as_deref().unwrap_or_default();
                if track.is_empty() {
                    return Err(format!("{f}.track: needs at least one point"));
                }
                let mut points = Vec::new();
                let mut prev = None;
                for (k, p) in track.iter().enumerate() {
                    let at = time_of(&p.at, &format!("{f}.track[{k}].at"))?;
                    check_after(prev, at, &format!("{f}.track[{k}].at"))?;
                    prev = Some(at);
                    points.push((at, self.place(&p.place, &format!("{f}.track[{k}].place"))?));
                }
                Area::Track {
                    points,
                    radius_m: check_positive(
                        inc.radius_m.unwrap_or(100.0),
                        MAX_RADIUS_M,
                        &format!("{f}.radius_m"),
                    )?,
                }
            };
            if inc.timeline.is_empty() {
                return Err(format!("{f}.timeline: needs at least one entry"));
            }
            let mut timeline = Vec::new();
            let mut prev = None;
            let mut keyword = inc.keyword.clone();
            for (k, s) in inc.timeline.iter().enumerate() {
                let sf = format!("{f}.timeline[{k}]");
                let at = time_of(&s.at, &format!("{sf}.at"))?;
                check_after(prev, at, &format!("{sf}.at"))?;
                check_within(at, duration_s, &format!("{sf}.at"))?;
                prev = Some(at);
                if let Some(kw) = &s.keyword {
                    if kw.trim().is_empty() || s.closed {
                        return Err(format!(
                            "{sf}.keyword: must not be empty, and a closing entry has none"
                        ));
                    }
                    keyword = kw.clone();
                }
                let state = match (s.severity, s.closed) {
                    (Some(sev), false) => Some((
                        check_severity(sev, &format!("{sf}.severity"))?,
                        keyword.clone(),
                    )),
                    (None, true) => None,
                    _ => {
                        return Err(format!("{sf}: give either severity = 0…4 or closed = true"));
                    }
                };
                timeline.push((at, state));
            }
            incidents.push(IncidentSpec {
                id: inc.id.clone(),
                keyword: inc.keyword.clone(),
                title: inc.title.clone().unwrap_or_else(|| inc.keyword.clone()),
                area,
                timeline,
            });
        }
        for j in &jobs {
            if let Some(clash) = incident_ids.iter().find(|id| {
                id.strip_prefix(&format!("{}-", j.id))
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            }) {
                return Err(format!(
                    "incident {clash:?}: clashes with the ids of [[jobs]] {:?}",
                    j.id
                ));
            }
        }

        Ok(Spec {
            name: h.name,
            title: h.title,
            description: h.description,
            duration_s,
            repeat: h.repeat,
            sensors,
            units,
            incidents,
            plumes,
            rain_cells,
            jobs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid file, with `extra` appended.
    fn file(extra: &str) -> String {
        format!(
            "[scenario]\nname = \"t\"\ntitle = \"T\"\nduration = \"01:00\"\n\n[places]\nwache = [53.55, 10.0]\n{extra}"
        )
    }

    fn err(text: &str) -> String {
        match parse("t.toml", text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn times_read_as_clock_spans_or_seconds() {
        assert_eq!(parse_time_text("01:30"), Some(5400.0));
        assert_eq!(parse_time_text("01:30:15"), Some(5415.0));
        assert_eq!(parse_time_text("90s"), Some(90.0));
        assert_eq!(parse_time_text("10m"), Some(600.0));
        assert_eq!(parse_time_text("2h"), Some(7200.0));
        for bad in ["", "1:2:3:4", "01:75", "soon", "5d", "-1m", "1h30m"] {
            assert_eq!(parse_time_text(bad), None, "{bad}");
        }
        assert_eq!(clock(5415.0), "01:30:15");
    }

    #[test]
    fn the_built_in_files_are_valid_and_named_as_listed() {
        for name in crate::scenarios() {
            let text = crate::builtin_file(name).expect("a file");
            let spec = parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(spec.name, *name);
            assert!(
                !spec.sensors.is_empty() && !spec.units.is_empty() && !spec.incidents.is_empty()
                    || !spec.jobs.is_empty()
            );
        }
    }

    #[test]
    fn the_example_of_the_format_description_is_valid() {
        let doc = include_str!("../SCENARIOS.md");
        let example = doc
            .rsplit("```toml")
            .next()
            .and_then(|s| s.split("```").next())
            .expect("an example");
        let spec = parse("SCENARIOS.md", example).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.name, "uebung-altona");
        assert_eq!(spec.incidents[0].timeline.len(), 3);
    }

    #[test]
    fn a_minimal_file_is_read_with_defaults() {
        let spec = parse(
            "t.toml",
            &file(
                "[[sensor]]\nid = \"s\"\nkind = \"gas_co\"\nunit = \"ppm\"\nplace = \"wache\"\n\
                 curve = [[\"00:00\", 1], [600, 3.5]]\n\
                 [[unit]]\nid = \"u\"\ncallsign = \"HLF 1\"\ntype = \"HLF\"\norg = \"fire\"\nstation = [53.5, 10.0]\n\
                 timeline = [{ at = \"00:05\", status = 3, to = \"wache\", then = 4 }]\n\
                 [[incident]]\nid = \"i\"\nkeyword = \"FEU\"\ncircle = { centre = \"wache\", radius_m = 50 }\n\
                 timeline = [{ at = 0, severity = 2 }, { at = \"00:30\", severity = 3, keyword = \"FEU2\" }, { at = \"00:50\", closed = true }]\n",
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.repeat);
        assert_eq!(spec.duration_s, 3600.0);
        let s = &spec.sensors[0];
        assert_eq!(s.curve.at(300.0), 2.25);
        assert_eq!(s.curve.at(-5.0), 1.0);
        assert_eq!(s.curve.at(9_999.0), 3.5);
        assert_eq!(s.decimals, 2);
        assert_eq!(spec.units[0].speed_mps, DEFAULT_SPEED_MPS);
        assert_eq!(spec.units[0].timeline[0].to, Some(LatLon::new(53.55, 10.0)));
        assert_eq!(
            spec.incidents[0].timeline,
            vec![
                (0.0, Some((2, "FEU".to_owned()))),
                (1800.0, Some((3, "FEU2".to_owned()))),
                (3000.0, None)
            ]
        );
        let step = Curve {
            points: vec![(0.0, 1.0), (10.0, 0.0)],
            step: true,
        };
        assert_eq!(step.at(9.0), 1.0);
        assert_eq!(step.at(10.0), 0.0);
    }

    #[test]
    fn syntax_and_type_errors_name_the_line() {
        let e = err(
            "[scenario]\nname = \"t\"\ntitle = \"T\"\nduration = \"01:00\"\n[[sensor]]\nid = \"s\"\nkind = 5\n",
        );
        assert!(e.starts_with("t.toml: "), "{e}");
        assert!(e.contains("line 7"), "{e}");
        let e = err(&file(
            "[[sensor]]\nid = \"s\"\nkind = \"k\"\nunit = \"u\"\nplace = \"wache\"\ncolour = \"red\"\n",
        ));
        assert!(e.contains("colour") && e.contains("line 13"), "{e}");
        let e = err("[scenario]\nname = \"t\"\n");
        assert!(e.contains("missing field `title`"), "{e}");
        let e = err(&file("[[unit]\n"));
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn rule_violations_name_the_field() {
        let unit = |timeline: &str| {
            file(&format!(
                "[[unit]]\nid = \"fw-1\"\ncallsign = \"HLF 1\"\ntype = \"HLF\"\norg = \"fire\"\nstation = \"wache\"\ntimeline = [{timeline}]\n"
            ))
        };
        for (text, needle) in [
            (
                unit("{ at = \"00:10\", status = 3 }, { at = \"00:05\", status = 4 }"),
                "unit[0] \"fw-1\".timeline[1].at: 00:05:00 is not after the entry before it (00:10:00)",
            ),
            (
                unit("{ at = \"00:10\", status = 3, to = \"brandstelle\" }"),
                "unit[0] \"fw-1\".timeline[0].to: unknown place \"brandstelle\"",
            ),
            (
                unit("{ at = \"00:10\", status = 12 }"),
                "timeline[0].status: a radio status is 0…9, got 12",
            ),
            (
                unit("{ at = \"soon\", status = 2 }"),
                "timeline[0].at: \"soon\" is not a time",
            ),
            (
                unit("{ at = \"01:00\", status = 2 }"),
                "timeline[0].at: 01:00:00 is not before the end of the scenario (01:00:00)",
            ),
            (
                unit("{ at = 0, status = 2, then = 4 }"),
                "timeline[0].then: only a step with `to`",
            ),
            (
                file(
                    "[[sensor]]\nid = \"bad id!\"\nkind = \"k\"\nunit = \"u\"\nplace = \"wache\"\n",
                ),
                "sensor[0] \"bad id!\".id",
            ),
            (
                file("[[sensor]]\nid = \"s\"\nkind = \"k\"\nunit = \"u\"\n"),
                "sensor[0] \"s\": needs a place",
            ),
            (
                file("[[sensor]]\nid = \"s\"\nkind = \"k\"\nunit = \"u\"\nplace = [95.0, 10.0]\n"),
                "sensor[0] \"s\".place: latitude 95 is outside",
            ),
            (
                file(
                    "[[sensor]]\nid = \"s\"\nkind = \"k\"\nunit = \"u\"\nplace = \"wache\"\nplume = \"rauch\"\nplume_peak = 5\n",
                ),
                "sensor[0] \"s\".plume: no [[plume]] \"rauch\"",
            ),
            (
                file(
                    "[[sensor]]\nid = \"s\"\nkind = \"k\"\nunit = \"u\"\nplace = \"wache\"\nthresholds = [3, 2]\n",
                ),
                "thresholds: must be finite and ascending",
            ),
            (
                file(
                    "[[incident]]\nid = \"i\"\nkeyword = \"FEU\"\ntimeline = [{ at = 0, severity = 2 }]\n",
                ),
                "incident[0] \"i\": give exactly one of polygon, circle, plume or track",
            ),
            (
                file(
                    "[[incident]]\nid = \"i\"\nkeyword = \"FEU\"\ncircle = { centre = \"wache\", radius_m = 10 }\ntimeline = [{ at = 0, severity = 7 }]\n",
                ),
                "timeline[0].severity: a severity is 0…4, got 7",
            ),
            (
                file(
                    "[[incident]]\nid = \"i\"\nkeyword = \"FEU\"\ncircle = { centre = \"wache\", radius_m = 10 }\ntimeline = [{ at = 0 }]\n",
                ),
                "timeline[0]: give either severity = 0…4 or closed = true",
            ),
            (
                file(
                    "[[jobs]]\nid = \"wasser\"\ncount = 3\nkeyword = \"W\"\ntitle = \"W\"\ncentre = \"wache\"\nradius_m = 100\nstart = 0\nend = \"00:30\"\nwork = [\"00:10\", \"00:20\"]\n",
                ),
                "jobs[0] \"wasser\": no unit is dispatched to it",
            ),
            (
                file(
                    "[[unit]]\nid = \"m\"\ncallsign = \"RTW 1\"\ntype = \"RTW\"\norg = \"rescue\"\nstation = \"wache\"\n[unit.missions]\nto = []\nwait = [0, 60]\non_scene = [60, 120]\n",
                ),
                "unit[0] \"m\".missions.to: needs at least one place",
            ),
            (
                file(
                    "[[unit]]\nid = \"m\"\ncallsign = \"RTW 1\"\ntype = \"RTW\"\norg = \"rescue\"\nstation = \"wache\"\n[unit.missions]\nto = [\"wache\"]\nwait = [0, 60]\non_scene = [60, 120]\npause = 1.5\n",
                ),
                "unit[0] \"m\".missions.pause: a share is 0…1, got 1.5",
            ),
            (
                file(
                    "[[unit]]\nid = \"m\"\ncallsign = \"RTW 1\"\ntype = \"RTW\"\norg = \"rescue\"\nstation = \"wache\"\ntimeline = [{ at = 0, status = 2 }]\n[unit.missions]\nto = [\"wache\"]\nwait = [0, 60]\non_scene = [60, 120]\n",
                ),
                "plans its missions: one of them",
            ),
            (
                file(
                    "[[unit]]\nid = \"m\"\ncallsign = \"RTW 1\"\ntype = \"RTW\"\norg = \"rescue\"\nstation = \"wache\"\n[unit.missions]\nto = [\"wache\"]\nwait = [\"00:30\", \"00:10\"]\non_scene = [60, 120]\n",
                ),
                "unit[0] \"m\".missions.wait: the second time is before the first",
            ),
            (
                file(
                    "[[sensor]]\nid = \"s\"\nkind = \"k\"\nunit = \"u\"\nplace = \"wache\"\nsurge = { height = 2, peak = \"00:30\", width = 0 }\n",
                ),
                "sensor[0] \"s\".surge.width: must be above 0",
            ),
            (
                "[scenario]\nname = \"Big Fire\"\ntitle = \"T\"\nduration = 60\n".to_owned(),
                "scenario.name: \"Big Fire\" must be 1 to 32 of [a-z0-9-]",
            ),
            (
                "[scenario]\nname = \"t\"\ntitle = \"T\"\nduration = 0\n".to_owned(),
                "scenario.duration: must be above 0",
            ),
        ] {
            let e = err(&text);
            assert!(e.starts_with("t.toml: "), "{e}");
            assert!(e.contains(needle), "expected {needle:?} in {e:?}");
        }
    }
}
