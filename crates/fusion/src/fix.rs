//! One unit seen by several sources: the last fix of each, and one fused
//! position.
//!
//! Every fix has a stated accuracy (metres, one standard deviation). A
//! fix's accuracy grows with its age (by the unit's speed when the fix
//! carries one, else by a configured drift), so a stale precise fix gives
//! way to a fresh coarse one. The fused position is the average of the
//! fixes weighted by the inverse square of those accuracies: a convex
//! combination, so it always lies within the hull of the fixes. Its accuracy
//! is never better than the best contributing fix: the best fix's, or the
//! weighted spread of the fixes around the fused point when that is larger.
//!
//! Everything is computed from the fixes and the newest fix time alone, so
//! the order in which fixes arrived does not matter.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use smallvec::SmallVec;

use crate::EpochMs;

/// Metres per degree of latitude (mean).
const METRES_PER_DEGREE: f64 = 111_195.0;
/// A fix whose source moved faster than the unit type can has this many
/// times its stated accuracy.
pub(crate) const JUMP_PENALTY: f64 = 10.0;
/// Sources that disagree are a conflict beyond their accuracies together;
/// the conflict ends when they are within this fraction of it.
pub(crate) const CONFLICT_CLEAR_FACTOR: f64 = 0.7;
/// Most sources kept per unit.
pub(crate) const MAX_SOURCES_PER_UNIT: usize = 8;
/// Smallest accuracy a fix is taken to have (metres).
const MIN_ACCURACY_M: f64 = 1.0;

/// How positions from several sources are weighed (config `[sources]`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Accuracy (metres) of a fix that states none, by source name.
    pub accuracy_m: BTreeMap<String, f64>,
    /// Accuracy of a fix that states none from a source not listed.
    pub default_accuracy_m: f64,
    /// How fast (m/s) a fix's accuracy grows with its age when it carries
    /// no speed.
    pub drift_mps: f64,
    /// Fastest plausible speed (m/s) by unit type; a source jumping faster
    /// is flagged and down-weighted.
    pub max_speed_mps: BTreeMap<String, f64>,
    /// Fastest plausible speed of a unit type not listed.
    pub default_max_speed_mps: f64,
    /// Source identifiers (CoT uid, radio ISSI, tracker id) that stand for
    /// a unit id: their reports become that unit's.
    pub identities: BTreeMap<String, String>,
    /// Sources whose radio status counts; a status from any other source
    /// is refused. A status that names no source counts as the radio's.
    pub status_sources: Vec<String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        let accuracy = [
            ("gps", 10.0),
            ("tracker", 10.0),
            ("cot", 30.0),
            ("radio", 300.0),
            ("tetra", 300.0),
        ];
        let speed = [("RTH", 80.0), ("Boot", 20.0)];
        SourceConfig {
            accuracy_m: accuracy
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            default_accuracy_m: 100.0,
            drift_mps: 1.5,
            max_speed_mps: speed.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            default_max_speed_mps: 55.0,
            identities: BTreeMap::new(),
            status_sources: vec!["radio".to_owned(), "tetra".to_owned(), "fms".to_owned()],
        }
    }
}

impl SourceConfig {
    /// The same for a picture whose events move `factor` times faster than
    /// their time stamps say (a simulated drill at `--speed factor`, stamped
    /// with the wall clock): plausible speeds and drift scale with it, so
    /// a fire engine driving at ×60 is not taken for a jumping source.
    pub fn compressed(mut self, factor: f64) -> SourceConfig {
        if !(factor.is_finite() && factor > 1.0) {
            return self;
        }
        self.drift_mps *= factor;
        self.default_max_speed_mps *= factor;
        for v in self.max_speed_mps.values_mut() {
            *v *= factor;
        }
        self
    }

    /// Accuracy of a fix from `source` that states none.
    pub fn accuracy_of(&self, source: &str) -> f64 {
        self.accuracy_m
            .get(source)
            .copied()
            .unwrap_or(self.default_accuracy_m)
    }

    /// Fastest plausible speed of `unit_type`.
    pub fn max_speed_of(&self, unit_type: &str) -> f64 {
        self.max_speed_mps
            .get(unit_type)
            .copied()
            .unwrap_or(self.default_max_speed_mps)
    }

    /// Whether a radio status from `source` counts.
    pub fn status_counts(&self, source: Option<&str>) -> bool {
        source.is_none_or(|s| self.status_sources.iter().any(|x| x == s))
    }
}

/// The last fix of one source.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Fix {
    /// The source (`radio`, `gps`, `cot`, …; empty when not given).
    pub source: Arc<str>,
    pub lat: f64,
    pub lon: f64,
    /// Stated accuracy, metres.
    pub accuracy_m: f64,
    pub ts_ms: EpochMs,
    /// Speed, m/s, when the fix carries one.
    pub speed: Option<f64>,
    /// The source moved faster than the unit type can since its previous
    /// fix: down-weighted.
    pub jump: bool,
    /// Its share of the unit's fused position (set when fused).
    pub weight: f64,
}

/// One source's part in a unit's fused position, as shown.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SourceView {
    /// The source.
    pub source: Arc<str>,
    /// Its last fix.
    pub lat: f64,
    /// Its last fix.
    pub lon: f64,
    /// Its stated accuracy, metres.
    pub accuracy: f64,
    /// Time of its last fix.
    pub ts_ms: EpochMs,
    /// Its share of the fused position, 0–1.
    pub weight: f64,
    /// Moved faster than the unit type can: down-weighted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jump: bool,
}

/// Distance in metres between two points (equirectangular: exact enough
/// for the few kilometres fixes of one unit lie apart).
pub(crate) fn distance_m((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let mean_lat = ((lat1 + lat2) / 2.0).to_radians();
    let dy = (lat2 - lat1) * METRES_PER_DEGREE;
    let mut dlon = lon2 - lon1;
    if dlon > 180.0 {
        dlon -= 360.0;
    } else if dlon < -180.0 {
        dlon += 360.0;
    }
    let dx = dlon * METRES_PER_DEGREE * mean_lat.cos();
    dx.hypot(dy)
}

impl Fix {
    /// Accuracy at time `at`: stated (times the jump penalty), plus what
    /// the unit may have moved since.
    pub fn accuracy_at(&self, at: EpochMs, drift_mps: f64) -> f64 {
        let penalty = if self.jump { JUMP_PENALTY } else { 1.0 };
        self.accuracy_m.max(MIN_ACCURACY_M) * penalty + self.growth(at, drift_mps)
    }

    /// What the unit may have moved between this fix and `at`, metres.
    fn growth(&self, at: EpochMs, drift_mps: f64) -> f64 {
        let age_s = (at - self.ts_ms).max(0) as f64 / 1000.0;
        age_s * self.speed.unwrap_or(drift_mps).max(0.0)
    }

    fn point(&self) -> (f64, f64) {
        (self.lat, self.lon)
    }
}

/// A fused position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fused {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
    /// The newest fix time.
    pub ts_ms: EpochMs,
    /// Weight of each fix, in the order given.
    pub weights: SmallVec<[f64; 4]>,
}

/// Fuses `fixes` (at least one) as of the newest fix. Fixes older than
/// `max_age_ms` before the newest are left out (weight 0).
pub(crate) fn fuse(fixes: &[Fix], drift_mps: f64, max_age_ms: i64) -> Option<Fused> {
    if let [only] = fixes {
        // One source: its fix, as it is.
        return Some(Fused {
            lat: only.lat,
            lon: only.lon,
            accuracy_m: only.accuracy_at(only.ts_ms, drift_mps),
            ts_ms: only.ts_ms,
            weights: SmallVec::from_slice(&[1.0]),
        });
    }
    let at = fixes.iter().map(|f| f.ts_ms).max()?;
    let sigma: SmallVec<[f64; 4]> = fixes.iter().map(|f| f.accuracy_at(at, drift_mps)).collect();
    let raw: SmallVec<[f64; 4]> = fixes
        .iter()
        .zip(&sigma)
        .map(|(f, s)| {
            if at - f.ts_ms > max_age_ms {
                0.0
            } else {
                1.0 / (s * s)
            }
        })
        .collect();
    let total: f64 = raw.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let weights: SmallVec<[f64; 4]> = raw.iter().map(|w| w / total).collect();
    let lat = fixes
        .iter()
        .zip(&weights)
        .map(|(f, w)| f.lat * w)
        .sum::<f64>();
    // Longitudes relative to the first fix, so that fixes on both sides
    // of the antimeridian average to a point between them.
    let lon0 = fixes[0].lon;
    let rel = |lon: f64| {
        let d = lon - lon0;
        if d > 180.0 {
            d - 360.0
        } else if d < -180.0 {
            d + 360.0
        } else {
            d
        }
    };
    let mut lon = lon0
        + fixes
            .iter()
            .zip(&weights)
            .map(|(f, w)| rel(f.lon) * w)
            .sum::<f64>();
    if lon > 180.0 {
        lon -= 360.0;
    } else if lon < -180.0 {
        lon += 360.0;
    }
    let best = fixes
        .iter()
        .zip(&sigma)
        .zip(&weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|((_, s), _)| *s)
        .fold(f64::INFINITY, f64::min);
    let spread = fixes
        .iter()
        .zip(&weights)
        .map(|(f, w)| w * distance_m(f.point(), (lat, lon)).powi(2))
        .sum::<f64>()
        .sqrt();
    Some(Fused {
        lat,
        lon,
        accuracy_m: best.max(spread),
        ts_ms: at,
        weights,
    })
}

/// Whether two fresh fixes of one unit disagree: further apart than their
/// accuracies together (as stated, grown with age; a jump's penalty does
/// not hide a disagreement), times `factor` (1 to raise a conflict; less
/// to keep one raised, for hysteresis).
pub(crate) fn disagree(a: &Fix, b: &Fix, at: EpochMs, drift_mps: f64, factor: f64) -> bool {
    let stated = |f: &Fix| f.accuracy_m.max(MIN_ACCURACY_M) + f.growth(at, drift_mps);
    let reach = stated(a) + stated(b);
    distance_m(a.point(), b.point()) > reach * factor
}

/// Whether a source's new fix implies a speed beyond `max_speed_mps`
/// since its previous one (allowing for both fixes' accuracies).
pub(crate) fn jumped(prev: &Fix, next: &Fix, max_speed_mps: f64) -> bool {
    let dt_s = (next.ts_ms - prev.ts_ms) as f64 / 1000.0;
    if dt_s <= 0.0 {
        return false;
    }
    let slack = prev.accuracy_m.max(MIN_ACCURACY_M) + next.accuracy_m.max(MIN_ACCURACY_M);
    let d = (distance_m(prev.point(), next.point()) - slack).max(0.0);
    d / dt_s > max_speed_mps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: EpochMs = 1_790_000_000_000;

    #[test]
    fn compressed_time_scales_speeds_and_drift_only() {
        let c = SourceConfig::default();
        let x60 = c.clone().compressed(60.0);
        assert_eq!(x60.default_max_speed_mps, c.default_max_speed_mps * 60.0);
        assert_eq!(x60.max_speed_of("RTH"), c.max_speed_of("RTH") * 60.0);
        assert_eq!(x60.drift_mps, c.drift_mps * 60.0);
        assert_eq!(x60.accuracy_m, c.accuracy_m);
        assert_eq!(c.clone().compressed(1.0), c);
        assert_eq!(c.clone().compressed(f64::NAN), c);
    }

    fn fix(source: &str, (lat, lon): (f64, f64), accuracy_m: f64, ts_ms: EpochMs) -> Fix {
        Fix {
            source: source.into(),
            lat,
            lon,
            accuracy_m,
            ts_ms,
            speed: None,
            jump: false,
            weight: 0.0,
        }
    }

    /// North of `p` by `m` metres.
    fn north((lat, lon): (f64, f64), m: f64) -> (f64, f64) {
        (lat + m / METRES_PER_DEGREE, lon)
    }

    #[test]
    fn a_coarse_fix_does_not_drag_a_precise_one() {
        let gps = (53.55, 9.99);
        let fixes = [
            fix("gps", gps, 5.0, T0),
            fix("radio", north(gps, 100.0), 300.0, T0),
        ];
        let f = fuse(&fixes, 1.5, 300_000).expect("fused");
        assert!(distance_m((f.lat, f.lon), gps) < 1.0, "{f:?}");
        assert!(f.accuracy_m >= 5.0);
        assert!(!disagree(&fixes[0], &fixes[1], T0, 1.5, 1.0));
        let far = fix("radio", north(gps, 3_000.0), 300.0, T0);
        assert!(disagree(&fixes[0], &far, T0, 1.5, 1.0));
    }

    #[test]
    fn a_stale_precise_fix_gives_way_to_a_fresh_coarse_one() {
        let gps = (53.55, 9.99);
        let radio = north(gps, 1_000.0);
        // GPS ten minutes old, the unit driving at 15 m/s: 9 km of doubt.
        let mut old = fix("gps", gps, 5.0, T0);
        old.speed = Some(15.0);
        let fixes = [old, fix("radio", radio, 300.0, T0 + 600_000)];
        let f = fuse(&fixes, 1.5, 3_600_000).expect("fused");
        assert!(distance_m((f.lat, f.lon), radio) < 20.0, "{f:?}");
    }

    #[test]
    fn a_jump_is_detected_and_down_weighted() {
        let a = fix("radio", (53.55, 9.99), 50.0, T0);
        let b = fix("radio", north((53.55, 9.99), 5_000.0), 50.0, T0 + 10_000);
        assert!(jumped(&a, &b, 55.0), "5 km in 10 s");
        let c = fix("radio", north((53.55, 9.99), 300.0), 50.0, T0 + 10_000);
        assert!(!jumped(&a, &c, 55.0), "300 m in 10 s");
        let mut j = b.clone();
        j.jump = true;
        assert_eq!(j.accuracy_at(j.ts_ms, 1.5), 500.0);
    }

    #[test]
    fn fixes_too_old_are_left_out() {
        let fixes = [
            fix("gps", (53.55, 9.99), 5.0, T0),
            fix("radio", (53.60, 9.99), 300.0, T0 + 3_600_000),
        ];
        let f = fuse(&fixes, 1.5, 600_000).expect("fused");
        assert_eq!(f.weights[0], 0.0);
        assert_eq!((f.lat, f.lon), (53.60, 9.99));
    }

    fn fixes() -> impl Strategy<Value = Vec<Fix>> {
        let one = (
            53.4f64..53.7,
            9.8f64..10.2,
            1.0f64..500.0,
            0i64..600_000,
            proptest::option::of(0.0f64..40.0),
            any::<bool>(),
        )
            .prop_map(|(lat, lon, acc, dt, speed, jump)| Fix {
                source: "s".into(),
                lat,
                lon,
                accuracy_m: acc,
                ts_ms: T0 + dt,
                speed,
                jump,
                weight: 0.0,
            });
        proptest::collection::vec(one, 1..6)
    }

    /// Inside the convex hull of the contributing fixes (small tolerance
    /// for rounding).
    fn in_hull(p: (f64, f64), pts: &[(f64, f64)]) -> bool {
        use geo::{ConvexHull, Coord, Distance, Euclidean, MultiPoint, Point};
        let hull = MultiPoint::from(
            pts.iter()
                .map(|(lat, lon)| Point::new(*lon, *lat))
                .collect::<Vec<_>>(),
        )
        .convex_hull();
        let q = Point::from(Coord { x: p.1, y: p.0 });
        Euclidean.distance(&q, &hull) < 1e-9
    }

    proptest! {
        #[test]
        fn fused_position_is_in_the_hull_never_more_accurate_than_the_best_and_order_free(
            fs in fixes(),
            rotate in 0usize..6,
        ) {
            let max_age = 300_000;
            let Some(f) = fuse(&fs, 1.5, max_age) else {
                return Ok(());
            };
            let at = f.ts_ms;
            let contributing: Vec<(f64, f64)> = fs
                .iter()
                .zip(&f.weights)
                .filter(|(_, w)| **w > 0.0)
                .map(|(x, _)| (x.lat, x.lon))
                .collect();
            prop_assert!(in_hull((f.lat, f.lon), &contributing), "{f:?} {contributing:?}");
            let best = fs
                .iter()
                .zip(&f.weights)
                .filter(|(_, w)| **w > 0.0)
                .map(|(x, _)| x.accuracy_at(at, 1.5))
                .fold(f64::INFINITY, f64::min);
            prop_assert!(f.accuracy_m >= best);
            let mut other = fs.clone();
            let k = rotate % other.len();
            other.rotate_left(k);
            other.reverse();
            let g = fuse(&other, 1.5, max_age).expect("same fixes");
            prop_assert!((f.lat - g.lat).abs() < 1e-9 && (f.lon - g.lon).abs() < 1e-9);
            prop_assert!((f.accuracy_m - g.accuracy_m).abs() < 1e-6);
        }
    }
}
