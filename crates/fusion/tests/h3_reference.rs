//! H3 indexing and roll-up checked against the reference implementation.
//!
//! `data/h3_reference.csv` holds about 2,000 points (Hamburg, the whole
//! globe, both poles, the antimeridian, the 12 pentagons) with the cells the
//! reference library (PyPI `h3`, Uber's C library) gives for them; see
//! `data/make_h3_reference.py` for how it was made and how to regenerate it.
//!
//! Two things are checked:
//! - h3o (which the engine uses) puts every point into the reference cell at
//!   every served resolution, and agrees on the parents of the finest cell;
//! - the engine, fed one sensor per point, reports each sensor in the
//!   reference cells and rolls the counts up correctly. The engine indexes
//!   at the finest resolution and rolls up (DESIGN §4), so a sensor's coarse
//!   cell is the *parent* of its finest cell, which for a few percent of
//!   points is not the coarse cell that contains the point itself.

use std::collections::BTreeMap;

use fusion::{
    Envelope, Event, Picture, PictureConfig, Resolution, SensorMeta, SensorObs, Viewport,
};
use h3o::{CellIndex, LatLng};

const REFERENCE: &str = include_str!("data/h3_reference.csv");
const T0: i64 = 1_790_000_000_000;
/// Served resolutions of the default config, coarse to fine, as in the CSV.
const RESOLUTIONS: [u8; 5] = [6, 7, 8, 9, 10];
const FINEST: usize = 4;

/// One row of the reference file.
struct Point {
    line: usize,
    lat: f64,
    lon: f64,
    /// The cell containing the point, per entry of [`RESOLUTIONS`].
    containing: [CellIndex; 5],
    /// The finest cell and its parents, per entry of [`RESOLUTIONS`]: where
    /// a rolled-up picture counts the point.
    rolled_up: [CellIndex; 5],
}

fn cell(s: &str, line: usize) -> CellIndex {
    s.parse()
        .unwrap_or_else(|e| panic!("line {line}: bad H3 index {s:?}: {e}"))
}

fn load() -> Vec<Point> {
    let mut lines = REFERENCE
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
    let (_, header) = lines.next().expect("a header line");
    assert_eq!(
        header,
        "lat,lon,cell_r6,cell_r7,cell_r8,cell_r9,cell_r10,parent_r6,parent_r7,parent_r8,parent_r9",
        "the columns make_h3_reference.py writes"
    );
    lines
        .map(|(i, l)| {
            let line = i + 1;
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 11, "line {line}: 11 fields");
            let num = |s: &str| -> f64 {
                s.parse()
                    .unwrap_or_else(|e| panic!("line {line}: bad number {s:?}: {e}"))
            };
            let containing = [2, 3, 4, 5, 6].map(|k| cell(f[k], line));
            let rolled_up = [7, 8, 9, 10, 6].map(|k| cell(f[k], line));
            Point {
                line,
                lat: num(f[0]),
                lon: num(f[1]),
                containing,
                rolled_up,
            }
        })
        .collect()
}

fn res(r: u8) -> Resolution {
    Resolution::try_from(r).expect("a valid resolution")
}

fn env(event: Event) -> Envelope {
    Envelope {
        space: "live".into(),
        received_ms: T0,
        event,
    }
}

fn sensor_meta(id: &str, lat: f64, lon: f64) -> Envelope {
    env(Event::SensorMeta(SensorMeta {
        id: id.into(),
        kind: "water_level".into(),
        unit: "m NHN".into(),
        lat,
        lon,
        name: None,
        thresholds: None,
    }))
}

fn sensor_obs(id: &str, value: f64) -> Envelope {
    env(Event::SensorObs(SensorObs {
        id: id.into(),
        ts_ms: T0,
        value,
        lat: None,
        lon: None,
        seq: None,
        quality: None,
    }))
}

/// A value per point, spread over the water-level thresholds.
fn value_of(i: usize) -> f64 {
    f64::from(u8::try_from(i % 80).expect("small")) / 10.0
}

#[test]
fn the_reference_covers_what_it_should() {
    let points = load();
    assert!(points.len() >= 2_000, "{} points", points.len());
    let near = |p: &Point, lat: f64| (p.lat - lat).abs() < 1.0;
    assert!(points.iter().filter(|p| near(p, 90.0)).count() >= 20);
    assert!(points.iter().filter(|p| near(p, -90.0)).count() >= 20);
    assert!(points.iter().filter(|p| p.lon.abs() > 179.9).count() >= 40);
    let pentagon_neighbours = points
        .iter()
        .filter(|p| p.containing.iter().any(|c| c.is_pentagon()))
        .count();
    assert!(pentagon_neighbours >= 12, "{pentagon_neighbours}");
    let hamburg = points
        .iter()
        .filter(|p| (53.3..=53.8).contains(&p.lat) && (9.6..=10.4).contains(&p.lon))
        .count();
    assert!(hamburg >= 1_500, "{hamburg}");
}

#[test]
fn h3o_agrees_with_the_reference_on_every_point() {
    let mut wrong = Vec::new();
    let points = load();
    for p in &points {
        let ll = LatLng::new(p.lat, p.lon).expect("valid coordinates");
        for (k, r) in RESOLUTIONS.iter().enumerate() {
            let got = ll.to_cell(res(*r));
            if got != p.containing[k] {
                wrong.push(format!(
                    "line {}: ({}, {}) res {r}: h3o {got}, reference {}",
                    p.line, p.lat, p.lon, p.containing[k]
                ));
            }
            let parent = p.containing[FINEST].parent(res(*r));
            if parent != Some(p.rolled_up[k]) {
                wrong.push(format!(
                    "line {}: parent at res {r} of {}: h3o {parent:?}, reference {}",
                    p.line, p.containing[FINEST], p.rolled_up[k]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} disagreements, the first ones:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}

#[test]
fn the_engine_indexes_and_rolls_up_like_the_reference() {
    let points = load();
    let config = PictureConfig::default();
    let served: Vec<u8> = config.resolutions.iter().map(|r| u8::from(*r)).collect();
    for r in RESOLUTIONS {
        assert!(served.contains(&r), "res {r} is served by default");
    }
    let mut picture = Picture::new(config);

    // One sensor at a time: the delta of each flush names exactly the cells
    // the new sensor changed, one per resolution.
    for (i, p) in points.iter().enumerate() {
        let id = format!("p{i:04}");
        for e in [sensor_meta(&id, p.lat, p.lon), sensor_obs(&id, value_of(i))] {
            picture
                .apply(&e, T0)
                .unwrap_or_else(|r| panic!("line {}: refused: {r}", p.line));
        }
        let delta = picture.flush(T0).expect("a new sensor changes the picture");
        for (k, r) in RESOLUTIONS.iter().enumerate() {
            let cells: Vec<CellIndex> = delta
                .cells
                .iter()
                .filter(|c| c.res == *r)
                .map(|c| c.h3)
                .collect();
            assert_eq!(
                cells,
                vec![p.rolled_up[k]],
                "line {}: ({}, {}) at res {r} (the cell containing the point is {})",
                p.line,
                p.lat,
                p.lon,
                p.containing[k]
            );
        }
    }

    // The whole picture: every resolution has exactly the reference cells,
    // each counting the points rolled up into it.
    for (k, r) in RESOLUTIONS.iter().enumerate() {
        let mut expected: BTreeMap<CellIndex, (u32, f64)> = BTreeMap::new();
        for (i, p) in points.iter().enumerate() {
            let e = expected.entry(p.rolled_up[k]).or_insert((0, f64::MIN));
            e.0 += 1;
            e.1 = e.1.max(value_of(i));
        }
        let snapshot = picture.snapshot(
            &Viewport {
                bbox: None,
                res: res(*r),
            },
            T0,
        );
        assert_eq!(
            snapshot.cells.len(),
            expected.len(),
            "res {r}: number of cells"
        );
        for c in &snapshot.cells {
            assert_eq!(c.res, *r);
            let Some((n, max_value)) = expected.get(&c.h3) else {
                panic!("res {r}: cell {} is not a reference cell", c.h3);
            };
            assert_eq!(c.agg.sensors(), *n, "res {r}: sensors in {}", c.h3);
            let kind = &c.kinds()["water_level"];
            assert_eq!(kind.n, *n, "res {r}: water gauges in {}", c.h3);
            assert_eq!(kind.max_value, Some(*max_value), "res {r}: {}", c.h3);
            assert_eq!(c.agg.newest_ms(), Some(T0));
        }
        let total: u32 = snapshot.cells.iter().map(|c| c.agg.sensors()).sum();
        assert_eq!(
            total as usize,
            points.len(),
            "res {r}: every sensor counted once"
        );
    }
}

/// Rolling up is not the same as indexing at the coarse resolution: make
/// sure the reference data exercises the difference, so that the engine
/// test above would catch an engine that indexed each resolution directly.
#[test]
fn the_reference_has_points_whose_parent_does_not_contain_them() {
    let points = load();
    for (k, r) in RESOLUTIONS[..FINEST].iter().enumerate() {
        let differ = points
            .iter()
            .filter(|p| p.containing[k] != p.rolled_up[k])
            .count();
        assert!(
            differ >= 20,
            "res {r}: only {differ} points lie outside their rolled-up cell"
        );
    }
}
