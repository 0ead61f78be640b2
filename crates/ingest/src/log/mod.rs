//! The event log (DESIGN §6): every accepted event, and every operator's
//! action, appended to Arrow IPC segments before it changes the picture.
//!
//! Layout: one folder per space under the data folder
//! (`DATA/live/`, `DATA/drill-x/`), so a replay into a drill space is never
//! recorded into the live log. Each folder holds segments named
//! `<index>-<first received ms>.arrows`, each an Arrow IPC *stream* (schema,
//! then record batches; appending needs no footer, and a segment cut short
//! by a crash is still readable up to its last whole batch). Segments
//! rotate by size and age; a restarted writer always begins a new one.
//!
//! The writer does no waiting of its own: the owner task calls it with the
//! events it is about to apply, one batch per call, and the data is in the
//! operating system's hands (or on disk, with `fsync`) when it returns.

mod batch;
mod checkpoint;
mod mission;
mod read;
mod record;
mod retention;
mod write;

pub use batch::{col, for_each_record, schema, to_batch};
pub use checkpoint::{
    CheckpointFile, CheckpointInfo, checkpoints, read_checkpoint, write_checkpoint,
};
pub use mission::{MISSION_LOG_FILE, MissionLog};
pub use read::{
    Damage, ReadReport, SegmentInfo, Window, export, read_space, read_space_from, segments, spaces,
};
pub use record::{AlertAbout, Op, OpRecord, Record, Removed, native_topic};
pub use retention::{Pruned, prune};
pub use write::{EventLog, LogConfig};

use thiserror::Error;

/// What can go wrong with the log.
#[derive(Debug, Error)]
pub enum LogError {
    /// A file could not be read or written.
    #[error("event log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Arrow refused a batch or a stream.
    #[error("event log Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A payload column held JSON that is not a record.
    #[error("event log payload: {0}")]
    Json(#[from] serde_json::Error),
    /// The file is not a segment of this log's format.
    #[error("event log format: {0}")]
    Format(String),
    /// A space name that is not `live` or `drill-<name>`.
    #[error("not a space name: {0:?}")]
    BadSpace(String),
}

#[cfg(test)]
mod tests;
