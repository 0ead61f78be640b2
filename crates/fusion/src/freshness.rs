//! Freshness classes: how old an entity's newest report is, relative to the
//! time-to-live of its kind. Derived from the clock, so never part of the
//! digest.

use serde::Serialize;

use crate::EpochMs;

/// How current an entity's information is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Younger than its time-to-live.
    Fresh,
    /// Older than the TTL, younger than twice the TTL.
    Aging,
    /// Older than twice the TTL, younger than ten times the TTL.
    Stale,
    /// Older than ten times the TTL, or never reported.
    Lost,
}

impl Freshness {
    /// Classifies the age of the newest report `ts_ms` at `now_ms`.
    ///
    /// Reports from the (tolerated) future count as fresh.
    pub fn classify(ts_ms: Option<EpochMs>, ttl_ms: i64, now_ms: EpochMs) -> Freshness {
        let Some(ts) = ts_ms else {
            return Freshness::Lost;
        };
        let age = now_ms.saturating_sub(ts);
        let ttl = ttl_ms.max(1);
        if age <= ttl {
            Freshness::Fresh
        } else if age <= ttl.saturating_mul(2) {
            Freshness::Aging
        } else if age <= ttl.saturating_mul(10) {
            Freshness::Stale
        } else {
            Freshness::Lost
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_ttl() {
        let ttl = 60_000;
        assert_eq!(Freshness::classify(Some(0), ttl, 60_000), Freshness::Fresh);
        assert_eq!(Freshness::classify(Some(0), ttl, 60_001), Freshness::Aging);
        assert_eq!(Freshness::classify(Some(0), ttl, 120_001), Freshness::Stale);
        assert_eq!(Freshness::classify(Some(0), ttl, 600_001), Freshness::Lost);
        assert_eq!(Freshness::classify(None, ttl, 0), Freshness::Lost);
        assert_eq!(Freshness::classify(Some(5_000), ttl, 0), Freshness::Fresh);
    }
}
