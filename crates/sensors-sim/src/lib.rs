//! RESCUE MATE scenario engine and MQTT publisher.
//!
//! A scenario is a deterministic model of a disaster: gauges, weather
//! stations, flood gates, a shelter, emergency units driving between their
//! stations and the sectors they are sent to, and incidents. It is driven by
//! two clocks that are kept apart on purpose:
//!
//! - the **scenario clock** (seconds since the scenario began) decides what
//!   happens: the tide, the surge, where a unit is, which radio status it has;
//! - the **wall clock** (epoch milliseconds) stamps what is published, because
//!   a server refuses event times from the future.
//!
//! [`Scenario::step`] is a pure function of the seed and the sequence of
//! `(scenario time, wall time)` pairs it is called with: the same inputs give
//! byte-identical messages. [`run`] is a thin loop around it that publishes to
//! an MQTT broker using the native wire contract of [`ingest::wire`]
//! (optionally translated to a standard [`Format`], with [`Faults`] injected).
//!
//! The built-in scenarios are scenario files (TOML, described in
//! `SCENARIOS.md`, embedded from `scenarios/`), the same format drill staff
//! use for their own. A load ([`LoadOptions`]) publishes many sensors
//! and units at a target rate for the benchmarks.
//!
//! This crate must not depend on anything of ingest but its wire types and
//! topic syntax: it speaks to the server only through a broker.

mod faults;
mod file_engine;
pub mod format;
mod geo;
mod load;
mod motion;
mod publish;
pub mod regional;
mod rng;
mod scenario;
mod scenario_file;
#[cfg(test)]
mod storm_surge_tests;
#[cfg(test)]
mod test_support;

use std::path::PathBuf;
use std::time::Duration;

pub use faults::{FAULT_NAMES, FaultCounts, Faults};
pub use format::Format;
pub use load::{LoadOptions, MAX_LOAD_SENSORS, MAX_LOAD_UNITS};
pub use publish::run;
pub use scenario::{Msg, Scenario};

/// The built-in scenarios, scenario files (`SCENARIOS.md`) like the ones
/// drill staff write.
const BUILTIN_FILES: &[(&str, &str)] = &[
    ("storm-surge", include_str!("../scenarios/storm-surge.toml")),
    ("fire-plume", include_str!("../scenarios/fire-plume.toml")),
    (
        "mass-casualty",
        include_str!("../scenarios/mass-casualty.toml"),
    ),
    ("heavy-rain", include_str!("../scenarios/heavy-rain.toml")),
];

/// Names of the scenarios this crate can play.
pub fn scenarios() -> &'static [&'static str] {
    &["storm-surge", "fire-plume", "mass-casualty", "heavy-rain"]
}

/// The text of a built-in scenario file.
pub fn builtin_file(name: &str) -> Option<&'static str> {
    BUILTIN_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// How to play a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Scenario name, one of [`scenarios`].
    pub scenario: String,
    /// Space to publish into: `live` or `drill-<name>`.
    pub space: String,
    /// Scenario-time compression: scenario seconds per wall-clock second.
    pub speed: f64,
    /// Seed of every random choice of the scenario.
    pub seed: u64,
    /// How long to publish (wall clock); `None` publishes until shut down.
    pub duration: Option<Duration>,
    /// Publish cadence (wall clock).
    pub tick: Duration,
    /// The format messages are published in (native by default).
    pub format: Format,
    /// Play this scenario file instead of the built-in `scenario`.
    pub file: Option<PathBuf>,
    /// Publish a load instead of a scenario.
    pub load: Option<LoadOptions>,
    /// Faults to inject (none by default).
    pub faults: Faults,
    /// Publish region-aware topics with regions of this H3 resolution
    /// (DESIGN §7: for fusion shards); None publishes the plain contract.
    pub regions: Option<u8>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            scenario: "storm-surge".to_owned(),
            space: ingest::wire::LIVE_SPACE.to_owned(),
            speed: 1.0,
            seed: 0,
            duration: None,
            tick: Duration::from_secs(1),
            format: Format::Native,
            file: None,
            load: None,
            faults: Faults::default(),
            regions: None,
        }
    }
}

impl SimOptions {
    /// Options for `scenario` with every other field at its default.
    pub fn new(scenario: impl Into<String>) -> Self {
        SimOptions {
            scenario: scenario.into(),
            ..SimOptions::default()
        }
    }

    /// Checks the options without connecting anywhere.
    pub fn validate(&self) -> Result<(), SimError> {
        if let Some(load) = &self.load {
            load.validate().map_err(SimError::InvalidOptions)?;
        } else if let Some(path) = &self.file {
            Scenario::from_file(path, &self.space, self.seed)?;
        } else if !scenarios().contains(&self.scenario.as_str()) {
            return Err(SimError::UnknownScenario(self.scenario.clone()));
        }
        if !(self.faults.rate.is_finite() && (0.0..=1.0).contains(&self.faults.rate)) {
            return Err(SimError::InvalidOptions(format!(
                "fault rate must be between 0 and 1, got {}",
                self.faults.rate
            )));
        }
        validate_space(&self.space)?;
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1.0e6) {
            return Err(SimError::InvalidOptions(format!(
                "speed must be a positive finite number up to 1e6, got {}",
                self.speed
            )));
        }
        if self.format == Format::Sensorthings && self.space != ingest::wire::LIVE_SPACE {
            return Err(SimError::InvalidOptions(
                "SensorThings topics name no space, so --format sensorthings publishes into live \
                 only: use native, senml or cot for a drill space"
                    .to_owned(),
            ));
        }
        if let Some(res) = self.regions {
            if res > 15 {
                return Err(SimError::InvalidOptions(format!(
                    "region resolution must be an H3 resolution 0-15, got {res}"
                )));
            }
            if self.format != Format::Native {
                return Err(SimError::InvalidOptions(
                    "region-aware topics are published in the native format only".to_owned(),
                ));
            }
        }
        if self.tick.is_zero() {
            return Err(SimError::InvalidOptions(
                "tick must be longer than zero".to_owned(),
            ));
        }
        Ok(())
    }
}

/// What a finished [`run`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// Messages handed to the MQTT client.
    pub published: u64,
    /// Of those, how many the broker acknowledged (QoS 1).
    pub acknowledged: u64,
    /// Messages not handed over because the client's queue was full
    /// (broker unreachable or too slow); the simulation does not wait for it.
    pub dropped: u64,
    /// Scenario steps taken.
    pub ticks: u64,
    /// Scenario time reached, in seconds.
    pub scenario_seconds: f64,
    /// Successful connections to the broker (more than one means reconnects).
    pub connections: u64,
    /// What the fault injector did (all zero without `--faults`).
    pub faults: FaultCounts,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No scenario by that name.
    #[error("unknown scenario {0:?} (known: {known})", known = scenarios().join(", "))]
    UnknownScenario(String),
    /// The space is not `live` or `drill-<name>` (at most 32 of `[a-z0-9-]`).
    #[error("invalid space {0:?}: expected `live` or `drill-<name>`, at most 32 of [a-z0-9-]")]
    InvalidSpace(String),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
    /// A scenario file cannot be read or breaks a rule of the format.
    #[error("scenario file {0}")]
    ScenarioFile(String),
    /// The MQTT client stopped accepting messages for good.
    #[error("MQTT client failed: {0}")]
    Mqtt(#[source] rumqttc::ClientError),
}

/// Checks a space name against the contract: `live` or `drill-<name>`,
/// at most 32 characters of `[a-z0-9-]`.
pub fn validate_space(space: &str) -> Result<(), SimError> {
    if ingest::topic::valid_space(space) {
        Ok(())
    } else {
        Err(SimError::InvalidSpace(space.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_follow_the_contract() {
        for ok in ["live", "drill-a", "drill-storm-2026"] {
            assert!(validate_space(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "LIVE",
            "drill-",
            "drill",
            "other",
            "drill_x",
            "drill-ä",
            "drill-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(validate_space(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(SimOptions::default().validate().is_ok());
        let unknown = SimOptions::new("volcano").validate();
        assert!(matches!(unknown, Err(SimError::UnknownScenario(ref n)) if n == "volcano"));
        let msg = unknown.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("storm-surge"), "{msg}");
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let opts = SimOptions {
                speed,
                ..SimOptions::default()
            };
            assert!(matches!(opts.validate(), Err(SimError::InvalidOptions(_))));
        }
        let opts = SimOptions {
            tick: Duration::ZERO,
            ..SimOptions::default()
        };
        assert!(matches!(opts.validate(), Err(SimError::InvalidOptions(_))));
        let opts = SimOptions {
            space: "prod".into(),
            ..SimOptions::default()
        };
        assert!(matches!(opts.validate(), Err(SimError::InvalidSpace(_))));
    }
}
