//! A sensor's trend per hour in constant memory: an exponentially weighted
//! least-squares slope over its observations, with a time constant of half
//! an hour, so the last hour dominates. Five running sums replace a history
//! of samples (which would cost a kilobyte per sensor).
//!
//! Times are kept relative to the newest observation (the sums are shifted
//! on every update), so the arithmetic stays well conditioned however long
//! a sensor runs.

use crate::EpochMs;

/// Weight halves about every 21 minutes (e-folding time 30 minutes).
const TAU_H: f64 = 0.5;
/// A trend needs this many observations spread over this much time.
const MIN_SAMPLES: u32 = 3;
const MIN_SPAN_MS: i64 = 5 * 60_000;
/// A gap longer than this starts the trend afresh.
const RESET_AFTER_MS: i64 = 3 * 3_600_000;

const MS_PER_H: f64 = 3_600_000.0;

/// Running weighted sums of (t, v), t in hours relative to the newest.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Trend {
    first_ms: EpochMs,
    last_ms: EpochMs,
    n: u32,
    sw: f64,
    st: f64,
    sv: f64,
    stt: f64,
    stv: f64,
}

impl Trend {
    /// Adds an observation; `ts` must not be older than the previous one.
    pub fn add(&mut self, ts: EpochMs, v: f64) {
        if self.n == 0 || ts - self.last_ms > RESET_AFTER_MS {
            *self = Trend {
                first_ms: ts,
                last_ms: ts,
                ..Trend::default()
            };
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "at most a few hours of milliseconds"
        )]
        let d = (ts - self.last_ms).max(0) as f64 / MS_PER_H;
        // Move the origin to the new observation: t' = t - d.
        self.stt += -2.0 * d * self.st + d * d * self.sw;
        self.stv -= d * self.sv;
        self.st -= d * self.sw;
        // Age the old observations.
        let decay = (-d / TAU_H).exp();
        self.sw *= decay;
        self.st *= decay;
        self.sv *= decay;
        self.stt *= decay;
        self.stv *= decay;
        // The new observation sits at t = 0.
        self.sw += 1.0;
        self.sv += v;
        self.last_ms = ts;
        self.n = self.n.saturating_add(1);
    }

    /// Observations counted (saturating).
    pub fn samples(&self) -> u32 {
        self.n
    }

    /// Change per hour, once there is enough data.
    pub fn per_hour(&self) -> Option<f64> {
        if self.n < MIN_SAMPLES || self.last_ms - self.first_ms < MIN_SPAN_MS {
            return None;
        }
        let den = self.sw * self.stt - self.st * self.st;
        (den.abs() > f64::EPSILON).then(|| (self.sw * self.stv - self.st * self.sv) / den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_straight_line_gives_its_slope_whatever_the_weights() {
        let mut t = Trend::default();
        for i in 0..30 {
            let ts = 1_000_000 + i * 120_000;
            t.add(ts, 2.0 - 0.8 * (i as f64 * 120_000.0 / MS_PER_H));
        }
        let s = t.per_hour().expect("enough data");
        assert!((s + 0.8).abs() < 1e-9, "{s}");
    }

    #[test]
    fn too_little_data_gives_no_trend_and_long_gaps_start_afresh() {
        let mut t = Trend::default();
        t.add(0, 1.0);
        t.add(60_000, 2.0);
        assert_eq!(t.per_hour(), None);
        t.add(120_000, 3.0);
        assert_eq!(t.per_hour(), None, "two minutes are not enough");
        t.add(10 * 3_600_000, 5.0);
        assert_eq!(
            t.per_hour(),
            None,
            "after a long gap the trend starts again"
        );
    }

    #[test]
    fn recent_change_dominates() {
        let mut t = Trend::default();
        // Two hours flat, then 30 minutes rising 2 m/h.
        let mut pts = Vec::new();
        let mut ts = 0;
        for _ in 0..24 {
            pts.push((ts, 1.0));
            ts += 300_000;
        }
        for i in 1..=6 {
            pts.push((ts, 1.0 + 2.0 * (i as f64 * 300_000.0 / MS_PER_H)));
            ts += 300_000;
        }
        for (ts, v) in &pts {
            t.add(*ts, *v);
        }
        let s = t.per_hour().expect("trend");
        // The plain least-squares slope over all 2.5 hours, for comparison.
        let n = pts.len() as f64;
        let hours = |ts: i64| ts as f64 / MS_PER_H;
        let mt = pts.iter().map(|p| hours(p.0)).sum::<f64>() / n;
        let mv = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let cov: f64 = pts.iter().map(|p| (hours(p.0) - mt) * (p.1 - mv)).sum();
        let var: f64 = pts.iter().map(|p| (hours(p.0) - mt).powi(2)).sum();
        let plain = cov / var;
        assert!(
            s > 1.5 * plain && s < 2.0,
            "recent slope weighs more: {s} vs plain {plain}"
        );
    }
}
