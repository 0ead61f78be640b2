//! What the event log holds: accepted events and operators' actions, in
//! the order the picture applied them.

use fusion::{EntityKind, Envelope, EpochMs, Event};
use serde::{Deserialize, Serialize};

use crate::wire;

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An event ingest accepted.
    Event(Envelope),
    /// An operator's action on a picture (it changes the picture too, so
    /// recovery and replay must see it in its place).
    Op(OpRecord),
}

/// An operator's action, with when and by whom.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRecord {
    /// The space whose picture it changed.
    pub space: String,
    /// Server clock when it was applied.
    pub at_ms: EpochMs,
    /// Who did it (a token's name once access tokens exist).
    pub actor: Option<String>,
    /// What was done.
    pub op: Op,
}

/// What an operator did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Acknowledged an alert.
    Ack {
        /// The alert's id.
        alert: String,
        /// What a clock alert (`S…`) was about: the clock raises those at
        /// tick times the log does not hold, so on replay their ids can
        /// differ and the acknowledgement finds its alert by this instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        about: Option<AlertAbout>,
    },
    /// Removed an entity from the picture.
    Remove {
        /// Unit or sensor.
        entity: Removed,
        /// Its id.
        id: String,
    },
}

/// What an alert is about: its kind, entity and related entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertAbout {
    /// e.g. `stale_source`.
    pub kind: String,
    /// The entity.
    pub entity: String,
    /// A second entity, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<String>,
}

/// Which kind of entity a removal was about (serialisable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removed {
    /// A unit.
    Unit,
    /// A sensor.
    Sensor,
}

impl From<EntityKind> for Removed {
    fn from(k: EntityKind) -> Removed {
        match k {
            EntityKind::Unit => Removed::Unit,
            EntityKind::Sensor => Removed::Sensor,
        }
    }
}

impl From<Removed> for EntityKind {
    fn from(k: Removed) -> EntityKind {
        match k {
            Removed::Unit => EntityKind::Unit,
            Removed::Sensor => EntityKind::Sensor,
        }
    }
}

impl Op {
    /// The `kind` column of this action.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Ack { .. } => "ack",
            Op::Remove {
                entity: Removed::Unit,
                ..
            } => "remove_unit",
            Op::Remove {
                entity: Removed::Sensor,
                ..
            } => "remove_sensor",
        }
    }

    /// The `entity` column: the alert or entity it is about.
    pub fn entity(&self) -> &str {
        match self {
            Op::Ack { alert, .. } => alert,
            Op::Remove { id, .. } => id,
        }
    }
}

impl Record {
    /// The space the record belongs to.
    pub fn space(&self) -> &str {
        match self {
            Record::Event(e) => &e.space,
            Record::Op(o) => &o.space,
        }
    }

    /// Server clock when it was received (events) or applied (actions).
    pub fn received_ms(&self) -> EpochMs {
        match self {
            Record::Event(e) => e.received_ms,
            Record::Op(o) => o.at_ms,
        }
    }

    /// The same record in another space (replay into a drill space).
    pub fn into_space(mut self, space: &str) -> Record {
        match &mut self {
            Record::Event(e) => space.clone_into(&mut e.space),
            Record::Op(o) => space.clone_into(&mut o.space),
        }
        self
    }
}

/// The native-contract topic (DESIGN §3) an event maps to, whatever
/// format it arrived in.
pub fn native_topic(space: &str, e: &Event) -> String {
    match e {
        Event::SensorMeta(m) => wire::sensor_meta_topic(space, &m.id),
        Event::SensorObs(o) => wire::sensor_obs_topic(space, &o.id),
        Event::UnitMeta(m) => wire::unit_meta_topic(space, &m.id),
        Event::UnitPos(p) => wire::unit_pos_topic(space, &p.id),
        Event::UnitStatus(s) => wire::unit_status_topic(space, &s.id),
        Event::Incident(i) => wire::incident_topic(space, &i.id),
        Event::IncidentClosed(c) => wire::incident_topic(space, &c.id),
    }
}
