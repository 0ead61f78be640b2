//! Configuration of the foreign formats (DESIGN §3): on which topics each
//! is accepted and how its names map onto the native contract. This is the
//! `[formats]` section of the server's config file.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::route::{Format, Pattern};
use crate::topic::{valid_id, valid_space};
use crate::wire::LIVE_SPACE;

/// `[formats]`: topic patterns per format and the tables that complete what
/// a format does not say itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FormatsConfig {
    /// SenML (RFC 8428) JSON packs.
    pub senml: Vec<String>,
    /// Cursor-on-Target XML events.
    pub cot: Vec<String>,
    /// OASIS CAP 1.2 alerts.
    pub cap: Vec<String>,
    /// SensorThings API Observations.
    pub sensorthings: Vec<String>,
    /// Space of patterns without `{space}` (SensorThings by default).
    pub default_space: String,
    /// SenML measurement names that differ from catalogue kinds, e.g.
    /// `temp = "air_temperature"`.
    pub senml_kinds: BTreeMap<String, String>,
    /// SensorThings Datastreams by id: which sensor, kind and place.
    pub datastreams: Vec<Datastream>,
    /// CoT type prefixes → unit type and organisation (longest prefix wins).
    pub cot_types: BTreeMap<String, CotType>,
}

/// One SensorThings Datastream in `[[formats.datastreams]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datastream {
    /// The Datastream's `@iot.id`, as it appears in the topic.
    pub id: String,
    /// Our sensor id.
    pub sensor: String,
    /// Catalogue kind, e.g. `water_level`.
    pub kind: String,
    /// Unit of the values, e.g. `m NHN`.
    pub unit: String,
    /// Where the sensor is, unless the Observation names a
    /// FeatureOfInterest.
    pub lat: Option<f64>,
    /// See `lat`.
    pub lon: Option<f64>,
    /// Display name.
    pub name: Option<String>,
}

/// What a CoT type prefix means for us.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CotType {
    /// Unit type, e.g. `HLF`.
    #[serde(rename = "type")]
    pub unit_type: String,
    /// Organisation, e.g. `fire`.
    pub org: String,
}

impl Default for FormatsConfig {
    fn default() -> Self {
        let cot = |t: &str, org: &str| CotType {
            unit_type: t.to_owned(),
            org: org.to_owned(),
        };
        Self {
            senml: vec!["rm/v1/{space}/senml/{gateway}".into()],
            cot: vec!["rm/v1/{space}/cot".into()],
            cap: vec!["rm/v1/{space}/cap".into()],
            sensorthings: vec!["v1.1/Datastreams({id})/Observations".into()],
            default_space: LIVE_SPACE.into(),
            senml_kinds: BTreeMap::new(),
            datastreams: Vec::new(),
            // Friendly (`a-f-`) type codes of the CoT type tree: ground
            // units, vehicles and incident-management resources.
            cot_types: BTreeMap::from([
                ("a-f-G".into(), cot("CoT", "other")),
                ("a-f-G-U-C".into(), cot("team", "other")),
                ("a-f-G-E-V".into(), cot("vehicle", "other")),
                ("a-f-G-E-V-m".into(), cot("RTW", "aid")),
                ("a-f-G-E-V-U-R".into(), cot("boat", "other")),
                ("a-f-G-U-U-L".into(), cot("FuStW", "police")),
                ("a-f-G-U-i-e".into(), cot("ELW", "command")),
                ("a-f-G-U-i-f".into(), cot("LF", "fire")),
                ("a-f-G-U-i-m".into(), cot("RTW", "aid")),
                ("a-f-G-U-i-m-aar".into(), cot("RTH", "aid")),
                ("a-f-A".into(), cot("aircraft", "other")),
                ("a-f-S".into(), cot("boat", "other")),
            ]),
        }
    }
}

/// The formats config, checked and compiled for the decoder.
#[derive(Debug, Clone)]
pub struct Formats {
    /// Patterns in the order they are tried.
    pub routes: Vec<(Format, Pattern)>,
    /// See [`FormatsConfig::default_space`].
    pub default_space: String,
    /// See [`FormatsConfig::senml_kinds`].
    pub senml_kinds: BTreeMap<String, String>,
    /// Datastreams by id.
    pub datastreams: BTreeMap<String, Datastream>,
    /// CoT type prefixes, longest first.
    pub cot_types: Vec<(String, CotType)>,
}

impl Default for Formats {
    fn default() -> Self {
        match Formats::new(&FormatsConfig::default()) {
            Ok(f) => f,
            Err(e) => unreachable!("the default formats config is valid: {e}"),
        }
    }
}

impl Formats {
    /// Checks and compiles `config`; the error names the offending entry.
    pub fn new(config: &FormatsConfig) -> Result<Formats, String> {
        if !valid_space(&config.default_space) {
            return Err(format!(
                "formats.default_space {:?} is not a valid space",
                config.default_space
            ));
        }
        let mut routes = Vec::new();
        for (format, list) in [
            (Format::Senml, &config.senml),
            (Format::Cot, &config.cot),
            (Format::Cap, &config.cap),
            (Format::Sensorthings, &config.sensorthings),
        ] {
            for text in list {
                let p = Pattern::parse(text).map_err(|e| format!("formats.{format}: {e}"))?;
                if format == Format::Sensorthings && !p.has("id") {
                    return Err(format!(
                        "formats.sensorthings: {text:?} needs an {{id}} placeholder for the Datastream"
                    ));
                }
                routes.push((format, p));
            }
        }
        let mut datastreams = BTreeMap::new();
        for d in &config.datastreams {
            let what = format!("formats.datastreams {:?}", d.id);
            if !valid_id(&d.sensor) {
                return Err(format!("{what}: sensor {:?} is not a valid id", d.sensor));
            }
            if d.kind.is_empty() || d.unit.is_empty() {
                return Err(format!("{what}: kind and unit must not be empty"));
            }
            match (d.lat, d.lon) {
                (Some(lat), Some(lon)) => {
                    if !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)) {
                        return Err(format!("{what}: lat/lon out of range"));
                    }
                }
                (None, None) => {}
                _ => return Err(format!("{what}: give both lat and lon, or neither")),
            }
            if datastreams.insert(d.id.clone(), d.clone()).is_some() {
                return Err(format!("{what}: listed twice"));
            }
        }
        for (prefix, t) in &config.cot_types {
            if t.unit_type.is_empty() || t.org.is_empty() {
                return Err(format!(
                    "formats.cot_types {prefix:?}: type and org must not be empty"
                ));
            }
        }
        let mut cot_types: Vec<(String, CotType)> = config
            .cot_types
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        cot_types.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(Formats {
            routes,
            default_space: config.default_space.clone(),
            senml_kinds: config.senml_kinds.clone(),
            datastreams,
            cot_types,
        })
    }

    /// The MQTT filters the formats need.
    pub fn filters(&self) -> Vec<String> {
        self.routes.iter().map(|(_, p)| p.filter()).collect()
    }

    /// Unit type and organisation for a CoT type: the longest configured
    /// prefix that matches at a `-` boundary.
    pub fn cot_type(&self, cot: &str) -> Option<&CotType> {
        self.cot_types
            .iter()
            .find(|(prefix, _)| {
                cot.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
            })
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_compile_and_cot_prefixes_pick_the_longest() {
        let f = Formats::default();
        assert_eq!(f.routes.len(), 4);
        assert_eq!(
            f.cot_type("a-f-G-U-i-m-ag").map(|t| t.unit_type.as_str()),
            Some("RTW")
        );
        assert_eq!(
            f.cot_type("a-f-G-E-V-C").map(|t| t.unit_type.as_str()),
            Some("vehicle")
        );
        assert_eq!(
            f.cot_type("a-f-G-U-C-I").map(|t| t.unit_type.as_str()),
            Some("team")
        );
        // A prefix matches whole levels only.
        assert_eq!(f.cot_type("a-f-Gx").map(|t| t.unit_type.as_str()), None);
    }

    #[test]
    fn bad_config_is_refused_with_the_entry_named() {
        let mut c = FormatsConfig {
            sensorthings: vec!["v1.1/Datastreams/Observations".into()],
            ..FormatsConfig::default()
        };
        assert!(Formats::new(&c).expect_err("no id").contains("{id}"));
        c.sensorthings.clear();
        c.datastreams.push(Datastream {
            id: "7".into(),
            sensor: "a b".into(),
            kind: "water_level".into(),
            unit: "m".into(),
            lat: None,
            lon: None,
            name: None,
        });
        assert!(Formats::new(&c).expect_err("bad id").contains("\"7\""));
    }
}
