//! SenML JSON packs (RFC 8428) → sensor observations and descriptions.
//!
//! A pack is a JSON array of records. Base fields (`bn`, `bt`, `bu`, `bv`)
//! apply to their record and every later one until replaced (RFC 8428
//! §4.1); the resolved name is `bn` + `n`, the resolved time `bt` + `t` in
//! seconds (values below 2^28 are relative to the time of receipt, §4.5.3),
//! the resolved value `bv` + `v`.
//!
//! Mapping onto the native contract (DESIGN §3):
//! - The resolved name is `<sensor id>:<kind>`: the text before the last
//!   `:` names the device, the text after it the measured quantity (mapped
//!   through `[formats] senml_kinds`, else taken as the catalogue kind). A
//!   `urn:dev:…` name (RFC 9039, e.g. `urn:dev:ow:10e2073a01080063`) is a
//!   device on its own. With no quantity after the device, the record's
//!   unit stands for the quantity (again through `senml_kinds`).
//! - A device often measures several quantities, and a sensor of the
//!   picture has one kind, so each quantity is a sensor of its own:
//!   `<device>.<kind>`, with `:` and `/` in device names written as `.`
//!   (e.g. `urn.dev.ow.10e2073a01080063.voltage`). The id must then match
//!   the id syntax.
//! - Records named `lat` and `lon` (or with those units, as registered by
//!   RFC 8428 §12.1) locate their device: the pack then also describes each
//!   of the device's sensors (kind, unit, position), so a SenML gauge needs
//!   no separate description.
//! - Boolean values (`vb`) count as 1 and 0 (e.g. `gate_closed`). String
//!   and data values (`vs`, `vd`) and sums (`s`) have no place in the
//!   picture and are skipped; a pack with nothing else is ignored.
//! - A field whose name ends in `_` must be understood (§4.4): a pack with
//!   one is refused, and so is a version (`bver`) above 10.

use std::collections::BTreeMap;

use fusion::{Event, SensorMeta, SensorObs};
use serde::Deserialize;
use serde_json::Value;

use crate::decode::{Ctx, check_lat_lon, text};
use crate::error::DecodeError;
use crate::route::Format;
use crate::topic::valid_id;

/// Records in one pack, at most.
const MAX_RECORDS: usize = 4_096;
/// Resolved times below this are relative to now (RFC 8428 §4.5.3).
const RELATIVE_LIMIT_S: f64 = 268_435_456.0;
/// The SenML version this decoder implements.
const VERSION: i64 = 10;

#[derive(Debug, Deserialize)]
struct Record {
    bn: Option<String>,
    bt: Option<f64>,
    bu: Option<String>,
    bv: Option<f64>,
    bver: Option<i64>,
    n: Option<String>,
    u: Option<String>,
    v: Option<f64>,
    vb: Option<bool>,
    vs: Option<String>,
    vd: Option<String>,
    s: Option<f64>,
    t: Option<f64>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

fn bad(why: impl Into<String>) -> DecodeError {
    DecodeError::Malformed {
        format: Format::Senml,
        why: why.into(),
    }
}

/// A device's sensors found in one pack.
#[derive(Default)]
struct Device {
    lat: Option<f64>,
    lon: Option<f64>,
    /// Kind → unit of each quantity the pack reports.
    kinds: BTreeMap<String, String>,
}

pub(crate) fn decode(ctx: &Ctx<'_>, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let records: Vec<Record> = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    if records.is_empty() {
        return Err(bad("empty pack"));
    }
    if records.len() > MAX_RECORDS {
        return Err(bad(format!("more than {MAX_RECORDS} records")));
    }
    let (mut bn, mut bt, mut bu, mut bv) = (String::new(), 0.0_f64, None::<String>, 0.0_f64);
    let mut devices: BTreeMap<String, Device> = BTreeMap::new();
    let mut obs = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        let at = |why: String| bad(format!("record {i}: {why}"));
        if let Some(field) = r.other.keys().find(|k| k.ends_with('_')) {
            return Err(at(format!("unknown must-understand field {field:?}")));
        }
        if let Some(v) = r.bver
            && v > VERSION
        {
            return Err(at(format!("version {v} is newer than {VERSION}")));
        }
        if let Some(b) = r.bn {
            bn = b;
        }
        if let Some(b) = r.bt {
            bt = b;
        }
        if let Some(b) = r.bu {
            bu = Some(b);
        }
        if let Some(b) = r.bv {
            bv = b;
        }
        let value = match (r.v, r.vb, &r.vs, &r.vd) {
            (Some(v), None, None, None) => Some(bv + v),
            (None, Some(b), None, None) => Some(if b { 1.0 } else { 0.0 }),
            (None, None, Some(_), None) | (None, None, None, Some(_)) => None,
            (None, None, None, None) if r.s.is_some() => None,
            (None, None, None, None) => {
                if r.n.is_none() {
                    // Only base fields: allowed, nothing to report.
                    continue;
                }
                return Err(at("a named record needs a value".into()));
            }
            _ => return Err(at("more than one value field".into())),
        };
        let name = format!("{bn}{}", r.n.as_deref().unwrap_or(""));
        let unit = r.u.or_else(|| bu.clone());
        let (device, quantity) = split_name(&name).ok_or_else(|| {
            at(format!(
                "name {name:?} is not <sensor id>:<kind> (letters, digits, '-', ':', '.', '/', '_'; starting with a letter or digit)"
            ))
        })?;
        let Some(value) = value else {
            continue;
        };
        if !value.is_finite() {
            return Err(at(format!("value of {name:?} is not finite")));
        }
        let device_id = device.replace([':', '/'], ".");
        let dev = devices.entry(device_id.clone()).or_default();
        let locator = match quantity {
            "lat" | "lon" => Some(quantity),
            _ => unit.as_deref().filter(|u| *u == "lat" || *u == "lon"),
        };
        match locator {
            Some("lat") => {
                dev.lat = Some(value);
                continue;
            }
            Some(_) => {
                dev.lon = Some(value);
                continue;
            }
            None => {}
        }
        let raw_kind = if quantity.is_empty() {
            unit.as_deref().unwrap_or("")
        } else {
            quantity
        };
        let kinds = &ctx.formats().senml_kinds;
        let kind = kinds.get(raw_kind).map_or(raw_kind, String::as_str);
        if kind.is_empty() {
            return Err(at(format!(
                "{name:?} names no quantity and has no unit to stand for one"
            )));
        }
        let id = format!("{device_id}.{kind}");
        if !valid_id(&id) {
            return Err(DecodeError::Id(id.chars().take(80).collect()));
        }
        let time_s = bt + r.t.unwrap_or(0.0);
        if !time_s.is_finite() {
            return Err(at("time is not finite".into()));
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "checked finite; saturates far outside any plausible time"
        )]
        let ts_ms = if time_s.abs() < RELATIVE_LIMIT_S {
            ctx.received_ms
                .saturating_add((time_s * 1000.0).round() as i64)
        } else {
            (time_s * 1000.0).round() as i64
        };
        let ts_ms = ctx.time(ts_ms)?;
        dev.kinds
            .entry(kind.to_owned())
            .or_insert_with(|| unit.clone().unwrap_or_else(|| "1".to_owned()));
        obs.push(SensorObs::value(id, ts_ms, value));
    }
    let mut events = Vec::with_capacity(obs.len() + devices.len());
    for (device, d) in &devices {
        let (lat, lon) = match (d.lat, d.lon) {
            (Some(lat), Some(lon)) => (lat, lon),
            (None, None) => continue,
            _ => return Err(bad(format!("{device}: lat without lon or lon without lat"))),
        };
        check_lat_lon(lat, lon)?;
        for (kind, unit) in &d.kinds {
            events.push(Event::SensorMeta(SensorMeta {
                id: format!("{device}.{kind}"),
                kind: text("kind", kind.clone())?,
                unit: text("unit", unit.clone())?,
                lat,
                lon,
                name: None,
                thresholds: None,
            }));
        }
    }
    if obs.is_empty() && events.is_empty() {
        return Err(DecodeError::Ignored("senml_no_numeric_values"));
    }
    events.extend(obs.into_iter().map(Event::SensorObs));
    Ok(events)
}

/// Splits a resolved name into device and quantity, checking the SenML
/// name syntax (RFC 8428 §4.5.1).
fn split_name(name: &str) -> Option<(&str, &str)> {
    let first = name.bytes().next()?;
    if !first.is_ascii_alphanumeric()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_'))
    {
        return None;
    }
    // urn:dev:<type>:<id> is a device by itself.
    if let Some(rest) = name.strip_prefix("urn:dev:") {
        let mut parts = rest.splitn(3, ':');
        let (kind, id) = (parts.next()?, parts.next()?);
        let device_len = "urn:dev:".len() + kind.len() + 1 + id.len();
        let quantity = parts.next().unwrap_or("");
        if kind.is_empty() || id.is_empty() || quantity.contains(':') {
            return None;
        }
        return Some((&name[..device_len], quantity));
    }
    // "<device>:" alone leaves the quantity to the unit.
    let (device, quantity) = name.rsplit_once(':')?;
    (!device.is_empty()).then_some((device, quantity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use fusion::Envelope;

    const NOW: i64 = 1_795_000_000_000;

    fn dec(payload: &str) -> Result<Vec<Envelope>, DecodeError> {
        Decoder::default()
            .decode("rm/v1/live/senml/gw1", payload.as_bytes(), NOW)
            .map(|d| d.into_vec())
    }

    fn obs(e: &[Envelope]) -> Vec<(&str, i64, f64)> {
        e.iter()
            .filter_map(|e| match &e.event {
                Event::SensorObs(o) => Some((o.id.as_str(), o.ts_ms, o.value)),
                _ => None,
            })
            .collect()
    }

    fn metas(e: &[Envelope]) -> Vec<&SensorMeta> {
        e.iter()
            .filter_map(|e| match &e.event {
                Event::SensorMeta(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rfc8428_single_datapoint() {
        // RFC 8428 §5.1.1: a device name alone; the unit stands for the
        // quantity, and "now" is the time of receipt.
        let e = dec(r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#).expect("ok");
        assert_eq!(
            obs(&e),
            vec![("urn.dev.ow.10e2073a01080063.Cel", NOW, 23.1)]
        );
        assert!(metas(&e).is_empty(), "no position, no description");
    }

    #[test]
    fn rfc8428_multiple_datapoints_with_base_name_and_time() {
        // RFC 8428 §5.1.2 (shape): base name, base time, relative times.
        let e = dec(r#"[
            {"bn":"urn:dev:ow:10e2073a01080063:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
            {"n":"current","t":-5,"v":1.2},
            {"n":"current","t":-4,"v":1.3},
            {"n":"current","v":1.7}
        ]"#)
        .expect("ok");
        assert_eq!(
            obs(&e),
            vec![
                (
                    "urn.dev.ow.10e2073a01080063.voltage",
                    1_276_020_076_001,
                    120.1
                ),
                (
                    "urn.dev.ow.10e2073a01080063.current",
                    1_276_020_071_001,
                    1.2
                ),
                (
                    "urn.dev.ow.10e2073a01080063.current",
                    1_276_020_072_001,
                    1.3
                ),
                (
                    "urn.dev.ow.10e2073a01080063.current",
                    1_276_020_076_001,
                    1.7
                ),
            ]
        );
    }

    #[test]
    fn positions_describe_the_sensors_and_kinds_map_through_config() {
        // Location by unit (RFC 8428 §12.1 registers "lat"/"lon") and by
        // name; base value; booleans; skipped string values.
        let payload = r#"[
            {"bn":"pegel-stpauli:","bt":1794999990,"bv":0,"n":"water_level","u":"m NHN","v":5.12},
            {"u":"lat","v":53.5457},
            {"u":"lon","v":9.9703},
            {"bn":"sperrwerk-1:","n":"closed","vb":true},
            {"n":"lat","v":53.52},
            {"n":"lon","v":9.98},
            {"n":"note","vs":"Tor 2 klemmt"}
        ]"#;
        let mut d = Decoder::default();
        let mut f = (*d.formats).clone();
        f.senml_kinds.insert("closed".into(), "gate_closed".into());
        d.formats = std::sync::Arc::new(f);
        let e = d
            .decode("rm/v1/drill-surge/senml/gw1", payload.as_bytes(), NOW)
            .expect("ok")
            .into_vec();
        assert!(e.iter().all(|e| e.space == "drill-surge"));
        assert_eq!(
            obs(&e),
            vec![
                ("pegel-stpauli.water_level", 1_794_999_990_000, 5.12),
                ("sperrwerk-1.gate_closed", 1_794_999_990_000, 1.0),
            ]
        );
        let m = metas(&e);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].id.as_str(), m[0].kind.as_str(), m[0].unit.as_str()),
            ("pegel-stpauli.water_level", "water_level", "m NHN")
        );
        assert_eq!((m[0].lat, m[0].lon), (53.5457, 9.9703));
        assert_eq!((m[1].kind.as_str(), m[1].lat), ("gate_closed", 53.52));
        // Descriptions come before observations.
        assert!(matches!(e[0].event, Event::SensorMeta(_)));
    }

    #[test]
    fn bad_packs_are_refused_with_a_reason() {
        let cases = [
            ("{}", "bad_senml"),
            ("[]", "bad_senml"),
            (r#"[{"n":"a:b","v":"x"}]"#, "bad_senml"),
            (r#"[{"n":"a:b","v":1,"vb":true}]"#, "bad_senml"),
            (r#"[{"n":"a:b"}]"#, "bad_senml"),
            (r#"[{"n":"nocolon","v":1}]"#, "bad_senml"),
            (r#"[{"n":"-a:b","v":1}]"#, "bad_senml"),
            (r#"[{"n":"a b:c","v":1}]"#, "bad_senml"),
            (r#"[{"n":"a:b","v":1,"ct_":5}]"#, "bad_senml"),
            (r#"[{"bver":11,"n":"a:b","v":1}]"#, "bad_senml"),
            (r#"[{"bv":1.7e308,"n":"a:b","v":1.7e308}]"#, "bad_senml"),
            (
                r#"[{"bn":"a:","n":"lat","v":91},{"n":"lon","v":0},{"n":"x","v":1}]"#,
                "out_of_range",
            ),
            (
                r#"[{"bn":"a:","n":"lat","v":50},{"n":"x","v":1}]"#,
                "bad_senml",
            ),
            (r#"[{"n":"a:b","t":1e300,"v":1}]"#, "future_timestamp"),
            (r#"[{"n":"a:b","t":3600,"v":1}]"#, "future_timestamp"),
            (
                &format!(r#"[{{"n":"{}:b","v":1}}]"#, "d".repeat(70)),
                "bad_id",
            ),
            (
                r#"[{"n":"a:b","vs":"only text"}]"#,
                "senml_no_numeric_values",
            ),
        ];
        for (payload, reason) in cases {
            let err = dec(payload).expect_err(payload);
            assert_eq!(err.reason(), reason, "{payload}: {err}");
        }
    }
}
