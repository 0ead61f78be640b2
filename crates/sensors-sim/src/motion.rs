//! How simulated vehicles move and report: a unit's day is a list of legs
//! (standing or driving straight, one radio status each), and status changes
//! that fell between two publishing steps are stamped with wall times spread
//! between those steps.

use ingest::wire::{UnitPosMsg, UnitStatusMsg, WireTime};

use crate::geo::{LatLon, round_to};
use crate::rng::Rng;
use crate::scenario::Msg;

/// A stretch of a unit's day: standing still (speed 0) or driving straight
/// from `from` to `to`, with one radio status throughout. Times are
/// scenario seconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Leg {
    pub start: f64,
    pub end: f64,
    pub status: u8,
    pub from: LatLon,
    pub to: LatLon,
    /// m/s; 0 while standing.
    pub speed: f64,
    /// Degrees; while standing, the heading it arrived with.
    pub heading: f64,
}

impl Leg {
    /// Where the unit is at `t` (clamped to the leg).
    pub fn position(&self, t: f64) -> LatLon {
        let span = self.end - self.start;
        let f = if span > 0.0 {
            ((t - self.start) / span).clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.from.lerp(self.to, f)
    }
}

/// The wall time (epoch ms) for something that happened at scenario time
/// `at`, between the previous step `(prev_s, prev_wall_ms)` and this one
/// `(now_s, now_wall_ms)`: strictly after the previous step's messages, at
/// the latest at this step's.
pub(crate) fn wall_time_between(
    at: f64,
    (prev_s, prev_wall_ms): (f64, i64),
    (now_s, now_wall_ms): (f64, i64),
) -> i64 {
    let span_s = now_s - prev_s;
    let f = if span_s > 0.0 {
        ((at - prev_s) / span_s).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let span = now_wall_ms.saturating_sub(prev_wall_ms).max(0);
    let offset = ((f * span as f64).round() as i64).clamp(1, span.max(1));
    prev_wall_ms.saturating_add(offset)
}

/// Radio status messages for `changes` (wall time, status) on `topic`,
/// their times kept strictly increasing after `last_ms` (updated).
pub(crate) fn status_msgs(
    topic: &str,
    changes: Vec<(i64, u8)>,
    last_ms: &mut i64,
    out: &mut Vec<Msg>,
) {
    for (ms, status) in changes {
        let ms = ms.max(last_ms.saturating_add(1));
        *last_ms = ms;
        let msg = UnitStatusMsg {
            ts: WireTime::rfc3339(ms),
            status,
            source: None,
        };
        out.extend(Msg::json(topic.to_owned(), &msg, false));
    }
}

/// A tracker's fix of a unit on `leg` at scenario time `t`: a few metres
/// of position noise, the leg's heading, its speed (when `moving`) with 5 %
/// noise, an accuracy of 5 to 10 m.
pub(crate) fn tracker_fix(
    topic: String,
    leg: &Leg,
    t: f64,
    moving: bool,
    wall_ms: i64,
    noise: &mut Rng,
) -> Option<Msg> {
    let p = leg
        .position(t)
        .offset_m(noise.noise(2.0, 6.0), noise.noise(2.0, 6.0));
    let speed = if moving {
        leg.speed * (1.0 + noise.noise(0.05, 0.15))
    } else {
        0.0
    };
    let msg = UnitPosMsg {
        ts: WireTime::rfc3339(wall_ms),
        lat: round_to(p.lat, 6),
        lon: round_to(p.lon, 6),
        heading: Some(leg.heading),
        speed: Some(round_to(speed, 1)),
        accuracy: Some(round_to(noise.range(5.0, 10.0), 1)),
        source: Some("tracker".to_owned()),
    };
    Msg::json(topic, &msg, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_interpolate_and_times_fall_between_steps() {
        let a = LatLon::new(53.5, 10.0);
        let b = LatLon::new(53.6, 10.2);
        let leg = Leg {
            start: 100.0,
            end: 200.0,
            status: 3,
            from: a,
            to: b,
            speed: 10.0,
            heading: 45.0,
        };
        assert_eq!(leg.position(0.0), a);
        assert_eq!(leg.position(300.0), b);
        let mid = leg.position(150.0);
        assert!((mid.lat - 53.55).abs() < 1e-9 && (mid.lon - 10.1).abs() < 1e-9);
        let prev = (0.0, 1_000);
        let now = (60.0, 2_000);
        assert_eq!(wall_time_between(30.0, prev, now), 1_500);
        assert_eq!(wall_time_between(0.0, prev, now), 1_001);
        assert_eq!(wall_time_between(60.0, prev, now), 2_000);
        assert_eq!(wall_time_between(30.0, (0.0, 5), (0.0, 5)), 6);
    }
}
