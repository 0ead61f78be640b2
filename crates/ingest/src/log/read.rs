//! Reading the log back: recovery, replay, time travel, export.
//!
//! A damaged segment (cut short by a crash, or corrupted) is reported with
//! how far it could be read, and reading goes on with the next segment.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::FileWriter;
use fusion::EpochMs;

use super::batch::{for_each_record, schema, to_batch};
use super::{LogError, Record};

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its file.
    pub path: PathBuf,
    /// Its place in the space's log.
    pub index: u64,
    /// Server clock when it was begun.
    pub start_ms: EpochMs,
}

/// The entries of `dir`; none when it does not exist (yet).
fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>, LogError> {
    match fs::read_dir(dir) {
        Ok(e) => Ok(e.collect::<Result<_, _>>()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Files in `dir` named as the log names them, `<prefix><index>-<ms><suffix>`
/// (segments, checkpoints): (index, ms, path), unsorted; others left out.
pub(super) fn numbered_files(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<(u64, EpochMs, PathBuf)>, LogError> {
    let mut found = Vec::new();
    for entry in entries(dir)? {
        let path = entry.path();
        let parsed = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(prefix)?.strip_suffix(suffix))
            .and_then(|n| n.split_once('-'))
            .and_then(|(i, t)| Some((i.parse::<u64>().ok()?, t.parse::<EpochMs>().ok()?)));
        if let Some((index, ms)) = parsed {
            found.push((index, ms, path));
        }
    }
    Ok(found)
}

/// The segments of one space's folder, in order.
pub fn segments(dir: &Path) -> Result<Vec<SegmentInfo>, LogError> {
    let mut found: Vec<SegmentInfo> = numbered_files(dir, "", ".arrows")?
        .into_iter()
        .map(|(index, start_ms, path)| SegmentInfo {
            path,
            index,
            start_ms,
        })
        .collect();
    found.sort_by_key(|s| s.index);
    Ok(found)
}

/// The spaces that have a log under `root`.
pub fn spaces(root: &Path) -> Result<Vec<String>, LogError> {
    let mut names = Vec::new();
    for entry in entries(root)? {
        if let Some(name) = entry.file_name().to_str()
            && entry.file_type()?.is_dir()
            && fusion::space::is_valid_space(name)
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Which records to read, by receive time (inclusive bounds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Nothing received before this.
    pub from_ms: Option<EpochMs>,
    /// Nothing received after this.
    pub to_ms: Option<EpochMs>,
}

impl Window {
    /// Whether a record received at `t` is inside.
    pub fn holds(&self, t: EpochMs) -> bool {
        self.from_ms.is_none_or(|f| t >= f) && self.to_ms.is_none_or(|to| t <= to)
    }
}

/// A segment that could not be read to its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Damage {
    /// The segment.
    pub segment: PathBuf,
    /// Records read from it before the damage.
    pub records_read: u64,
    /// What is wrong.
    pub error: String,
}

/// What reading found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadReport {
    /// Records handed on (inside the window).
    pub records: u64,
    /// Segments opened.
    pub segments: usize,
    /// Segments that ended early or could not be read.
    pub damaged: Vec<Damage>,
}

/// Reads `dir` (one space's folder) in order, calling `f` with every record
/// inside `window`. Damaged segments are reported and skipped past.
pub fn read_space(
    dir: &Path,
    window: Window,
    f: impl FnMut(Record),
) -> Result<ReadReport, LogError> {
    read_space_from(dir, 0, window, f)
}

/// Like [`read_space`], from segment `first` on (the segments before it
/// are in a checkpoint).
pub fn read_space_from(
    dir: &Path,
    first: u64,
    window: Window,
    mut f: impl FnMut(Record),
) -> Result<ReadReport, LogError> {
    let all: Vec<SegmentInfo> = segments(dir)?
        .into_iter()
        .filter(|s| s.index >= first)
        .collect();
    let mut report = ReadReport::default();
    for (i, seg) in all.iter().enumerate() {
        if window.to_ms.is_some_and(|to| seg.start_ms > to) {
            break;
        }
        // A segment ends where the next begins: skip those wholly before
        // the window.
        let next_start = all.get(i + 1).map(|n| n.start_ms);
        if let (Some(from), Some(next)) = (window.from_ms, next_start)
            && next < from
        {
            continue;
        }
        report.segments += 1;
        let mut read = 0u64;
        let mut handed = 0u64;
        // The Arrow reader meets bytes a crash or a disk left behind: a
        // panic in it must cost this segment, not the process.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            read_segment(&seg.path, &mut |r: Record| {
                read += 1;
                if window.holds(r.received_ms()) {
                    handed += 1;
                    f(r);
                }
            })
        }));
        report.records += handed;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the Arrow reader failed on this segment".to_owned()),
        };
        if let Some(error) = error {
            report.damaged.push(Damage {
                segment: seg.path.clone(),
                records_read: read,
                error,
            });
        }
    }
    Ok(report)
}

fn read_segment(path: &Path, f: &mut dyn FnMut(Record)) -> Result<(), LogError> {
    let file = File::open(path)?;
    let reader = StreamReader::try_new(BufReader::with_capacity(256 * 1024, file), None)
        .map_err(|e| LogError::Format(format!("no readable schema: {e}")))?;
    if reader.schema().fields() != schema().fields() {
        return Err(LogError::Format(
            "not a segment of this log (its columns differ)".to_owned(),
        ));
    }
    for batch in reader {
        let batch = batch.map_err(|e| {
            LogError::Format(format!("ends inside a batch (a crash while writing?): {e}"))
        })?;
        for_each_record(&batch, &mut *f)?;
    }
    Ok(())
}

/// Writes the records of `dir` inside `window` to `out` as one Arrow IPC
/// *file* (random access; pyarrow, polars, DuckDB read it), in batches of
/// `batch_rows`. Returns what was read.
pub fn export(dir: &Path, window: Window, out: &Path) -> Result<ReadReport, LogError> {
    const BATCH_ROWS: usize = 64 * 1024;
    let file = File::create(out)?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), &schema())?;
    let mut pending: Vec<Record> = Vec::with_capacity(BATCH_ROWS);
    let mut failure: Option<LogError> = None;
    let report = read_space(dir, window, |r| {
        if failure.is_some() {
            return;
        }
        pending.push(r);
        if pending.len() >= BATCH_ROWS {
            let written = to_batch(&pending).and_then(|b| Ok(writer.write(&b)?));
            pending.clear();
            if let Err(e) = written {
                failure = Some(e);
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !pending.is_empty() {
        writer.write(&to_batch(&pending)?)?;
    }
    writer.finish()?;
    Ok(report)
}
