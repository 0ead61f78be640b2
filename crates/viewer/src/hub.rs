//! The hub: the viewer's only way to the pictures.
//!
//! The viewer never owns a picture. Each space's picture lives in the owner
//! task of the composition root, which broadcasts one [`Delta`] per tick and
//! answers [`Request`]s. A broadcast channel is a bounded ring shared by all
//! clients: a client that falls behind gets `Lagged`, never slows the owner,
//! and resyncs with a fresh snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use fusion::{Delta, Snapshot, Viewport};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot};

/// One space as the viewer sees it.
#[derive(Debug, Clone)]
pub struct SpaceHandle {
    /// `live` or `drill-<name>`.
    pub name: String,
    /// Shown as EXERCISE.
    pub drill: bool,
    /// The space's deltas.
    pub deltas: broadcast::Sender<Arc<Delta>>,
}

/// A snapshot with the picture's digest.
#[derive(Debug, Clone)]
pub struct SnapshotReply {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Hex SHA-256 of the picture's canonical content.
    pub digest: String,
}

/// What the viewer asks the owner task.
#[derive(Debug)]
pub enum Request {
    /// Open (create if new) a space.
    Open {
        /// The space (already validated).
        space: String,
        /// Gets the handle.
        reply: oneshot::Sender<SpaceHandle>,
    },
    /// A snapshot of a viewport, consistent with the deltas' seq.
    Snapshot {
        /// The space.
        space: String,
        /// The viewport.
        viewport: Viewport,
        /// Gets the snapshot, or None when the space does not exist.
        reply: oneshot::Sender<Option<SnapshotReply>>,
    },
    /// Everything in a space as one delta (every cell at every
    /// resolution): what a fusion shard publishes for its gateways.
    Export {
        /// The space.
        space: String,
        /// Gets the picture, or None when the space does not exist.
        reply: oneshot::Sender<Option<Delta>>,
    },
    /// Remove a unit or sensor (operator decision).
    Remove {
        /// The space.
        space: String,
        /// Unit or sensor.
        kind: fusion::EntityKind,
        /// Its id.
        id: String,
        /// Who (a token's name).
        actor: Option<String>,
        /// Gets the outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// An operator's report in the MQTT contract (an incident), decoded
    /// and handled like a message from the broker.
    Submit {
        /// The space.
        space: String,
        /// The topic it would have had.
        topic: String,
        /// The payload.
        payload: Vec<u8>,
        /// Who (a token's name).
        actor: Option<String>,
        /// Gets the outcome: refused by the decoder or the picture.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The picture as it was at a past time, rebuilt from the event log.
    History {
        /// The space.
        space: String,
        /// The time, epoch milliseconds.
        at_ms: i64,
        /// The viewport.
        viewport: Viewport,
        /// Gets the snapshot, or why there is none.
        reply: oneshot::Sender<Result<SnapshotReply, HubError>>,
    },
    /// The newest entries of a space's mission log, oldest first.
    MissionLog {
        /// The space.
        space: String,
        /// At most this many.
        limit: usize,
        /// Gets the entries.
        reply: oneshot::Sender<Result<Vec<fusion::JournalEntry>, String>>,
    },
    /// How far back the space's event log reaches.
    HistoryRange {
        /// The space.
        space: String,
        /// Gets (first, now) in epoch ms, or why there is none.
        reply: oneshot::Sender<Result<(i64, i64), String>>,
    },
    /// Empty a drill space's picture (its log is kept aside).
    Reset {
        /// The space (a drill).
        space: String,
        /// Who (a token's name).
        actor: Option<String>,
        /// Gets the outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Acknowledge an alert.
    Ack {
        /// The space.
        space: String,
        /// Alert id.
        alert: String,
        /// Who (a token's name).
        actor: Option<String>,
        /// Gets the outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Why the hub could not answer.
#[derive(Debug, Error, PartialEq)]
pub enum HubError {
    /// Not `live` or `drill-<name>`.
    #[error(
        "invalid space {0:?}: must be \"live\" or \"drill-<name>\" with [a-z0-9-], at most 32 characters"
    )]
    InvalidSpace(String),
    /// No such space (yet).
    #[error("no space {0:?}")]
    UnknownSpace(String),
    /// The owner task is gone (shutting down).
    #[error("the picture is shutting down")]
    Closed,
    /// The owner refused the request.
    #[error("{0}")]
    Refused(String),
    /// Too much of this kind of work under way; try again shortly.
    #[error("{0}")]
    Busy(String),
}

/// Refuses a name that is not `live` or `drill-<name>`, quoting (the
/// start of) it.
fn check_space(space: &str) -> Result<(), HubError> {
    if fusion::space::is_valid_space(space) {
        Ok(())
    } else {
        Err(HubError::InvalidSpace(space.chars().take(40).collect()))
    }
}

/// Space listing entry.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceInfo {
    /// Name.
    pub name: String,
    /// Drill or live.
    pub drill: bool,
}

/// The viewer's handle on all spaces.
#[derive(Debug)]
pub struct Hub {
    requests: mpsc::Sender<Request>,
    spaces: RwLock<BTreeMap<String, SpaceHandle>>,
}

impl Hub {
    /// A hub sending requests to the owner task.
    pub fn new(requests: mpsc::Sender<Request>) -> Arc<Hub> {
        Arc::new(Hub {
            requests,
            spaces: RwLock::new(BTreeMap::new()),
        })
    }

    /// Registers a space (called by the owner task when it creates one).
    pub fn register(&self, handle: SpaceHandle) {
        if let Ok(mut spaces) = self.spaces.write() {
            spaces.insert(handle.name.clone(), handle);
        }
    }

    /// The spaces that exist.
    pub fn list(&self) -> Vec<SpaceInfo> {
        self.spaces
            .read()
            .map(|s| {
                s.values()
                    .map(|h| SpaceInfo {
                        name: h.name.clone(),
                        drill: h.drill,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn get(&self, space: &str) -> Option<SpaceHandle> {
        self.spaces.read().ok()?.get(space).cloned()
    }

    /// Sends a request built around a fresh reply channel and waits for the
    /// answer; `Closed` when the owner task is gone.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, HubError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(request(reply))
            .await
            .map_err(|_| HubError::Closed)?;
        rx.await.map_err(|_| HubError::Closed)
    }

    /// The handle of `space`, creating the space if it is new.
    pub async fn open(&self, space: &str) -> Result<SpaceHandle, HubError> {
        check_space(space)?;
        if let Some(h) = self.get(space) {
            return Ok(h);
        }
        self.ask(|reply| Request::Open {
            space: space.to_owned(),
            reply,
        })
        .await
    }

    /// A snapshot of `viewport` in an existing `space`.
    pub async fn snapshot(
        &self,
        space: &str,
        viewport: Viewport,
    ) -> Result<SnapshotReply, HubError> {
        check_space(space)?;
        self.ask(|reply| Request::Snapshot {
            space: space.to_owned(),
            viewport,
            reply,
        })
        .await?
        .ok_or_else(|| HubError::UnknownSpace(space.to_owned()))
    }

    /// Everything in an existing `space` as one delta, consistent with the
    /// deltas' seq (see [`Request::Export`]).
    pub async fn export(&self, space: &str) -> Result<Delta, HubError> {
        check_space(space)?;
        self.ask(|reply| Request::Export {
            space: space.to_owned(),
            reply,
        })
        .await?
        .ok_or_else(|| HubError::UnknownSpace(space.to_owned()))
    }

    /// A snapshot of `viewport` in `space` as it was at `at_ms`.
    pub async fn history(
        &self,
        space: &str,
        at_ms: i64,
        viewport: Viewport,
    ) -> Result<SnapshotReply, HubError> {
        check_space(space)?;
        self.ask(|reply| Request::History {
            space: space.to_owned(),
            at_ms,
            viewport,
            reply,
        })
        .await?
    }

    /// The newest `limit` mission-log entries of `space`.
    pub async fn mission_log(
        &self,
        space: &str,
        limit: usize,
    ) -> Result<Vec<fusion::JournalEntry>, HubError> {
        self.ask(|reply| Request::MissionLog {
            space: space.to_owned(),
            limit,
            reply,
        })
        .await?
        .map_err(HubError::Refused)
    }

    /// (first record, now) of `space`'s event log.
    pub async fn history_range(&self, space: &str) -> Result<(i64, i64), HubError> {
        check_space(space)?;
        self.ask(|reply| Request::HistoryRange {
            space: space.to_owned(),
            reply,
        })
        .await?
        .map_err(HubError::Refused)
    }

    /// Resets a drill space to an empty picture.
    pub async fn reset(&self, space: &str, actor: Option<&str>) -> Result<(), HubError> {
        check_space(space)?;
        if !fusion::space::is_drill(space) {
            return Err(HubError::Refused(format!(
                "{space:?} is not a drill space: only drills can be reset"
            )));
        }
        self.ask(|reply| Request::Reset {
            space: space.to_owned(),
            actor: actor.map(str::to_owned),
            reply,
        })
        .await?
        .map_err(HubError::Refused)
    }

    /// Removes a unit or sensor from a space's picture.
    pub async fn remove(
        &self,
        space: &str,
        kind: fusion::EntityKind,
        id: &str,
        actor: Option<&str>,
    ) -> Result<(), HubError> {
        self.ask(|reply| Request::Remove {
            space: space.to_owned(),
            kind,
            id: id.to_owned(),
            actor: actor.map(str::to_owned),
            reply,
        })
        .await?
        .map_err(HubError::Refused)
    }

    /// Acknowledges an alert.
    pub async fn ack(&self, space: &str, alert: &str, actor: Option<&str>) -> Result<(), HubError> {
        check_space(space)?;
        self.ask(|reply| Request::Ack {
            space: space.to_owned(),
            alert: alert.to_owned(),
            actor: actor.map(str::to_owned),
            reply,
        })
        .await?
        .map_err(HubError::Refused)
    }

    /// Hands an operator's report (MQTT topic and payload) to the picture.
    pub async fn submit(
        &self,
        space: &str,
        topic: String,
        payload: Vec<u8>,
        actor: Option<&str>,
    ) -> Result<(), HubError> {
        check_space(space)?;
        self.ask(|reply| Request::Submit {
            space: space.to_owned(),
            topic,
            payload,
            actor: actor.map(str::to_owned),
            reply,
        })
        .await?
        .map_err(HubError::Refused)
    }
}
