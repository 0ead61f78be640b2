//! Helpers of the unit tests of several modules.

use ingest::wire::TOPIC_ROOT;

/// 2026-11-23T10:00:00Z, the wall clock the unit tests start at.
pub(crate) const T0_MS: i64 = 1_795_428_000_000;

/// `(entity kind, id, leaf)` of a topic in `space`; the leaf is empty for
/// incidents.
pub(crate) fn split_topic(topic: &str, space: &str) -> (String, String, String) {
    let rest = topic
        .strip_prefix(&format!("{TOPIC_ROOT}/{space}/"))
        .unwrap_or_else(|| panic!("foreign topic {topic}"));
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [kind, id] => (kind.to_string(), id.to_string(), String::new()),
        [kind, id, leaf] => (kind.to_string(), id.to_string(), leaf.to_string()),
        _ => panic!("unexpected topic {topic}"),
    }
}
