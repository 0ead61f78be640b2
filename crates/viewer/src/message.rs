//! Server → client messages (DESIGN §5), shared by the websocket and REST.

use fusion::{Delta, Snapshot};
use serde::Serialize;

/// `{"type":"snapshot",…}`.
#[derive(Debug, Serialize)]
pub struct SnapshotMsg<'a> {
    /// Always `snapshot`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The space.
    pub space: &'a str,
    /// Whether the space is a drill (EXERCISE).
    pub drill: bool,
    /// The picture.
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
    /// Hex SHA-256 of the picture's canonical content.
    pub digest: &'a str,
    /// For a picture of the past (`at=`): the time it shows, epoch ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

/// `{"type":"delta",…}`.
#[derive(Debug, Serialize)]
pub struct DeltaMsg<'a> {
    /// Always `delta`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The changes.
    #[serde(flatten)]
    pub delta: &'a Delta,
}

/// `{"type":"error",…}`: the client's message was refused; the connection stays.
#[derive(Debug, Serialize)]
pub struct ErrorMsg<'a> {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What was wrong.
    pub error: &'a str,
}

/// `{"type":"acked",…}`: an acknowledgement went through.
#[derive(Debug, Serialize)]
pub struct AckedMsg<'a> {
    /// Always `acked`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The alert.
    pub alert: &'a str,
}
