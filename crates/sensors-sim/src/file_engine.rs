//! Plays a scenario file ([`Spec`]): sensors whose values follow keyframes,
//! a tide, a smoke plume or moving rain cells; units driving the legs of
//! their timelines or dispatched to generated jobs; incidents opening,
//! escalating, moving and closing. A pure function of the seed and the
//! `(scenario time, wall time)` steps, like the built-in Rust scenario.
//!
//! Everything that does not depend on time is worked out once when the
//! scenario is built: each unit's legs over one run of the timeline, and
//! the generated jobs with the units sent to them.

use std::f64::consts::{PI, TAU};
use std::sync::Arc;

use ingest::wire::{
    SensorMetaMsg, SensorObsMsg, UnitMetaMsg, WireTime, incident_topic, sensor_meta_topic,
    sensor_obs_topic, unit_meta_topic, unit_pos_topic, unit_status_topic,
};

use crate::geo::{LatLon, circle_ring, round_to};
use crate::motion::{Leg, status_msgs, tracker_fix, wall_time_between};
use crate::rng::Rng;
use crate::scenario::{IncidentState, MetaRefresh, Msg, incident_msg, scenario_time};
use crate::scenario_file::{Area, Jobs, Missions, Plume, RainCell, SensorSpec, Spec, UnitSpec};

/// Streets are not straight lines: a drive takes this much longer than the
/// straight distance at the unit's speed.
const ROAD_FACTOR: f64 = 1.3;
/// A job no unit can take is closed this long after it would have been
/// done (another agency took it).
const UNSERVED_JOB_S: f64 = 1_800.0;
const NOISE_STREAM: u64 = 2_000;
const JOBS_STREAM: u64 = 2_001;
/// Each unit's missions draw from their own stream, from this one on.
const MISSIONS_STREAM: u64 = 2_100;
/// At most this many missions per unit and run of the timeline.
const MAX_MISSIONS: usize = 10_000;

/// An open incident as published: severity, keyword, ring.
type Shown = (u8, String, Vec<[f64; 2]>);

/// An incident as played: its area and its timeline.
#[derive(Debug, Clone)]
struct IncidentPlay {
    id: String,
    title: String,
    area: Area,
    timeline: Vec<(f64, Option<(u8, String)>)>,
    /// A generated job (not written in the file).
    generated: bool,
    /// What was last published; `None` before the first step.
    published: Option<Option<Shown>>,
}

#[derive(Debug, Clone)]
struct UnitPlay {
    /// Contiguous legs over `[0, duration]`.
    legs: Vec<Leg>,
    /// Wall time of the last status sent, to keep them strictly increasing.
    last_status_ms: i64,
}

/// State of a run of a scenario file.
#[derive(Debug, Clone)]
pub(crate) struct FileScenario {
    spec: Arc<Spec>,
    space: String,
    units: Vec<UnitPlay>,
    incidents: Vec<IncidentPlay>,
    /// Observations sent per sensor.
    sent: Vec<u64>,
    noise: Rng,
    seq_base: Option<u64>,
    meta_refresh: MetaRefresh,
    prev: Option<(f64, i64)>,
}

impl FileScenario {
    pub(crate) fn new(spec: Arc<Spec>, space: &str, seed: u64) -> Self {
        let d = spec.duration_s;
        let mut units: Vec<UnitPlay> = spec
            .units
            .iter()
            .zip(0u64..)
            .map(|(u, i)| UnitPlay {
                legs: match &u.missions {
                    Some(m) => mission_legs(u, m, d, &mut Rng::new(seed, MISSIONS_STREAM + i)),
                    None => timeline_legs(u, d),
                },
                last_status_ms: i64::MIN,
            })
            .collect();
        let mut incidents: Vec<IncidentPlay> = spec
            .incidents
            .iter()
            .map(|i| IncidentPlay {
                id: i.id.clone(),
                title: i.title.clone(),
                area: i.area.clone(),
                timeline: i.timeline.clone(),
                generated: false,
                published: None,
            })
            .collect();
        let mut rng = Rng::new(seed, JOBS_STREAM);
        for (g, jobs) in spec.jobs.iter().enumerate() {
            let members: Vec<usize> = (0..spec.units.len())
                .filter(|&u| spec.units[u].dispatch == Some(g))
                .collect();
            let (legs, generated) = dispatch(jobs, &members, &spec.units, d, &mut rng);
            for (u, l) in members.iter().zip(legs) {
                units[*u].legs = l;
            }
            incidents.extend(generated);
        }
        FileScenario {
            sent: vec![0; spec.sensors.len()],
            spec,
            space: space.to_owned(),
            units,
            incidents,
            noise: Rng::new(seed, NOISE_STREAM),
            seq_base: None,
            meta_refresh: MetaRefresh::default(),
            prev: None,
        }
    }

    /// Scenario time within the timeline: wrapped when it repeats, held at
    /// the end otherwise.
    fn episode(&self, t: f64) -> f64 {
        let d = self.spec.duration_s;
        if self.spec.repeat {
            t.rem_euclid(d)
        } else {
            t.min(d)
        }
    }

    pub(crate) fn step(&mut self, scenario_s: f64, wall_ms: i64) -> Vec<Msg> {
        let t = scenario_time(scenario_s);
        // Time went back (a restarted clock): forget what was published.
        if self.prev.is_some_and(|(pt, _)| t < pt) {
            self.prev = None;
        }
        let refresh = self.meta_refresh.due(wall_ms);
        let mut out = Vec::new();
        if refresh {
            self.metas(&mut out);
        }
        let tau = self.episode(t);
        self.incidents(tau, wall_ms, refresh, &mut out);
        self.units(t, tau, wall_ms, refresh, &mut out);
        self.observations(tau, wall_ms, &mut out);
        self.prev = Some((t, wall_ms));
        out
    }

    fn metas(&self, out: &mut Vec<Msg>) {
        for s in &self.spec.sensors {
            let meta = SensorMetaMsg {
                kind: s.kind.clone(),
                unit: s.unit.clone(),
                lat: s.pos.lat,
                lon: s.pos.lon,
                name: s.name.clone(),
                thresholds: s.thresholds.clone(),
            };
            out.extend(Msg::json(
                sensor_meta_topic(&self.space, &s.id),
                &meta,
                true,
            ));
        }
        for u in &self.spec.units {
            let meta = UnitMetaMsg {
                callsign: u.callsign.clone(),
                unit_type: u.unit_type.clone(),
                org: u.org.clone(),
                strength: u.strength,
            };
            out.extend(Msg::json(unit_meta_topic(&self.space, &u.id), &meta, true));
        }
    }

    fn incidents(&mut self, tau: f64, wall_ms: i64, refresh: bool, out: &mut Vec<Msg>) {
        for inc in &mut self.incidents {
            let state = inc
                .timeline
                .iter()
                .take_while(|(at, _)| *at <= tau)
                .last()
                .and_then(|(_, s)| s.as_ref());
            let now =
                state.map(|(sev, kw)| (*sev, kw.clone(), ring(&inc.area, &self.spec.plumes, tau)));
            let changed = inc.published.as_ref() != Some(&now);
            // A job not yet come in needs no closing message at the start
            // (a written incident gets one, clearing an earlier run's).
            if inc.generated && inc.published.is_none() && now.is_none() {
                inc.published = Some(None);
                continue;
            }
            if !(changed || (refresh && now.is_some())) {
                continue;
            }
            out.extend(incident_msg(
                incident_topic(&self.space, &inc.id),
                wall_ms,
                now.as_ref().map(|(severity, keyword, ring)| IncidentState {
                    keyword,
                    title: &inc.title,
                    severity: *severity,
                    ring,
                }),
            ));
            inc.published = Some(now);
        }
    }

    fn units(&mut self, t: f64, tau: f64, wall_ms: i64, refresh: bool, out: &mut Vec<Msg>) {
        let prev = self.prev;
        let (d, repeat) = (self.spec.duration_s, self.spec.repeat);
        for (u, spec) in self.units.iter_mut().zip(&self.spec.units) {
            let mut changes: Vec<(i64, u8)> = match prev {
                Some((pt, pw)) if t > pt => status_changes(&u.legs, d, repeat, pt, t)
                    .into_iter()
                    .map(|(at, status)| (wall_time_between(at, (pt, pw), (t, wall_ms)), status))
                    .collect(),
                _ => Vec::new(),
            };
            let leg = leg_at(&u.legs, tau);
            if changes.is_empty()
                && (prev.is_none() || refresh)
                && let Some(leg) = leg
            {
                changes.push((wall_ms, leg.status));
            }
            status_msgs(
                &unit_status_topic(&self.space, &spec.id),
                changes,
                &mut u.last_status_ms,
                out,
            );
            let Some(leg) = leg else { continue };
            out.extend(tracker_fix(
                unit_pos_topic(&self.space, &spec.id),
                leg,
                tau,
                leg.speed > 0.0 && tau < leg.end,
                wall_ms,
                &mut self.noise,
            ));
        }
    }

    fn observations(&mut self, tau: f64, wall_ms: i64, out: &mut Vec<Msg>) {
        let base = *self
            .seq_base
            .get_or_insert_with(|| u64::try_from(wall_ms).unwrap_or(0));
        for (i, s) in self.spec.sensors.iter().enumerate() {
            let carried = s
                .follows
                .and_then(|u| leg_at(&self.units[u].legs, tau))
                .map(|leg| leg.position(tau));
            let pos = carried.unwrap_or(s.pos);
            let value = sensor_value(s, &self.spec, tau, pos, &mut self.noise);
            let msg = SensorObsMsg {
                ts: WireTime::rfc3339(wall_ms),
                value,
                lat: carried.map(|p| round_to(p.lat, 6)),
                lon: carried.map(|p| round_to(p.lon, 6)),
                seq: Some(base.saturating_add(self.sent[i])),
                quality: None,
            };
            self.sent[i] += 1;
            out.extend(Msg::json(sensor_obs_topic(&self.space, &s.id), &msg, false));
        }
    }
}

// ---------------------------------------------------------------------------
// Values.

fn sensor_value(s: &SensorSpec, spec: &Spec, tau: f64, pos: LatLon, noise: &mut Rng) -> f64 {
    let mut v = s.curve.at(tau);
    if let Some(tide) = &s.tide {
        v += tide.amplitude * (TAU * (tau - tide.high_water_s) / tide.period_s).cos();
    }
    if let Some(b) = &s.surge {
        v += b.height * (-0.5 * ((tau - b.peak_s) / b.width_s).powi(2)).exp();
    }
    if let Some((p, peak)) = s.plume
        && let Some(plume) = spec.plumes.get(p)
    {
        v += peak * plume_share(plume, tau, pos);
    }
    if let Some(scale) = s.rain {
        v += scale * rain_at(&spec.rain_cells, tau, pos);
    }
    if s.noise > 0.0 {
        v += noise.noise(s.noise, 3.0 * s.noise);
    }
    if let Some(lo) = s.min {
        v = v.max(lo);
    }
    if let Some(hi) = s.max {
        v = v.min(hi);
    }
    round_to(v, i32::from(s.decimals))
}

/// How strong the fire burns at `tau`, 0…1: ramps up from its start and
/// down to its end.
fn plume_strength(p: &Plume, tau: f64) -> f64 {
    let ramp = p.ramp_s.max(1.0);
    ((tau - p.start_s) / ramp).clamp(0.0, 1.0) * ((p.end_s - tau) / ramp).clamp(0.0, 1.0)
}

/// Downwind bearing of a plume at `tau`.
fn downwind_deg(p: &Plume, tau: f64) -> f64 {
    (p.wind_from.at(tau) + 180.0).rem_euclid(360.0)
}

/// Share (0…1) of the value on the plume's axis at its source found at
/// `pos`: a cone downwind that widens with `spread_deg` and fades over
/// `length_m`.
fn plume_share(p: &Plume, tau: f64, pos: LatLon) -> f64 {
    let strength = plume_strength(p, tau);
    if strength <= 0.0 {
        return 0.0;
    }
    let d = p.source.distance_m(pos);
    if d < 1.0 {
        return strength;
    }
    let off = (p.source.bearing_deg(pos) - downwind_deg(p, tau)).to_radians();
    let (x, y) = (d * off.cos(), d * off.sin());
    if x <= 0.0 {
        // Upwind: only right by the fire.
        return strength * (-0.5 * (d / 80.0).powi(2)).exp();
    }
    let sigma = 40.0 + x * p.spread_deg.to_radians().tan();
    strength * (-0.5 * (y / sigma).powi(2)).exp() * (-x / p.length_m).exp()
}

/// The plume's area: the cone out to its length, two widths either side.
fn plume_ring(p: &Plume, tau: f64) -> Vec<[f64; 2]> {
    let beta = downwind_deg(p, tau).to_radians();
    let at = |x: f64, y: f64| {
        let q = p.source.offset_m(
            x * beta.cos() - y * beta.sin(),
            x * beta.sin() + y * beta.cos(),
        );
        [round_to(q.lon, 4), round_to(q.lat, 4)]
    };
    let half = |x: f64| 2.0 * (40.0 + x * p.spread_deg.to_radians().tan());
    let xs: Vec<f64> = (1..=4).map(|k| p.length_m * f64::from(k) / 4.0).collect();
    let mut ring = vec![at(-100.0, 0.0)];
    ring.extend(xs.iter().map(|&x| at(x, half(x))));
    ring.extend(xs.iter().rev().map(|&x| at(x, -half(x))));
    ring.push(at(-100.0, 0.0));
    ring
}

/// Rain rate at `pos`: every active cell, a bell in space moving along
/// its heading, rising and falling over its lifetime.
fn rain_at(cells: &[RainCell], tau: f64, pos: LatLon) -> f64 {
    cells
        .iter()
        .filter(|c| (c.start_s..=c.end_s).contains(&tau))
        .map(|c| {
            let age = tau - c.start_s;
            let life = (PI * age / (c.end_s - c.start_s)).sin();
            let run = c.speed_mps * age;
            let h = c.heading_deg.to_radians();
            let centre = c.from.offset_m(run * h.cos(), run * h.sin());
            let d = centre.distance_m(pos);
            c.peak_mm_h * life * (-0.5 * (d / c.radius_m).powi(2)).exp()
        })
        .sum()
}

/// An incident's ring at `tau`.
fn ring(area: &Area, plumes: &[Plume], tau: f64) -> Vec<[f64; 2]> {
    match area {
        Area::Polygon(ring) => ring.clone(),
        Area::Circle { centre, radius_m } => circle_ring(*centre, *radius_m, 16),
        Area::Plume(p) => plumes
            .get(*p)
            .map(|p| plume_ring(p, tau))
            .unwrap_or_default(),
        Area::Track { points, radius_m } => {
            let p = track_position(points, tau);
            circle_ring(
                LatLon::new(round_to(p.lat, 4), round_to(p.lon, 4)),
                *radius_m,
                12,
            )
        }
    }
}

fn track_position(points: &[(f64, LatLon)], tau: f64) -> LatLon {
    let i = points.partition_point(|p| p.0 <= tau);
    match (i.checked_sub(1).and_then(|k| points.get(k)), points.get(i)) {
        (Some(&(t0, a)), Some(&(t1, b))) => a.lerp(b, ((tau - t0) / (t1 - t0)).clamp(0.0, 1.0)),
        (Some(&(_, a)), None) | (None, Some(&(_, a))) => a,
        (None, None) => LatLon::new(0.0, 0.0),
    }
}

// ---------------------------------------------------------------------------
// Units.

/// The leg under way at `tau` (legs are contiguous and sorted).
fn leg_at(legs: &[Leg], tau: f64) -> Option<&Leg> {
    let i = legs.partition_point(|l| l.end <= tau);
    legs.get(i).or(legs.last())
}

/// Status changes in `(from, to]` (absolute scenario times) with their
/// times; over a wrap of a repeating timeline too.
fn status_changes(legs: &[Leg], d: f64, repeat: bool, from: f64, to: f64) -> Vec<(f64, u8)> {
    let ep = |t: f64| if repeat { t.rem_euclid(d) } else { t.min(d) };
    let mut status = leg_at(legs, ep(from)).map(|l| l.status);
    let mut out = Vec::new();
    let (k0, k1) = if repeat {
        let k1 = (to / d).floor();
        ((from / d).floor().max(k1 - 2.0), k1)
    } else {
        (0.0, 0.0)
    };
    let mut k = k0;
    while k <= k1 {
        for leg in legs {
            let at = leg.start + k * d;
            if at > from && at <= to && (repeat || at < d) {
                if status != Some(leg.status) {
                    out.push((at, leg.status));
                }
                status = Some(leg.status);
            }
        }
        k += 1.0;
    }
    out
}

/// Builds legs one after the other from a unit's position.
#[derive(Clone)]
struct LegBuilder {
    legs: Vec<Leg>,
    pos: LatLon,
    heading: f64,
    speed: f64,
}

impl LegBuilder {
    fn new(at: LatLon, speed: f64) -> Self {
        LegBuilder {
            legs: Vec::new(),
            pos: at,
            heading: 0.0,
            speed,
        }
    }

    /// Appends a leg from the current position to `to` (moving there),
    /// unless it would take no time.
    fn push(&mut self, start: f64, end: f64, status: u8, to: LatLon, speed: f64) {
        if end > start {
            self.legs.push(Leg {
                start,
                end,
                status,
                from: self.pos,
                to,
                speed,
                heading: self.heading,
            });
        }
        self.pos = to;
    }

    fn stay(&mut self, start: f64, end: f64, status: u8) {
        self.push(start, end, status, self.pos, 0.0);
    }

    /// Seconds to drive to `to`.
    fn travel_s(&self, to: LatLon) -> f64 {
        self.pos.distance_m(to) * ROAD_FACTOR / self.speed
    }

    /// Drives towards `to` from `start`; stops where it is at `until` if it
    /// has not arrived by then. Returns the arrival time, if it arrived.
    fn drive(&mut self, start: f64, until: f64, status: u8, to: LatLon) -> Option<f64> {
        let travel = self.travel_s(to);
        if travel < 1.0 {
            self.pos = to;
            return Some(start);
        }
        let heading = round_to(self.pos.bearing_deg(to), 1);
        self.heading = if heading >= 360.0 { 0.0 } else { heading };
        let arrive = start + travel;
        let (end, dest) = if arrive <= until {
            (arrive, to)
        } else {
            (until, self.pos.lerp(to, (until - start) / travel))
        };
        self.push(start, end, status, dest, self.speed);
        (arrive <= until).then_some(arrive)
    }

    /// When the last leg ends.
    fn end(&self) -> f64 {
        self.legs.last().map_or(0.0, |l| l.end)
    }

    /// Stays in `status` for `span_s` after the last leg.
    fn stay_for(&mut self, span_s: f64, status: u8) {
        let start = self.end();
        self.stay(start, start + span_s, status);
    }

    /// Drives to `to` after the last leg, in `status`.
    fn drive_on(&mut self, status: u8, to: LatLon) {
        let start = self.end();
        self.drive(start, f64::INFINITY, status, to);
    }

    /// The legs, never empty: a unit with nothing to do stands at its
    /// station in status 2 all along.
    fn finish(mut self, d: f64) -> Vec<Leg> {
        if self.legs.is_empty() {
            self.stay(0.0, d.max(1.0), 2);
        }
        self.legs
    }
}

/// The legs of a unit's written timeline over `[0, d]`.
fn timeline_legs(u: &UnitSpec, d: f64) -> Vec<Leg> {
    let mut b = LegBuilder::new(u.station, u.speed_mps);
    let first = u.timeline.first().map_or(d, |s| s.at.min(d));
    b.stay(0.0, first, 2);
    for (i, s) in u.timeline.iter().enumerate() {
        if s.at >= d {
            break;
        }
        let until = u.timeline.get(i + 1).map_or(d, |n| n.at.min(d));
        match s.to {
            Some(to) => {
                if let Some(arrived) = b.drive(s.at, until, s.status, to) {
                    b.stay(arrived, until, s.then.unwrap_or(s.status));
                }
            }
            None => b.stay(s.at, until, s.status),
        }
    }
    b.finish(d)
}

/// The legs of a unit planning its own missions from `rng` over `[0, d]`:
/// only missions that are over (the unit back at its station) by `d`, so a
/// repeating timeline starts again where it ended.
fn mission_legs(u: &UnitSpec, m: &Missions, d: f64, rng: &mut Rng) -> Vec<Leg> {
    let range = |rng: &mut Rng, (lo, hi): (f64, f64)| rng.range(lo, hi);
    let mut b = LegBuilder::new(u.station, u.speed_mps);
    for n in 0..MAX_MISSIONS {
        let mut next = b.clone();
        next.stay_for(
            range(rng, if n == 0 { m.first_wait_s } else { m.wait_s }),
            2,
        );
        let site = m.to[rng.index(m.to.len())];
        let scene = site.offset_m(
            rng.range(-m.spread_m, m.spread_m),
            rng.range(-m.spread_m, m.spread_m),
        );
        next.drive_on(3, scene);
        let work = range(rng, m.on_scene_s);
        if m.transport.is_empty() && rng.chance(m.speak) {
            // A request to speak (status 5) in the middle of the work.
            let before = work * rng.range(0.2, 0.7);
            next.stay_for(before, 4);
            next.stay_for(rng.range(45.0, 150.0), 5);
            next.stay_for(work - before, 4);
        } else {
            next.stay_for(work, 4);
        }
        if !m.transport.is_empty() {
            let hospital = m.transport[rng.index(m.transport.len())];
            next.drive_on(7, hospital);
            next.stay_for(range(rng, m.handover_s), 8);
        }
        next.drive_on(1, u.station);
        if rng.chance(m.pause) {
            // Back, but not ready yet: refuel, clean, restock.
            next.stay_for(range(rng, m.pause_s), 6);
        }
        if next.end() > d {
            break;
        }
        b = next;
    }
    let end = b.end();
    b.stay(end, d, 2);
    b.finish(d)
}

/// A time between `start` and `end`, most likely near `peak` (triangular).
fn job_time(j: &Jobs, rng: &mut Rng) -> f64 {
    let (a, b) = (j.start_s, j.end_s);
    let c = j.peak_s.unwrap_or((a + b) / 2.0);
    let u = rng.unit();
    let share = (c - a) / (b - a);
    if u < share {
        a + (u * (b - a) * (c - a)).sqrt()
    } else {
        b - ((1.0 - u) * (b - a) * (b - c)).sqrt()
    }
}

/// Generates a group's jobs and sends its units: each job, in the order
/// they come in, goes to the unit that can be there first (a unit takes a
/// new job once back at its station). Returns each member's legs and the
/// jobs as incidents.
fn dispatch(
    jobs: &Jobs,
    members: &[usize],
    units: &[UnitSpec],
    d: f64,
    rng: &mut Rng,
) -> (Vec<Vec<Leg>>, Vec<IncidentPlay>) {
    let mut list: Vec<(f64, LatLon, f64)> = (0..jobs.count)
        .map(|_| {
            let t = job_time(jobs, rng);
            let r = jobs.radius_m * rng.unit().sqrt();
            let a = rng.range(0.0, TAU);
            let p = jobs.centre.offset_m(r * a.cos(), r * a.sin());
            (t, p, rng.range(jobs.work_s.0, jobs.work_s.1))
        })
        .collect();
    list.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut builders: Vec<LegBuilder> = members
        .iter()
        .map(|&u| LegBuilder::new(units[u].station, units[u].speed_mps))
        .collect();
    let mut free_at = vec![0.0f64; members.len()];
    let mut incidents = Vec::with_capacity(list.len());
    for (n, (open, pos, work)) in list.into_iter().enumerate() {
        let turn_out = rng.range(jobs.turn_out_s.0, jobs.turn_out_s.1);
        let pause = rng.chance(0.15).then(|| rng.range(600.0, 1_200.0));
        let best = (0..members.len())
            .map(|k| {
                let home = units[members[k]].station;
                let travel = home.distance_m(pos) * ROAD_FACTOR / units[members[k]].speed_mps;
                (k, free_at[k].max(open) + turn_out + travel, travel)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let mut close = open + work + UNSERVED_JOB_S;
        if let Some((k, arrive, travel)) = best {
            let leave = arrive + work;
            let back = leave + travel;
            if back + pause.unwrap_or(0.0) < d {
                let b = &mut builders[k];
                let alarm = free_at[k].max(open);
                let depart = alarm + turn_out;
                let cursor = b.legs.last().map_or(0.0, |l| l.end);
                b.stay(cursor, depart, 2);
                let home = b.pos;
                b.drive(depart, arrive, 3, pos);
                b.stay(arrive, leave, 4);
                b.drive(leave, back, 1, home);
                free_at[k] = back;
                if let Some(p) = pause {
                    // Back, but not ready yet: refuel, clean, restock.
                    b.stay(back, back + p, 6);
                    free_at[k] = back + p;
                }
                close = leave;
            }
        }
        incidents.push(IncidentPlay {
            id: format!("{}-{}", jobs.id, n + 1),
            title: jobs.title.clone(),
            area: Area::Circle {
                centre: LatLon::new(round_to(pos.lat, 5), round_to(pos.lon, 5)),
                radius_m: jobs.size_m,
            },
            timeline: vec![
                (open, Some((jobs.severity, jobs.keyword.clone()))),
                (close.min(d), None),
            ],
            generated: true,
            published: None,
        });
    }
    let legs = builders
        .into_iter()
        .map(|mut b| {
            let cursor = b.legs.last().map_or(0.0, |l| l.end);
            b.stay(cursor, d, 2);
            b.finish(d)
        })
        .collect();
    (legs, incidents)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use ingest::wire::{IncidentMsg, UnitPosMsg, UnitStatusMsg};

    use super::*;
    use crate::Scenario;
    use crate::test_support::{T0_MS, split_topic};

    const SPACE: &str = "drill-file";

    /// One step: wall time, scenario time, messages.
    type Step = (i64, f64, Vec<Msg>);

    /// Plays `scenario_s` of scenario time in steps of `step_s`, one wall
    /// second per step.
    fn play(name: &str, seed: u64, step_s: f64, scenario_s: f64) -> Vec<Step> {
        let mut sc = Scenario::new(name, SPACE, seed).expect("scenario");
        let mut out = Vec::new();
        let mut k = 0i64;
        loop {
            let t = k as f64 * step_s;
            if t > scenario_s {
                break;
            }
            let wall = T0_MS + k * 1000;
            out.push((wall, t, sc.step(t, wall)));
            k += 1;
        }
        out
    }

    fn split(topic: &str) -> (String, String, String) {
        split_topic(topic, SPACE)
    }

    /// `(scenario time, value, carried position)` of one reading.
    type Reading = (f64, f64, Option<(f64, f64)>);

    /// The readings of one sensor.
    fn series(steps: &[Step], id: &str) -> Vec<Reading> {
        let topic = sensor_obs_topic(SPACE, id);
        steps
            .iter()
            .flat_map(|(_, t, msgs)| {
                msgs.iter().filter(|m| m.topic == topic).map(|m| {
                    let o: SensorObsMsg = serde_json::from_slice(&m.payload).expect("obs");
                    (*t, o.value, o.lat.zip(o.lon))
                })
            })
            .collect()
    }

    fn max_of(s: &[Reading]) -> f64 {
        s.iter().map(|v| v.1).fold(f64::MIN, f64::max)
    }

    /// Status sequences per unit (repeats collapsed).
    fn statuses(steps: &[Step]) -> BTreeMap<String, Vec<u8>> {
        let mut seen = BTreeMap::<String, Vec<u8>>::new();
        for (_, _, msgs) in steps {
            for m in msgs.iter().filter(|m| m.topic.ends_with("/status")) {
                let (_, id, _) = split(&m.topic);
                let st: UnitStatusMsg = serde_json::from_slice(&m.payload).expect("status");
                let list = seen.entry(id).or_default();
                if list.last() != Some(&st.status) {
                    list.push(st.status);
                }
            }
        }
        seen
    }

    /// Incident states over time: `None` for closed.
    fn incident_history(steps: &[Step]) -> BTreeMap<String, Vec<Option<(String, u8)>>> {
        let mut h = BTreeMap::<String, Vec<Option<(String, u8)>>>::new();
        for (_, _, msgs) in steps {
            for m in msgs.iter().filter(|m| m.topic.contains("/incident/")) {
                let (_, id, _) = split(&m.topic);
                let state = if m.payload.is_empty() {
                    None
                } else {
                    let inc: IncidentMsg = serde_json::from_slice(&m.payload).expect("incident");
                    Some((inc.keyword, inc.severity))
                };
                let list = h.entry(id).or_default();
                if list.last() != Some(&state) {
                    list.push(state);
                }
            }
        }
        h
    }

    /// Radio status changes a unit may make (German FMS practice).
    fn allowed(from: u8, to: u8) -> bool {
        matches!(
            (from, to),
            (2, 3)
                | (3, 4)
                | (4, 5)
                | (5, 4)
                | (4, 1)
                | (4, 3)
                | (4, 7)
                | (7, 8)
                | (8, 1)
                | (8, 2)
                | (1, 2)
                | (1, 3)
                | (1, 6)
                | (6, 2)
                | (2, 6)
                | (4, 2)
        )
    }

    #[test]
    fn every_file_scenario_is_deterministic_valid_and_plausible() {
        for name in crate::scenarios() {
            let text = crate::builtin_file(name).expect("built in");
            let duration = crate::scenario_file::parse(name, text)
                .expect("valid")
                .duration_s;
            let a = play(name, 5, 60.0, 8.0 * 3600.0);
            let b = play(name, 5, 60.0, 8.0 * 3600.0);
            assert_eq!(a, b, "{name}: same seed, same bytes");
            let c = play(name, 6, 60.0, 8.0 * 3600.0);
            assert_ne!(a, c, "{name}: another seed, other bytes");
            let mut kinds = BTreeSet::new();
            let mut last_pos = BTreeMap::<String, (f64, f64, f64)>::new();
            for (wall, t, msgs) in &a {
                for m in msgs {
                    let (kind, id, leaf) = split(&m.topic);
                    assert!(m.payload.len() < ingest::wire::MAX_PAYLOAD_BYTES);
                    let in_hamburg = |lat: f64, lon: f64| {
                        assert!(
                            (53.35..53.75).contains(&lat),
                            "{name} {} lat {lat}",
                            m.topic
                        );
                        assert!((9.7..10.35).contains(&lon), "{name} {} lon {lon}", m.topic);
                    };
                    match (kind.as_str(), leaf.as_str()) {
                        ("sensor", "meta") => {
                            let meta: SensorMetaMsg =
                                serde_json::from_slice(&m.payload).expect("meta");
                            in_hamburg(meta.lat, meta.lon);
                        }
                        ("sensor", "obs") => {
                            let o: SensorObsMsg = serde_json::from_slice(&m.payload).expect("obs");
                            assert!(o.value.is_finite());
                            assert_eq!(o.ts.to_epoch_ms(), Ok(*wall));
                            if let (Some(lat), Some(lon)) = (o.lat, o.lon) {
                                in_hamburg(lat, lon);
                            }
                        }
                        ("unit", "meta") => {
                            serde_json::from_slice::<UnitMetaMsg>(&m.payload).expect("meta");
                        }
                        ("unit", "pos") => {
                            let p: UnitPosMsg = serde_json::from_slice(&m.payload).expect("pos");
                            in_hamburg(p.lat, p.lon);
                            let heading = p.heading.expect("heading");
                            assert!((0.0..360.0).contains(&heading));
                            if let Some((pt, lat, lon)) = last_pos.get(&id) {
                                let d =
                                    LatLon::new(*lat, *lon).distance_m(LatLon::new(p.lat, p.lon));
                                // Straight-line progress at most 60 m/s, plus tracker noise;
                                // a repeating timeline starts again at the station.
                                let wrapped = (t / duration).floor() != (pt / duration).floor();
                                assert!(
                                    wrapped || d <= 60.0 * (t - pt) + 30.0,
                                    "{name} {id} jumped {d} m"
                                );
                            }
                            last_pos.insert(id.clone(), (*t, p.lat, p.lon));
                        }
                        ("unit", "status") => {
                            let s: UnitStatusMsg =
                                serde_json::from_slice(&m.payload).expect("status");
                            assert!(s.status <= 9);
                        }
                        ("incident", "") => {
                            if !m.payload.is_empty() {
                                let inc: IncidentMsg =
                                    serde_json::from_slice(&m.payload).expect("incident");
                                let ring = inc.geometry["coordinates"][0].as_array().expect("ring");
                                assert!(ring.len() >= 4 && ring.first() == ring.last());
                                for p in ring {
                                    in_hamburg(
                                        p[1].as_f64().expect("lat"),
                                        p[0].as_f64().expect("lon"),
                                    );
                                }
                            }
                        }
                        other => panic!("{name}: unexpected {other:?}"),
                    }
                    kinds.insert(format!("{kind}/{leaf}"));
                }
            }
            assert_eq!(kinds.len(), 6, "{name}: {kinds:?}");
            for (id, list) in statuses(&a) {
                for w in list.windows(2) {
                    assert!(allowed(w[0], w[1]), "{name} {id}: {} -> {}", w[0], w[1]);
                }
            }
        }
    }

    #[test]
    fn fire_plume_follows_the_wind_and_the_alarm_escalates() {
        let steps = play("fire-plume", 1, 60.0, 5.9 * 3600.0);
        let before = |s: &[Reading], until: f64| {
            s.iter()
                .filter(|v| v.0 <= until)
                .map(|v| v.1)
                .fold(f64::MIN, f64::max)
        };
        let billstedt = series(&steps, "gas-billstedt-zentrum");
        assert!(
            before(&billstedt, 2.0 * 3600.0) > 150.0,
            "downwind: {}",
            max_of(&billstedt)
        );
        assert!(billstedt.first().is_some_and(|v| v.1 < 10.0));
        let upwind = series(&steps, "gas-rothenburgsort");
        assert!(max_of(&upwind) < 30.0, "upwind {}", max_of(&upwind));
        // Moorfleet, east-south-east, only once the wind has veered.
        let moorfleet = series(&steps, "gas-moorfleet");
        assert!(before(&moorfleet, 1.5 * 3600.0) < 30.0);
        assert!(max_of(&moorfleet) > 60.0, "{}", max_of(&moorfleet));
        // The measuring vehicle's readings travel with it and see the plume.
        let mobile = series(&steps, "abc-erkw-36-co");
        let places: BTreeSet<String> = mobile
            .iter()
            .filter_map(|v| v.2)
            .map(|(lat, lon)| format!("{lat:.3},{lon:.3}"))
            .collect();
        assert!(places.len() >= 5, "{places:?}");
        assert!(max_of(&mobile) > 60.0);
        let h = incident_history(&steps);
        let fire: Vec<_> = h["feu-billbrook-halskestrasse"]
            .iter()
            .flatten()
            .map(|s| s.0.as_str())
            .collect();
        assert_eq!(fire, ["FEU", "FEU3", "FEU4", "FEU3"]);
        assert_eq!(h["feu-billbrook-halskestrasse"].last(), Some(&None));
        // The warning area turns with the wind: published more than once.
        let warnings = steps
            .iter()
            .flat_map(|s| s.2.iter())
            .filter(|m| m.topic.ends_with("/warnung-rauch-billstedt") && !m.payload.is_empty())
            .map(|m| m.payload.clone())
            .collect::<BTreeSet<_>>();
        assert!(warnings.len() >= 5, "{}", warnings.len());
        let st = statuses(&steps);
        assert!(
            st["fw-hlf-23-1"].starts_with(&[2, 3, 4, 1, 2, 3, 4]),
            "{:?}",
            st["fw-hlf-23-1"]
        );
        assert!(st["rd-rtw-23-1"].windows(2).any(|w| w == [7, 8]));
        assert!(st["fw-lf-21-2"].contains(&5));
    }

    #[test]
    fn mass_casualty_triage_counts_rise_and_empty_as_ambulances_carry() {
        let steps = play("mass-casualty", 1, 60.0, 3.9 * 3600.0);
        for id in ["pa-a7-sk1-rot", "pa-a7-sk2-gelb", "pa-a7-sk3-gruen"] {
            let s = series(&steps, id);
            assert!(s.iter().all(|v| v.1.fract() == 0.0 && v.1 >= 0.0));
            assert!(max_of(&s) >= 6.0, "{id}");
            assert_eq!(s.first().map(|v| v.1), Some(0.0));
            assert_eq!(
                s.iter().find(|v| v.0 >= 2.5 * 3600.0).map(|v| v.1),
                Some(0.0),
                "{id}"
            );
        }
        let carried = series(&steps, "pa-a7-abtransportiert");
        assert!(carried.windows(2).all(|w| w[1].1 >= w[0].1));
        assert_eq!(max_of(&carried), 41.0);
        let st = statuses(&steps);
        let transports = st
            .iter()
            .filter(|(_, l)| l.windows(2).any(|w| w == [7, 8]))
            .count();
        assert!(transports >= 8, "{st:?}");
        let h = incident_history(&steps);
        let manv: Vec<_> = h["manv-a7-heimfeld"]
            .iter()
            .flatten()
            .map(|s| (s.0.as_str(), s.1))
            .collect();
        assert_eq!(manv, [("VU BUS", 3), ("MANV25", 4), ("MANV25", 2)]);
        let road = series(&steps, "road-a7-nord-heimfeld");
        assert_eq!(road.iter().find(|v| v.0 >= 3600.0).map(|v| v.1), Some(0.0));
    }

    #[test]
    fn heavy_rain_cells_pass_rivers_rise_and_brigades_cycle() {
        let steps = play("heavy-rain", 2, 60.0, 7.0 * 3600.0);
        let rain_peaks: Vec<f64> = [
            "rain-eppendorf",
            "rain-bramfeld",
            "rain-wandsbek",
            "rain-poppenbuettel",
        ]
        .iter()
        .map(|id| max_of(&series(&steps, id)))
        .collect();
        assert!(rain_peaks.iter().all(|p| *p > 20.0), "{rain_peaks:?}");
        for id in [
            "pegel-tarpenbek-eppendorf",
            "pegel-wandse-rahlstedt",
            "pegel-alster-wellingsbuettel",
        ] {
            let s = series(&steps, id);
            let first = s.first().map(|v| v.1).unwrap_or_default();
            assert!(max_of(&s) > first + 0.8, "{id} rose only to {}", max_of(&s));
        }
        let h = incident_history(&steps);
        let jobs = h
            .keys()
            .filter(|id| id.starts_with("wasser-") || id.starts_with("baum-"))
            .count();
        assert!(jobs >= 200, "{jobs} jobs opened");
        let closed = h
            .iter()
            .filter(|(id, l)| {
                id.starts_with("wasser-")
                    && l.first().is_some_and(Option::is_some)
                    && l.last() == Some(&None)
            })
            .count();
        assert!(closed >= 100, "{closed} jobs closed");
        let st = statuses(&steps);
        assert_eq!(st.len(), 20);
        for (id, list) in &st {
            let cycles = list
                .windows(4)
                .filter(|w| *w == [3, 4, 1, 2] || *w == [3, 4, 1, 6])
                .count();
            assert!(cycles >= 2, "{id}: {list:?}");
        }
        assert!(st.values().any(|l| l.contains(&6)));
    }

    #[test]
    fn time_going_back_or_jumping_far_does_not_break_it() {
        let mut sc = Scenario::new("heavy-rain", SPACE, 0).expect("scenario");
        for (t, w) in [
            (0.0, T0_MS),
            (5000.0, T0_MS + 1000),
            (100.0, T0_MS + 2000),
            (f64::NAN, T0_MS + 3000),
            (1.0e9, T0_MS + 4000),
            (1.0e9, T0_MS + 5000),
        ] {
            let msgs = sc.step(t, w);
            let positions = msgs.iter().filter(|m| m.topic.ends_with("/pos")).count();
            assert_eq!(positions, 20, "at {t}");
        }
    }
}
