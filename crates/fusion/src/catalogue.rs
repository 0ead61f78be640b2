//! The sensor-kind catalogue: unit, level thresholds and time-to-live per
//! kind. The defaults are Hamburg's; a config file can replace them.

use std::collections::BTreeMap;

use serde::Deserialize;

/// What the picture knows about one sensor kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    /// Unit of measurement, e.g. `m NHN`.
    pub unit: String,
    /// Ascending thresholds: a value at or above the n-th one is level n+1.
    #[serde(default)]
    pub thresholds: Vec<f64>,
    /// Time-to-live of an observation, milliseconds.
    pub ttl_ms: i64,
}

/// Sensor kinds by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Catalogue {
    kinds: BTreeMap<String, KindSpec>,
}

/// Time-to-live for a kind the catalogue does not know.
const UNKNOWN_KIND_TTL_MS: i64 = 15 * 60_000;

impl Catalogue {
    /// A catalogue from explicit entries.
    pub fn new(kinds: BTreeMap<String, KindSpec>) -> Self {
        Self { kinds }
    }

    /// The spec of `kind`, if known.
    pub fn get(&self, kind: &str) -> Option<&KindSpec> {
        self.kinds.get(kind)
    }

    /// Time-to-live of `kind`, with a default for unknown kinds.
    pub fn ttl_ms(&self, kind: &str) -> i64 {
        self.get(kind).map_or(UNKNOWN_KIND_TTL_MS, |k| k.ttl_ms)
    }
}

impl Default for Catalogue {
    /// Hamburg's defaults. Storm-surge classes at St. Pauli are 3.6 / 4.6 /
    /// 5.6 m NHN (storm surge, severe, very severe); 7 m NHN is the reference
    /// scenario.
    fn default() -> Self {
        let spec = |unit: &str, thresholds: &[f64], ttl_min: i64| KindSpec {
            unit: unit.to_owned(),
            thresholds: thresholds.to_vec(),
            ttl_ms: ttl_min * 60_000,
        };
        let kinds = [
            ("water_level", spec("m NHN", &[3.6, 4.6, 5.6, 7.0], 10)),
            ("rain_rate", spec("mm/h", &[10.0, 25.0, 40.0, 80.0], 10)),
            ("gas_co", spec("ppm", &[30.0, 60.0, 150.0, 500.0], 2)),
            ("pm10", spec("µg/m³", &[50.0, 100.0, 250.0, 500.0], 10)),
            ("wind_speed", spec("m/s", &[13.9, 20.8, 28.5, 32.7], 10)),
            ("people_count", spec("persons", &[], 10)),
            ("gate_closed", spec("0/1", &[], 30)),
            ("road_passable", spec("0/1", &[], 30)),
        ];
        Self {
            kinds: kinds.into_iter().map(|(k, s)| (k.to_owned(), s)).collect(),
        }
    }
}
