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
    /// Plausibility: valid range `[min, max]`; outside it a reading is
    /// suspect.
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// Plausibility: fastest change per minute; a larger change from the
    /// previous reading is a spike (suspect). Readings less than a minute
    /// apart may differ by this much (so noise at a high rate is no
    /// spike).
    #[serde(default)]
    pub max_rate_per_min: Option<f64>,
    /// Plausibility: a value unchanged for longer than this (ms) is a
    /// frozen sensor (suspect).
    #[serde(default)]
    pub flat_after_ms: Option<i64>,
    /// Plausibility: differing by more than this from the median of the
    /// kind's sensors in the neighbouring cells makes a reading
    /// provisional.
    #[serde(default)]
    pub neighbour_tolerance: Option<f64>,
}

impl KindSpec {
    /// The plausibility checks of this kind.
    pub fn checks(&self) -> Checks {
        Checks {
            range: self.range,
            max_rate_per_min: self.max_rate_per_min,
            flat_after_ms: self.flat_after_ms,
            neighbour_tolerance: self.neighbour_tolerance,
        }
    }
}

/// Plausibility checks of one kind (see [`KindSpec`]); each is off when
/// not given. A reading that fails one is `suspect`: shown, but it raises
/// no level.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Checks {
    /// Valid range.
    pub range: Option<[f64; 2]>,
    /// Fastest plausible change per minute.
    pub max_rate_per_min: Option<f64>,
    /// Longest plausible time without change, ms.
    pub flat_after_ms: Option<i64>,
    /// Largest plausible difference from the neighbours' median.
    pub neighbour_tolerance: Option<f64>,
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

    /// Every kind, by name.
    pub fn kinds(&self) -> impl Iterator<Item = (&String, &KindSpec)> {
        self.kinds.iter()
    }

    /// Plausibility checks of `kind` (none for an unknown kind).
    pub fn checks(&self, kind: &str) -> Checks {
        self.get(kind).map(KindSpec::checks).unwrap_or_default()
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
        let spec = |unit: &str, thresholds: &[f64], ttl_min: i64, range: [f64; 2]| KindSpec {
            unit: unit.to_owned(),
            thresholds: thresholds.to_vec(),
            ttl_ms: ttl_min * 60_000,
            range: Some(range),
            max_rate_per_min: None,
            flat_after_ms: None,
            neighbour_tolerance: None,
        };
        // Water levels: the Elbe moves with the tide (about 1 m an hour at
        // most, also in a surge), so half a metre in a minute is a spike;
        // a tide gauge that reads the same for three hours is frozen; gauges
        // next to each other agree within a metre.
        let mut water = spec("m NHN", &[3.6, 4.6, 5.6, 7.0], 10, [-5.0, 15.0]);
        water.max_rate_per_min = Some(0.5);
        water.flat_after_ms = Some(3 * 3_600_000);
        water.neighbour_tolerance = Some(1.0);
        let kinds = [
            ("water_level", water),
            (
                "rain_rate",
                spec("mm/h", &[10.0, 25.0, 40.0, 80.0], 10, [0.0, 500.0]),
            ),
            (
                "gas_co",
                spec("ppm", &[30.0, 60.0, 150.0, 500.0], 2, [0.0, 10_000.0]),
            ),
            (
                "pm10",
                spec("µg/m³", &[50.0, 100.0, 250.0, 500.0], 10, [0.0, 10_000.0]),
            ),
            (
                "wind_speed",
                spec("m/s", &[13.9, 20.8, 28.5, 32.7], 10, [0.0, 120.0]),
            ),
            ("people_count", spec("persons", &[], 10, [0.0, 1_000_000.0])),
            ("gate_closed", spec("0/1", &[], 30, [0.0, 1.0])),
            ("road_passable", spec("0/1", &[], 30, [0.0, 1.0])),
        ];
        Self {
            kinds: kinds.into_iter().map(|(k, s)| (k.to_owned(), s)).collect(),
        }
    }
}
