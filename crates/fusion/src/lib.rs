//! The RESCUE MATE domain model and fusion engine.
//!
//! This crate owns what the situation picture *is*: the events that change
//! it ([`Event`]), the entities it keeps (sensors, units, incidents, alerts),
//! the H3 cell aggregates they roll up into ([`CellAgg`]), and the engine
//! ([`Picture`]) that applies events and emits one coalesced [`Delta`] per
//! tick.
//!
//! It must stay pure: no I/O, no async runtime, no wall clock. Time is always
//! an argument (`now_ms`), so the same events in the same order give the same
//! picture and the same [`Picture::digest`], live, replayed or in a test.

mod areas;
mod catalogue;
mod cell;
mod coverage;
mod engine;
mod event;
mod fix;
mod freshness;
mod journal;
pub mod mosaic;
mod names;
pub mod regions;
mod registry;
pub mod space;
mod status;
mod store;
mod trend;
mod view;
mod viewport;

pub use areas::Sector;
pub use catalogue::{Catalogue, Checks, KindSpec};
pub use cell::{CellAgg, KindAgg};
pub use engine::checkpoint::{CHECKPOINT_VERSION, Checkpoint, RestoreError};
pub use engine::{
    AckError, EntityKind, Outcome, Picture, PictureConfig, READ_AHEAD, Refusal, RemoveError,
};
pub use event::{
    Envelope, Event, IncidentClosed, IncidentUpsert, SensorMeta, SensorObs, UnitMeta, UnitPos,
    UnitStatus,
};
pub use fix::{SourceConfig, SourceView};
pub use freshness::Freshness;
pub use h3o::{CellIndex, Resolution};
pub use journal::{Journal, JournalEntry};
pub use mosaic::{Mosaic, MosaicError, ShardDelta};
pub use regions::{Ownership, RegionMap};
pub use status::{StatusMeaning, StatusTable};
pub use view::{
    AlertView, CellView, Delta, IncidentView, Quality, SensorView, Snapshot, StatusClass, UnitView,
};
pub use viewport::{Bbox, BboxError, Cut, ViewFilter, Viewport};

/// Milliseconds since the Unix epoch (UTC). Every time in the picture uses it.
pub type EpochMs = i64;
