//! Spaces: `live` and the drill spaces `drill-<name>`, each an independent
//! picture. The name rule is shared by every boundary (topics, URLs).

/// The live space.
pub const LIVE: &str = "live";
const DRILL_PREFIX: &str = "drill-";

/// `live`, or `drill-` plus `[a-z0-9-]`, 1 to 32 characters in all.
pub fn is_valid_space(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && (s == LIVE || (s.starts_with(DRILL_PREFIX) && s.len() > DRILL_PREFIX.len()))
}

/// Whether a (valid) space is a drill, shown as EXERCISE everywhere.
pub fn is_drill(s: &str) -> bool {
    s.starts_with(DRILL_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_names() {
        assert!(is_valid_space("live"));
        assert!(is_valid_space("drill-surge-7"));
        assert!(!is_valid_space("drill-"));
        assert!(!is_valid_space("Drill-x"));
        assert!(!is_valid_space("lives"));
        assert!(!is_valid_space(&format!("drill-{}", "x".repeat(27))));
        assert!(is_drill("drill-a") && !is_drill("live"));
    }
}
