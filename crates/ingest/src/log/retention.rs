//! Retention: the event log holds vehicle positions and call signs, so it
//! is not kept forever. Whole segments that ended before the cut-off go,
//! but only up to a checkpoint that makes them unnecessary: recovery (the
//! newest checkpoint plus what follows it) never misses anything, and
//! time travel reaches back to the oldest segment kept.

use std::fs;
use std::path::Path;

use fusion::EpochMs;

use super::LogError;
use super::checkpoint::checkpoints;
use super::read::segments;

/// What one pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Segment files removed.
    pub segments: usize,
    /// Checkpoints removed (those that needed a removed segment).
    pub checkpoints: usize,
}

/// Removes from one space's folder the segments that ended before
/// `cutoff_ms` (a segment ends when the next one begins) and lie before a
/// checkpoint, and the checkpoints older than that one.
pub fn prune(space_dir: &Path, cutoff_ms: EpochMs) -> Result<Pruned, LogError> {
    let segs = segments(space_dir)?;
    let points = checkpoints(space_dir)?;
    // The newest checkpoint k whose segments before it all ended in time:
    // segment k begun before the cut-off means segment k-1 ended then.
    let keep_from = points
        .iter()
        .filter(|c| {
            segs.iter()
                .find(|s| s.index == c.segment)
                .is_some_and(|s| s.start_ms <= cutoff_ms)
        })
        .map(|c| c.segment)
        .max();
    let Some(keep_from) = keep_from else {
        return Ok(Pruned::default());
    };
    let mut done = Pruned::default();
    for s in segs.iter().filter(|s| s.index < keep_from) {
        fs::remove_file(&s.path)?;
        done.segments += 1;
    }
    for c in points.iter().filter(|c| c.segment < keep_from) {
        fs::remove_file(&c.path)?;
        done.checkpoints += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        fs::write(dir.join(name), b"x").expect("write");
    }

    #[test]
    fn only_segments_a_checkpoint_covers_and_that_ended_in_time_go() {
        let dir = std::env::temp_dir().join(format!("rm-retention-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        // Segments begun at 1000, 2000, 3000, 4000; checkpoints before 2 and 4.
        for (i, ms) in [(0, 1000), (1, 2000), (2, 3000), (3, 4000)] {
            touch(&dir, &format!("{i:08}-{ms}.arrows"));
        }
        touch(&dir, "checkpoint-00000002-2999.json");
        touch(&dir, "checkpoint-00000003-3999.json");
        let names = || {
            let mut v: Vec<String> = fs::read_dir(&dir)
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        // Nothing ended before 1500 (segment 1 begun at 2000 closes 0).
        assert_eq!(prune(&dir, 1500).expect("prune"), Pruned::default());
        // By 3500: segments 0 and 1 ended; checkpoint 2 covers them.
        assert_eq!(
            prune(&dir, 3500).expect("prune"),
            Pruned {
                segments: 2,
                checkpoints: 0
            }
        );
        assert_eq!(
            names(),
            [
                "00000002-3000.arrows",
                "00000003-4000.arrows",
                "checkpoint-00000002-2999.json",
                "checkpoint-00000003-3999.json"
            ]
        );
        // Far later: up to the newest checkpoint; the open segment stays.
        assert_eq!(
            prune(&dir, 10_000).expect("prune"),
            Pruned {
                segments: 1,
                checkpoints: 1
            }
        );
        assert_eq!(
            names(),
            ["00000003-4000.arrows", "checkpoint-00000003-3999.json"]
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
