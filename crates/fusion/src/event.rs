//! Events: the only way the picture changes.
//!
//! Ingest decodes wire payloads (of any supported format) into these types
//! and has already validated them: ids are well-formed, coordinates are in
//! range, numbers are finite. The engine still never trusts them blindly
//! with respect to *time* (ordering, duplicates, the future).

use serde::{Deserialize, Serialize};

use crate::EpochMs;

/// An event as it enters fusion: where it belongs and when it was received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The space (`live` or `drill-<name>`) whose picture the event changes.
    pub space: String,
    /// When ingest received it (server clock). Not part of the digest.
    pub received_ms: EpochMs,
    /// The event itself.
    pub event: Event,
}

/// One change to the situation picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Tagged `event`: `kind` is a field of sensor descriptions.
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A sensor describes itself (retained on the broker).
    SensorMeta(SensorMeta),
    /// A sensor reports a value.
    SensorObs(SensorObs),
    /// A unit (vehicle, team) describes itself (retained).
    UnitMeta(UnitMeta),
    /// A unit reports a position.
    UnitPos(UnitPos),
    /// A unit reports a radio status 0–9 (FMS/TETRA).
    UnitStatus(UnitStatus),
    /// An incident is opened or updated.
    Incident(IncidentUpsert),
    /// An incident is closed (empty retained payload on the broker).
    IncidentClosed(IncidentClosed),
}

impl Event {
    /// Its kind: the `event` tag of its JSON form (`sensor_obs`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SensorMeta(_) => "sensor_meta",
            Event::SensorObs(_) => "sensor_obs",
            Event::UnitMeta(_) => "unit_meta",
            Event::UnitPos(_) => "unit_pos",
            Event::UnitStatus(_) => "unit_status",
            Event::Incident(_) => "incident",
            Event::IncidentClosed(_) => "incident_closed",
        }
    }

    /// Its event time, where it has one (descriptions and closings have
    /// none).
    pub fn ts_ms(&self) -> Option<EpochMs> {
        match self {
            Event::SensorObs(o) => Some(o.ts_ms),
            Event::UnitPos(p) => Some(p.ts_ms),
            Event::UnitStatus(s) => Some(s.ts_ms),
            Event::Incident(i) => Some(i.ts_ms),
            Event::SensorMeta(_) | Event::UnitMeta(_) | Event::IncidentClosed(_) => None,
        }
    }

    /// The id of the entity the event is about.
    pub fn entity_id(&self) -> &str {
        match self {
            Event::SensorMeta(e) => &e.id,
            Event::SensorObs(e) => &e.id,
            Event::UnitMeta(e) => &e.id,
            Event::UnitPos(e) => &e.id,
            Event::UnitStatus(e) => &e.id,
            Event::Incident(e) => &e.id,
            Event::IncidentClosed(e) => &e.id,
        }
    }
}

/// Sensor description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorMeta {
    /// Sensor id.
    pub id: String,
    /// Kind from the catalogue, e.g. `water_level`.
    pub kind: String,
    /// Unit of the value, e.g. `m NHN`.
    pub unit: String,
    /// WGS 84 latitude, degrees.
    pub lat: f64,
    /// WGS 84 longitude, degrees.
    pub lon: f64,
    /// Human-readable name.
    pub name: Option<String>,
    /// Level thresholds, ascending; overrides the catalogue's.
    pub thresholds: Option<Vec<f64>>,
}

/// Sensor observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorObs {
    /// Sensor id.
    pub id: String,
    /// Event time.
    pub ts_ms: EpochMs,
    /// The measured value (finite).
    pub value: f64,
    /// Position, for mobile sensors.
    pub lat: Option<f64>,
    /// Position, for mobile sensors.
    pub lon: Option<f64>,
    /// Per-source sequence number.
    pub seq: Option<u64>,
    /// Source-defined quality indicator.
    pub quality: Option<f64>,
}

impl SensorObs {
    /// A plain value at a time: no position, sequence number or quality.
    pub fn value(id: String, ts_ms: EpochMs, value: f64) -> SensorObs {
        SensorObs {
            id,
            ts_ms,
            value,
            lat: None,
            lon: None,
            seq: None,
            quality: None,
        }
    }
}

/// Unit description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitMeta {
    /// Unit id.
    pub id: String,
    /// Radio call sign, e.g. `HLF 20-1`.
    pub callsign: String,
    /// Vehicle or team type, e.g. `HLF`.
    pub unit_type: String,
    /// Organisation, e.g. `fire`, `thw`, `police`.
    pub org: String,
    /// Crew strength.
    pub strength: Option<u32>,
}

/// Unit position fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitPos {
    /// Unit id.
    pub id: String,
    /// Event time.
    pub ts_ms: EpochMs,
    /// WGS 84 latitude, degrees.
    pub lat: f64,
    /// WGS 84 longitude, degrees.
    pub lon: f64,
    /// Heading, degrees clockwise from north.
    pub heading: Option<f64>,
    /// Speed, m/s.
    pub speed: Option<f64>,
    /// Horizontal accuracy, metres.
    pub accuracy: Option<f64>,
    /// Which feed reported it (radio, tracker, …).
    pub source: Option<String>,
    /// How long this fix stays fresh, if the source says (CoT's `stale`);
    /// otherwise the configured unit time-to-live applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<i64>,
}

/// Unit radio status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatus {
    /// Unit id.
    pub id: String,
    /// Event time.
    pub ts_ms: EpochMs,
    /// Radio status 0–9.
    pub status: u8,
    /// Which feed reported it; None counts as the radio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Incident opened or updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentUpsert {
    /// Incident id.
    pub id: String,
    /// Event time.
    pub ts_ms: EpochMs,
    /// Alarm keyword, e.g. `FEU3`, `MANV25`.
    pub keyword: String,
    /// Severity 0–4.
    pub severity: u8,
    /// GeoJSON geometry (already validated by ingest).
    pub geometry: serde_json::Value,
    /// Free-text title.
    pub title: Option<String>,
    /// When the incident ends by itself (a CAP alert's `expires`): the
    /// picture closes it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<EpochMs>,
}

/// Incident closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentClosed {
    /// Incident id.
    pub id: String,
}
