//! Topic parsing: which space, which entity, which message.

use crate::error::DecodeError;
use crate::wire::TOPIC_ROOT;

/// What a native topic addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `sensor/{id}/meta`
    SensorMeta(&'a str),
    /// `sensor/{id}/obs`
    SensorObs(&'a str),
    /// `unit/{id}/meta`
    UnitMeta(&'a str),
    /// `unit/{id}/pos`
    UnitPos(&'a str),
    /// `unit/{id}/status`
    UnitStatus(&'a str),
    /// `incident/{id}`
    Incident(&'a str),
    /// `dead-letter`: our own output, never input.
    DeadLetter,
}

/// A parsed native topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    /// `live` or `drill-<name>`.
    pub space: &'a str,
    /// The message it carries.
    pub route: Route<'a>,
}

/// `live` or `drill-` followed by `[a-z0-9-]`, 1 to 32 characters in all.
pub fn valid_space(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && (s == "live" || (s.starts_with("drill-") && s.len() > "drill-".len()))
}

/// `[A-Za-z0-9._-]{1,64}`.
pub fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The space a topic names, if it names a valid one (for dead-lettering
/// even when the rest of the topic is wrong).
pub fn space_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(TOPIC_ROOT)?.strip_prefix('/')?;
    let space = rest.split('/').next()?;
    valid_space(space).then_some(space)
}

/// The level that starts a region-aware topic's region (DESIGN §7):
/// `rm/v1/{space}/r/{region}/…`, where `region` is the H3 cell (resolution
/// 3 unless configured otherwise) of the entity's position and `…` any
/// topic of the contract after the space.
pub const REGION_LEVEL: &str = "r";

/// A region-aware topic without its region: `Ok(None)` for a topic
/// without one, an error for a region that is not an H3 cell index.
pub fn strip_region(topic: &str) -> Result<Option<String>, DecodeError> {
    let Some(rest) = topic
        .strip_prefix(TOPIC_ROOT)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return Ok(None);
    };
    let mut parts = rest.splitn(4, '/');
    let (Some(space), Some(REGION_LEVEL), Some(region), Some(tail)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    if region.parse::<h3o::CellIndex>().is_err() {
        return Err(DecodeError::Topic(format!(
            "{:?}: region {:?} is not an H3 cell index",
            topic.chars().take(120).collect::<String>(),
            region.chars().take(20).collect::<String>()
        )));
    }
    Ok(Some(format!("{TOPIC_ROOT}/{space}/{tail}")))
}

/// The region-aware form of a contract topic: `region` inserted after the
/// space (None for a topic outside `rm/v1/{space}/`).
pub fn with_region(topic: &str, region: &str) -> Option<String> {
    let rest = topic.strip_prefix(TOPIC_ROOT)?.strip_prefix('/')?;
    let (space, tail) = rest.split_once('/')?;
    Some(format!(
        "{TOPIC_ROOT}/{space}/{REGION_LEVEL}/{region}/{tail}"
    ))
}

/// Parses a native topic.
pub fn parse(topic: &str) -> Result<Topic<'_>, DecodeError> {
    let bad = |why: &str| DecodeError::Topic(format!("{topic:?}: {why}"));
    let rest = topic
        .strip_prefix(TOPIC_ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| bad("does not start with rm/v1/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let space = parts[0];
    if !valid_space(space) {
        return Err(DecodeError::Space(space.chars().take(40).collect()));
    }
    let id = |i: usize| -> Result<&str, DecodeError> {
        let id = parts[i];
        if valid_id(id) {
            Ok(id)
        } else {
            Err(DecodeError::Id(id.chars().take(80).collect()))
        }
    };
    let route = match parts.as_slice() {
        [_, "sensor", _, "meta"] => Route::SensorMeta(id(2)?),
        [_, "sensor", _, "obs"] => Route::SensorObs(id(2)?),
        [_, "unit", _, "meta"] => Route::UnitMeta(id(2)?),
        [_, "unit", _, "pos"] => Route::UnitPos(id(2)?),
        [_, "unit", _, "status"] => Route::UnitStatus(id(2)?),
        [_, "incident", _] => Route::Incident(id(2)?),
        [_, "dead-letter"] => Route::DeadLetter,
        _ => return Err(bad("unknown message type")),
    };
    Ok(Topic { space, route })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_refuse() {
        let t = parse("rm/v1/live/sensor/pegel-st.pauli_1/obs").expect("valid");
        assert_eq!(t.space, "live");
        assert_eq!(t.route, Route::SensorObs("pegel-st.pauli_1"));
        let t = parse("rm/v1/drill-surge7/incident/I1").expect("valid");
        assert_eq!(t.route, Route::Incident("I1"));
        assert!(matches!(
            parse("rm/v1/Live/unit/x/pos"),
            Err(DecodeError::Space(_))
        ));
        assert!(matches!(
            parse("rm/v1/drill-/unit/x/pos"),
            Err(DecodeError::Space(_))
        ));
        assert!(matches!(
            parse("rm/v1/live/unit/a b/pos"),
            Err(DecodeError::Id(_))
        ));
        assert!(matches!(
            parse("rm/v1/live/unit/x/colour"),
            Err(DecodeError::Topic(_))
        ));
        assert!(matches!(parse("other/thing"), Err(DecodeError::Topic(_))));
        assert!(valid_id(&"a".repeat(64)));
        assert!(!valid_id(&"a".repeat(65)));
        assert_eq!(space_of("rm/v1/drill-x/garbage"), Some("drill-x"));
        assert_eq!(space_of("rm/v1/NOPE/garbage"), None);
    }

    #[test]
    fn region_aware_topics_strip_to_the_contract() {
        let t = with_region("rm/v1/live/unit/u1/pos", "831f15fffffffff").expect("contract topic");
        assert_eq!(t, "rm/v1/live/r/831f15fffffffff/unit/u1/pos");
        assert_eq!(
            strip_region(&t).expect("valid region").as_deref(),
            Some("rm/v1/live/unit/u1/pos")
        );
        assert_eq!(
            strip_region("rm/v1/live/unit/u1/pos").expect("no region"),
            None
        );
        assert_eq!(
            strip_region("rm/v1/live/r/831f15fffffffff").expect("too short"),
            None
        );
        assert!(matches!(
            strip_region("rm/v1/live/r/hamburg/unit/u1/pos"),
            Err(DecodeError::Topic(_))
        ));
        assert_eq!(with_region("other/x", "831f15fffffffff"), None);
    }
}
