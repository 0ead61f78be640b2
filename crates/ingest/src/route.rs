//! Topic patterns for the foreign formats: which decoder a topic goes to,
//! and what its placeholders (`{space}`, `{gateway}`, `{id}`) hold.
//!
//! A pattern is an MQTT topic whose levels are literal text or contain one
//! placeholder, with literal text around it allowed (FROST's
//! `Datastreams({id})`). Each placeholder level subscribes as `+`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The formats ingest understands besides the native contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// SenML JSON packs (RFC 8428).
    Senml,
    /// Cursor-on-Target XML events.
    Cot,
    /// OASIS CAP 1.2 alerts.
    Cap,
    /// OGC SensorThings API Observations (MQTT extension, as FROST
    /// publishes them).
    Sensorthings,
}

impl Format {
    /// Name used in metrics labels and messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Senml => "senml",
            Format::Cot => "cot",
            Format::Cap => "cap",
            Format::Sensorthings => "sensorthings",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `prefix{name}suffix`.
    Var {
        prefix: String,
        name: String,
        suffix: String,
    },
}

/// A parsed topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    levels: Vec<Level>,
}

/// The placeholders a topic filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures<'a> {
    vars: Vec<(&'a str, &'a str)>,
}

impl<'a> Captures<'a> {
    /// The value of placeholder `name`, if the pattern has it.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

impl Pattern {
    /// Parses `text`, e.g. `rm/v1/{space}/senml/{gateway}`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty topic pattern".into());
        }
        let mut levels = Vec::new();
        for level in text.split('/') {
            if level.contains(['+', '#']) {
                return Err(format!(
                    "{text:?}: use {{name}} placeholders, not MQTT wildcards"
                ));
            }
            let Some(open) = level.find('{') else {
                if level.contains('}') {
                    return Err(format!("{text:?}: unbalanced '}}' in {level:?}"));
                }
                levels.push(Level::Literal(level.to_owned()));
                continue;
            };
            let close = level[open..]
                .find('}')
                .map(|i| i + open)
                .ok_or_else(|| format!("{text:?}: unbalanced '{{' in {level:?}"))?;
            let name = &level[open + 1..close];
            let suffix = &level[close + 1..];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err(format!("{text:?}: placeholder {{{name}}} must be [a-z_]+"));
            }
            if suffix.contains(['{', '}']) {
                return Err(format!("{text:?}: one placeholder per level at most"));
            }
            levels.push(Level::Var {
                prefix: level[..open].to_owned(),
                name: name.to_owned(),
                suffix: suffix.to_owned(),
            });
        }
        let mut names: Vec<&str> = levels
            .iter()
            .filter_map(|l| match l {
                Level::Var { name, .. } => Some(name.as_str()),
                Level::Literal(_) => None,
            })
            .collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("{text:?}: a placeholder appears twice"));
        }
        Ok(Pattern {
            text: text.to_owned(),
            levels,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has placeholder `name`.
    pub fn has(&self, name: &str) -> bool {
        self.levels
            .iter()
            .any(|l| matches!(l, Level::Var { name: n, .. } if n == name))
    }

    /// The MQTT subscription filter: each placeholder level becomes `+`.
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Var { .. } => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// How many levels a topic it matches has.
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    /// Matches `topic`, returning the placeholders' values (each non-empty).
    pub fn matches<'a>(&'a self, topic: &'a str) -> Option<Captures<'a>> {
        let mut vars = Vec::new();
        let mut parts = topic.split('/');
        for level in &self.levels {
            let part = parts.next()?;
            match level {
                Level::Literal(s) => {
                    if part != s {
                        return None;
                    }
                }
                Level::Var {
                    prefix,
                    name,
                    suffix,
                } => {
                    let value = part.strip_prefix(prefix.as_str())?;
                    let value = value.strip_suffix(suffix.as_str())?;
                    if value.is_empty() {
                        return None;
                    }
                    vars.push((name.as_str(), value));
                }
            }
        }
        parts.next().is_none().then_some(Captures { vars })
    }
}

/// Whether MQTT filter `outer` matches every topic `inner` matches (so
/// subscribing to both would only deliver duplicates).
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(b)) if b != "#" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Removes filters that another filter in the list already covers.
pub fn minimal_filters(filters: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (n, f) in filters.iter().enumerate() {
        let covered = filters
            .iter()
            .enumerate()
            .any(|(m, g)| m != n && filter_covers(g, f) && (!filter_covers(f, g) || m < n));
        if !covered {
            out.push(f.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_and_capture() {
        let p = Pattern::parse("v1.1/Datastreams({id})/Observations").expect("valid");
        assert_eq!(p.filter(), "v1.1/+/Observations");
        let c = p
            .matches("v1.1/Datastreams(17)/Observations")
            .expect("matches");
        assert_eq!(c.get("id"), Some("17"));
        assert!(p.matches("v1.1/Datastreams()/Observations").is_none());
        assert!(p.matches("v1.1/Things(17)/Observations").is_none());
        assert!(
            p.matches("v1.1/Datastreams(17)/Observations/extra")
                .is_none()
        );
        let s = Pattern::parse("rm/v1/{space}/senml/{gateway}").expect("valid");
        let c = s.matches("rm/v1/drill-a/senml/gw7").expect("matches");
        assert_eq!(
            (c.get("space"), c.get("gateway")),
            (Some("drill-a"), Some("gw7"))
        );
        assert!(s.matches("rm/v1/live/senml").is_none());
        for bad in ["", "a/+/b", "a/#", "a/{x", "a/{X}", "a/{x}{y}", "{a}/{a}"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn covered_filters_are_dropped() {
        assert!(filter_covers("rm/v1/#", "rm/v1/+/cot"));
        assert!(filter_covers("a/+/c", "a/b/c"));
        assert!(!filter_covers("a/b/c", "a/+/c"));
        assert!(!filter_covers("rm/v1/#", "v1.1/+/Observations"));
        let f = minimal_filters(&[
            "rm/v1/#".into(),
            "rm/v1/+/cot".into(),
            "v1.1/+/Observations".into(),
            "rm/v1/#".into(),
        ]);
        assert_eq!(
            f,
            vec!["rm/v1/#".to_owned(), "v1.1/+/Observations".to_owned()]
        );
    }
}
