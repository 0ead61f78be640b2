//! Checkpoint files: a picture's state beside its space's segments, so a
//! restart replays only the segments after the newest one.
//!
//! `checkpoint-<index>.json` holds the picture after every record of the
//! segments before segment `<index>` (it is written just before that
//! segment begins, and at a clean shutdown for the segment that would come
//! next). Written to a temporary name and renamed, so a crash leaves
//! either the old set or the new one, never half a file.

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use fusion::{Checkpoint, EpochMs};
use serde::{Deserialize, Serialize};

use super::LogError;
use super::read::numbered_files;

/// One checkpoint file.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// The first segment not in it.
    pub segment: u64,
    /// Server clock when it was taken.
    pub at_ms: EpochMs,
    /// The picture.
    pub picture: Checkpoint,
}

fn name(segment: u64, at_ms: EpochMs) -> String {
    format!("checkpoint-{segment:08}-{at_ms}.json")
}

/// Writes `file` into `space_dir` (atomically: temporary file, rename).
pub fn write_checkpoint(space_dir: &Path, file: &CheckpointFile) -> Result<PathBuf, LogError> {
    fs::create_dir_all(space_dir)?;
    let path = space_dir.join(name(file.segment, file.at_ms));
    let tmp = space_dir.join(format!("{}.tmp", name(file.segment, file.at_ms)));
    let mut out = BufWriter::new(fs::File::create(&tmp)?);
    serde_json::to_writer(&mut out, file)?;
    out.flush()?;
    out.get_ref().sync_data()?;
    drop(out);
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// A checkpoint file found in a folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckpointInfo {
    /// The first segment not in it.
    pub segment: u64,
    /// When it was taken.
    pub at_ms: EpochMs,
    /// Its file.
    pub path: PathBuf,
}

/// The checkpoints in `space_dir`, oldest first.
pub fn checkpoints(space_dir: &Path) -> Result<Vec<CheckpointInfo>, LogError> {
    let mut found: Vec<CheckpointInfo> = numbered_files(space_dir, "checkpoint-", ".json")?
        .into_iter()
        .map(|(segment, at_ms, path)| CheckpointInfo {
            segment,
            at_ms,
            path,
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Reads a checkpoint file.
pub fn read_checkpoint(path: &Path) -> Result<CheckpointFile, LogError> {
    let f = fs::File::open(path)?;
    Ok(serde_json::from_reader(BufReader::with_capacity(
        256 * 1024,
        f,
    ))?)
}
