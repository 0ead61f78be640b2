//! Shards and their merge (DESIGN §7): two pictures that each own half of
//! Hamburg's resolution-7 regions, fed the way a region-aware publisher
//! feeds them (a unit's messages go to the shard of its position; a
//! position that crosses into another shard's region goes to both, and the
//! new shard gets the unit's description and status first), merged by a
//! [`Mosaic`] from their deltas as JSON: the merged digest equals that of
//! one picture fed everything. The same stream also checks the indexed
//! viewport filter against testing every item of every delta.

use std::collections::{BTreeMap, HashMap};

use fusion::{
    Envelope, Event, Mosaic, Ownership, Picture, PictureConfig, RegionMap, Resolution, SensorMeta,
    SensorObs, ShardDelta, UnitMeta, UnitPos, UnitStatus, Viewport,
};

const T0: i64 = 1_790_000_000_000;

fn env(event: Event, t: i64) -> Envelope {
    Envelope {
        space: "live".into(),
        received_ms: t,
        event,
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sensors with rising water, units driving across the city with status
/// changes; in time order.
fn events() -> Vec<Envelope> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for i in 0..60 {
        let (lat, lon) = (53.40 + 0.33 * rng.next(), 9.74 + 0.58 * rng.next());
        let kind = if i % 3 == 0 { "rain_rate" } else { "gas_co" };
        out.push(env(
            Event::SensorMeta(SensorMeta {
                id: format!("s{i}"),
                kind: kind.into(),
                unit: "x".into(),
                lat,
                lon,
                name: None,
                thresholds: None,
            }),
            T0,
        ));
    }
    let mut units: Vec<(f64, f64, f64, f64)> = (0..40)
        .map(|_| {
            (
                53.45 + 0.2 * rng.next(),
                9.85 + 0.3 * rng.next(),
                (rng.next() - 0.5) * 0.004,
                (rng.next() - 0.5) * 0.006,
            )
        })
        .collect();
    for (i, _) in units.iter().enumerate() {
        out.push(env(
            Event::UnitMeta(UnitMeta {
                id: format!("u{i}"),
                callsign: format!("HLF {i}"),
                unit_type: if i % 2 == 0 { "HLF" } else { "RTW" }.into(),
                org: "fire".into(),
                strength: None,
            }),
            T0,
        ));
    }
    for step in 0..60 {
        let t = T0 + 1_000 + step * 1_000;
        for (i, u) in units.iter_mut().enumerate() {
            u.0 += u.2;
            u.1 += u.3;
            out.push(env(
                Event::UnitPos(UnitPos {
                    id: format!("u{i}"),
                    ts_ms: t,
                    lat: u.0,
                    lon: u.1,
                    heading: None,
                    speed: None,
                    accuracy: None,
                    source: None,
                    ttl_ms: None,
                }),
                t,
            ));
            if (step + i as i64) % 7 == 0 {
                out.push(env(
                    Event::UnitStatus(UnitStatus {
                        id: format!("u{i}"),
                        ts_ms: t,
                        status: [1, 2, 3, 4, 6][(step as usize + i) % 5],
                        source: None,
                    }),
                    t,
                ));
            }
        }
        for i in 0..60 {
            out.push(env(
                Event::SensorObs(SensorObs {
                    id: format!("s{i}"),
                    ts_ms: t,
                    value: 5.0 * rng.next() + step as f64 * if i % 3 == 0 { 1.0 } else { 2.0 },
                    lat: None,
                    lon: None,
                    seq: Some(step as u64),
                    quality: None,
                }),
                t,
            ));
        }
    }
    out
}

/// Where a region-aware publisher sends each event: the shards, in order.
struct Router {
    map: RegionMap,
    sensor_shard: HashMap<String, u32>,
    unit_shard: HashMap<String, u32>,
    unit_meta: HashMap<String, Envelope>,
    unit_status: HashMap<String, Envelope>,
}

impl Router {
    fn route(&mut self, e: &Envelope) -> Vec<(u32, Envelope)> {
        let shard_at = |lat, lon| {
            self.map
                .shard_of(self.map.region_of(lat, lon).expect("valid position"))
        };
        match &e.event {
            Event::SensorMeta(m) => {
                let s = shard_at(m.lat, m.lon);
                self.sensor_shard.insert(m.id.clone(), s);
                vec![(s, e.clone())]
            }
            Event::SensorObs(o) => vec![(self.sensor_shard[&o.id], e.clone())],
            Event::UnitMeta(m) => {
                self.unit_meta.insert(m.id.clone(), e.clone());
                self.unit_shard
                    .get(&m.id)
                    .map(|s| vec![(*s, e.clone())])
                    .unwrap_or_default()
            }
            Event::UnitStatus(st) => {
                self.unit_status.insert(st.id.clone(), e.clone());
                self.unit_shard
                    .get(&st.id)
                    .map(|s| vec![(*s, e.clone())])
                    .unwrap_or_default()
            }
            Event::UnitPos(p) => {
                let new = shard_at(p.lat, p.lon);
                let old = self.unit_shard.insert(p.id.clone(), new);
                let mut out = Vec::new();
                if old != Some(new) {
                    if let Some(old) = old {
                        out.push((old, e.clone()));
                    }
                    out.extend(self.unit_meta.get(&p.id).map(|m| (new, m.clone())));
                    out.extend(self.unit_status.get(&p.id).map(|s| (new, s.clone())));
                }
                out.push((new, e.clone()));
                out
            }
            _ => Vec::new(),
        }
    }
}

fn shard_delta(d: &fusion::Delta, full: bool) -> ShardDelta {
    let mut v = serde_json::to_value(d).expect("serialise");
    v["full"] = serde_json::Value::Bool(full);
    serde_json::from_value(v).expect("a shard's delta reads back")
}

#[test]
fn merged_shards_give_the_single_picture_digest() {
    let map = RegionMap::new(Resolution::Seven, 2, BTreeMap::new()).expect("map");
    let mut single = Picture::new(PictureConfig::default());
    let mut shards: Vec<Picture> = (0..2)
        .map(|shard| {
            Picture::new(PictureConfig {
                shard: Some(Ownership {
                    map: map.clone(),
                    shard,
                }),
                ..PictureConfig::default()
            })
        })
        .collect();
    let mut mosaic = Mosaic::new(2, &PictureConfig::default().resolutions);
    for (i, s) in shards.iter().enumerate() {
        mosaic
            .apply(i as u32, shard_delta(&s.export(T0), true))
            .expect("whole picture");
    }
    let mut router = Router {
        map: map.clone(),
        sensor_shard: HashMap::new(),
        unit_shard: HashMap::new(),
        unit_meta: HashMap::new(),
        unit_status: HashMap::new(),
    };
    let mut handed_over = 0;
    let all = events();
    for (n, e) in all.iter().enumerate() {
        let _ = single.apply(e, e.received_ms);
        for (shard, e) in router.route(e) {
            let got = shards[shard as usize].apply(&e, e.received_ms);
            if got == Ok(fusion::Outcome::Elsewhere) {
                handed_over += 1;
            }
        }
        // Shards tick at their own times.
        for (i, s) in shards.iter_mut().enumerate() {
            if (n + i * 17) % (37 + i * 11) == 0
                && let Some(d) = s.flush(e.received_ms)
            {
                mosaic
                    .apply(i as u32, shard_delta(&d, false))
                    .expect("in sequence");
            }
        }
    }
    let end = T0 + 100_000;
    single.flush(end);
    for (i, s) in shards.iter_mut().enumerate() {
        if let Some(d) = s.flush(end) {
            mosaic
                .apply(i as u32, shard_delta(&d, false))
                .expect("in sequence");
        }
    }
    mosaic.flush();
    assert!(
        handed_over > 5,
        "units crossed between shards {handed_over} times"
    );
    let counts: Vec<_> = shards.iter().map(Picture::counts).collect();
    assert!(
        counts.iter().all(|c| c.0 > 3 && c.1 > 3),
        "both shards hold units and sensors: {counts:?}"
    );
    let whole = single.snapshot(
        &Viewport {
            bbox: None,
            res: Resolution::Six,
        },
        end,
    );
    let merged = mosaic.snapshot(&Viewport {
        bbox: None,
        res: Resolution::Six,
    });
    assert_eq!(merged.cells.len(), whole.cells.len());
    assert_eq!(merged.units.len(), 40);
    assert!(!whole.alerts.is_empty(), "the water rose: alerts");
    assert_eq!(merged.alerts.len(), whole.alerts.len());
    assert_eq!(mosaic.digest(), single.digest());

    // A shard goes away: its units and sensors read as lost; a delta
    // without its whole picture first is refused; the whole picture again
    // restores the merge.
    mosaic.set_online(1, false);
    let d = mosaic.flush().expect("lost entities");
    assert!(!d.units.is_empty());
    assert!(
        d.units
            .iter()
            .all(|u| u.freshness == Some(fusion::Freshness::Lost))
    );
    let mut again = shards[1].export(end);
    again.seq += 1;
    assert!(mosaic.apply(1, shard_delta(&again, false)).is_err());
    mosaic
        .apply(1, shard_delta(&shards[1].export(end), true))
        .expect("whole picture");
    assert_eq!(mosaic.digest(), single.digest());
}

/// What a client should get of a delta, computed the plain way (every
/// item tested): the reference for the indexed filter.
struct Plain {
    vp: Viewport,
    units: std::collections::HashSet<String>,
    sensors: std::collections::HashSet<String>,
}

/// The plain filter of one list: those inside, and those held that left.
fn plain_items<'a>(
    vp: &Viewport,
    held: &mut std::collections::HashSet<String>,
    removed: &[String],
    items: impl Iterator<Item = (&'a str, Option<f64>, Option<f64>)>,
) -> Vec<String> {
    for id in removed {
        held.remove(id);
    }
    let mut out = Vec::new();
    for (id, lat, lon) in items {
        if vp.contains_point(lat, lon) {
            held.insert(id.to_owned());
            out.push(id.to_owned());
        } else if held.remove(id) {
            out.push(id.to_owned());
        }
    }
    out
}

impl Plain {
    fn filter(&mut self, d: &fusion::Delta) -> (Vec<String>, Vec<String>, Vec<String>) {
        let cells = d
            .cells
            .iter()
            .filter(|c| self.vp.contains_cell(c.h3))
            .map(|c| c.h3.to_string())
            .collect();
        let units = plain_items(
            &self.vp,
            &mut self.units,
            &d.units_removed,
            d.units.iter().map(|u| (&*u.id, u.lat, u.lon)),
        );
        let sensors = plain_items(
            &self.vp,
            &mut self.sensors,
            &d.sensors_removed,
            d.sensors.iter().map(|s| (&*s.id, s.lat, s.lon)),
        );
        (cells, units, sensors)
    }
}

#[test]
fn the_indexed_viewport_filter_sends_what_testing_every_item_sends() {
    let mut p = Picture::new(PictureConfig::default());
    let boxes = [
        [9.95, 53.50, 10.00, 53.53],
        [9.85, 53.45, 10.15, 53.60],
        [10.02, 53.55, 10.05, 53.56],
    ];
    let mut clients: Vec<(fusion::ViewFilter, Plain)> = boxes
        .iter()
        .flat_map(|b| [Resolution::Ten, Resolution::Eight, Resolution::Six].map(|r| (*b, r)))
        .map(|([w, s, e, n], res)| {
            let vp = Viewport {
                bbox: Some(fusion::Bbox::new(w, s, e, n).expect("bbox")),
                res,
            };
            (
                fusion::ViewFilter::new(vp),
                Plain {
                    vp,
                    units: Default::default(),
                    sensors: Default::default(),
                },
            )
        })
        .collect();
    let mut sent = 0;
    let mut n = 0;
    for e in events() {
        let t = e.received_ms;
        let _ = p.apply(&e, t);
        n += 1;
        if n % 50 == 0
            && let Some(d) = p.flush(t)
        {
            for (f, plain) in &mut clients {
                let cut = f.cut(&d);
                let got = cut.to_delta(&d);
                // The spliced message is what serialising the delta gives.
                let json = serde_json::to_string(&got).expect("json");
                assert_eq!(cut.to_json(&d, ""), json, "json of {:?}", plain.vp);
                assert_eq!(
                    cut.to_json(&d, r#""type":"delta""#),
                    format!(r#"{{"type":"delta",{}"#, &json[1..])
                );
                let (cells, units, sensors) = plain.filter(&d);
                let got_cells: Vec<String> = got.cells.iter().map(|c| c.h3.to_string()).collect();
                let got_units: Vec<String> = got.units.iter().map(|u| u.id.to_string()).collect();
                assert_eq!(got_cells, cells, "cells of {:?}", plain.vp);
                assert_eq!(got_units, units, "units of {:?}", plain.vp);
                let got_sensors: Vec<String> =
                    got.sensors.iter().map(|s| s.id.to_string()).collect();
                assert_eq!(got_sensors, sensors, "sensors of {:?}", plain.vp);
                sent += got_cells.len() + got_units.len() + got_sensors.len();
            }
        }
    }
    assert!(sent > 1_000, "the viewports saw something: {sent}");
}
