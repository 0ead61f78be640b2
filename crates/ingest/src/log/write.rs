//! Appending to the log: one folder per space, segments rotated by size
//! and age.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_ipc::CompressionType;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use fusion::EpochMs;

use super::batch::{schema, to_batch};
use super::read::segments;
use super::{LogError, Record};

/// Where and how the log is written.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The data folder (`--data`).
    pub dir: PathBuf,
    /// A segment is closed once it holds this many bytes.
    pub segment_bytes: u64,
    /// A segment is closed once it is this old, milliseconds.
    pub segment_ms: i64,
    /// Wait for the disk after every batch (`fsync`), not only for the
    /// operating system: survives a power cut, costs a disk round trip
    /// per batch.
    pub fsync: bool,
}

impl LogConfig {
    /// Defaults (64 MiB or one hour per segment, no fsync) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            segment_ms: 3_600_000,
            fsync: false,
        }
    }
}

/// Counts what passes through to the file.
struct Counting {
    inner: BufWriter<File>,
    written: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Open {
    writer: StreamWriter<Counting>,
    started_ms: EpochMs,
}

struct SpaceLog {
    dir: PathBuf,
    next_index: u64,
    current: Option<Open>,
}

/// The writer of every space's log.
pub struct EventLog {
    config: LogConfig,
    spaces: BTreeMap<String, SpaceLog>,
    options: IpcWriteOptions,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("dir", &self.config.dir)
            .field("spaces", &self.spaces.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EventLog {
    /// A writer into `config.dir` (created if missing).
    pub fn open(config: LogConfig) -> Result<EventLog, LogError> {
        fs::create_dir_all(&config.dir)?;
        let options =
            IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
        Ok(EventLog {
            config,
            spaces: BTreeMap::new(),
            options,
        })
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Appends `records`, all of `space`, as one batch; `now_ms` decides
    /// rotation by age.
    pub fn append(
        &mut self,
        space: &str,
        records: &[Record],
        now_ms: EpochMs,
    ) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        if !fusion::space::is_valid_space(space) {
            return Err(LogError::BadSpace(space.to_owned()));
        }
        let batch = to_batch(records)?;
        let (segment_bytes, segment_ms) = (self.config.segment_bytes, self.config.segment_ms);
        let (options, fsync) = (self.options.clone(), self.config.fsync);
        let log = self.space_log(space)?;
        if log.due(segment_bytes, segment_ms, now_ms) {
            close(log)?;
        }
        if log.current.is_none() {
            let name = format!("{:08}-{}.arrows", log.next_index, now_ms.max(0));
            let file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(log.dir.join(name))?;
            log.next_index += 1;
            let out = Counting {
                inner: BufWriter::with_capacity(256 * 1024, file),
                written: 0,
            };
            let writer = StreamWriter::try_new_with_options(out, &schema(), options)?;
            log.current = Some(Open {
                writer,
                started_ms: now_ms,
            });
        }
        let Some(open) = log.current.as_mut() else {
            unreachable!("opened above")
        };
        open.writer.write(&batch)?;
        open.writer.flush()?;
        if fsync {
            open.writer.get_ref().inner.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn space_log(&mut self, space: &str) -> Result<&mut SpaceLog, LogError> {
        if !self.spaces.contains_key(space) {
            let dir = self.config.dir.join(space);
            fs::create_dir_all(&dir)?;
            let next_index = segments(&dir)?.last().map_or(0, |s| s.index + 1);
            self.spaces.insert(
                space.to_owned(),
                SpaceLog {
                    dir,
                    next_index,
                    current: None,
                },
            );
        }
        self.spaces
            .get_mut(space)
            .ok_or_else(|| LogError::BadSpace(space.to_owned()))
    }

    /// The index of the segment the next append to `space` begins, if it
    /// begins one (the first append since start, or a rotation is due):
    /// the moment to write a checkpoint of the picture, which then holds
    /// exactly the records of the segments before it.
    pub fn begins_segment(
        &mut self,
        space: &str,
        now_ms: EpochMs,
    ) -> Result<Option<u64>, LogError> {
        if !fusion::space::is_valid_space(space) {
            return Err(LogError::BadSpace(space.to_owned()));
        }
        let (segment_bytes, segment_ms) = (self.config.segment_bytes, self.config.segment_ms);
        let log = self.space_log(space)?;
        let opens = log.current.is_none() || log.due(segment_bytes, segment_ms, now_ms);
        Ok(opens.then_some(log.next_index))
    }

    /// The index the next segment of `space` will have (for a checkpoint
    /// at shutdown, after [`EventLog::close`]).
    pub fn next_index(&mut self, space: &str) -> Result<u64, LogError> {
        Ok(self.space_log(space)?.next_index)
    }

    /// Closes `space`'s open segment (a reset drill starts afresh) and
    /// moves its folder aside as `<space>.reset-<now>`, kept for review.
    pub fn reset(&mut self, space: &str, now_ms: EpochMs) -> Result<(), LogError> {
        if !fusion::space::is_valid_space(space) {
            return Err(LogError::BadSpace(space.to_owned()));
        }
        if let Some(mut log) = self.spaces.remove(space) {
            close(&mut log)?;
        }
        let dir = self.config.dir.join(space);
        if dir.exists() {
            fs::rename(
                &dir,
                self.config.dir.join(format!("{space}.reset-{now_ms}")),
            )?;
        }
        Ok(())
    }

    /// Ends every open segment cleanly (graceful shutdown).
    pub fn close(&mut self) -> Result<(), LogError> {
        for log in self.spaces.values_mut() {
            close(log)?;
        }
        Ok(())
    }
}

impl SpaceLog {
    fn due(&self, segment_bytes: u64, segment_ms: i64, now_ms: EpochMs) -> bool {
        self.current.as_ref().is_some_and(|o| {
            o.writer.get_ref().written >= segment_bytes || now_ms - o.started_ms >= segment_ms
        })
    }
}

fn close(log: &mut SpaceLog) -> Result<(), LogError> {
    if let Some(mut open) = log.current.take() {
        open.writer.finish()?;
        open.writer.get_mut().flush()?;
    }
    Ok(())
}
