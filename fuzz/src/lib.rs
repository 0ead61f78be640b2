//! The shared harness of the fuzz targets in `fuzz_targets/`.
//!
//! Every target hands its input to [`decode_checked`], which calls the public
//! API (`ingest::Decoder::decode`) at the fixed time [`NOW`] and then checks
//! what came back against invariants written here, independently of ingest's
//! own validation code:
//!
//! - an accepted message yields at least one envelope, each in a valid
//!   space (the one its topic names, or the formats' default space), received
//!   at [`NOW`], with a valid entity id, WGS 84 coordinates, finite values,
//!   texts of 1 to 256 bytes without control characters, event times no
//!   further ahead than the decoder's tolerance, only the event kinds its
//!   format produces, a valid GeoJSON geometry for incidents, and a JSON round
//!   trip that succeeds (a NaN would not survive it);
//! - a refused message has a non-empty `snake_case` reason and message, and a
//!   format-specific refusal names a format whose topic pattern matches the
//!   topic.
//!
//! The targets add what is particular to their format (event order, ids that
//! belong together). A violated invariant panics, which libFuzzer reports as
//! a crash with the input that caused it.

use std::sync::{Arc, LazyLock};

use fusion::{Envelope, Event};
use ingest::formats::Datastream;
use ingest::route::Format;
use ingest::topic::{valid_id, valid_space};
use ingest::{DecodeError, Decoder, Formats, FormatsConfig};
use serde_json::Value;

/// The server clock of every decode: 2026-11-24T12:00:00Z, after the `sent`
/// time of the CAP fixtures in `crates/ingest/tests/data/cap/`.
pub const NOW: i64 = 1_795_521_600_000;

/// Longest text field ingest accepts, in bytes (ingest's `MAX_TEXT_BYTES`).
pub const MAX_TEXT_BYTES: usize = 256;
/// Most positions in one incident geometry (ingest's
/// `MAX_GEOMETRY_POSITIONS`).
pub const MAX_GEOMETRY_POSITIONS: usize = 10_000;

/// The SensorThings Datastream the configured decoder knows.
pub const DATASTREAM_ID: &str = "4711";
/// The sensor id that Datastream maps to.
pub const DATASTREAM_SENSOR: &str = "pegel-st-pauli";
/// The kind of that sensor.
pub const DATASTREAM_KIND: &str = "water_level";
/// The unit of that sensor.
pub const DATASTREAM_UNIT: &str = "m NHN";

/// `Decoder::default()`, built once.
pub static DEFAULT_DECODER: LazyLock<Decoder> = LazyLock::new(Decoder::default);

/// The default decoder plus SensorThings Datastream [`DATASTREAM_ID`], placed
/// at the St. Pauli gauge, built through `FormatsConfig` and `Formats::new`
/// as the server builds it from its config file.
pub static CONFIGURED_DECODER: LazyLock<Decoder> = LazyLock::new(|| {
    let config = FormatsConfig {
        datastreams: vec![Datastream {
            id: DATASTREAM_ID.into(),
            sensor: DATASTREAM_SENSOR.into(),
            kind: DATASTREAM_KIND.into(),
            unit: DATASTREAM_UNIT.into(),
            lat: Some(53.5457),
            lon: Some(9.9703),
            name: Some("Pegel St. Pauli".into()),
        }],
        ..FormatsConfig::default()
    };
    match Formats::new(&config) {
        Ok(formats) => Decoder {
            formats: Arc::new(formats),
            ..Decoder::default()
        },
        Err(e) => panic!("the fuzz formats config is invalid: {e}"),
    }
});

/// Where a topic goes: the foreign format whose pattern matches it first
/// (with the space its `{space}` names, or the default space), or the native
/// contract (with the space the topic names, if it names a valid one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `None` for the native contract.
    pub format: Option<Format>,
    /// The space accepted envelopes must carry; `None` where no message on
    /// this topic can be accepted.
    pub space: Option<String>,
}

/// Works out where `topic` goes from the decoder's configured patterns.
pub fn destination(decoder: &Decoder, topic: &str) -> Destination {
    for (format, pattern) in &decoder.formats.routes {
        if let Some(captures) = pattern.matches(topic) {
            let space = captures
                .get("space")
                .unwrap_or(decoder.formats.default_space.as_str());
            return Destination {
                format: Some(*format),
                space: valid_space(space).then(|| space.to_owned()),
            };
        }
    }
    let space = topic
        .strip_prefix(ingest::wire::TOPIC_ROOT)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split('/').next())
        .filter(|s| valid_space(s))
        .map(str::to_owned);
    Destination {
        format: None,
        space,
    }
}

/// At most 200 bytes of the payload, for assertion messages.
pub fn excerpt(payload: &[u8]) -> String {
    let cut = payload.len().min(200);
    String::from_utf8_lossy(&payload[..cut]).into_owned()
}

/// Whether `RM_FUZZ_TRACE` is set: then every decode prints its outcome to
/// stderr (to see what seeds do: run a target on a seed folder with
/// `-runs=0`).
static TRACE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("RM_FUZZ_TRACE").is_some());

/// Decodes `payload` on `topic` at [`NOW`] and checks every general
/// invariant; panics on a violation. Returns the decoder's answer for the
/// target's own checks.
pub fn decode_checked(
    decoder: &Decoder,
    topic: &str,
    payload: &[u8],
) -> Result<Vec<Envelope>, DecodeError> {
    let result = decoder
        .decode(topic, payload, NOW)
        .map(|decoded| decoded.into_vec());
    if *TRACE {
        match &result {
            Ok(envelopes) => {
                let kinds: Vec<String> = envelopes
                    .iter()
                    .map(|e| format!("{}:{}", e.event.kind(), e.event.entity_id()))
                    .collect();
                eprintln!("RM_FUZZ_TRACE {topic} accepted [{}]", kinds.join(", "));
            }
            Err(e) => eprintln!("RM_FUZZ_TRACE {topic} refused {}: {e}", e.reason()),
        }
    }
    let dest = destination(decoder, topic);
    let ctx = || format!("topic {topic:?}, payload {:?}", excerpt(payload));
    match &result {
        Ok(envelopes) => {
            assert!(
                !envelopes.is_empty(),
                "accepted without any event: {}",
                ctx()
            );
            if dest.format.is_none() {
                assert_eq!(
                    envelopes.len(),
                    1,
                    "a native message is one event: {}",
                    ctx()
                );
            }
            let space = dest
                .space
                .as_deref()
                .unwrap_or_else(|| panic!("accepted on a topic without a valid space: {}", ctx()));
            for envelope in envelopes {
                check_envelope(decoder, envelope, space, dest.format)
                    .unwrap_or_else(|why| panic!("{why}: {envelope:?}; {}", ctx()));
            }
        }
        Err(err) => {
            check_refusal(err, &dest, topic).unwrap_or_else(|why| panic!("{why}: {}", ctx()));
        }
    }
    result
}

/// Whether `reason` is `snake_case`: `[a-z][a-z0-9]*(_[a-z0-9]+)*`.
pub fn is_snake_case(reason: &str) -> bool {
    let mut words = reason.split('_');
    words.next().is_some_and(|first| {
        first.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && first
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }) && words.all(|w| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn check_refusal(err: &DecodeError, dest: &Destination, topic: &str) -> Result<(), String> {
    let reason = err.reason();
    if !is_snake_case(reason) {
        return Err(format!(
            "refusal reason {reason:?} is not snake_case ({err:?})"
        ));
    }
    if err.to_string().trim().is_empty() {
        return Err(format!("refusal {err:?} has an empty message"));
    }
    match err {
        DecodeError::Malformed { format, .. } if dest.format != Some(*format) => Err(format!(
            "refused as malformed {format} on a topic that routes to {:?}",
            dest.format
        )),
        DecodeError::UnknownDatastream(_) if dest.format != Some(Format::Sensorthings) => {
            Err(format!(
                "unknown_datastream on a topic that routes to {:?}",
                dest.format
            ))
        }
        DecodeError::ExerciseInLive
            if dest.format != Some(Format::Cap) || dest.space.as_deref() != Some("live") =>
        {
            Err(format!(
                "exercise_in_live on a topic that routes to {:?} in space {:?}",
                dest.format, dest.space
            ))
        }
        DecodeError::OwnOutput if dest.format.is_some() || !topic.ends_with("/dead-letter") => {
            Err("own_output for a topic that is not a dead-letter topic".into())
        }
        DecodeError::Ignored(_) if dest.format.is_none() => {
            Err("a native message ignored rather than accepted or refused".into())
        }
        _ => Ok(()),
    }
}

/// Which event kinds a format produces.
fn kind_allowed(format: Option<Format>, event: &Event) -> bool {
    match format {
        None => true,
        Some(Format::Senml | Format::Sensorthings) => {
            matches!(event, Event::SensorMeta(_) | Event::SensorObs(_))
        }
        Some(Format::Cot) => matches!(event, Event::UnitMeta(_) | Event::UnitPos(_)),
        Some(Format::Cap) => matches!(event, Event::Incident(_) | Event::IncidentClosed(_)),
    }
}

/// The invariants of one accepted envelope.
pub fn check_envelope(
    decoder: &Decoder,
    envelope: &Envelope,
    space: &str,
    format: Option<Format>,
) -> Result<(), String> {
    if !valid_space(&envelope.space) {
        return Err(format!("invalid space {:?}", envelope.space));
    }
    if envelope.space != space {
        return Err(format!(
            "space {:?}, the topic says {space:?}",
            envelope.space
        ));
    }
    if envelope.received_ms != NOW {
        return Err(format!("received_ms {} is not NOW", envelope.received_ms));
    }
    let event = &envelope.event;
    if !valid_id(event.entity_id()) {
        return Err(format!("invalid entity id {:?}", event.entity_id()));
    }
    if !kind_allowed(format, event) {
        return Err(format!("{format:?} produced an unexpected event kind"));
    }
    let latest = NOW.saturating_add(decoder.future_tolerance_ms);
    let ts = |ts: i64| {
        if ts > latest {
            Err(format!("event time {ts} beyond NOW + tolerance ({latest})"))
        } else {
            Ok(())
        }
    };
    match event {
        Event::SensorMeta(m) => {
            lat_lon(m.lat, m.lon)?;
            text("kind", &m.kind)?;
            text("unit", &m.unit)?;
            opt_text("name", m.name.as_deref())?;
            if let Some(th) = &m.thresholds {
                if th.iter().any(|v| !v.is_finite()) {
                    return Err("a threshold is not finite".into());
                }
                if th.windows(2).any(|w| w[0] > w[1]) {
                    return Err("thresholds do not ascend".into());
                }
            }
        }
        Event::SensorObs(o) => {
            ts(o.ts_ms)?;
            finite("value", o.value)?;
            match (o.lat, o.lon) {
                (Some(lat), Some(lon)) => lat_lon(lat, lon)?,
                (None, None) => {}
                _ => return Err("only one of lat and lon".into()),
            }
            if let Some(q) = o.quality {
                finite("quality", q)?;
            }
        }
        Event::UnitMeta(m) => {
            text("callsign", &m.callsign)?;
            text("type", &m.unit_type)?;
            text("org", &m.org)?;
        }
        Event::UnitPos(p) => {
            ts(p.ts_ms)?;
            lat_lon(p.lat, p.lon)?;
            if let Some(h) = p.heading
                && !(0.0..=360.0).contains(&h)
            {
                return Err(format!("heading {h} outside 0..=360"));
            }
            for (field, v) in [("speed", p.speed), ("accuracy", p.accuracy)] {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(format!("{field} {v} not finite and >= 0"));
                }
            }
            if let Some(ttl) = p.ttl_ms
                && ttl < 0
            {
                return Err(format!("negative ttl_ms {ttl}"));
            }
            opt_text("source", p.source.as_deref())?;
        }
        Event::UnitStatus(s) => {
            ts(s.ts_ms)?;
            if s.status > 9 {
                return Err(format!("status {} > 9", s.status));
            }
            opt_text("source", s.source.as_deref())?;
        }
        Event::Incident(i) => {
            ts(i.ts_ms)?;
            text("keyword", &i.keyword)?;
            opt_text("title", i.title.as_deref())?;
            if i.severity > 4 {
                return Err(format!("severity {} > 4", i.severity));
            }
            geometry(&i.geometry).map_err(|e| format!("geometry: {e}"))?;
        }
        Event::IncidentClosed(_) => {}
    }
    round_trip(envelope)
}

/// What we accept must survive a JSON journey (`Envelope` derives serde for
/// that): serialise and parse back to the same kind of event for the same
/// entity. A non-finite number would not survive it. (This found `Event`
/// tagged `kind` while sensor descriptions have a `kind` field: a
/// description did not parse back. The tag is `event` now.)
fn round_trip(envelope: &Envelope) -> Result<(), String> {
    let json = serde_json::to_string(envelope).map_err(|e| format!("does not serialise: {e}"))?;
    let back: Envelope =
        serde_json::from_str(&json).map_err(|e| format!("does not parse back from {json}: {e}"))?;
    if std::mem::discriminant(&back.event) != std::mem::discriminant(&envelope.event)
        || back.event.entity_id() != envelope.event.entity_id()
        || back.space != envelope.space
    {
        return Err(format!("changed in a JSON round trip: {json}"));
    }
    Ok(())
}

/// Latitude and longitude finite and in WGS 84 range.
pub fn lat_lon(lat: f64, lon: f64) -> Result<(), String> {
    if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
        return Err(format!("latitude {lat} out of range"));
    }
    if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
        return Err(format!("longitude {lon} out of range"));
    }
    Ok(())
}

fn finite(field: &str, v: f64) -> Result<(), String> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(format!("{field} {v} is not finite"))
    }
}

/// A text field: 1 to [`MAX_TEXT_BYTES`] bytes, no control characters.
pub fn text(field: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_TEXT_BYTES || s.chars().any(char::is_control) {
        return Err(format!(
            "{field} {s:?} is not 1..=256 bytes without control characters"
        ));
    }
    Ok(())
}

fn opt_text(field: &str, s: Option<&str>) -> Result<(), String> {
    s.map_or(Ok(()), |s| text(field, s))
}

/// An independent check of a GeoJSON geometry (RFC 7946 §3.1) of the types
/// ingest supports: coordinates nested to the right depth, `[lon, lat, …]`
/// positions in range, line strings of two or more positions, closed rings
/// of four or more, polygons with an outer ring, at most
/// [`MAX_GEOMETRY_POSITIONS`] positions.
pub fn geometry(g: &Value) -> Result<(), String> {
    let kind = g
        .get("type")
        .and_then(Value::as_str)
        .ok_or("no string \"type\"")?;
    let coords = g.get("coordinates").ok_or("no \"coordinates\"")?;
    let mut count = 0usize;
    match kind {
        "Point" => position(coords, &mut count)?,
        "MultiPoint" => {
            for p in array(coords)? {
                position(p, &mut count)?;
            }
        }
        "LineString" => line(coords, false, &mut count)?,
        "MultiLineString" => {
            for l in array(coords)? {
                line(l, false, &mut count)?;
            }
        }
        "Polygon" => polygon(coords, &mut count)?,
        "MultiPolygon" => {
            for p in array(coords)? {
                polygon(p, &mut count)?;
            }
        }
        other => return Err(format!("unsupported type {other:?}")),
    }
    if count > MAX_GEOMETRY_POSITIONS {
        return Err(format!("{count} positions"));
    }
    Ok(())
}

fn array(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| "coordinates nested too shallow".to_owned())
}

fn position(v: &Value, count: &mut usize) -> Result<(), String> {
    *count += 1;
    let p = array(v)?;
    match (
        p.first().and_then(Value::as_f64),
        p.get(1).and_then(Value::as_f64),
    ) {
        (Some(lon), Some(lat)) => lat_lon(lat, lon),
        _ => Err(format!("position {v} is not [lon, lat, …]")),
    }
}

fn line(v: &Value, ring: bool, count: &mut usize) -> Result<(), String> {
    let pts = array(v)?;
    let min = if ring { 4 } else { 2 };
    if pts.len() < min {
        return Err(format!("{} positions, at least {min} needed", pts.len()));
    }
    for p in pts {
        position(p, count)?;
    }
    if ring {
        let xy = |p: Option<&Value>| {
            p.and_then(Value::as_array).map(|a| {
                (
                    a.first().and_then(Value::as_f64),
                    a.get(1).and_then(Value::as_f64),
                )
            })
        };
        if xy(pts.first()) != xy(pts.last()) {
            return Err("ring not closed".into());
        }
    }
    Ok(())
}

fn polygon(v: &Value, count: &mut usize) -> Result<(), String> {
    let rings = array(v)?;
    if rings.is_empty() {
        return Err("polygon without an outer ring".into());
    }
    for r in rings {
        line(r, true, count)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case() {
        for ok in ["bad_json", "too_large", "cot_not_a_unit", "x1"] {
            assert!(is_snake_case(ok), "{ok}");
        }
        for bad in ["", "Bad", "bad-json", "_x", "x_", "a__b", "1x", "a b"] {
            assert!(!is_snake_case(bad), "{bad}");
        }
    }
}
