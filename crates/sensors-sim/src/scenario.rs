//! The deterministic core: a scenario turns scenario time into messages.

use ingest::wire::{IncidentMsg, WireTime};
use serde::Serialize;
use serde_json::json;

use crate::{SimError, storm_surge, validate_space};

/// One MQTT message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Full topic, e.g. `rm/v1/live/sensor/pegel-st-pauli/obs`.
    pub topic: String,
    /// JSON payload (UTF-8); empty closes a retained incident.
    pub payload: Vec<u8>,
    /// Whether the broker should retain it (descriptions and incidents).
    pub retain: bool,
}

impl Msg {
    /// A message whose payload is `value` as JSON. Serialising the wire
    /// structs cannot fail (string keys, finite numbers), but should it ever,
    /// the message is skipped and logged rather than sent half-formed.
    pub(crate) fn json<T: Serialize>(topic: String, value: &T, retain: bool) -> Option<Msg> {
        match serde_json::to_vec(value) {
            Ok(payload) => Some(Msg {
                topic,
                payload,
                retain,
            }),
            Err(e) => {
                tracing::error!(%topic, error = %e, "could not encode simulated message");
                None
            }
        }
    }
}

/// What an open incident looks like at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IncidentState<'a> {
    pub keyword: &'a str,
    pub title: &'a str,
    pub severity: u8,
    /// Closed ring, `[lon, lat]`.
    pub ring: &'a [[f64; 2]],
}

/// The retained message of an incident: open with its state, or closed
/// (`None`): an empty retained payload, which also clears what an earlier
/// run may have left on the broker.
pub(crate) fn incident_msg(
    topic: String,
    wall_ms: i64,
    state: Option<IncidentState>,
) -> Option<Msg> {
    match state {
        Some(s) => {
            let msg = IncidentMsg {
                ts: WireTime::rfc3339(wall_ms),
                keyword: s.keyword.to_owned(),
                severity: s.severity,
                geometry: json!({ "type": "Polygon", "coordinates": [s.ring] }),
                title: Some(s.title.to_owned()),
                expires: None,
            };
            Msg::json(topic, &msg, true)
        }
        None => Some(Msg {
            topic,
            payload: Vec::new(),
            retain: true,
        }),
    }
}

/// A playable scenario. Deterministic: built from the same name, space and
/// seed and stepped with the same times, it yields byte-identical messages.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: &'static str,
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    StormSurge(Box<storm_surge::StormSurge>),
}

impl Scenario {
    /// The scenario `name` (one of [`crate::scenarios`]) publishing into
    /// `space`, with every random choice drawn from `seed`.
    pub fn new(name: &str, space: &str, seed: u64) -> Result<Scenario, SimError> {
        validate_space(space)?;
        match name {
            storm_surge::NAME => Ok(Scenario {
                name: storm_surge::NAME,
                inner: Inner::StormSurge(Box::new(storm_surge::StormSurge::new(space, seed))),
            }),
            _ => Err(SimError::UnknownScenario(name.to_owned())),
        }
    }

    /// The scenario's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Advances the scenario to `scenario_s` seconds after its start and
    /// returns what to publish, stamped with `wall_ms` (epoch milliseconds).
    ///
    /// The first call also returns every description (sensors, units, retained)
    /// and the incidents; descriptions are repeated whenever at least a minute
    /// of wall time has passed since they were last sent, for subscribers that
    /// joined late on brokers without retained messages. Radio status changes
    /// that fell between two calls are stamped with wall times interpolated
    /// between the two calls.
    pub fn step(&mut self, scenario_s: f64, wall_ms: i64) -> Vec<Msg> {
        match &mut self.inner {
            Inner::StormSurge(s) => s.step(scenario_s, wall_ms),
        }
    }
}
