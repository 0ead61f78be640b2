//! Tests of the built-in `storm-surge` scenario file: the water, the
//! gates, roads and dikes, the weather, the shelter, the units' missions,
//! the incidents and the ship behave as a storm surge at Hamburg does.

use std::collections::{BTreeMap, BTreeSet};

use ingest::wire::{IncidentMsg, UnitPosMsg, UnitStatusMsg};

use ingest::wire::{SensorMetaMsg, SensorObsMsg, UnitMetaMsg, WireTime, sensor_obs_topic};

use crate::geo::LatLon;
use crate::scenario_file::valid_id;
use crate::test_support::{T0_MS, split_topic};
use crate::{Msg, Scenario};

const NAME: &str = "storm-surge";
const HOUR: f64 = 3600.0;
/// Two tides: the storm repeats after this long.
const EPISODE_S: f64 = 2.0 * 12.42 * HOUR;
/// Gauges, rain, wind, gates, roads, dike boxes, the shelter.
const SENSORS: usize = 6 + 2 + 2 + 3 + 5 + 3 + 1;
const UNITS: usize = 12;
const ROADS: &[&str] = &[
    "road-grosse-elbstrasse",
    "road-st-pauli-hafenstr",
    "road-alter-elbtunnel",
    "road-am-sandtorkai",
    "road-reiherstieg-deich",
];
const DIKES: &[&str] = &["dike-reiherstieg", "dike-spreehafen", "dike-georgswerder"];

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
    split_topic(topic, "drill-test")
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
    assert_eq!(first_status, UNITS);
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
fn roads_close_dikes_load_and_the_ship_drifts() {
    let steps = play(6, 300.0, 1.0, 150.0); // 12.5 scenario hours, 5 min per step
    let at = |id: &str, t: f64| {
        series(&steps, id)
            .into_iter()
            .find(|v| v.0 >= t)
            .map(|v| v.1)
    };
    for id in ROADS {
        assert_eq!(at(id, 0.0), Some(1.0), "{id} open before the surge");
        assert_eq!(at(id, 3.0 * HOUR), Some(0.0), "{id} closed at the peak");
        assert_eq!(at(id, 9.5 * HOUR), Some(1.0), "{id} open at low water");
    }
    for id in DIKES {
        let peak = series(&steps, id)
            .iter()
            .map(|v| v.1)
            .fold(f64::MIN, f64::max);
        assert!((25.0..40.0).contains(&peak), "{id} peak {peak} kPa");
        assert!(at(id, 0.0).is_some_and(|v| v < 15.0), "{id}");
    }
    // The ship: opened, moved up the river (east), closed.
    let mut centres = Vec::new();
    let mut closed_after_open = false;
    for (_, t, msgs) in &steps {
        for m in msgs
            .iter()
            .filter(|m| m.topic.ends_with("/schiff-treibt-norderelbe"))
        {
            if m.payload.is_empty() {
                closed_after_open |= !centres.is_empty();
                continue;
            }
            let inc: IncidentMsg = serde_json::from_slice(&m.payload).expect("incident");
            assert_eq!(inc.keyword, "SCHIFF");
            let ring = inc.geometry["coordinates"][0]
                .as_array()
                .expect("ring")
                .clone();
            let lon = ring.iter().filter_map(|p| p[0].as_f64()).sum::<f64>() / ring.len() as f64;
            centres.push((*t, lon));
        }
    }
    assert!(centres.len() >= 4, "{centres:?}");
    assert!(centres.first().is_some_and(|c| c.0 >= 2.0 * HOUR));
    assert!(
        centres.windows(2).all(|w| w[1].1 >= w[0].1 - 1e-9),
        "{centres:?}"
    );
    assert!(closed_after_open);
}

#[test]
fn gate_hysteresis_does_not_flap() {
    // One scenario minute per step over a whole storm.
    let steps = play(8, 60.0, 1.0, EPISODE_S / 60.0);
    let level = series(&steps, "pegel-st-pauli");
    let gate = series(&steps, "gate-ernst-august");
    let mut changes = 0;
    for (w, l) in gate.windows(2).zip(level.windows(2)) {
        if w[1].1 != w[0].1 {
            changes += 1;
            // Within a minute and the noise of the gauge of its levels.
            let lv = l[1].1;
            if w[1].1 == 1.0 {
                assert!(lv >= 3.9, "closed at {lv} m NHN");
            } else {
                assert!(lv < 3.7, "opened at {lv} m NHN");
            }
        }
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
    assert_eq!(last.len(), SENSORS);
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
    assert_eq!(seen.len(), UNITS);
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
    assert_eq!(went_out, UNITS, "{seen:?}");
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
    let units = UNITS;
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
