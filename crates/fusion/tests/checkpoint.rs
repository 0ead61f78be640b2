//! Checkpoints on random histories: a picture restored from a checkpoint
//! (through its JSON form) must answer every further event, acknowledgement
//! and removal exactly as the picture it was taken from: same outcomes,
//! same deltas, same snapshot, same digest.
//!
//! The histories mix what the engine keeps state for: sensors with
//! plausibility checks and trends, units with several position sources and
//! radio statuses, incidents whose keyword requires unit types, a sector,
//! alerts raised and acknowledged, operators' removals.
//! `PROPTEST_CASES` sets the number of cases (default 64).

use std::collections::BTreeMap;

use fusion::{
    Checkpoint, EntityKind, Envelope, Event, IncidentClosed, IncidentUpsert, Picture,
    PictureConfig, Sector, SensorMeta, SensorObs, UnitMeta, UnitPos, UnitStatus, Viewport,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const T0: i64 = 1_790_000_000_000;
/// The picture's clock: a little after the events, so some age.
const NOW: i64 = T0 + 20 * 60_000;
const SPOTS: [(f64, f64); 3] = [(53.5500, 9.9900), (53.5508, 9.9912), (53.5300, 10.0500)];

fn config() -> PictureConfig {
    let mut c = PictureConfig::default();
    c.requirements
        .insert("FEU3".to_owned(), vec!["HLF".to_owned(), "DLK".to_owned()]);
    let (lat, lon) = SPOTS[0];
    c.sectors.push(Sector {
        id: "wilhelmsburg".to_owned(),
        name: "Wilhelmsburg".to_owned(),
        geometry: square(lat, lon, 0.004),
        require: vec!["RTW".to_owned()],
    });
    c
}

fn square(lat: f64, lon: f64, d: f64) -> serde_json::Value {
    serde_json::json!({"type": "Polygon", "coordinates": [[
        [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]
    ]]})
}

#[derive(Debug, Clone)]
enum Op {
    Apply(Event),
    Flush,
    Ack(u8),
    Remove(bool, u8),
}

fn place() -> impl Strategy<Value = (f64, f64)> {
    (0..SPOTS.len(), 0..4u8, 0..4u8).prop_map(|(s, i, j)| {
        let (lat, lon) = SPOTS[s];
        (lat + f64::from(i) * 0.0004, lon + f64::from(j) * 0.0006)
    })
}

fn ts() -> impl Strategy<Value = i64> {
    (0..40i64).prop_map(|m| T0 + m * 30_000)
}

fn event() -> impl Strategy<Value = Event> {
    let sensor = 0..6u8;
    let unit = 0..6u8;
    prop_oneof![
        2 => (sensor.clone(), 0..3usize, place(), any::<bool>()).prop_map(|(i, k, (lat, lon), own)| {
            let (kind, unit) = [("water_level", "m NHN"), ("gas_co", "ppm"), ("rain_rate", "mm/h")][k];
            Event::SensorMeta(SensorMeta {
                id: format!("s{i}"),
                kind: kind.to_owned(),
                unit: unit.to_owned(),
                lat,
                lon,
                name: None,
                thresholds: own.then(|| vec![1.0, 2.0, 3.0]),
            })
        }),
        8 => (sensor, ts(), 0..60u8, proptest::option::of(0..30u64)).prop_map(|(i, ts_ms, v, seq)| {
            Event::SensorObs(SensorObs {
                id: format!("s{i}"),
                ts_ms,
                value: f64::from(v) / 10.0 + 3.0,
                lat: None,
                lon: None,
                seq,
                quality: None,
            })
        }),
        1 => (unit.clone(), 0..4usize).prop_map(|(i, t)| {
            let (unit_type, org) = [("HLF", "fire"), ("DLK", "fire"), ("RTW", "aid"), ("GW-L", "thw")][t];
            Event::UnitMeta(UnitMeta {
                id: format!("u{i}"),
                callsign: format!("{unit_type} {i}"),
                unit_type: unit_type.to_owned(),
                org: org.to_owned(),
                strength: None,
            })
        }),
        5 => (unit.clone(), ts(), place(), 0..4usize, proptest::option::of(3.0..80.0f64), any::<bool>())
            .prop_map(|(i, ts_ms, (lat, lon), src, accuracy, ttl)| {
                Event::UnitPos(UnitPos {
                    id: format!("u{i}"),
                    ts_ms,
                    lat,
                    lon,
                    heading: None,
                    speed: Some(5.0),
                    accuracy,
                    source: [None, Some("radio"), Some("tracker"), Some("cot")][src].map(str::to_owned),
                    ttl_ms: ttl.then_some(120_000),
                })
            }),
        4 => (unit, ts(), 0..10u8).prop_map(|(i, ts_ms, status)| {
            Event::UnitStatus(UnitStatus {
                id: format!("u{i}"),
                ts_ms,
                status,
                source: None,
            })
        }),
        1 => (0..2u8, ts(), 0..SPOTS.len(), 1..5u8, any::<bool>()).prop_map(|(i, ts_ms, s, severity, feu)| {
            let (lat, lon) = SPOTS[s];
            Event::Incident(IncidentUpsert {
                id: format!("i{i}"),
                ts_ms,
                keyword: if feu { "FEU3" } else { "MANV10" }.to_owned(),
                severity,
                geometry: square(lat, lon, 0.002),
                title: None,
                expires_ms: None,
            })
        }),
        1 => (0..2u8).prop_map(|i| Event::IncidentClosed(IncidentClosed { id: format!("i{i}") })),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => event().prop_map(Op::Apply),
        2 => Just(Op::Flush),
        1 => (1..6u8).prop_map(Op::Ack),
        1 => (any::<bool>(), 0..6u8).prop_map(|(unit, i)| Op::Remove(unit, i)),
    ]
}

/// What one step answered, comparable.
fn step(p: &mut Picture, op: &Op) -> String {
    match op {
        Op::Apply(e) => {
            let env = Envelope {
                space: "live".to_owned(),
                received_ms: NOW,
                event: e.clone(),
            };
            format!("{:?}", p.apply(&env, NOW))
        }
        Op::Flush => serde_json::to_string(&p.flush(NOW)).expect("delta json"),
        Op::Ack(n) => format!("{:?}", p.ack(&format!("A{n}"))),
        Op::Remove(unit, i) => {
            let (kind, id) = if *unit {
                (EntityKind::Unit, format!("u{i}"))
            } else {
                (EntityKind::Sensor, format!("s{i}"))
            };
            format!("{:?}", p.remove(kind, &id))
        }
    }
}

/// The snapshot of the whole picture at every served resolution.
fn everything(p: &Picture) -> String {
    p.resolutions()
        .iter()
        .map(|r| {
            let vp = Viewport {
                bbox: None,
                res: *r,
            };
            serde_json::to_string(&p.snapshot(&vp, NOW)).expect("snapshot json")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_restored_picture_answers_like_the_original() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(op(), 1..250),
        any::<prop::sample::Index>(),
    );
    runner
        .run(&strategy, |(ops, cut)| {
            let k = cut.index(ops.len() + 1);
            let mut original = Picture::new(config());
            for op in &ops[..k] {
                step(&mut original, op);
            }
            original.flush(NOW);
            let cp = original.checkpoint().expect("flushed");
            let text = serde_json::to_string(&cp).expect("checkpoint json");
            let back: Checkpoint = serde_json::from_str(&text).expect("checkpoint parses");
            let mut restored = match Picture::restore(config(), back) {
                Ok(p) => p,
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "{e}\noriginal: {}",
                        everything(&original)
                    )));
                }
            };
            prop_assert_eq!(everything(&restored), everything(&original));
            prop_assert_eq!(restored.digest(), original.digest());
            prop_assert_eq!(restored.seq(), original.seq());
            let mut answers = BTreeMap::new();
            for (i, op) in ops[k..].iter().enumerate() {
                let a = step(&mut original, op);
                let b = step(&mut restored, op);
                prop_assert_eq!(&a, &b, "step {} ({:?})", k + i, op);
                answers.insert(i, a);
            }
            let (a, b) = (original.flush(NOW), restored.flush(NOW));
            prop_assert_eq!(
                serde_json::to_string(&a).ok(),
                serde_json::to_string(&b).ok()
            );
            prop_assert_eq!(original.digest(), restored.digest());
            prop_assert_eq!(everything(&original), everything(&restored));
            Ok(())
        })
        .expect("restored pictures behave like the originals");
}

#[test]
fn an_unflushed_picture_gives_no_checkpoint_and_a_foreign_one_is_refused() {
    let mut p = Picture::new(config());
    let env = Envelope {
        space: "live".to_owned(),
        received_ms: NOW,
        event: Event::SensorObs(SensorObs::value("s1".to_owned(), T0, 4.0)),
    };
    p.apply(&env, NOW).expect("applied");
    assert!(p.checkpoint().is_none(), "changes wait for a flush");
    p.flush(NOW);
    let cp = p.checkpoint().expect("flushed");
    // Under another configuration (here: other thresholds for the kind)
    // the picture would not be the same: the digest check says so.
    let mut text: serde_json::Value = serde_json::to_value(&cp).expect("json");
    text["version"] = serde_json::json!(99);
    let other: Checkpoint = serde_json::from_value(text).expect("parses");
    assert!(matches!(
        Picture::restore(config(), other),
        Err(fusion::RestoreError::Version(99))
    ));
    let mut text: serde_json::Value = serde_json::to_value(&cp).expect("json");
    text["digest"] = serde_json::json!("0000");
    let tampered: Checkpoint = serde_json::from_value(text).expect("parses");
    assert!(matches!(
        Picture::restore(config(), tampered),
        Err(fusion::RestoreError::Digest { .. })
    ));
}
