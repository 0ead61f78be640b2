//! Scenario `storm-surge`: a severe storm surge on the Elbe at Hamburg.
//!
//! The water at St. Pauli rises with the tide and a storm set-up to about
//! 7 m NHN three hours into the scenario; the other gauges follow, shifted
//! in time and height by their distance along the river. Rain and wind
//! follow the storm, flood gates close when the water passes about 4 m NHN,
//! a shelter in Wilhelmsburg fills up. Twelve units of fire brigade, THW,
//! DLRG, police, ambulance service and command drive between their stations,
//! the dike sectors of Wilhelmsburg and HafenCity and the hospitals, with
//! their radio status. Two incidents are opened, raised and closed.
//!
//! The storm repeats every two tides (about 25 scenario hours) so that the
//! scenario can run forever.

use std::collections::VecDeque;
use std::f64::consts::TAU;

use ingest::wire::{
    IncidentMsg, SensorMetaMsg, SensorObsMsg, UnitMetaMsg, UnitPosMsg, UnitStatusMsg, WireTime,
    incident_topic, sensor_meta_topic, sensor_obs_topic, unit_meta_topic, unit_pos_topic,
    unit_status_topic,
};
use serde_json::json;

use crate::geo::{LatLon, round_to};
use crate::rng::Rng;
use crate::scenario::Msg;

/// The scenario's name.
pub(crate) const NAME: &str = "storm-surge";

const HOUR: f64 = 3600.0;
/// Semi-diurnal tide (M2), scenario seconds.
const TIDE_PERIOD_S: f64 = 12.42 * HOUR;
/// The storm repeats after two tides.
const EPISODE_S: f64 = 2.0 * TIDE_PERIOD_S;
/// High water and surge peak at St. Pauli, from the start of an episode.
const SURGE_PEAK_S: f64 = 3.0 * HOUR;
const SURGE_WIDTH_S: f64 = 1.6 * HOUR;
const TIDE_MEAN_M: f64 = 1.5;
const TIDE_AMPLITUDE_M: f64 = 1.8;
/// Wind set-up present all the time.
const BASE_SETUP_M: f64 = 0.8;
/// Extra set-up at the height of the storm.
const SURGE_SETUP_M: f64 = 2.95;
const STORM_PEAK_S: f64 = 2.5 * HOUR;
const STORM_WIDTH_S: f64 = 2.2 * HOUR;
/// Descriptions are repeated after this much wall time.
const META_REFRESH_MS: i64 = 60_000;
/// Storm surge classes at St. Pauli, m NHN.
const WATER_THRESHOLDS: &[f64] = &[3.6, 4.6, 5.6, 7.0];
/// Beaufort 8, 9, 10 and 11 in m/s.
const WIND_THRESHOLDS: &[f64] = &[17.2, 20.8, 24.5, 28.5];
/// Gates are judged by scanning the level backwards at this step.
const GATE_SCAN_STEP_S: f64 = 120.0;
const GATE_SCAN_STEPS: usize = 240;

// ---------------------------------------------------------------------------
// The physical model: pure functions of scenario time.

/// Sum of Gaussian bumps centred at `peak` in every episode (the neighbours
/// are included so the sum is continuous across episode boundaries).
fn episode_bump(t: f64, peak: f64, width: f64) -> f64 {
    let n = (t / EPISODE_S).floor();
    [-1.0, 0.0, 1.0]
        .iter()
        .map(|k| {
            let z = (t - peak - (n + k) * EPISODE_S) / width;
            (-0.5 * z * z).exp()
        })
        .sum()
}

/// Noise-free water level in m NHN at a gauge `lag_s` seconds behind
/// St. Pauli, whose storm set-up is `factor` times St. Pauli's.
fn water_level(t: f64, lag_s: f64, factor: f64) -> f64 {
    let tau = t - lag_s;
    let tide = TIDE_MEAN_M + TIDE_AMPLITUDE_M * (TAU * (tau - SURGE_PEAK_S) / TIDE_PERIOD_S).cos();
    let setup = BASE_SETUP_M + SURGE_SETUP_M * episode_bump(tau, SURGE_PEAK_S, SURGE_WIDTH_S);
    tide + factor * setup
}

fn st_pauli_level(t: f64) -> f64 {
    water_level(t, 0.0, 1.0)
}

/// Storm intensity in `[0.35, 1]`.
fn storm(t: f64) -> f64 {
    0.35 + 0.65 * episode_bump(t, STORM_PEAK_S, STORM_WIDTH_S).min(1.0)
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A flood gate closes when the water at St. Pauli reaches `close_at` and
/// opens again once it has fallen below `open_at` (hysteresis). Found by
/// looking back in time for whichever threshold was passed last, so it is a
/// function of `t` alone.
fn gate_closed(t: f64, close_at: f64, open_at: f64) -> bool {
    let mut tau = t;
    for _ in 0..GATE_SCAN_STEPS {
        let level = st_pauli_level(tau);
        if level >= close_at {
            return true;
        }
        if level < open_at {
            return false;
        }
        tau -= GATE_SCAN_STEP_S;
    }
    false
}

// ---------------------------------------------------------------------------
// Sensors.

#[derive(Debug, Clone)]
enum Model {
    /// A tide gauge; see [`water_level`].
    Gauge { lag_s: f64, factor: f64 },
    /// Rain showers in the storm; `phase_*` drawn from the seed.
    Rain {
        scale: f64,
        phase_a: f64,
        phase_b: f64,
    },
    /// Wind speed with gusts.
    Wind { scale: f64, phase: f64 },
    /// Flood gate, 1 when closed.
    Gate { close_at: f64, open_at: f64 },
    /// People in a shelter.
    People { capacity: f64 },
}

#[derive(Debug, Clone)]
struct SensorDef {
    id: &'static str,
    kind: &'static str,
    unit: &'static str,
    name: &'static str,
    pos: LatLon,
    thresholds: Option<&'static [f64]>,
    model: Model,
}

#[derive(Debug, Clone)]
struct Sensor {
    def: SensorDef,
    /// Observations sent so far.
    sent: u64,
}

/// Tide gauges: id, name, latitude, longitude, minutes behind St. Pauli
/// (downstream gauges see the surge earlier), share of St. Pauli's set-up.
#[rustfmt::skip]
const GAUGES: &[(&str, &str, f64, f64, f64, f64)] = &[
    ("pegel-cranz",         "Pegel Cranz",         53.5390,  9.7790, -25.0, 0.95),
    ("pegel-seemannshoeft", "Pegel Seemannshöft",  53.5400,  9.8780, -12.0, 0.98),
    ("pegel-st-pauli",      "Pegel St. Pauli",     53.5456,  9.9700,   0.0, 1.00),
    ("pegel-harburg",       "Pegel Harburg",       53.4700,  9.9850,  10.0, 0.99),
    ("pegel-bunthaus",      "Pegel Bunthaus",      53.4620, 10.0650,  25.0, 0.97),
    ("pegel-zollenspieker", "Pegel Zollenspieker", 53.3990, 10.1870,  45.0, 0.92),
];

/// Rain gauges: id, name, latitude, longitude, scale.
#[rustfmt::skip]
const RAIN: &[(&str, &str, f64, f64, f64)] = &[
    ("rain-wilhelmsburg", "Regenschreiber Wilhelmsburg", 53.4985, 10.0145, 1.00),
    ("rain-hafencity",    "Regenschreiber HafenCity",    53.5418, 10.0010, 0.85),
];

/// Anemometers: id, name, latitude, longitude, scale.
#[rustfmt::skip]
const WIND: &[(&str, &str, f64, f64, f64)] = &[
    ("wind-hafencity",    "Windmesser HafenCity",    53.5405,  9.9950, 1.0),
    ("wind-wilhelmsburg", "Windmesser Wilhelmsburg", 53.5030, 10.0200, 0.9),
];

/// Flood gates: id, name, latitude, longitude, closing and opening level
/// at St. Pauli (m NHN).
#[rustfmt::skip]
const GATES: &[(&str, &str, f64, f64, f64, f64)] = &[
    ("gate-ernst-august", "Flutschutztor Ernst-August-Kanal", 53.5125, 10.0010, 4.0, 3.6),
    ("gate-sandtorkai",   "Flutschutztor Sandtorkai",         53.5437,  9.9870, 4.2, 3.8),
];

fn sensor_defs(params: &mut Rng) -> Vec<SensorDef> {
    let mut defs = Vec::new();
    for &(id, name, lat, lon, lag_min, factor) in GAUGES {
        defs.push(SensorDef {
            id,
            kind: "water_level",
            unit: "m NHN",
            name,
            pos: LatLon::new(lat, lon),
            thresholds: Some(WATER_THRESHOLDS),
            model: Model::Gauge {
                lag_s: lag_min * 60.0,
                factor,
            },
        });
    }
    for &(id, name, lat, lon, scale) in RAIN {
        defs.push(SensorDef {
            id,
            kind: "rain_rate",
            unit: "mm/h",
            name,
            pos: LatLon::new(lat, lon),
            thresholds: None,
            model: Model::Rain {
                scale,
                phase_a: params.range(0.0, TAU),
                phase_b: params.range(0.0, TAU),
            },
        });
    }
    for &(id, name, lat, lon, scale) in WIND {
        defs.push(SensorDef {
            id,
            kind: "wind_speed",
            unit: "m/s",
            name,
            pos: LatLon::new(lat, lon),
            thresholds: Some(WIND_THRESHOLDS),
            model: Model::Wind {
                scale,
                phase: params.range(0.0, TAU),
            },
        });
    }
    for &(id, name, lat, lon, close_at, open_at) in GATES {
        defs.push(SensorDef {
            id,
            kind: "gate_closed",
            unit: "closed",
            name,
            pos: LatLon::new(lat, lon),
            thresholds: None,
            model: Model::Gate { close_at, open_at },
        });
    }
    defs.push(SensorDef {
        id: "shelter-wilhelmsburg",
        kind: "people_count",
        unit: "people",
        name: "Notunterkunft Sporthalle Wilhelmsburg",
        pos: LatLon::new(53.4930, 10.0115),
        thresholds: None,
        model: Model::People { capacity: 600.0 },
    });
    defs
}

impl SensorDef {
    /// The observed value at scenario time `t`, with measurement noise.
    fn value(&self, t: f64, noise: &mut Rng) -> f64 {
        match self.model {
            Model::Gauge { lag_s, factor } => {
                round_to(water_level(t, lag_s, factor) + noise.noise(0.015, 0.04), 2)
            }
            Model::Rain {
                scale,
                phase_a,
                phase_b,
            } => {
                let s = storm(t);
                let shower = ((TAU * t / 1500.0 + phase_a).sin()
                    * (TAU * t / 5400.0 + phase_b).sin())
                .max(0.0);
                let rate = s * s * scale * (2.5 + 30.0 * shower) + noise.noise(0.4, 1.5);
                round_to(rate.max(0.0), 1)
            }
            Model::Wind { scale, phase } => {
                let s = storm(t);
                let gusts = 1.8 * (TAU * t / 420.0 + phase).sin() + noise.noise(1.2 * s, 4.0);
                round_to((scale * (6.0 + 19.0 * s) + gusts).max(0.0), 1)
            }
            Model::Gate { close_at, open_at } => {
                if gate_closed(t, close_at, open_at) {
                    1.0
                } else {
                    0.0
                }
            }
            Model::People { capacity } => {
                let te = t.rem_euclid(EPISODE_S);
                let fill = logistic((te - 2.0 * HOUR) / (0.6 * HOUR))
                    * logistic((10.0 * HOUR - te) / (0.8 * HOUR));
                (capacity * fill + noise.noise(3.0, 8.0))
                    .round()
                    .clamp(0.0, capacity)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Units.

/// What a unit does on a mission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Fire,
    FireCommand,
    Thw,
    Boat,
    Police,
    Ambulance,
    Doctor,
    Command,
}

#[derive(Debug, Clone)]
struct UnitDef {
    id: &'static str,
    callsign: &'static str,
    unit_type: &'static str,
    org: &'static str,
    strength: u32,
    home: LatLon,
    /// Typical driving speed, m/s.
    speed: f64,
    role: Role,
}

const F22_WILHELMSBURG: LatLon = LatLon::new(53.4990, 10.0050);
const F11_INNENSTADT: LatLon = LatLon::new(53.5500, 9.9950);
const F26_VEDDEL: LatLon = LatLon::new(53.5230, 10.0290);
const THW_HARBURG: LatLon = LatLon::new(53.4600, 9.9900);
const DLRG_WILHELMSBURG: LatLon = LatLon::new(53.5080, 10.0140);
const POLICE_WILHELMSBURG: LatLon = LatLon::new(53.4940, 10.0080);
const FIRE_HQ: LatLon = LatLon::new(53.5530, 10.0230);

/// id, call sign, type, organisation, crew, station, speed (m/s), role.
type UnitRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u32,
    LatLon,
    f64,
    Role,
);

/// The units of the operation.
#[rustfmt::skip]
const UNITS: &[UnitRow] = &[
    ("fw-hlf-22-1",       "HLF 22-1",               "HLF",   "fire",    9, F22_WILHELMSBURG,    13.0, Role::Fire),
    ("fw-lf-22-2",        "LF 22-2",                "LF",    "fire",    9, F22_WILHELMSBURG,    12.5, Role::Fire),
    ("fw-hlf-11-1",       "HLF 11-1",               "HLF",   "fire",    9, F11_INNENSTADT,      13.0, Role::Fire),
    ("fw-dlk-11-1",       "DLK 11-1",               "DLK",   "fire",    3, F11_INNENSTADT,      11.0, Role::Fire),
    ("fw-hlf-26-1",       "HLF 26-1",               "HLF",   "fire",    9, F26_VEDDEL,          13.0, Role::Fire),
    ("fw-elw-26-1",       "ELW 26-1",               "ELW",   "fire",    3, F26_VEDDEL,          14.0, Role::FireCommand),
    ("thw-gkw-harburg-1", "Heros Harburg 22/52",    "GKW",   "thw",     9, THW_HARBURG,         11.0, Role::Thw),
    ("dlrg-boot-1",       "Pelikan Wilhelmsburg 1", "MRB",   "dlrg",    4, DLRG_WILHELMSBURG,   10.0, Role::Boat),
    ("pol-fustw-44-1",    "Michel 44/1",            "FuStW", "police",  2, POLICE_WILHELMSBURG, 15.0, Role::Police),
    ("rd-rtw-22-1",       "RTW 22-1",               "RTW",   "rescue",  2, F22_WILHELMSBURG,    14.0, Role::Ambulance),
    ("rd-nef-11-1",       "NEF 11-1",               "NEF",   "rescue",  2, F11_INNENSTADT,      16.0, Role::Doctor),
    ("fw-elw2-1",         "ELW 2 Hamburg",          "ELW 2", "command", 6, FIRE_HQ,             12.0, Role::Command),
];

fn unit_defs() -> Vec<UnitDef> {
    UNITS
        .iter()
        .map(
            |&(id, callsign, unit_type, org, strength, home, speed, role)| UnitDef {
                id,
                callsign,
                unit_type,
                org,
                strength,
                home,
                speed,
                role,
            },
        )
        .collect()
}

/// Dike and flood sectors of Wilhelmsburg, Veddel and HafenCity.
const SECTORS: &[LatLon] = &[
    LatLon::new(53.5050, 9.9930),  // 0 Reiherstieg dike
    LatLon::new(53.5285, 10.0010), // 1 Spreehafen
    LatLon::new(53.4790, 10.0290), // 2 Kirchdorf-Süd
    LatLon::new(53.5065, 10.0390), // 3 Georgswerder
    LatLon::new(53.5412, 9.9985),  // 4 Überseequartier
    LatLon::new(53.5385, 10.0120), // 5 Baakenhafen
    LatLon::new(53.5265, 10.0225), // 6 Veddel Nord
    LatLon::new(53.4965, 10.0095), // 7 Wilhelmsburg Mitte
    LatLon::new(53.5120, 10.0000), // 8 Ernst-August-Kanal
];
/// The command post of the operation.
const COMMAND_POST: LatLon = LatLon::new(53.4985, 10.0080);
const HOSPITALS: &[LatLon] = &[
    LatLon::new(53.5000, 9.9935),  // Wilhelmsburg
    LatLon::new(53.5560, 10.0170), // St. Georg
];

impl Role {
    /// Indices into [`SECTORS`] this role is sent to.
    fn sectors(self) -> &'static [usize] {
        match self {
            Role::Fire | Role::Police | Role::Ambulance | Role::Doctor => {
                &[0, 1, 2, 3, 4, 5, 6, 7, 8]
            }
            Role::FireCommand => &[0, 3, 4, 8],
            Role::Thw => &[0, 2, 3, 8],
            Role::Boat => &[1, 2, 6, 8],
            Role::Command => &[],
        }
    }

    /// Time on scene, scenario seconds.
    fn on_scene_s(self) -> (f64, f64) {
        match self {
            Role::Fire => (1200.0, 3600.0),
            Role::FireCommand => (2400.0, 5400.0),
            Role::Thw => (2400.0, 6000.0),
            Role::Boat => (1800.0, 4200.0),
            Role::Police => (900.0, 2700.0),
            Role::Ambulance => (600.0, 1200.0),
            Role::Doctor => (600.0, 1500.0),
            Role::Command => (3.0 * HOUR, 5.0 * HOUR),
        }
    }
}

/// A stretch of a unit's day: standing still (speed 0) or driving straight
/// from `from` to `to`, with one radio status throughout.
#[derive(Debug, Clone, PartialEq)]
struct Leg {
    start: f64,
    end: f64,
    status: u8,
    from: LatLon,
    to: LatLon,
    /// m/s; 0 while standing.
    speed: f64,
    /// Degrees; while standing, the heading it arrived with.
    heading: f64,
}

impl Leg {
    fn position(&self, t: f64) -> LatLon {
        let span = self.end - self.start;
        let f = if span > 0.0 {
            ((t - self.start) / span).clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.from.lerp(self.to, f)
    }
}

/// Generates a unit's legs, mission after mission, from its own random
/// stream: the plan depends on the seed alone, never on when it is asked.
#[derive(Debug, Clone)]
struct Planner {
    seed: u64,
    stream: u64,
    rng: Rng,
    /// End of the last generated leg.
    horizon: f64,
    heading: f64,
    missions: u64,
}

impl Planner {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng::new(seed, stream);
        let heading = round_to(rng.range(0.0, 360.0), 0);
        Planner {
            seed,
            stream,
            rng,
            horizon: 0.0,
            heading,
            missions: 0,
        }
    }

    fn stay(&mut self, legs: &mut VecDeque<Leg>, status: u8, at: LatLon, duration: f64) {
        let start = self.horizon;
        self.horizon += duration.max(1.0);
        legs.push_back(Leg {
            start,
            end: self.horizon,
            status,
            from: at,
            to: at,
            speed: 0.0,
            heading: self.heading,
        });
    }

    fn drive(
        &mut self,
        legs: &mut VecDeque<Leg>,
        def: &UnitDef,
        status: u8,
        from: LatLon,
        to: LatLon,
    ) {
        let distance = from.distance_m(to);
        if distance < 1.0 {
            return;
        }
        let speed = def.speed * self.rng.range(0.85, 1.15);
        // Streets are not straight lines: go via a point beside the direct
        // line, which gives two straight segments.
        let mut waypoints = Vec::with_capacity(2);
        if distance > 300.0 {
            let mid = from.lerp(to, self.rng.range(0.35, 0.65));
            let side = self.rng.range(-0.2, 0.2) * distance;
            let normal = (from.bearing_deg(to) + 90.0).to_radians();
            waypoints.push(mid.offset_m(side * normal.cos(), side * normal.sin()));
        }
        waypoints.push(to);
        let mut a = from;
        for b in waypoints {
            let start = self.horizon;
            self.horizon += (a.distance_m(b) / speed).max(1.0);
            let heading = round_to(a.bearing_deg(b), 1);
            self.heading = if heading >= 360.0 { 0.0 } else { heading };
            legs.push_back(Leg {
                start,
                end: self.horizon,
                status,
                from: a,
                to: b,
                speed,
                heading: self.heading,
            });
            a = b;
        }
    }

    /// Appends one mission: waiting at the station, alarm, drive, work on
    /// scene, (transport,) return.
    fn mission(&mut self, legs: &mut VecDeque<Leg>, def: &UnitDef) {
        let first = self.missions == 0;
        self.missions += 1;
        let home = def.home;
        // Units are alarmed one after the other, offset by the seed.
        let wait = match (first, def.role) {
            (true, Role::Command) => self.rng.range(30.0, 240.0),
            (true, _) => self.rng.range(0.0, 600.0),
            (false, _) => self.rng.range(300.0, 1800.0),
        };
        self.stay(legs, 2, home, wait);

        let target = match def.role.sectors() {
            [] => COMMAND_POST,
            sectors => SECTORS[sectors[self.rng.index(sectors.len())]],
        };
        let scene = target.offset_m(self.rng.range(-60.0, 60.0), self.rng.range(-60.0, 60.0));
        self.drive(legs, def, 3, home, scene);

        let (lo, hi) = def.role.on_scene_s();
        let on_scene = self.rng.range(lo, hi);
        if def.role != Role::Ambulance && self.rng.chance(0.35) {
            // A request to speak (status 5) in the middle of the work.
            let before = on_scene * self.rng.range(0.2, 0.7);
            self.stay(legs, 4, scene, before);
            let talk = self.rng.range(45.0, 150.0);
            self.stay(legs, 5, scene, talk);
            self.stay(legs, 4, scene, on_scene - before);
        } else {
            self.stay(legs, 4, scene, on_scene);
        }

        let mut here = scene;
        if def.role == Role::Ambulance {
            let hospital = HOSPITALS[self.rng.index(HOSPITALS.len())];
            self.drive(legs, def, 7, scene, hospital);
            let handover = self.rng.range(600.0, 1200.0);
            self.stay(legs, 8, hospital, handover);
            here = hospital;
        }
        self.drive(legs, def, 1, here, home);
        if self.rng.chance(0.15) {
            // Back at the station but not ready yet: refuel, clean, restock.
            let pause = self.rng.range(600.0, 1500.0);
            self.stay(legs, 6, home, pause);
        }
    }
}

#[derive(Debug, Clone)]
struct UnitSim {
    def: UnitDef,
    planner: Planner,
    /// Generated legs still needed: from the one holding the last step's
    /// time onwards.
    legs: VecDeque<Leg>,
    /// Wall time of the last status sent, to keep them strictly increasing.
    last_status_ms: i64,
}

impl UnitSim {
    fn new(def: UnitDef, seed: u64, stream: u64) -> Self {
        UnitSim {
            def,
            planner: Planner::new(seed, stream),
            legs: VecDeque::new(),
            last_status_ms: i64::MIN,
        }
    }

    /// Makes sure the legs cover `[from, to]`, planning ahead or, should
    /// time have gone backwards past what is kept, planning again from the
    /// start.
    fn cover(&mut self, from: f64, to: f64) {
        if self.legs.front().is_some_and(|l| l.start > from) {
            self.planner = Planner::new(self.planner.seed, self.planner.stream);
            self.legs.clear();
        }
        while self.planner.horizon <= to {
            self.planner.mission(&mut self.legs, &self.def);
        }
    }

    /// The leg under way at `t` (covered by [`Self::cover`]).
    fn leg_at(&self, t: f64) -> Option<&Leg> {
        self.legs.iter().find(|l| l.end > t).or(self.legs.back())
    }

    /// Status changes in `(from, to]`, with their scenario times.
    fn changes(&self, from: f64, to: f64) -> Vec<(f64, u8)> {
        let mut status = self.leg_at(from).map(|l| l.status);
        let mut out = Vec::new();
        for leg in self.legs.iter().filter(|l| l.start > from && l.start <= to) {
            if status != Some(leg.status) {
                out.push((leg.start, leg.status));
                status = Some(leg.status);
            }
        }
        out
    }

    /// Drops legs that ended before `t`.
    fn forget_before(&mut self, t: f64) {
        while self.legs.front().is_some_and(|l| l.end <= t) && self.legs.len() > 1 {
            self.legs.pop_front();
        }
    }
}

// ---------------------------------------------------------------------------
// Incidents.

#[derive(Debug, Clone)]
struct IncidentDef {
    id: &'static str,
    keyword: &'static str,
    title: &'static str,
    /// Closed ring, `[lon, lat]` as GeoJSON has it.
    ring: &'static [[f64; 2]],
    /// Severity at a scenario time, `None` while closed.
    severity: fn(f64) -> Option<u8>,
}

const DIKE_WILHELMSBURG: IncidentDef = IncidentDef {
    id: "thl-deich-wilhelmsburg",
    keyword: "THL",
    title: "Deichsicherung Wilhelmsburg",
    ring: &[
        [9.9900, 53.4950],
        [9.9970, 53.5100],
        [10.0150, 53.5120],
        [10.0300, 53.5060],
        [10.0280, 53.4920],
        [10.0050, 53.4890],
        [9.9900, 53.4950],
    ],
    // Open for the first ten hours of each storm; critical while the water
    // at St. Pauli is above 6 m NHN.
    severity: |t| {
        let open = t.rem_euclid(EPISODE_S) < 10.0 * HOUR;
        open.then_some(if st_pauli_level(t) >= 6.0 { 4 } else { 3 })
    },
};

const FLOOD_HAFENCITY: IncidentDef = IncidentDef {
    id: "wasser-hafencity-sandtorkai",
    keyword: "WASSER",
    title: "Überflutung HafenCity Sandtorkai",
    ring: &[
        [9.9830, 53.5405],
        [9.9850, 53.5445],
        [9.9970, 53.5440],
        [9.9980, 53.5400],
        [9.9830, 53.5405],
    ],
    // Opened 75 minutes into each storm, closed when the water has gone.
    severity: |t| {
        let open = (1.25 * HOUR..7.5 * HOUR).contains(&t.rem_euclid(EPISODE_S));
        open.then_some(if st_pauli_level(t) >= 6.5 { 3 } else { 2 })
    },
};

#[derive(Debug, Clone)]
struct Incident {
    def: IncidentDef,
    /// What was last published: `None` before the first step.
    published: Option<Option<u8>>,
}

// ---------------------------------------------------------------------------
// The scenario.

/// State of a storm-surge run.
#[derive(Debug, Clone)]
pub(crate) struct StormSurge {
    space: String,
    sensors: Vec<Sensor>,
    units: Vec<UnitSim>,
    incidents: Vec<Incident>,
    /// Measurement and tracking noise, drawn in step order.
    noise: Rng,
    /// Sequence numbers start at the first step's wall time, so a restarted
    /// simulator continues above the numbers it sent before.
    seq_base: Option<u64>,
    last_meta_ms: Option<i64>,
    /// Scenario and wall time of the previous step.
    prev: Option<(f64, i64)>,
}

const NOISE_STREAM: u64 = 1_000;
const PARAMS_STREAM: u64 = 1_001;

impl StormSurge {
    pub(crate) fn new(space: &str, seed: u64) -> Self {
        let mut params = Rng::new(seed, PARAMS_STREAM);
        let sensors = sensor_defs(&mut params)
            .into_iter()
            .map(|def| Sensor { def, sent: 0 })
            .collect();
        let units = unit_defs()
            .into_iter()
            .zip(1u64..)
            .map(|(def, stream)| UnitSim::new(def, seed, stream))
            .collect();
        let incidents = [DIKE_WILHELMSBURG, FLOOD_HAFENCITY]
            .into_iter()
            .map(|def| Incident {
                def,
                published: None,
            })
            .collect();
        StormSurge {
            space: space.to_owned(),
            sensors,
            units,
            incidents,
            noise: Rng::new(seed, NOISE_STREAM),
            seq_base: None,
            last_meta_ms: None,
            prev: None,
        }
    }

    pub(crate) fn step(&mut self, scenario_s: f64, wall_ms: i64) -> Vec<Msg> {
        let t = if scenario_s.is_finite() {
            scenario_s.max(0.0)
        } else {
            0.0
        };
        let refresh = self
            .last_meta_ms
            .is_none_or(|last| wall_ms.saturating_sub(last) >= META_REFRESH_MS || wall_ms < last);
        let mut out = Vec::new();
        if refresh {
            self.last_meta_ms = Some(wall_ms);
            self.metas(&mut out);
        }
        self.incidents(t, wall_ms, refresh, &mut out);
        self.units(t, wall_ms, refresh, &mut out);
        self.observations(t, wall_ms, &mut out);
        self.prev = Some((t, wall_ms));
        out
    }

    fn metas(&self, out: &mut Vec<Msg>) {
        for s in &self.sensors {
            let d = &s.def;
            let meta = SensorMetaMsg {
                kind: d.kind.to_owned(),
                unit: d.unit.to_owned(),
                lat: d.pos.lat,
                lon: d.pos.lon,
                name: Some(d.name.to_owned()),
                thresholds: d.thresholds.map(<[f64]>::to_vec),
            };
            out.extend(Msg::json(sensor_meta_topic(&self.space, d.id), &meta, true));
        }
        for u in &self.units {
            let d = &u.def;
            let meta = UnitMetaMsg {
                callsign: d.callsign.to_owned(),
                unit_type: d.unit_type.to_owned(),
                org: d.org.to_owned(),
                strength: Some(d.strength),
            };
            out.extend(Msg::json(unit_meta_topic(&self.space, d.id), &meta, true));
        }
    }

    fn incidents(&mut self, t: f64, wall_ms: i64, refresh: bool, out: &mut Vec<Msg>) {
        for inc in &mut self.incidents {
            let now = (inc.def.severity)(t);
            let changed = inc.published != Some(now);
            let repeat = refresh && now.is_some();
            if !(changed || repeat) {
                continue;
            }
            let topic = incident_topic(&self.space, inc.def.id);
            match now {
                Some(severity) => {
                    let msg = IncidentMsg {
                        ts: WireTime::rfc3339(wall_ms),
                        keyword: inc.def.keyword.to_owned(),
                        severity,
                        geometry: json!({ "type": "Polygon", "coordinates": [inc.def.ring] }),
                        title: Some(inc.def.title.to_owned()),
                        expires: None,
                    };
                    out.extend(Msg::json(topic, &msg, true));
                }
                // Closed: an empty retained payload also clears what an
                // earlier run may have left on the broker.
                None => out.push(Msg {
                    topic,
                    payload: Vec::new(),
                    retain: true,
                }),
            }
            inc.published = Some(now);
        }
    }

    fn units(&mut self, t: f64, wall_ms: i64, refresh: bool, out: &mut Vec<Msg>) {
        let prev = self.prev;
        for u in &mut self.units {
            let from = prev.map_or(t, |(pt, _)| pt.min(t));
            u.cover(from, t);

            // Radio status: every change since the last step, stamped at the
            // wall time matching its scenario time.
            let mut changes: Vec<(i64, u8)> = match prev {
                Some((pt, pw)) if t > pt => u
                    .changes(pt, t)
                    .into_iter()
                    .map(|(ts, status)| {
                        // Strictly after the previous step's messages, at
                        // the latest at this step's.
                        let f = (ts - pt) / (t - pt);
                        let span = wall_ms.saturating_sub(pw).max(0);
                        let offset = ((f * span as f64).round() as i64).clamp(1, span.max(1));
                        (pw.saturating_add(offset), status)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if changes.is_empty()
                && (prev.is_none() || refresh)
                && let Some(leg) = u.leg_at(t)
            {
                changes.push((wall_ms, leg.status));
            }
            for (ms, status) in changes {
                let ms = ms.max(u.last_status_ms.saturating_add(1));
                u.last_status_ms = ms;
                let msg = UnitStatusMsg {
                    ts: WireTime::rfc3339(ms),
                    status,
                    source: None,
                };
                out.extend(Msg::json(
                    unit_status_topic(&self.space, u.def.id),
                    &msg,
                    false,
                ));
            }

            // Position from the tracker.
            let Some(leg) = u.leg_at(t) else { continue };
            let p = leg
                .position(t)
                .offset_m(self.noise.noise(2.0, 6.0), self.noise.noise(2.0, 6.0));
            let speed = if leg.speed > 0.0 {
                leg.speed * (1.0 + self.noise.noise(0.05, 0.15))
            } else {
                0.0
            };
            let msg = UnitPosMsg {
                ts: WireTime::rfc3339(wall_ms),
                lat: round_to(p.lat, 6),
                lon: round_to(p.lon, 6),
                heading: Some(leg.heading),
                speed: Some(round_to(speed, 1)),
                accuracy: Some(round_to(self.noise.range(5.0, 10.0), 1)),
                source: Some("tracker".to_owned()),
            };
            out.extend(Msg::json(
                unit_pos_topic(&self.space, u.def.id),
                &msg,
                false,
            ));
            u.forget_before(t);
        }
    }

    fn observations(&mut self, t: f64, wall_ms: i64, out: &mut Vec<Msg>) {
        let base = *self
            .seq_base
            .get_or_insert_with(|| u64::try_from(wall_ms).unwrap_or(0));
        for s in &mut self.sensors {
            let value = s.def.value(t, &mut self.noise);
            let msg = SensorObsMsg {
                ts: WireTime::rfc3339(wall_ms),
                value,
                lat: None,
                lon: None,
                seq: Some(base.saturating_add(s.sent)),
                quality: None,
            };
            s.sent += 1;
            out.extend(Msg::json(
                sensor_obs_topic(&self.space, s.def.id),
                &msg,
                false,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use ingest::wire::TOPIC_ROOT;

    use super::*;
    use crate::Scenario;

    /// 2026-11-23T10:00:00Z.
    const T0_MS: i64 = 1_795_428_000_000;

    /// One step of a run: wall time, scenario time, messages.
    type Step = (i64, f64, Vec<Msg>);

    /// Plays `wall_s` seconds of wall time at `speed`, one step per `tick_s`.
    fn play(seed: u64, speed: f64, tick_s: f64, wall_s: f64) -> Vec<Step> {
        let mut sc = Scenario::new(NAME, "drill-test", seed).expect("scenario");
        let mut out = Vec::new();
        let mut w = 0.0;
        while w <= wall_s {
            let wall_ms = T0_MS + (w * 1000.0) as i64;
            out.push((wall_ms, w * speed, sc.step(w * speed, wall_ms)));
            w += tick_s;
        }
        out
    }

    /// `(entity kind, id, leaf)` of a topic of this scenario.
    fn parse_topic(topic: &str) -> (String, String, String) {
        let rest = topic
            .strip_prefix(&format!("{TOPIC_ROOT}/drill-test/"))
            .unwrap_or_else(|| panic!("foreign topic {topic}"));
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [kind, id] => (kind.to_string(), id.to_string(), String::new()),
            [kind, id, leaf] => (kind.to_string(), id.to_string(), leaf.to_string()),
            _ => panic!("unexpected topic {topic}"),
        }
    }

    fn valid_id(id: &str) -> bool {
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    fn ms(ts: &WireTime) -> i64 {
        ts.to_epoch_ms().expect("timestamp")
    }

    /// Observed values of one sensor: `(scenario time, value)`.
    fn series(steps: &[Step], sensor: &str) -> Vec<(f64, f64)> {
        let topic = sensor_obs_topic("drill-test", sensor);
        steps
            .iter()
            .flat_map(|(_, t, msgs)| {
                msgs.iter().filter(|m| m.topic == topic).map(|m| {
                    let obs: SensorObsMsg = serde_json::from_slice(&m.payload).expect("obs");
                    (*t, obs.value)
                })
            })
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = play(42, 60.0, 1.0, 300.0);
        let b = play(42, 60.0, 1.0, 300.0);
        assert_eq!(a, b);
        let c = play(43, 60.0, 1.0, 300.0);
        assert_eq!(a.len(), c.len());
        assert_ne!(a, c);
        // Not just the noise: the units' plans differ too.
        let statuses = |steps: &[Step]| -> Vec<String> {
            steps
                .iter()
                .flat_map(|(_, _, m)| m.iter())
                .filter(|m| m.topic.ends_with("/status"))
                .map(|m| m.topic.clone())
                .collect()
        };
        assert_ne!(statuses(&a), statuses(&c));
    }

    #[test]
    fn every_payload_decodes_and_is_in_range() {
        let steps = play(7, 60.0, 1.0, 1800.0);
        let mut kinds = BTreeMap::<String, usize>::new();
        for (wall_ms, _, msgs) in &steps {
            for m in msgs {
                let (kind, id, leaf) = parse_topic(&m.topic);
                assert!(valid_id(&id), "id {id:?}");
                assert!(m.payload.len() < ingest::wire::MAX_PAYLOAD_BYTES);
                let in_range = |lat: f64, lon: f64| {
                    // Hamburg, to be precise about "in range".
                    assert!((53.3..53.7).contains(&lat), "{} lat {lat}", m.topic);
                    assert!((9.7..10.3).contains(&lon), "{} lon {lon}", m.topic);
                };
                let ts_ok = |ts: &WireTime| {
                    let t = ms(ts);
                    assert!(
                        t <= wall_ms + 1000 && t > wall_ms - 120_000,
                        "{} at {t}",
                        m.topic
                    );
                };
                match (kind.as_str(), leaf.as_str()) {
                    ("sensor", "meta") => {
                        assert!(m.retain);
                        let meta: SensorMetaMsg = serde_json::from_slice(&m.payload).expect("meta");
                        in_range(meta.lat, meta.lon);
                        if let Some(th) = &meta.thresholds {
                            assert!(th.windows(2).all(|w| w[0] < w[1]));
                        }
                    }
                    ("sensor", "obs") => {
                        assert!(!m.retain);
                        let obs: SensorObsMsg = serde_json::from_slice(&m.payload).expect("obs");
                        assert!(obs.value.is_finite() && obs.value >= -5.0);
                        assert!(obs.seq.is_some());
                        ts_ok(&obs.ts);
                    }
                    ("unit", "meta") => {
                        assert!(m.retain);
                        let meta: UnitMetaMsg = serde_json::from_slice(&m.payload).expect("meta");
                        assert!(!meta.callsign.is_empty());
                        assert!(
                            ["fire", "thw", "dlrg", "police", "rescue", "command"]
                                .contains(&meta.org.as_str()),
                            "{}",
                            meta.org
                        );
                    }
                    ("unit", "pos") => {
                        assert!(!m.retain);
                        let pos: UnitPosMsg = serde_json::from_slice(&m.payload).expect("pos");
                        in_range(pos.lat, pos.lon);
                        let heading = pos.heading.expect("heading");
                        assert!((0.0..360.0).contains(&heading), "heading {heading}");
                        let speed = pos.speed.expect("speed");
                        assert!((0.0..=30.0).contains(&speed), "speed {speed}");
                        let acc = pos.accuracy.expect("accuracy");
                        assert!((5.0..=10.0).contains(&acc));
                        assert_eq!(pos.source.as_deref(), Some("tracker"));
                        ts_ok(&pos.ts);
                    }
                    ("unit", "status") => {
                        assert!(!m.retain);
                        let st: UnitStatusMsg = serde_json::from_slice(&m.payload).expect("status");
                        assert!(st.status <= 9);
                        ts_ok(&st.ts);
                    }
                    ("incident", "") => {
                        assert!(m.retain);
                        if !m.payload.is_empty() {
                            let inc: IncidentMsg =
                                serde_json::from_slice(&m.payload).expect("incident");
                            assert!(inc.severity <= 4);
                            assert_eq!(inc.geometry["type"], "Polygon");
                            let ring = inc.geometry["coordinates"][0].as_array().expect("ring");
                            assert!(ring.len() >= 4);
                            assert_eq!(ring.first(), ring.last());
                            for p in ring {
                                in_range(p[1].as_f64().expect("lat"), p[0].as_f64().expect("lon"));
                            }
                            ts_ok(&inc.ts);
                        }
                    }
                    other => panic!("unexpected topic kind {other:?}"),
                }
                *kinds.entry(format!("{kind}/{leaf}")).or_default() += 1;
            }
        }
        for k in [
            "sensor/meta",
            "sensor/obs",
            "unit/meta",
            "unit/pos",
            "unit/status",
            "incident/",
        ] {
            assert!(kinds.contains_key(k), "no {k} in {kinds:?}");
        }
    }

    #[test]
    fn first_step_describes_everything_and_refreshes_every_minute() {
        let steps = play(1, 60.0, 1.0, 130.0);
        let metas = |i: usize| {
            steps[i]
                .2
                .iter()
                .filter(|m| m.topic.ends_with("/meta"))
                .count()
        };
        let first = metas(0);
        assert!(first >= 6 + 4 + 10, "{first} descriptions");
        let units = steps[0]
            .2
            .iter()
            .filter(|m| m.topic.contains("/unit/") && m.topic.ends_with("/meta"));
        assert!((10..=14).contains(&units.count()));
        // Every unit has a status and a position from the first step on.
        let first_status = steps[0]
            .2
            .iter()
            .filter(|m| m.topic.ends_with("/status"))
            .count();
        assert_eq!(first_status, unit_defs().len());
        assert!(
            steps[0]
                .2
                .iter()
                .any(|m| m.topic.contains("/incident/") && !m.payload.is_empty())
        );
        assert_eq!(metas(1), 0);
        assert_eq!(metas(59), 0);
        assert_eq!(metas(60), first);
        assert_eq!(metas(61), 0);
        assert_eq!(metas(120), first);
    }

    #[test]
    fn st_pauli_peaks_near_seven_metres_and_the_gauges_follow() {
        // One scenario minute per step over the first half of the storm.
        let steps = play(3, 60.0, 1.0, 8.0 * 60.0);
        let st_pauli = series(&steps, "pegel-st-pauli");
        let (peak_t, peak) = st_pauli
            .iter()
            .copied()
            .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        assert!(peak >= 6.9, "peak {peak}");
        assert!(peak <= 7.2, "peak {peak}");
        assert!(
            (2.5 * HOUR..3.5 * HOUR).contains(&peak_t),
            "peak at {peak_t}"
        );
        // Busy from the start: classes are crossed in the first wall minutes.
        let first_above = |level: f64| st_pauli.iter().find(|(_, v)| *v >= level).map(|(t, _)| *t);
        assert!(first_above(3.6).is_some_and(|t| t <= 60.0 * 60.0));
        assert!(first_above(5.6).is_some_and(|t| t <= 150.0 * 60.0));
        for gauge in ["pegel-cranz", "pegel-bunthaus", "pegel-zollenspieker"] {
            let peak = series(&steps, gauge)
                .iter()
                .map(|v| v.1)
                .fold(f64::MIN, f64::max);
            assert!((6.0..7.05).contains(&peak), "{gauge} peak {peak}");
        }
        // Upstream is later.
        let peak_time = |id| {
            series(&steps, id)
                .into_iter()
                .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
                .0
        };
        assert!(peak_time("pegel-zollenspieker") > peak_time("pegel-cranz"));
    }

    #[test]
    fn weather_gates_and_shelter_behave() {
        let steps = play(5, 600.0, 1.0, 150.0); // 25 scenario hours, 10 min per step
        let wind = series(&steps, "wind-hafencity");
        let max_wind = wind.iter().map(|v| v.1).fold(f64::MIN, f64::max);
        assert!((21.0..33.0).contains(&max_wind), "wind {max_wind}");
        let rain = series(&steps, "rain-wilhelmsburg");
        assert!(rain.iter().all(|v| v.1 >= 0.0));
        assert!(rain.iter().any(|v| v.1 > 5.0));
        for gate in ["gate-ernst-august", "gate-sandtorkai"] {
            let g = series(&steps, gate);
            assert!(g.iter().all(|v| v.1 == 0.0 || v.1 == 1.0));
            // Closed at the peak, open at low water.
            let at = |t: f64| g.iter().find(|v| v.0 >= t).map(|v| v.1);
            assert_eq!(at(3.0 * HOUR), Some(1.0), "{gate}");
            assert_eq!(at(9.5 * HOUR), Some(0.0), "{gate}");
        }
        let people = series(&steps, "shelter-wilhelmsburg");
        let max_people = people.iter().map(|v| v.1).fold(f64::MIN, f64::max);
        assert!((500.0..=600.0).contains(&max_people), "{max_people}");
        assert!(people.first().is_some_and(|v| v.1 < 100.0));
        assert!(people.iter().all(|v| v.1.fract() == 0.0));
    }

    #[test]
    fn gate_hysteresis_does_not_flap() {
        let mut last = gate_closed(0.0, 4.0, 3.6);
        let mut changes = 0;
        let mut t = 0.0;
        while t < EPISODE_S {
            let now = gate_closed(t, 4.0, 3.6);
            if now != last {
                changes += 1;
                let level = st_pauli_level(t);
                if now {
                    assert!(level >= 4.0, "closed at {level}");
                } else {
                    assert!(level < 3.6, "opened at {level}");
                }
            }
            last = now;
            t += 30.0;
        }
        assert!((2..=6).contains(&changes), "{changes} changes per episode");
    }

    #[test]
    fn sequence_numbers_increase_per_sensor() {
        let steps = play(9, 60.0, 1.0, 20.0);
        let mut last = BTreeMap::<String, u64>::new();
        for (_, _, msgs) in &steps {
            for m in msgs.iter().filter(|m| m.topic.ends_with("/obs")) {
                let obs: SensorObsMsg = serde_json::from_slice(&m.payload).expect("obs");
                let seq = obs.seq.expect("seq");
                if let Some(prev) = last.insert(m.topic.clone(), seq) {
                    assert_eq!(seq, prev + 1);
                }
            }
        }
        assert_eq!(last.len(), sensor_defs(&mut Rng::new(0, 0)).len());
    }

    #[test]
    fn units_run_their_status_cycle_and_drive_plausibly() {
        // Four scenario hours at 60x, one step per wall second.
        let steps = play(11, 60.0, 1.0, 240.0);
        let mut seen = BTreeMap::<String, Vec<u8>>::new();
        let mut last_ts = BTreeMap::<String, i64>::new();
        let mut last_pos = BTreeMap::<String, (f64, UnitPosMsg)>::new();
        let mut prev_wall = None;
        for (wall, t, msgs) in &steps {
            for m in msgs {
                let (kind, id, leaf) = parse_topic(&m.topic);
                if kind != "unit" {
                    continue;
                }
                match leaf.as_str() {
                    "status" => {
                        let st: UnitStatusMsg = serde_json::from_slice(&m.payload).expect("status");
                        let ts = ms(&st.ts);
                        // Between the previous step's positions and this one's.
                        assert!(ts <= *wall && prev_wall.is_none_or(|pw| ts > pw));
                        if let Some(prev) = last_ts.insert(id.clone(), ts) {
                            assert!(ts > prev, "{id}: status times must increase");
                        }
                        let list = seen.entry(id).or_default();
                        if list.last() != Some(&st.status) {
                            list.push(st.status);
                        }
                    }
                    "pos" => {
                        let pos: UnitPosMsg = serde_json::from_slice(&m.payload).expect("pos");
                        if let Some((pt, prev)) = last_pos.get(&id) {
                            let d = LatLon::new(prev.lat, prev.lon)
                                .distance_m(LatLon::new(pos.lat, pos.lon));
                            // At most ~20 m/s plus tracker noise.
                            assert!(d <= 20.0 * (t - pt) + 30.0, "{id} jumped {d} m");
                        }
                        last_pos.insert(id, (*t, pos));
                    }
                    _ => {}
                }
            }
            prev_wall = Some(*wall);
        }
        assert_eq!(seen.len(), unit_defs().len());
        let allowed: BTreeSet<(u8, u8)> = [
            (2, 3),
            (3, 4),
            (4, 5),
            (5, 4),
            (4, 1),
            (4, 7),
            (7, 8),
            (8, 1),
            (1, 2),
            (1, 6),
            (6, 2),
        ]
        .into_iter()
        .collect();
        let mut went_out = 0;
        for (id, list) in &seen {
            for w in list.windows(2) {
                assert!(
                    allowed.contains(&(w[0], w[1])),
                    "{id}: {} -> {}",
                    w[0],
                    w[1]
                );
            }
            if list.contains(&3) && list.contains(&4) {
                went_out += 1;
            }
        }
        // Within four scenario hours every unit has been alarmed and arrived.
        assert_eq!(went_out, unit_defs().len(), "{seen:?}");
        // Most have come back, too.
        let returned = seen.values().filter(|l| l.contains(&1)).count();
        assert!(returned >= 6, "{seen:?}");
    }

    #[test]
    fn incidents_open_escalate_and_close() {
        let steps = play(2, 600.0, 1.0, 150.0);
        let mut history = BTreeMap::<String, Vec<Option<u8>>>::new();
        for (_, _, msgs) in &steps {
            for m in msgs.iter().filter(|m| m.topic.contains("/incident/")) {
                let (_, id, _) = parse_topic(&m.topic);
                let sev = if m.payload.is_empty() {
                    None
                } else {
                    let inc: IncidentMsg = serde_json::from_slice(&m.payload).expect("incident");
                    Some(inc.severity)
                };
                let h = history.entry(id).or_default();
                if h.last() != Some(&sev) {
                    h.push(sev);
                }
            }
        }
        assert_eq!(
            history.get("thl-deich-wilhelmsburg"),
            Some(&vec![Some(3), Some(4), Some(3), None, Some(3)])
        );
        assert_eq!(
            history.get("wasser-hafencity-sandtorkai"),
            Some(&vec![None, Some(2), Some(3), Some(2), None])
        );
    }

    #[test]
    fn odd_step_times_do_not_break_it() {
        let mut sc = Scenario::new(NAME, "drill-test", 0).expect("scenario");
        let units = unit_defs().len();
        for (t, w) in [
            (0.0, T0_MS),
            (5000.0, T0_MS + 1000),
            (100.0, T0_MS + 2000), // back in time
            (f64::NAN, T0_MS + 3000),
            (-50.0, T0_MS + 4000),
            (1.0e7, T0_MS + 5000), // far ahead in one jump
            (1.0e7, T0_MS + 5000), // same again
        ] {
            let msgs = sc.step(t, w);
            let positions = msgs.iter().filter(|m| m.topic.ends_with("/pos")).count();
            assert_eq!(positions, units, "at {t}");
        }
        // Going back replans from the start: the same positions as a fresh run.
        let mut fresh = Scenario::new(NAME, "drill-test", 0).expect("scenario");
        let a = fresh.step(100.0, T0_MS);
        let b = sc.step(100.0, T0_MS + 6000);
        let pos = |msgs: &[Msg]| -> Vec<(String, f64)> {
            msgs.iter()
                .filter(|m| m.topic.ends_with("/pos"))
                .map(|m| {
                    let p: UnitPosMsg = serde_json::from_slice(&m.payload).expect("pos");
                    (m.topic.clone(), p.heading.unwrap_or_default())
                })
                .collect()
        };
        assert_eq!(pos(&a), pos(&b));
    }
}
