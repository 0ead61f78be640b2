//! The deterministic core: a scenario turns scenario time into messages.

use ingest::wire::{IncidentMsg, WireTime};
use serde::Serialize;
use serde_json::json;

use std::path::Path;
use std::sync::Arc;

use crate::file_engine::FileScenario;
use crate::load::LoadScenario;
use crate::{SimError, SimOptions, scenario_file, validate_space};

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

/// Descriptions are repeated after this much wall time.
const META_REFRESH_MS: i64 = 60_000;

/// When descriptions (retained, but not every broker keeps them) go out
/// again: at the first step and whenever a minute of wall time has passed
/// (or the wall clock went back).
#[derive(Debug, Clone, Default)]
pub(crate) struct MetaRefresh {
    last_ms: Option<i64>,
}

impl MetaRefresh {
    /// Whether the descriptions are due at `wall_ms` (and, if so, noted as
    /// sent).
    pub fn due(&mut self, wall_ms: i64) -> bool {
        let due = self
            .last_ms
            .is_none_or(|last| wall_ms.saturating_sub(last) >= META_REFRESH_MS || wall_ms < last);
        if due {
            self.last_ms = Some(wall_ms);
        }
        due
    }
}

/// A scenario time as given to `step`, made usable: not before the start,
/// and the start for a time that is not a number.
pub(crate) fn scenario_time(scenario_s: f64) -> f64 {
    if scenario_s.is_finite() {
        scenario_s.max(0.0)
    } else {
        0.0
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

/// A playable scenario. Deterministic: built from the same name (or file),
/// space and seed and stepped with the same times, it yields
/// byte-identical messages.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    File(Box<FileScenario>),
    Load(Box<LoadScenario>),
}

impl Scenario {
    /// The built-in scenario `name` (one of [`crate::scenarios`])
    /// publishing into `space`, with every random choice drawn from `seed`.
    pub fn new(name: &str, space: &str, seed: u64) -> Result<Scenario, SimError> {
        validate_space(space)?;
        let Some(text) = crate::builtin_file(name) else {
            return Err(SimError::UnknownScenario(name.to_owned()));
        };
        Scenario::from_text(&format!("built-in scenario {name}"), text, space, seed)
    }

    /// A scenario from the text of a scenario file (`SCENARIOS.md`);
    /// `origin` names it in errors.
    pub fn from_text(
        origin: &str,
        text: &str,
        space: &str,
        seed: u64,
    ) -> Result<Scenario, SimError> {
        validate_space(space)?;
        let spec = scenario_file::parse(origin, text).map_err(SimError::ScenarioFile)?;
        Ok(Scenario {
            name: spec.name.clone(),
            inner: Inner::File(Box::new(FileScenario::new(Arc::new(spec), space, seed))),
        })
    }

    /// A scenario read from the file at `path`.
    pub fn from_file(path: &Path, space: &str, seed: u64) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::ScenarioFile(format!("{}: cannot read: {e}", path.display())))?;
        Scenario::from_text(&path.display().to_string(), &text, space, seed)
    }

    /// The scenario the options name: a load, a file or a built-in one.
    pub fn for_options(opts: &SimOptions) -> Result<Scenario, SimError> {
        if let Some(load) = &opts.load {
            validate_space(&opts.space)?;
            return Ok(Scenario {
                name: "load".to_owned(),
                inner: Inner::Load(Box::new(LoadScenario::new(*load, &opts.space, opts.seed))),
            });
        }
        match &opts.file {
            Some(path) => Scenario::from_file(path, &opts.space, opts.seed),
            None => Scenario::new(&opts.scenario, &opts.space, opts.seed),
        }
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Advances the scenario to `scenario_s` seconds after its start and
    /// returns what to publish, stamped with `wall_ms` (epoch milliseconds).
    ///
    /// The first call also returns every description (sensors, units, retained)
    /// and the incidents; descriptions are repeated whenever at least a minute
    /// of wall time has passed since they were last sent, for subscribers that
    /// joined late on brokers without retained messages. Radio status changes
    /// that fell between two calls are stamped with wall times interpolated
    /// between the two calls. A load publishes at its rate instead: as many
    /// messages as its rate allows for the wall time since its first step.
    pub fn step(&mut self, scenario_s: f64, wall_ms: i64) -> Vec<Msg> {
        match &mut self.inner {
            Inner::File(f) => f.step(scenario_s, wall_ms),
            Inner::Load(l) => l.step(wall_ms),
        }
    }

    /// For a load at full speed: the next `n` messages, whatever the time.
    pub(crate) fn burst(&mut self, n: usize, wall_ms: i64) -> Vec<Msg> {
        match &mut self.inner {
            Inner::Load(l) => l.burst(n, wall_ms),
            _ => Vec::new(),
        }
    }
}
