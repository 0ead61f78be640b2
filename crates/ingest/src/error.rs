//! Ingest's errors: one enum for why a message was refused, with a stable
//! reason name per variant for metrics labels.

use thiserror::Error;

use crate::route::Format;

/// Why an incoming message was refused. Refused messages change nothing;
/// each is counted by [`DecodeError::reason`] and dead-lettered.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    /// Payload larger than the limit.
    #[error("payload of {0} bytes exceeds the limit of {limit} bytes", limit = crate::wire::MAX_PAYLOAD_BYTES)]
    TooLarge(usize),
    /// Topic not of the native contract.
    #[error("unknown topic {0}")]
    Topic(String),
    /// Space not `live` or `drill-<name>`.
    #[error(
        "invalid space {0:?}: must be \"live\" or \"drill-\" followed by [a-z0-9-], at most 32 characters"
    )]
    Space(String),
    /// Entity id not `[A-Za-z0-9._-]{{1,64}}`.
    #[error("invalid id {0:?}: must match [A-Za-z0-9._-]{{1,64}}")]
    Id(String),
    /// Not JSON, or not the expected shape.
    #[error("invalid payload: {0}")]
    Json(String),
    /// Timestamp unparsable.
    #[error("invalid timestamp: {0}")]
    Timestamp(String),
    /// Timestamp too far ahead of the server clock.
    #[error("timestamp {ahead_ms} ms in the future (tolerance {tolerance_ms} ms)")]
    Future {
        /// How far ahead.
        ahead_ms: i64,
        /// Allowed.
        tolerance_ms: i64,
    },
    /// A number outside its range, or not finite.
    #[error("{field} out of range: {value}")]
    Range {
        /// Which field.
        field: &'static str,
        /// The offending value, as text.
        value: String,
    },
    /// Geometry is not valid GeoJSON of a supported type.
    #[error("invalid geometry: {0}")]
    Geometry(String),
    /// Published on our own output topic.
    #[error("dead-letter topic is output only")]
    OwnOutput,
    /// A foreign-format payload that is not valid in its format.
    #[error("invalid {format} payload: {why}")]
    Malformed {
        /// The format the topic pattern selected.
        format: Format,
        /// What is wrong.
        why: String,
    },
    /// A SensorThings Datastream the config does not describe.
    #[error(
        "SensorThings Datastream {0:?} is not configured: add it to [[formats.datastreams]] with its sensor id, kind and unit"
    )]
    UnknownDatastream(String),
    /// A CAP alert whose areas have no polygon or circle (geocodes only).
    #[error("CAP alert cannot be located: {0}")]
    Unlocated(String),
    /// A CAP exercise on the live space.
    #[error("CAP alert with status Exercise on the live space: exercises belong in a drill space")]
    ExerciseInLive,
    /// Understood, and deliberately not used: not an error, not
    /// dead-lettered, counted as ignored with this reason.
    #[error("ignored: {0}")]
    Ignored(&'static str),
}

impl DecodeError {
    /// A short stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::Topic(_) => "bad_topic",
            DecodeError::Space(_) => "bad_space",
            DecodeError::Id(_) => "bad_id",
            DecodeError::Json(_) => "bad_json",
            DecodeError::Timestamp(_) => "bad_timestamp",
            DecodeError::Future { .. } => "future_timestamp",
            DecodeError::Range { .. } => "out_of_range",
            DecodeError::Geometry(_) => "bad_geometry",
            DecodeError::OwnOutput => "own_output",
            DecodeError::Malformed { format, .. } => match format {
                Format::Senml => "bad_senml",
                Format::Cot => "bad_cot",
                Format::Cap => "bad_cap",
                Format::Sensorthings => "bad_sensorthings",
            },
            DecodeError::UnknownDatastream(_) => "unknown_datastream",
            DecodeError::ExerciseInLive => "exercise_in_live",
            DecodeError::Unlocated(_) => "cap_geocode_only",
            DecodeError::Ignored(reason) => reason,
        }
    }
}
