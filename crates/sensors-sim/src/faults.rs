//! Faults on demand (`--faults`), so that drills also exercise how the
//! picture handles bad data. Applied to what a scenario publishes, before
//! any `--format` translation, to the live messages only (observations,
//! positions, radio statuses; descriptions and incidents stay intact).
//! Every choice comes from the seed, so a faulty run repeats exactly.
//!
//! | fault | what is done to a message (each with probability `rate`) | what the picture shows |
//! |---|---|---|
//! | `duplicates` | sent twice | `rm_fusion_events_total{outcome="duplicate"}` |
//! | `out-of-order` | held back and sent after the next step's messages | `outcome="outdated"` |
//! | `late` | event time 10 minutes earlier | `outcome="outdated"`, or an aging entity |
//! | `future` | event time 10 minutes ahead | `rm_ingest_refused_total{reason="future_timestamp"}` |
//! | `malformed` | payload cut in half | `reason="bad_json"`, a dead letter |
//! | `silent` | a source (chosen when first seen) stops after 3 messages, for good | stale / lost, `silent_unit` |
//! | `seq-gap` | an observation is not sent, its `seq` skipped | a `seq_gap` alert, `rm_fusion_seq_missed_total` |

use std::collections::HashMap;
use std::str::FromStr;

use ingest::wire::{rfc3339_ms, rfc3339_text};

use crate::rng::Rng;
use crate::scenario::Msg;

/// How far `late` and `future` move an event time.
const SHIFT_MS: i64 = 10 * 60_000;
/// Messages a source sends before `silent` stops it.
const SILENT_AFTER: u32 = 3;
const FAULT_STREAM: u64 = 4_000;

/// The kinds of fault, as named on the command line.
pub const FAULT_NAMES: &[&str] = &[
    "duplicates",
    "out-of-order",
    "late",
    "future",
    "malformed",
    "silent",
    "seq-gap",
];

/// Which faults to inject, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Send some messages twice.
    pub duplicates: bool,
    /// Hold some back until after the next step.
    pub out_of_order: bool,
    /// Date some event times 10 minutes back.
    pub late: bool,
    /// Date some event times 10 minutes ahead.
    pub future: bool,
    /// Cut some payloads in half.
    pub malformed: bool,
    /// Let some sources stop sending.
    pub silent: bool,
    /// Skip some observations (and their `seq`).
    pub seq_gap: bool,
    /// Probability per message (per source for `silent`), 0…1.
    pub rate: f64,
}

impl Faults {
    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        self.duplicates
            || self.out_of_order
            || self.late
            || self.future
            || self.malformed
            || self.silent
            || self.seq_gap
    }
}

impl FromStr for Faults {
    type Err = String;

    /// A comma-separated list of [`FAULT_NAMES`] (or `all`); the rate is
    /// 5 % until set.
    fn from_str(s: &str) -> Result<Faults, String> {
        let mut f = Faults {
            rate: 0.05,
            ..Faults::default()
        };
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "duplicates" => f.duplicates = true,
                "out-of-order" => f.out_of_order = true,
                "late" => f.late = true,
                "future" => f.future = true,
                "malformed" => f.malformed = true,
                "silent" => f.silent = true,
                "seq-gap" => f.seq_gap = true,
                "all" => {
                    f = Faults {
                        duplicates: true,
                        out_of_order: true,
                        late: true,
                        future: true,
                        malformed: true,
                        silent: true,
                        seq_gap: true,
                        rate: f.rate,
                    }
                }
                other => {
                    return Err(format!(
                        "unknown fault {other:?} (known: {}, all)",
                        FAULT_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(f)
    }
}

/// What the injector did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultCounts {
    /// Messages sent twice.
    pub duplicated: u64,
    /// Messages held back.
    pub reordered: u64,
    /// Event times moved back.
    pub late: u64,
    /// Event times moved ahead.
    pub future: u64,
    /// Payloads cut.
    pub malformed: u64,
    /// Sources that went silent.
    pub silenced_sources: u64,
    /// Messages not sent because their source is silent.
    pub silenced: u64,
    /// Observations skipped.
    pub seq_skipped: u64,
}

/// Applies [`Faults`] to the messages of each step.
#[derive(Debug)]
pub(crate) struct Injector {
    faults: Faults,
    rng: Rng,
    held: Vec<Msg>,
    /// Per source (topic without its last level): messages seen, and
    /// whether it goes silent.
    sources: HashMap<String, (u32, bool)>,
    pub counts: FaultCounts,
}

impl Injector {
    pub(crate) fn new(faults: Faults, seed: u64) -> Self {
        Injector {
            faults,
            rng: Rng::new(seed, FAULT_STREAM),
            held: Vec::new(),
            sources: HashMap::new(),
            counts: FaultCounts::default(),
        }
    }

    /// The messages to send for one step's `msgs`.
    pub(crate) fn apply(&mut self, msgs: Vec<Msg>) -> Vec<Msg> {
        if !self.faults.any() {
            return msgs;
        }
        let f = self.faults;
        let p = f.rate;
        let released = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(msgs.len() + released.len());
        for mut msg in msgs {
            if msg.retain {
                out.push(msg);
                continue;
            }
            if f.silent && self.silenced(&msg.topic) {
                continue;
            }
            if f.seq_gap && msg.topic.ends_with("/obs") && self.rng.chance(p) {
                self.counts.seq_skipped += 1;
                continue;
            }
            if f.late && self.rng.chance(p) && shift_ts(&mut msg, -SHIFT_MS) {
                self.counts.late += 1;
            }
            if f.future && self.rng.chance(p) && shift_ts(&mut msg, SHIFT_MS) {
                self.counts.future += 1;
            }
            if f.malformed && self.rng.chance(p) {
                msg.payload.truncate(msg.payload.len() / 2);
                self.counts.malformed += 1;
            }
            if f.out_of_order && self.rng.chance(p) {
                self.counts.reordered += 1;
                self.held.push(msg);
                continue;
            }
            if f.duplicates && self.rng.chance(p) {
                self.counts.duplicated += 1;
                out.push(msg.clone());
            }
            out.push(msg);
        }
        out.extend(released);
        out
    }

    /// Whether the source of `topic` is silent by now (counting this one).
    fn silenced(&mut self, topic: &str) -> bool {
        let source = topic.rsplit_once('/').map_or(topic, |(s, _)| s);
        if !self.sources.contains_key(source) {
            let silent = self.rng.chance(self.faults.rate);
            if silent {
                self.counts.silenced_sources += 1;
            }
            self.sources.insert(source.to_owned(), (0, silent));
        }
        let Some((seen, silent)) = self.sources.get_mut(source) else {
            return false;
        };
        *seen = seen.saturating_add(1);
        let drop = *silent && *seen > SILENT_AFTER;
        if drop {
            self.counts.silenced += 1;
        }
        drop
    }
}

/// Moves the `ts` of a JSON payload by `by_ms`; false when it has none.
fn shift_ts(msg: &mut Msg, by_ms: i64) -> bool {
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(&msg.payload) else {
        return false;
    };
    let Some(ms) = obj.get("ts").and_then(|ts| match ts {
        serde_json::Value::String(s) => rfc3339_ms(s).ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }) else {
        return false;
    };
    obj.insert(
        "ts".to_owned(),
        serde_json::Value::String(rfc3339_text(ms.saturating_add(by_ms))),
    );
    match serde_json::to_vec(&obj) {
        Ok(payload) => {
            msg.payload = payload;
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use ingest::wire::{SensorObsMsg, UnitPosMsg};

    use super::*;
    use crate::Scenario;

    use crate::test_support::T0_MS;

    /// Ten minutes of storm surge at ×60 through an injector.
    fn run(faults: &str, rate: f64, seed: u64) -> (Vec<Msg>, Vec<Msg>, FaultCounts) {
        let mut f: Faults = faults.parse().expect("faults");
        f.rate = rate;
        let mut sc = Scenario::new("storm-surge", "drill-faults", 1).expect("scenario");
        let mut inj = Injector::new(f, seed);
        let (mut clean, mut faulty) = (Vec::new(), Vec::new());
        for k in 0..600 {
            let msgs = sc.step(k as f64 * 60.0, T0_MS + k * 1000);
            clean.extend(msgs.iter().cloned());
            faulty.extend(inj.apply(msgs));
        }
        (clean, faulty, inj.counts)
    }

    fn ts_ms(m: &Msg) -> Option<i64> {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
        rfc3339_ms(v.get("ts")?.as_str()?).ok()
    }

    #[test]
    fn names_parse_and_unknown_ones_are_refused() {
        let f: Faults = "duplicates, seq-gap".parse().expect("faults");
        assert!(f.duplicates && f.seq_gap && !f.late);
        assert_eq!(f.rate, 0.05);
        let all: Faults = "all".parse().expect("faults");
        assert!(all.duplicates && all.out_of_order && all.late && all.future);
        assert!(all.malformed && all.silent && all.seq_gap);
        let e = "duplicates,typo".parse::<Faults>().expect_err("refused");
        assert!(e.contains("\"typo\"") && e.contains("seq-gap"), "{e}");
        assert!(!Faults::default().any());
    }

    #[test]
    fn no_faults_change_nothing() {
        let (clean, faulty, counts) = run("", 0.5, 1);
        assert_eq!(clean, faulty);
        assert_eq!(counts, FaultCounts::default());
    }

    #[test]
    fn each_fault_does_what_it_says_and_repeats_with_its_seed() {
        let (clean, faulty, counts) = run("duplicates", 0.1, 1);
        assert_eq!(faulty.len() as u64, clean.len() as u64 + counts.duplicated);
        assert!(faulty.windows(2).filter(|w| w[0] == w[1]).count() as u64 >= counts.duplicated);
        assert!(counts.duplicated > 100);

        let (clean, faulty, counts) = run("seq-gap", 0.1, 1);
        assert_eq!(faulty.len() as u64, clean.len() as u64 - counts.seq_skipped);
        assert!(counts.seq_skipped > 100);
        assert!(
            faulty
                .iter()
                .filter(|m| m.topic.ends_with("/obs"))
                .all(|m| serde_json::from_slice::<SensorObsMsg>(&m.payload).is_ok())
        );

        let (_, faulty, counts) = run("future,late", 0.1, 1);
        assert!(counts.future > 100 && counts.late > 100);
        let mut ahead = 0;
        let mut behind = 0;
        let mut wall = T0_MS;
        for m in &faulty {
            let Some(ts) = ts_ms(m) else { continue };
            if m.topic.ends_with("/pos") {
                let p: UnitPosMsg = serde_json::from_slice(&m.payload).expect("pos");
                assert!(p.lat.is_finite());
            }
            if ts >= wall + SHIFT_MS - 2_000 {
                ahead += 1;
            } else if ts <= wall - SHIFT_MS + 2_000 {
                behind += 1;
            } else {
                wall = wall.max(ts);
            }
        }
        assert!(ahead > 50 && behind > 50, "{ahead} ahead, {behind} behind");

        let (_, faulty, counts) = run("malformed", 0.1, 1);
        let broken = faulty
            .iter()
            .filter(|m| {
                serde_json::from_slice::<serde_json::Value>(&m.payload).is_err()
                    && !m.payload.is_empty()
            })
            .count() as u64;
        assert_eq!(broken, counts.malformed);
        assert!(broken > 100);
        // Descriptions and incidents are never touched.
        assert!(
            faulty
                .iter()
                .filter(|m| m.retain && !m.payload.is_empty())
                .all(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).is_ok())
        );

        let (clean, faulty, counts) = run("out-of-order", 0.1, 1);
        // Nothing lost: only what the last step held back is still held.
        assert!(faulty.len() <= clean.len() && clean.len() - faulty.len() < 40);
        assert!(counts.reordered > 100);
        let mut back_in_time = 0;
        let mut newest = std::collections::HashMap::<&str, i64>::new();
        for m in &faulty {
            if let Some(ts) = ts_ms(m) {
                let n = newest.entry(m.topic.as_str()).or_insert(i64::MIN);
                if ts < *n {
                    back_in_time += 1;
                }
                *n = (*n).max(ts);
            }
        }
        assert!(back_in_time > 50, "{back_in_time}");

        let (_, faulty, counts) = run("silent", 0.3, 1);
        assert!(counts.silenced_sources >= 3, "{counts:?}");
        let mut per_source = std::collections::HashMap::<String, usize>::new();
        for m in faulty.iter().filter(|m| !m.retain) {
            let source = m.topic.rsplit_once('/').map_or("", |(s, _)| s).to_owned();
            *per_source.entry(source).or_default() += 1;
        }
        let quiet = per_source
            .values()
            .filter(|n| **n <= SILENT_AFTER as usize)
            .count() as u64;
        assert_eq!(quiet, counts.silenced_sources);

        // The same seed, the same faults; another seed, others.
        assert_eq!(run("all", 0.05, 9).1, run("all", 0.05, 9).1);
        assert_ne!(run("all", 0.05, 9).1, run("all", 0.05, 10).1);
    }
}
