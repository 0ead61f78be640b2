//! Decoding and validation of payloads into fusion events: the native
//! contract here, the foreign formats in their own modules, chosen by the
//! configured topic patterns.
//!
//! Everything a sensor can get wrong is caught here, at the boundary, with a
//! reason: size, topic, ids, JSON shape, timestamps, ranges, geometry. What
//! passes is safe for the engine to index.

use std::sync::Arc;

use fusion::{
    Envelope, Event, IncidentClosed, IncidentUpsert, SensorMeta, SensorObs, UnitMeta, UnitPos,
    UnitStatus,
};
use serde::de::DeserializeOwned;
use smallvec::SmallVec;

use crate::error::DecodeError;
use crate::formats::Formats;
use crate::route::{Captures, Format};
use crate::topic::{self, Route};
use crate::wire::{
    IncidentMsg, MAX_PAYLOAD_BYTES, SensorMetaMsg, SensorObsMsg, UnitMetaMsg, UnitPosMsg,
    UnitStatusMsg, WireTime,
};
use crate::{cap, cot, senml, sensorthings};

/// Longest free-text field (names, call signs, keywords, titles), in bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 256;
/// Most positions in one incident geometry.
pub(crate) const MAX_GEOMETRY_POSITIONS: usize = 10_000;

/// The events of one message: one for the native contract, several for a
/// SenML pack or a CoT event (description and position).
pub type Decoded = SmallVec<[Envelope; 1]>;

/// Decodes messages of the native contract and of the configured foreign
/// formats.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// How far ahead of the server clock an event time may be.
    pub future_tolerance_ms: i64,
    /// Foreign formats: topic patterns and mapping tables.
    pub formats: Arc<Formats>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            future_tolerance_ms: 30_000,
            formats: Arc::new(Formats::default()),
        }
    }
}

/// What a foreign-format decoder gets besides the payload.
pub(crate) struct Ctx<'a> {
    pub decoder: &'a Decoder,
    pub space: &'a str,
    pub received_ms: i64,
    pub captures: &'a Captures<'a>,
}

impl Ctx<'_> {
    /// Checks an event time against the future tolerance.
    pub fn time(&self, ts_ms: i64) -> Result<i64, DecodeError> {
        self.decoder.check_time(ts_ms, self.received_ms)
    }

    /// The formats config.
    pub fn formats(&self) -> &Formats {
        &self.decoder.formats
    }
}

impl Decoder {
    /// The space a refused message's dead letter goes to: the one its topic
    /// names, else the formats' default space.
    pub fn space_of<'a>(&'a self, topic: &'a str) -> &'a str {
        topic::space_of(topic).unwrap_or(&self.formats.default_space)
    }

    /// Decodes one MQTT message received at `received_ms`.
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        received_ms: i64,
    ) -> Result<Decoded, DecodeError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(DecodeError::TooLarge(payload.len()));
        }
        if let Some(plain) = topic::strip_region(topic)? {
            return self.decode_plain(&plain, payload, received_ms);
        }
        self.decode_plain(topic, payload, received_ms)
    }

    /// [`Decoder::decode`] of a topic without a region.
    fn decode_plain(
        &self,
        topic: &str,
        payload: &[u8],
        received_ms: i64,
    ) -> Result<Decoded, DecodeError> {
        // Most messages are native: a pattern of another length is passed
        // over without comparing its levels.
        let levels = topic.bytes().filter(|&b| b == b'/').count() + 1;
        for (format, pattern) in &self.formats.routes {
            if pattern.levels() != levels {
                continue;
            }
            let Some(captures) = pattern.matches(topic) else {
                continue;
            };
            let space = match captures.get("space") {
                Some(s) if topic::valid_space(s) => s,
                Some(s) => return Err(DecodeError::Space(s.chars().take(40).collect())),
                None => self.formats.default_space.as_str(),
            };
            let ctx = Ctx {
                decoder: self,
                space,
                received_ms,
                captures: &captures,
            };
            let events = match format {
                Format::Senml => senml::decode(&ctx, payload)?,
                Format::Cot => cot::decode(&ctx, payload)?,
                Format::Cap => cap::decode(&ctx, payload)?,
                Format::Sensorthings => sensorthings::decode(&ctx, payload)?,
            };
            return Ok(events
                .into_iter()
                .map(|event| Envelope {
                    space: space.to_owned(),
                    received_ms,
                    event,
                })
                .collect());
        }
        self.decode_native(topic, payload, received_ms)
            .map(|e| SmallVec::from_buf([e]))
    }

    fn decode_native(
        &self,
        topic: &str,
        payload: &[u8],
        received_ms: i64,
    ) -> Result<Envelope, DecodeError> {
        let t = topic::parse(topic)?;
        let time = |w: &WireTime| self.time(w, received_ms);
        let event = match t.route {
            Route::DeadLetter => return Err(DecodeError::OwnOutput),
            Route::SensorMeta(id) => {
                let m: SensorMetaMsg = json(payload)?;
                check_lat_lon(m.lat, m.lon)?;
                if let Some(th) = &m.thresholds {
                    for v in th {
                        finite("thresholds", *v)?;
                    }
                    if th.windows(2).any(|w| w[0] > w[1]) {
                        return Err(range("thresholds", format!("{th:?} (must ascend)")));
                    }
                }
                Event::SensorMeta(SensorMeta {
                    id: id.to_owned(),
                    kind: text("kind", m.kind)?,
                    unit: text("unit", m.unit)?,
                    lat: m.lat,
                    lon: m.lon,
                    name: m.name.map(|n| text("name", n)).transpose()?,
                    thresholds: m.thresholds,
                })
            }
            Route::SensorObs(id) => {
                let o: SensorObsMsg = json(payload)?;
                finite("value", o.value)?;
                match (o.lat, o.lon) {
                    (Some(lat), Some(lon)) => check_lat_lon(lat, lon)?,
                    (None, None) => {}
                    _ => return Err(range("lat/lon", "only one of lat and lon given".into())),
                }
                if let Some(q) = o.quality {
                    finite("quality", q)?;
                }
                Event::SensorObs(SensorObs {
                    id: id.to_owned(),
                    ts_ms: time(&o.ts)?,
                    value: o.value,
                    lat: o.lat,
                    lon: o.lon,
                    seq: o.seq,
                    quality: o.quality,
                })
            }
            Route::UnitMeta(id) => {
                let m: UnitMetaMsg = json(payload)?;
                Event::UnitMeta(UnitMeta {
                    id: id.to_owned(),
                    callsign: text("callsign", m.callsign)?,
                    unit_type: text("type", m.unit_type)?,
                    org: text("org", m.org)?,
                    strength: m.strength,
                })
            }
            Route::UnitPos(id) => {
                let p: UnitPosMsg = json(payload)?;
                check_lat_lon(p.lat, p.lon)?;
                if let Some(h) = p.heading
                    && !(0.0..=360.0).contains(&h)
                {
                    return Err(range("heading", h.to_string()));
                }
                for (field, v) in [("speed", p.speed), ("accuracy", p.accuracy)] {
                    if let Some(v) = v
                        && !(v.is_finite() && v >= 0.0)
                    {
                        return Err(range(field, v.to_string()));
                    }
                }
                Event::UnitPos(UnitPos {
                    id: id.to_owned(),
                    ts_ms: time(&p.ts)?,
                    lat: p.lat,
                    lon: p.lon,
                    heading: p.heading,
                    speed: p.speed,
                    accuracy: p.accuracy,
                    source: p.source.map(|s| text("source", s)).transpose()?,
                    ttl_ms: None,
                })
            }
            Route::UnitStatus(id) => {
                let s: UnitStatusMsg = json(payload)?;
                if s.status > 9 {
                    return Err(range("status", s.status.to_string()));
                }
                Event::UnitStatus(UnitStatus {
                    id: id.to_owned(),
                    ts_ms: time(&s.ts)?,
                    status: s.status,
                    source: s.source.map(|x| text("source", x)).transpose()?,
                })
            }
            Route::Incident(id) if payload.is_empty() => {
                Event::IncidentClosed(IncidentClosed { id: id.to_owned() })
            }
            Route::Incident(id) => {
                let i: IncidentMsg = json(payload)?;
                if i.severity > 4 {
                    return Err(range("severity", i.severity.to_string()));
                }
                check_geometry(&i.geometry)?;
                Event::Incident(IncidentUpsert {
                    id: id.to_owned(),
                    ts_ms: time(&i.ts)?,
                    keyword: text("keyword", i.keyword)?,
                    severity: i.severity,
                    geometry: i.geometry,
                    title: i.title.map(|t| text("title", t)).transpose()?,
                    expires_ms: i
                        .expires
                        .as_ref()
                        .map(|e| e.to_epoch_ms().map_err(DecodeError::Timestamp))
                        .transpose()?,
                })
            }
        };
        Ok(Envelope {
            space: t.space.to_owned(),
            received_ms,
            event,
        })
    }

    fn time(&self, w: &WireTime, received_ms: i64) -> Result<i64, DecodeError> {
        let ts = w.to_epoch_ms().map_err(DecodeError::Timestamp)?;
        self.check_time(ts, received_ms)
    }

    fn check_time(&self, ts: i64, received_ms: i64) -> Result<i64, DecodeError> {
        let ahead_ms = ts.saturating_sub(received_ms);
        if ahead_ms > self.future_tolerance_ms {
            return Err(DecodeError::Future {
                ahead_ms,
                tolerance_ms: self.future_tolerance_ms,
            });
        }
        Ok(ts)
    }
}

pub(crate) fn json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))
}

pub(crate) fn range(field: &'static str, value: String) -> DecodeError {
    DecodeError::Range { field, value }
}

pub(crate) fn finite(field: &'static str, v: f64) -> Result<(), DecodeError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(range(field, v.to_string()))
    }
}

pub(crate) fn text(field: &'static str, s: String) -> Result<String, DecodeError> {
    if s.is_empty() || s.len() > MAX_TEXT_BYTES || s.chars().any(char::is_control) {
        return Err(range(
            field,
            format!("text must be 1..={MAX_TEXT_BYTES} bytes without control characters"),
        ));
    }
    Ok(s)
}

pub(crate) fn check_lat_lon(lat: f64, lon: f64) -> Result<(), DecodeError> {
    if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
        return Err(range("lat", lat.to_string()));
    }
    if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
        return Err(range("lon", lon.to_string()));
    }
    Ok(())
}

/// Checks a GeoJSON geometry (RFC 7946 §3.1): a supported type with
/// coordinates nested to the right depth, positions in WGS 84 range, line
/// strings of two or more positions, closed linear rings of four or more.
pub(crate) fn check_geometry(g: &serde_json::Value) -> Result<(), DecodeError> {
    let bad = |why: String| DecodeError::Geometry(why);
    let kind = g
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| bad("missing \"type\"".into()))?;
    let coords = g
        .get("coordinates")
        .ok_or_else(|| bad("missing \"coordinates\"".into()))?;
    let mut count = 0usize;
    let mut position = |v: &serde_json::Value| -> Result<(f64, f64), DecodeError> {
        count += 1;
        if count > MAX_GEOMETRY_POSITIONS {
            return Err(bad(format!("more than {MAX_GEOMETRY_POSITIONS} positions")));
        }
        let arr = v
            .as_array()
            .ok_or_else(|| bad("a position must be an array".into()))?;
        let (Some(lon), Some(lat)) = (
            arr.first().and_then(serde_json::Value::as_f64),
            arr.get(1).and_then(serde_json::Value::as_f64),
        ) else {
            return Err(bad("a position needs two numbers [lon, lat]".into()));
        };
        check_lat_lon(lat, lon).map_err(|e| bad(e.to_string()))?;
        Ok((lon, lat))
    };
    let list = |v: &serde_json::Value| -> Result<Vec<serde_json::Value>, DecodeError> {
        v.as_array()
            .cloned()
            .ok_or_else(|| bad("coordinates nested too shallow".into()))
    };
    let mut line = |v: &serde_json::Value, ring: bool| -> Result<(), DecodeError> {
        let pts = list(v)?;
        let min = if ring { 4 } else { 2 };
        if pts.len() < min {
            return Err(bad(format!("needs at least {min} positions")));
        }
        let mut first_last = Vec::new();
        for (i, p) in pts.iter().enumerate() {
            let xy = position(p)?;
            if i == 0 || i == pts.len() - 1 {
                first_last.push(xy);
            }
        }
        if ring && first_last.first() != first_last.last() {
            return Err(bad("a linear ring must be closed".into()));
        }
        Ok(())
    };
    match kind {
        "Point" => {
            position(coords)?;
        }
        "MultiPoint" => {
            for p in list(coords)? {
                position(&p)?;
            }
        }
        "LineString" => line(coords, false)?,
        "MultiLineString" => {
            for l in list(coords)? {
                line(&l, false)?;
            }
        }
        "Polygon" => {
            let rings = list(coords)?;
            if rings.is_empty() {
                return Err(bad("a polygon needs an outer ring".into()));
            }
            for r in rings {
                line(&r, true)?;
            }
        }
        "MultiPolygon" => {
            for poly in list(coords)? {
                let rings = list(&poly)?;
                if rings.is_empty() {
                    return Err(bad("a polygon needs an outer ring".into()));
                }
                for r in rings {
                    line(&r, true)?;
                }
            }
        }
        other => return Err(bad(format!("unsupported type {other:?}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn dec(topic: &str, payload: &str) -> Result<Envelope, DecodeError> {
        let mut events = Decoder::default().decode(topic, payload.as_bytes(), NOW)?;
        assert_eq!(events.len(), 1, "one native message, one event");
        Ok(events.remove(0))
    }

    #[test]
    fn region_aware_topics_decode_like_their_contract_topics() {
        let payload = r#"{"ts":1794990400000,"lat":53.55,"lon":9.99}"#;
        let plain = dec("rm/v1/live/unit/u1/pos", payload).expect("valid");
        let regional = dec("rm/v1/live/r/831f15fffffffff/unit/u1/pos", payload).expect("valid");
        assert_eq!(plain, regional);
        let err = dec("rm/v1/live/r/nowhere/unit/u1/pos", payload).expect_err("bad region");
        assert_eq!(err.reason(), "bad_topic");
    }

    #[test]
    fn valid_messages_decode() {
        let e = dec(
            "rm/v1/live/sensor/g1/meta",
            r#"{"kind":"water_level","unit":"m NHN","lat":53.5,"lon":9.9,"future_field":1}"#,
        )
        .expect("valid");
        assert!(matches!(e.event, Event::SensorMeta(ref m) if m.kind == "water_level"));
        let e = dec(
            "rm/v1/drill-x/sensor/g1/obs",
            r#"{"ts":"2026-11-18T08:26:40Z","value":4.2,"seq":3}"#,
        )
        .expect("valid");
        assert_eq!(e.space, "drill-x");
        assert!(
            matches!(e.event, Event::SensorObs(ref o) if o.seq == Some(3) && o.ts_ms == 1_794_990_400_000)
        );
        let e = dec(
            "rm/v1/live/unit/u1/status",
            &format!(r#"{{"ts":{NOW},"status":3}}"#),
        )
        .expect("valid");
        assert!(matches!(e.event, Event::UnitStatus(ref s) if s.status == 3));
        let e = dec(
            "rm/v1/live/unit/u1/status",
            &format!(r#"{{"ts":{NOW},"status":4,"source":"radio"}}"#),
        )
        .expect("valid");
        assert!(
            matches!(e.event, Event::UnitStatus(ref s) if s.source.as_deref() == Some("radio"))
        );
        let e = dec("rm/v1/live/incident/i1", "").expect("close");
        assert!(matches!(e.event, Event::IncidentClosed(_)));
        let poly = r#"{"ts":1,"keyword":"THL","severity":3,"geometry":{"type":"Polygon","coordinates":[[[10,53.5],[10.1,53.5],[10.1,53.6],[10,53.5]]]}}"#;
        assert!(dec("rm/v1/live/incident/i1", poly).is_ok());
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let cases = [
            ("rm/v1/live/sensor/g1/obs", "not json", "bad_json"),
            (
                "rm/v1/live/sensor/g1/obs",
                r#"{"ts":1,"value":"high"}"#,
                "bad_json",
            ),
            (
                "rm/v1/live/sensor/g1/obs",
                r#"{"ts":"soon","value":1}"#,
                "bad_timestamp",
            ),
            (
                "rm/v1/live/sensor/g1/obs",
                r#"{"ts":9999999999999,"value":1}"#,
                "future_timestamp",
            ),
            (
                "rm/v1/live/sensor/g1/obs",
                r#"{"ts":1,"value":1e999}"#,
                "bad_json",
            ),
            (
                "rm/v1/live/sensor/g1/meta",
                r#"{"kind":"w","unit":"m","lat":91,"lon":0}"#,
                "out_of_range",
            ),
            (
                "rm/v1/live/sensor/g1/meta",
                r#"{"kind":"","unit":"m","lat":1,"lon":0}"#,
                "out_of_range",
            ),
            (
                "rm/v1/live/unit/u1/status",
                r#"{"ts":1,"status":12}"#,
                "out_of_range",
            ),
            (
                "rm/v1/live/unit/u1/pos",
                r#"{"ts":1,"lat":1,"lon":-181}"#,
                "out_of_range",
            ),
            ("rm/v1/live/unit/u%/pos", r#"{}"#, "bad_id"),
            ("rm/v1/LIVE/unit/u1/pos", r#"{}"#, "bad_space"),
            ("rm/v1/live/tank/u1", r#"{}"#, "bad_topic"),
            ("rm/v1/live/dead-letter", r#"{}"#, "own_output"),
            (
                "rm/v1/live/incident/i1",
                r#"{"ts":1,"keyword":"X","severity":1,"geometry":{"type":"Polygon","coordinates":[[[10,53],[11,53],[11,54]]]}}"#,
                "bad_geometry",
            ),
            (
                "rm/v1/live/incident/i1",
                r#"{"ts":1,"keyword":"X","severity":1,"geometry":{"type":"Circle","coordinates":[10,53]}}"#,
                "bad_geometry",
            ),
        ];
        for (topic, payload, reason) in cases {
            let err = dec(topic, payload).expect_err(payload);
            assert_eq!(err.reason(), reason, "{topic} {payload}: {err}");
        }
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        let err = Decoder::default()
            .decode("rm/v1/live/sensor/g1/obs", &big, NOW)
            .expect_err("too large");
        assert_eq!(err.reason(), "too_large");
    }
}
