//! Checkpoints: a picture's state as data, so a restart rebuilds it from
//! the newest checkpoint and only the events logged after it.
//!
//! What a checkpoint holds is the state the events made: every entity as
//! the engine keeps it (with its trend sums, fixes per source, hysteresis
//! level, plausibility state), the alerts and the picture's names in the
//! order they were first seen. What can be derived is rebuilt on restore:
//! the cell index (from each entity's contribution), the area counts (from
//! the units' positions and classes), the open-alert index (from the
//! unacknowledged alerts). A restored picture therefore behaves exactly as
//! the one it was taken from: same digest, and the same answer to every
//! further event (tested against continuing the original).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    Incident, OpenKey, Picture, PictureConfig, Sensor, Unit, incident_area_key, incident_area_name,
};
use crate::EpochMs;
use crate::areas::Presence;
use crate::registry::Registry;
use crate::store::Member;
use crate::view::AlertView;

/// A registry's slots and free list.
type Slots<T> = (Vec<Option<(Arc<str>, T)>>, Vec<u32>);

/// Format version of [`Checkpoint`]; a different one is refused.
pub const CHECKPOINT_VERSION: u32 = 1;

/// A picture's state, serialisable (serde; JSON in the event log's folder).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    version: u32,
    seq: u64,
    last_scan_ms: Option<EpochMs>,
    /// Interned names in id order.
    names: Vec<Arc<str>>,
    /// Each registry's slots (holes included) and free list: entities keep
    /// their slots, so every order by slot is kept too.
    sensors: Slots<Sensor>,
    units: Slots<Unit>,
    incidents: Slots<Incident>,
    alerts: BTreeMap<u64, AlertView>,
    clock_alerts: BTreeMap<u64, AlertView>,
    /// The picture's digest when it was taken, checked on restore.
    digest: String,
}

/// Why a checkpoint could not be restored.
#[derive(Debug, Error, PartialEq)]
pub enum RestoreError {
    /// Written by another format version.
    #[error("checkpoint format {0}, this server reads {CHECKPOINT_VERSION}")]
    Version(u32),
    /// Taken with unflushed changes (a checkpoint is taken after a flush).
    #[error("the picture had unflushed changes when the checkpoint was taken")]
    Unflushed,
    /// The rebuilt picture is not the one saved (another configuration,
    /// or a damaged file).
    #[error("restored digest {got} differs from the checkpoint's {want}")]
    Digest {
        /// The checkpoint's.
        want: String,
        /// The rebuilt picture's.
        got: String,
    },
}

impl Picture {
    /// The picture's state; `None` while changes wait for a flush (take it
    /// right after [`Picture::flush`]).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        if !self.pending.is_empty() || !self.cells.is_settled() {
            return None;
        }
        Some(Checkpoint {
            version: CHECKPOINT_VERSION,
            seq: self.seq,
            last_scan_ms: self.last_scan_ms,
            names: self.names.shared().to_vec(),
            sensors: slots(&self.sensors),
            units: slots(&self.units),
            incidents: slots(&self.incidents),
            alerts: self.alerts.clone(),
            clock_alerts: self.clock_alerts.clone(),
            digest: self.digest(),
        })
    }

    /// The picture a checkpoint was taken of, under `config` (which must be
    /// the configuration it was taken under: the digest check refuses a
    /// picture that came out differently).
    pub fn restore(config: PictureConfig, cp: Checkpoint) -> Result<Picture, RestoreError> {
        if cp.version != CHECKPOINT_VERSION {
            return Err(RestoreError::Version(cp.version));
        }
        let mut p = Picture::new(config);
        for name in &cp.names {
            p.names.intern(name);
        }
        p.sensors = Registry::from_parts(cp.sensors.0, cp.sensors.1);
        p.units = Registry::from_parts(cp.units.0, cp.units.1);
        p.incidents = Registry::from_parts(cp.incidents.0, cp.incidents.1);
        for (slot, _, s) in p.sensors.iter() {
            p.cells.change(Member::Sensor(slot), None, s.contribution());
        }
        for (slot, _, u) in p.units.iter() {
            p.cells.change(Member::Unit(slot), None, u.contribution());
        }
        let presences: Vec<Presence> = p
            .units
            .iter()
            .filter_map(|(_, id, _)| p.presence_always(id))
            .collect();
        // Units in sectors count towards them (`new` set the sectors up
        // before there were units); incident areas count their units as
        // they are inserted below.
        for pres in &presences {
            let _ = p.areas.unit_changed(None, Some(pres));
        }
        for (slot, id, i) in p.incidents.iter() {
            let v = &i.view;
            if let Some(require) = p.config.requirements.get(&v.keyword) {
                let name = incident_area_name(&v.keyword, v.title.as_deref(), &v.id);
                p.areas.insert(
                    &incident_area_key(id),
                    &name,
                    &i.cells,
                    require,
                    presences.iter(),
                );
            }
            let c = i.contribution();
            for cell in &i.cells {
                p.cells
                    .change(Member::Incident(slot), None, Some((*cell, c)));
            }
        }
        for (clocked, alerts) in [(false, &cp.alerts), (true, &cp.clock_alerts)] {
            for (n, a) in alerts.iter().filter(|(_, a)| !a.acked) {
                let key: OpenKey = (
                    clocked,
                    a.kind.as_str().into(),
                    a.entity.as_str().into(),
                    a.related.as_deref().map(Into::into),
                );
                p.open_alerts.entry(key).or_default().push((a.level, *n));
            }
        }
        p.alerts = cp.alerts;
        p.clock_alerts = cp.clock_alerts;
        p.last_scan_ms = cp.last_scan_ms;
        // Settle the rebuilt index; what that flush reports is no news.
        let _ = p.flush(p.last_scan_ms.unwrap_or(0));
        p.seq = cp.seq;
        let got = p.digest();
        if got != cp.digest {
            return Err(RestoreError::Digest {
                want: cp.digest,
                got,
            });
        }
        Ok(p)
    }
}

/// A registry's slots and free list, cloned.
fn slots<T: Clone>(r: &Registry<T>) -> Slots<T> {
    let (slots, free) = r.parts();
    (slots.to_vec(), free.to_vec())
}

/// A plausibility reason, one of the engine's own static strings; read
/// back by matching the known ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reason(pub &'static str);

const REASONS: [&str; 5] = [
    "out_of_range",
    "spike",
    "flat_line",
    "after_suspect",
    "neighbours_disagree",
];

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl Reason {
    /// The engine's own reason spelled `text`, if it is one.
    pub(crate) fn known(text: &str) -> Option<Reason> {
        REASONS.iter().find(|k| **k == text).map(|k| Reason(k))
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let r = String::deserialize(d)?;
        Reason::known(&r)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown quality reason {r:?}")))
    }
}
