//! Wire types of the native MQTT contract (DESIGN §3): topics and JSON
//! payloads exactly as sensors, vehicles and gateways publish them.
//!
//! These types are shared with the simulator, so they serialise to the same
//! JSON they parse. Unknown fields are ignored: the contract only grows
//! additively, and an older server must accept a newer sensor's payload.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Topic root of the native contract.
pub const TOPIC_ROOT: &str = "rm/v1";
/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The live space.
pub const LIVE_SPACE: &str = "live";

/// Topic of a sensor's description (retained).
pub fn sensor_meta_topic(space: &str, id: &str) -> String {
    format!("{TOPIC_ROOT}/{space}/sensor/{id}/meta")
}
/// Topic of a sensor's observations.
pub fn sensor_obs_topic(space: &str, id: &str) -> String {
    format!("{TOPIC_ROOT}/{space}/sensor/{id}/obs")
}
/// Topic of a unit's description (retained).
pub fn unit_meta_topic(space: &str, id: &str) -> String {
    format!("{TOPIC_ROOT}/{space}/unit/{id}/meta")
}
/// Topic of a unit's positions.
pub fn unit_pos_topic(space: &str, id: &str) -> String {
    format!("{TOPIC_ROOT}/{space}/unit/{id}/pos")
}
/// Topic of a unit's radio status.
pub fn unit_status_topic(space: &str, id: &str) -> String {
    format!("{TOPIC_ROOT}/{space}/unit/{id}/status")
}
/// Topic of an incident (retained; an empty payload closes it).
pub fn incident_topic(space: &str, id: &str) -> String {
    format!("{TOPIC_ROOT}/{space}/incident/{id}")
}
/// The region (H3 cell at `res`, as its index string) a position lies in,
/// for region-aware topics ([`crate::topic::with_region`]); None for an
/// invalid position or resolution.
pub fn region_of(lat: f64, lon: f64, res: u8) -> Option<String> {
    let res = h3o::Resolution::try_from(res).ok()?;
    let p = h3o::LatLng::new(lat, lon).ok()?;
    Some(p.to_cell(res).to_string())
}

/// Topic ingest publishes refused messages to.
pub fn dead_letter_topic(space: &str) -> String {
    format!("{TOPIC_ROOT}/{space}/dead-letter")
}

/// A timestamp as the contract allows it: RFC 3339 text or epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WireTime {
    /// Epoch milliseconds as an integer.
    Millis(i64),
    /// Epoch milliseconds written as a JSON float (e.g. `1.79e12`).
    FloatMillis(f64),
    /// RFC 3339, e.g. `2026-11-23T10:00:00Z` or with an offset.
    Text(String),
}

/// Read directly by JSON type (an untagged enum would buffer every value
/// first: this is on the path of every message).
impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<WireTime, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WireTime;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("epoch milliseconds or an RFC 3339 string")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<WireTime, E> {
                Ok(WireTime::Millis(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<WireTime, E> {
                i64::try_from(v)
                    .map(WireTime::Millis)
                    .map_err(|_| E::custom(format!("{v} is too large for epoch milliseconds")))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<WireTime, E> {
                Ok(WireTime::FloatMillis(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WireTime, E> {
                Ok(WireTime::Text(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<WireTime, E> {
                Ok(WireTime::Text(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl WireTime {
    /// Epoch milliseconds, or why not.
    pub fn to_epoch_ms(&self) -> Result<i64, String> {
        match self {
            WireTime::Millis(ms) => Ok(*ms),
            WireTime::FloatMillis(f) => {
                if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
                    #[expect(
                        clippy::cast_possible_truncation,
                        reason = "checked integral and in range"
                    )]
                    Ok(*f as i64)
                } else {
                    Err(format!("{f} is not a whole number of epoch milliseconds"))
                }
            }
            WireTime::Text(s) => rfc3339_ms(s),
        }
    }

    /// RFC 3339 text (UTC, milliseconds) for epoch milliseconds.
    pub fn rfc3339(ms: i64) -> WireTime {
        WireTime::Text(rfc3339_text(ms))
    }
}

/// Epoch milliseconds of RFC 3339 text (any offset), or why not. The
/// foreign formats' timestamps (CoT, SensorThings, CAP) are read with it.
pub fn rfc3339_ms(s: &str) -> Result<i64, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| {
            #[expect(clippy::cast_possible_truncation, reason = "RFC 3339 years fit easily")]
            let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
            ms
        })
        .map_err(|e| {
            let shown: String = s.chars().take(80).collect();
            format!("{shown:?} is not RFC 3339: {e}")
        })
}

/// RFC 3339 text (UTC, milliseconds) for epoch milliseconds.
pub fn rfc3339_text(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(&Rfc3339).unwrap_or_else(|_| ms.to_string())
}

/// `rm/v1/{space}/sensor/{id}/meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorMetaMsg {
    /// Kind from the catalogue, e.g. `water_level`.
    pub kind: String,
    /// Unit of the values, e.g. `m NHN`.
    pub unit: String,
    /// WGS 84 latitude.
    pub lat: f64,
    /// WGS 84 longitude.
    pub lon: f64,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Level thresholds, ascending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f64>>,
}

/// `rm/v1/{space}/sensor/{id}/obs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorObsMsg {
    /// Event time.
    pub ts: WireTime,
    /// The value.
    pub value: f64,
    /// Position of a mobile sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Position of a mobile sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// Per-source sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Quality indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
}

/// `rm/v1/{space}/unit/{id}/meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitMetaMsg {
    /// Call sign, e.g. `HLF 20-1`.
    pub callsign: String,
    /// Type, e.g. `HLF`.
    #[serde(rename = "type")]
    pub unit_type: String,
    /// Organisation, e.g. `fire`.
    pub org: String,
    /// Crew strength.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<u32>,
}

/// `rm/v1/{space}/unit/{id}/pos`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitPosMsg {
    /// Event time.
    pub ts: WireTime,
    /// WGS 84 latitude.
    pub lat: f64,
    /// WGS 84 longitude.
    pub lon: f64,
    /// Heading, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    /// Speed, m/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Accuracy, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Source feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `rm/v1/{space}/unit/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatusMsg {
    /// Event time.
    pub ts: WireTime,
    /// Radio status 0–9.
    pub status: u8,
    /// Source feed; only the configured status sources (the radio by
    /// default) may set a status. None counts as the radio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `rm/v1/{space}/incident/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentMsg {
    /// Event time.
    pub ts: WireTime,
    /// Alarm keyword.
    pub keyword: String,
    /// Severity 0–4.
    pub severity: u8,
    /// GeoJSON geometry.
    pub geometry: serde_json::Value,
    /// Title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// When the incident ends by itself, if it does (the picture closes it
    /// then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<WireTime>,
}

/// `rm/v1/{space}/dead-letter`, published by ingest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterMsg {
    /// Topic of the refused message.
    pub topic: String,
    /// Why it was refused.
    pub error: String,
    /// When it was received (RFC 3339).
    pub received_at: WireTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_in_both_forms() {
        let ms = 1_795_000_000_123;
        assert_eq!(WireTime::Millis(ms).to_epoch_ms(), Ok(ms));
        assert_eq!(WireTime::rfc3339(ms).to_epoch_ms(), Ok(ms));
        let t: WireTime = serde_json::from_str("\"2026-11-23T11:00:00+01:00\"").expect("json");
        assert_eq!(t.to_epoch_ms(), Ok(1_795_428_000_000));
        let f: WireTime = serde_json::from_str("1.795e12").expect("json");
        assert_eq!(f.to_epoch_ms(), Ok(1_795_000_000_000));
        assert!(WireTime::Text("yesterday".into()).to_epoch_ms().is_err());
        assert!(WireTime::FloatMillis(1.5).to_epoch_ms().is_err());
    }
}
