//! OGC SensorThings API Observations, as a FROST server publishes them over
//! MQTT (`v1.1/Datastreams(<id>)/Observations`), → sensor observations.
//!
//! Mapping onto the native contract (DESIGN §3):
//! - The Datastream id comes from the topic (`{id}`; a quoted string id
//!   such as `'gauge-7'` loses its quotes) and must be listed in
//!   `[[formats.datastreams]]`, which names our sensor id, kind and unit
//!   (and its place); others are refused as `unknown_datastream`.
//! - `phenomenonTime` is the event time (the end of an interval
//!   `start/end`), `result` the value (a number; `true`/`false` count as
//!   1/0).
//! - The place is the Observation's `FeatureOfInterest.feature` when it is
//!   expanded and a GeoJSON Point (subscribe with
//!   `…/Observations?$expand=FeatureOfInterest` in the pattern for that),
//!   otherwise the Datastream's place from the config. With a place, each
//!   Observation also describes its sensor (fusion drops an unchanged
//!   description as a duplicate); without one the sensor has no position
//!   until it gets one.

use fusion::{Event, SensorMeta, SensorObs};
use serde::Deserialize;
use serde_json::Value;

use crate::decode::{Ctx, check_lat_lon, text};
use crate::error::DecodeError;
use crate::route::Format;
use crate::wire::rfc3339_ms;

fn bad(why: impl Into<String>) -> DecodeError {
    DecodeError::Malformed {
        format: Format::Sensorthings,
        why: why.into(),
    }
}

#[derive(Deserialize)]
struct Observation {
    #[serde(rename = "phenomenonTime")]
    phenomenon_time: Option<String>,
    result: Option<Value>,
    #[serde(rename = "FeatureOfInterest")]
    feature_of_interest: Option<FeatureOfInterest>,
}

#[derive(Deserialize)]
struct FeatureOfInterest {
    feature: Option<Value>,
}

pub(crate) fn decode(ctx: &Ctx<'_>, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let raw_id = ctx
        .captures
        .get("id")
        .ok_or_else(|| bad("topic pattern has no {id}"))?;
    let id = raw_id
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(raw_id);
    let Some(stream) = ctx.formats().datastreams.get(id) else {
        return Err(DecodeError::UnknownDatastream(
            id.chars().take(80).collect(),
        ));
    };
    let o: Observation = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    let time = o.phenomenon_time.ok_or_else(|| bad("no phenomenonTime"))?;
    // An interval "start/end": the observation holds at its end.
    let instant = time.rsplit('/').next().unwrap_or(&time);
    let ts_ms =
        rfc3339_ms(instant).map_err(|e| DecodeError::Timestamp(format!("phenomenonTime: {e}")))?;
    let ts_ms = ctx.time(ts_ms)?;
    let value = match o.result {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| bad("result out of range"))?,
        Some(Value::Bool(b)) => {
            if b {
                1.0
            } else {
                0.0
            }
        }
        Some(other) => return Err(bad(format!("result {other} is not a number"))),
        None => return Err(bad("no result")),
    };
    if !value.is_finite() {
        return Err(bad("result is not finite"));
    }
    let place = match o.feature_of_interest.and_then(|f| f.feature) {
        Some(feature) => point_of(&feature)?.or(stream.lat.zip(stream.lon)),
        None => stream.lat.zip(stream.lon),
    };
    let mut events = Vec::with_capacity(2);
    if let Some((lat, lon)) = place {
        check_lat_lon(lat, lon)?;
        events.push(Event::SensorMeta(SensorMeta {
            id: stream.sensor.clone(),
            kind: text("kind", stream.kind.clone())?,
            unit: text("unit", stream.unit.clone())?,
            lat,
            lon,
            name: stream.name.clone().map(|n| text("name", n)).transpose()?,
            thresholds: None,
        }));
    }
    events.push(Event::SensorObs(SensorObs::value(
        stream.sensor.clone(),
        ts_ms,
        value,
    )));
    Ok(events)
}

/// (lat, lon) of a GeoJSON Point, or of a Feature whose geometry is one;
/// None for other geometries.
fn point_of(feature: &Value) -> Result<Option<(f64, f64)>, DecodeError> {
    let geometry = match feature.get("type").and_then(Value::as_str) {
        Some("Feature") => feature.get("geometry").unwrap_or(&Value::Null),
        _ => feature,
    };
    if geometry.get("type").and_then(Value::as_str) != Some("Point") {
        return Ok(None);
    }
    let c = geometry
        .get("coordinates")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("FeatureOfInterest point has no coordinates"))?;
    match (
        c.first().and_then(Value::as_f64),
        c.get(1).and_then(Value::as_f64),
    ) {
        (Some(lon), Some(lat)) => Ok(Some((lat, lon))),
        _ => Err(bad("FeatureOfInterest point needs [lon, lat]")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::decode::Decoder;
    use crate::formats::{Datastream, Formats, FormatsConfig};
    use fusion::Envelope;

    const NOW: i64 = 1_795_000_000_000;

    fn decoder() -> Decoder {
        let stream = |id: &str, sensor: &str, at: Option<(f64, f64)>| Datastream {
            id: id.into(),
            sensor: sensor.into(),
            kind: "water_level".into(),
            unit: "m NHN".into(),
            lat: at.map(|p| p.0),
            lon: at.map(|p| p.1),
            name: Some("Pegel".into()),
        };
        let config = FormatsConfig {
            sensorthings: vec![
                "v1.1/Datastreams({id})/Observations".into(),
                "v1.1/Datastreams({id})/Observations?$expand=FeatureOfInterest".into(),
            ],
            datastreams: vec![
                stream("4711", "pegel-st-pauli", Some((53.5457, 9.9703))),
                stream("buoy-3", "buoy-3", None),
            ],
            ..FormatsConfig::default()
        };
        Decoder {
            formats: Arc::new(Formats::new(&config).expect("valid")),
            ..Decoder::default()
        }
    }

    fn dec(topic: &str, payload: &str) -> Result<Vec<Envelope>, DecodeError> {
        decoder()
            .decode(topic, payload.as_bytes(), NOW)
            .map(|d| d.into_vec())
    }

    #[test]
    fn a_frost_observation_becomes_description_and_value() {
        // As FROST publishes a new Observation: the entity with its
        // navigation links, no FeatureOfInterest expanded.
        let payload = r#"{
            "@iot.selfLink":"https://udp.example/FROST-Server/v1.1/Observations(9912345)",
            "@iot.id":9912345,
            "phenomenonTime":"2026-11-18T11:05:00.000Z",
            "resultTime":"2026-11-18T11:05:04.000Z",
            "result":5.12,
            "Datastream@iot.navigationLink":"https://udp.example/FROST-Server/v1.1/Observations(9912345)/Datastream",
            "FeatureOfInterest@iot.navigationLink":"https://udp.example/FROST-Server/v1.1/Observations(9912345)/FeatureOfInterest"
        }"#;
        let e = dec("v1.1/Datastreams(4711)/Observations", payload).expect("ok");
        assert!(e.iter().all(|e| e.space == "live"), "the default space");
        let [meta, obs] = e.as_slice() else {
            panic!("two events: {e:?}")
        };
        let Event::SensorMeta(m) = &meta.event else {
            panic!("description first")
        };
        assert_eq!(
            (m.id.as_str(), m.kind.as_str(), m.lat, m.lon),
            ("pegel-st-pauli", "water_level", 53.5457, 9.9703)
        );
        let Event::SensorObs(o) = &obs.event else {
            panic!("observation second")
        };
        assert_eq!((o.ts_ms, o.value), (1_794_999_900_000, 5.12));
    }

    #[test]
    fn a_feature_of_interest_places_the_sensor_and_intervals_use_their_end() {
        let payload = r#"{"phenomenonTime":"2026-11-18T11:00:00Z/2026-11-18T11:05:00Z","result":true,
            "FeatureOfInterest":{"name":"Buoy 3","encodingType":"application/geo+json",
            "feature":{"type":"Point","coordinates":[9.91,53.54]}}}"#;
        let e = dec(
            "v1.1/Datastreams('buoy-3')/Observations?$expand=FeatureOfInterest",
            payload,
        )
        .expect("ok");
        let Event::SensorMeta(m) = &e[0].event else {
            panic!("described by its feature")
        };
        assert_eq!((m.id.as_str(), m.lat, m.lon), ("buoy-3", 53.54, 9.91));
        let Event::SensorObs(o) = &e[1].event else {
            panic!("obs")
        };
        assert_eq!((o.ts_ms, o.value), (1_794_999_900_000, 1.0));
        // Without a place anywhere: the value alone.
        let e = dec(
            "v1.1/Datastreams(buoy-3)/Observations",
            r#"{"phenomenonTime":"2026-11-18T11:05:00Z","result":2}"#,
        )
        .expect("ok");
        assert!(matches!(e.as_slice(), [x] if matches!(x.event, Event::SensorObs(_))));
    }

    #[test]
    fn bad_observations_are_refused_with_a_reason() {
        let t = "v1.1/Datastreams(4711)/Observations";
        let cases = [
            (
                "v1.1/Datastreams(99)/Observations",
                r#"{"phenomenonTime":"2026-11-18T11:05:00Z","result":1}"#,
                "unknown_datastream",
            ),
            (t, "[]", "bad_sensorthings"),
            (t, r#"{"result":1}"#, "bad_sensorthings"),
            (
                t,
                r#"{"phenomenonTime":"2026-11-18T11:05:00Z"}"#,
                "bad_sensorthings",
            ),
            (
                t,
                r#"{"phenomenonTime":"2026-11-18T11:05:00Z","result":"high"}"#,
                "bad_sensorthings",
            ),
            (
                t,
                r#"{"phenomenonTime":"2026-11-18T11:05:00Z","result":{"v":1}}"#,
                "bad_sensorthings",
            ),
            (
                t,
                r#"{"phenomenonTime":"soon","result":1}"#,
                "bad_timestamp",
            ),
            (
                t,
                r#"{"phenomenonTime":"2027-01-01T00:00:00Z","result":1}"#,
                "future_timestamp",
            ),
            (
                t,
                r#"{"phenomenonTime":"2026-11-18T11:05:00Z","result":1,"FeatureOfInterest":{"feature":{"type":"Point","coordinates":[9.9,95]}}}"#,
                "out_of_range",
            ),
            (
                t,
                r#"{"phenomenonTime":"2026-11-18T11:05:00Z","result":1,"FeatureOfInterest":{"feature":{"type":"Point","coordinates":["a"]}}}"#,
                "bad_sensorthings",
            ),
        ];
        for (topic, payload, reason) in cases {
            let err = dec(topic, payload).expect_err(payload);
            assert_eq!(err.reason(), reason, "{payload}: {err}");
        }
    }
}
