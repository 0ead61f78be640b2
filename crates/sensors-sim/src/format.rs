//! Publishing in a standard format instead of the native contract
//! (`--format`), so that drills also run through the decoders a city's
//! existing systems would use.
//!
//! The scenarios speak the native contract; a [`Translator`] rewrites
//! their messages as they leave:
//! - `senml`: every sensor observation becomes a SenML pack (RFC 8428) on
//!   `rm/v1/{space}/senml/sim`: base name `<sensor id>:`, base time, the
//!   kind as name, its unit, the value, and `lat`/`lon` records with the
//!   sensor's place. SenML has no descriptions, so the sensors' native
//!   descriptions are not sent; the picture names them `<sensor id>.<kind>`.
//! - `cot`: every unit position becomes a Cursor-on-Target event on
//!   `rm/v1/{space}/cot` (uid = unit id; a friendly type by organisation,
//!   e.g. fire → `a-f-G-U-i-f`; the call sign; `ce` from the accuracy;
//!   `<track>` from heading and speed; stale after five minutes). CoT
//!   carries the description with every position, so the native unit
//!   descriptions are not sent. Radio statuses stay native (they come
//!   from the radio, not from a TAK device).
//!
//! - `sensorthings`: every sensor observation becomes a SensorThings
//!   Observation as a FROST server publishes it, on
//!   `v1.1/Datastreams(<sensor id>)/Observations`. Those topics name no
//!   space, so this format is for the live space only; the server needs
//!   the Datastream table, which [`datastream_table`] writes
//!   (`rescuemate sim --print-datastreams`).
//!
//! Everything else stays native. A description is remembered before it is
//! dropped, so later messages can carry what the format needs.

use std::collections::HashMap;

use ingest::topic::{Route, parse};
use ingest::wire::{SensorMetaMsg, SensorObsMsg, UnitMetaMsg, UnitPosMsg, rfc3339_text as text};
use serde_json::json;

use crate::Msg;

/// How long a CoT position holds (its `stale`).
const COT_STALE_MS: i64 = 5 * 60_000;

/// The format the simulator publishes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The native contract (DESIGN §3).
    #[default]
    Native,
    /// Sensor observations as SenML packs.
    Senml,
    /// Unit positions as Cursor-on-Target events.
    Cot,
    /// Sensor observations as SensorThings Observations (live space only).
    Sensorthings,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "native" => Ok(Format::Native),
            "senml" => Ok(Format::Senml),
            "cot" => Ok(Format::Cot),
            "sensorthings" => Ok(Format::Sensorthings),
            other => Err(format!(
                "unknown format {other:?} (known: native, senml, cot, sensorthings)"
            )),
        }
    }
}

/// Rewrites native messages into a format, remembering descriptions.
#[derive(Debug, Default)]
pub struct Translator {
    format: Format,
    /// Observations numbered so far (their `@iot.id`).
    observations: u64,
    sensors: HashMap<String, SensorMetaMsg>,
    units: HashMap<String, UnitMetaMsg>,
}

impl Translator {
    /// A translator into `format`.
    pub fn new(format: Format) -> Translator {
        Translator {
            format,
            ..Translator::default()
        }
    }

    /// The messages to publish for one native message (none, when the
    /// format has no place for it).
    pub fn translate(&mut self, msg: Msg) -> Vec<Msg> {
        if self.format == Format::Native {
            return vec![msg];
        }
        let Ok(topic) = parse(&msg.topic) else {
            return vec![msg];
        };
        let space = topic.space.to_owned();
        match (self.format, topic.route) {
            (Format::Senml | Format::Sensorthings, Route::SensorMeta(id)) => {
                if let Ok(m) = serde_json::from_slice::<SensorMetaMsg>(&msg.payload) {
                    self.sensors.insert(id.to_owned(), m);
                    return Vec::new();
                }
                vec![msg]
            }
            (Format::Senml, Route::SensorObs(id)) => {
                let (Some(meta), Ok(o)) = (
                    self.sensors.get(id),
                    serde_json::from_slice::<SensorObsMsg>(&msg.payload),
                ) else {
                    return vec![msg];
                };
                let Ok(ts_ms) = o.ts.to_epoch_ms() else {
                    return vec![msg];
                };
                let pack = json!([
                    {"bn": format!("{id}:"), "bt": ts_ms as f64 / 1000.0,
                     "n": meta.kind, "u": meta.unit, "v": o.value},
                    {"n": "lat", "v": o.lat.unwrap_or(meta.lat)},
                    {"n": "lon", "v": o.lon.unwrap_or(meta.lon)},
                ]);
                vec![Msg {
                    topic: format!("rm/v1/{space}/senml/sim"),
                    payload: pack.to_string().into_bytes(),
                    retain: false,
                }]
            }
            (Format::Sensorthings, Route::SensorObs(id)) => {
                let Ok(o) = serde_json::from_slice::<SensorObsMsg>(&msg.payload) else {
                    return vec![msg];
                };
                let Ok(ts_ms) = o.ts.to_epoch_ms() else {
                    return vec![msg];
                };
                self.observations += 1;
                let observation = json!({
                    "@iot.id": self.observations,
                    "phenomenonTime": text(ts_ms),
                    "resultTime": text(ts_ms),
                    "result": o.value,
                });
                vec![Msg {
                    topic: format!("v1.1/Datastreams({id})/Observations"),
                    payload: observation.to_string().into_bytes(),
                    retain: false,
                }]
            }
            (Format::Cot, Route::UnitMeta(id)) => {
                if let Ok(m) = serde_json::from_slice::<UnitMetaMsg>(&msg.payload) {
                    self.units.insert(id.to_owned(), m);
                    return Vec::new();
                }
                vec![msg]
            }
            (Format::Cot, Route::UnitPos(id)) => {
                let Ok(p) = serde_json::from_slice::<UnitPosMsg>(&msg.payload) else {
                    return vec![msg];
                };
                let Ok(ts_ms) = p.ts.to_epoch_ms() else {
                    return vec![msg];
                };
                let meta = self.units.get(id);
                vec![Msg {
                    topic: format!("rm/v1/{space}/cot"),
                    payload: cot_event(id, meta, &p, ts_ms).into_bytes(),
                    retain: false,
                }]
            }
            _ => vec![msg],
        }
    }
}

/// The `[[formats.datastreams]]` table (TOML) the server needs for
/// `--format sensorthings`: one Datastream per sensor among `msgs` (the
/// scenario's first step describes them all).
pub fn datastream_table(msgs: &[Msg]) -> String {
    let mut out = String::from(
        "# Datastreams of the simulator's sensors (rescuemate sim --format sensorthings)\n",
    );
    for m in msgs {
        let (Ok(t), Ok(meta)) = (
            parse(&m.topic),
            serde_json::from_slice::<SensorMetaMsg>(&m.payload),
        ) else {
            continue;
        };
        let Route::SensorMeta(id) = t.route else {
            continue;
        };
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        out.push_str(&format!(
            "\n[[formats.datastreams]]\nid = {id}\nsensor = {id}\nkind = {kind}\nunit = {unit}\nlat = {lat}\nlon = {lon}\n",
            id = quote(id),
            kind = quote(&meta.kind),
            unit = quote(&meta.unit),
            lat = meta.lat,
            lon = meta.lon,
        ));
        if let Some(name) = &meta.name {
            out.push_str(&format!("name = {}\n", quote(name)));
        }
    }
    out
}

/// A friendly CoT type for an organisation.
fn cot_type(org: &str) -> &'static str {
    match org {
        "fire" => "a-f-G-U-i-f",
        "rescue" | "aid" | "ems" => "a-f-G-U-i-m",
        "police" => "a-f-G-U-U-L",
        "command" => "a-f-G-U-i-e",
        "dlrg" => "a-f-G-E-V-U-R",
        _ => "a-f-G-E-V",
    }
}

/// Escapes text for an XML attribute.
fn attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cot_event(id: &str, meta: Option<&UnitMetaMsg>, p: &UnitPosMsg, ts_ms: i64) -> String {
    let cot = cot_type(meta.map_or("", |m| m.org.as_str()));
    let callsign = meta.map_or(id, |m| m.callsign.as_str());
    let ce = p.accuracy.unwrap_or(9_999_999.0);
    let track = match (p.heading, p.speed) {
        (Some(h), Some(s)) => format!(r#"<track course="{h:.1}" speed="{s:.1}"/>"#),
        (Some(h), None) => format!(r#"<track course="{h:.1}"/>"#),
        (None, Some(s)) => format!(r#"<track speed="{s:.1}"/>"#),
        (None, None) => String::new(),
    };
    let (t, stale) = (text(ts_ms), text(ts_ms + COT_STALE_MS));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><event version="2.0" uid="{uid}" type="{cot}" how="m-g" time="{t}" start="{t}" stale="{stale}"><point lat="{lat}" lon="{lon}" hae="9999999.0" ce="{ce}" le="9999999.0"/><detail><contact callsign="{callsign}"/>{track}</detail></event>"#,
        uid = attr(id),
        lat = p.lat,
        lon = p.lon,
        callsign = attr(callsign),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusion::Event;
    use ingest::Decoder;

    const NOW: i64 = 1_795_000_000_000;

    fn native(topic: &str, payload: serde_json::Value) -> Msg {
        Msg {
            topic: topic.to_owned(),
            payload: payload.to_string().into_bytes(),
            retain: false,
        }
    }

    #[test]
    fn senml_packs_decode_to_the_same_observation() {
        let mut t = Translator::new(Format::Senml);
        let meta = json!({"kind":"water_level","unit":"m NHN","lat":53.5457,"lon":9.9703});
        assert!(
            t.translate(native("rm/v1/live/sensor/pegel-1/meta", meta))
                .is_empty()
        );
        let out = t.translate(native(
            "rm/v1/live/sensor/pegel-1/obs",
            json!({"ts": NOW - 1000, "value": 5.25}),
        ));
        let [m] = out.as_slice() else {
            panic!("one pack: {out:?}")
        };
        assert_eq!(m.topic, "rm/v1/live/senml/sim");
        let events = Decoder::default()
            .decode(&m.topic, &m.payload, NOW)
            .expect("our own SenML decodes");
        let obs = events
            .iter()
            .find_map(|e| match &e.event {
                Event::SensorObs(o) => Some(o),
                _ => None,
            })
            .expect("an observation");
        assert_eq!(
            (obs.id.as_str(), obs.ts_ms, obs.value),
            ("pegel-1.water_level", NOW - 1000, 5.25)
        );
        assert!(events.iter().any(
            |e| matches!(&e.event, Event::SensorMeta(s) if s.lat == 53.5457 && s.unit == "m NHN")
        ));
        // What SenML has no place for stays native.
        let status = native("rm/v1/live/unit/u1/status", json!({"ts": NOW, "status": 3}));
        assert_eq!(t.translate(status)[0].topic, "rm/v1/live/unit/u1/status");
    }

    #[test]
    fn cot_events_decode_to_the_same_unit_and_position() {
        let mut t = Translator::new(Format::Cot);
        let meta = json!({"callsign":"HLF 22-1 <Wilhelmsburg>","type":"HLF","org":"fire"});
        assert!(
            t.translate(native("rm/v1/drill-x/unit/fw-hlf-22-1/meta", meta))
                .is_empty()
        );
        let out = t.translate(native(
            "rm/v1/drill-x/unit/fw-hlf-22-1/pos",
            json!({"ts": NOW - 2000, "lat": 53.49, "lon": 10.01, "heading": 90.0, "speed": 12.0, "accuracy": 15.0}),
        ));
        let [m] = out.as_slice() else {
            panic!("one event: {out:?}")
        };
        assert_eq!(m.topic, "rm/v1/drill-x/cot");
        let events = Decoder::default()
            .decode(&m.topic, &m.payload, NOW)
            .expect("our own CoT decodes");
        let Event::UnitMeta(u) = &events[0].event else {
            panic!("a description first")
        };
        assert_eq!(
            (u.callsign.as_str(), u.unit_type.as_str(), u.org.as_str()),
            ("HLF 22-1 <Wilhelmsburg>", "LF", "fire")
        );
        let Event::UnitPos(p) = &events[1].event else {
            panic!("then the position")
        };
        assert_eq!((p.ts_ms, p.lat, p.lon), (NOW - 2000, 53.49, 10.01));
        assert_eq!(
            (p.heading, p.speed, p.accuracy),
            (Some(90.0), Some(12.0), Some(15.0))
        );
        assert_eq!(p.ttl_ms, Some(COT_STALE_MS));
    }

    #[test]
    fn sensorthings_observations_use_the_datastream_of_the_sensor_and_live_only() {
        let mut t = Translator::new(Format::Sensorthings);
        let meta = json!({"kind":"water_level","unit":"m NHN","lat":53.5457,"lon":9.9703,"name":"St. Pauli"});
        let meta = native("rm/v1/live/sensor/pegel-1/meta", meta);
        let table = datastream_table(std::slice::from_ref(&meta));
        assert!(table.contains("[[formats.datastreams]]\nid = \"pegel-1\"\nsensor = \"pegel-1\""));
        assert!(table.contains("name = \"St. Pauli\""), "{table}");
        assert!(t.translate(meta).is_empty());
        let out = t.translate(native(
            "rm/v1/live/sensor/pegel-1/obs",
            json!({"ts": NOW - 1000, "value": 5.25}),
        ));
        let [m] = out.as_slice() else {
            panic!("one observation: {out:?}")
        };
        assert_eq!(m.topic, "v1.1/Datastreams(pegel-1)/Observations");
        let o: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON");
        assert_eq!(o["result"], 5.25);
        assert_eq!(o["@iot.id"], 1);
        let drill = crate::SimOptions {
            space: "drill-x".into(),
            format: Format::Sensorthings,
            ..crate::SimOptions::default()
        };
        assert!(
            drill.validate().is_err(),
            "SensorThings topics name no space"
        );
    }
}
