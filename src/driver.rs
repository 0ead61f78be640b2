//! The owner task: the one place the pictures live.
//!
//! It receives accepted events from ingest (bounded channel), applies them
//! to the picture of their space, and every tick flushes each picture into
//! one delta that it broadcasts. It also answers the viewer's requests
//! (open a space, snapshot, acknowledge) between events, so snapshots and
//! deltas are always consistent by sequence number.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fusion::{Envelope, Outcome, Picture, PictureConfig, Viewport};
use tokio::sync::{broadcast, mpsc};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};
use viewer::hub::{Hub, Request, SnapshotReply, SpaceHandle};

use ingest::now_ms;

/// Settings of the owner task.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// How often deltas are emitted.
    pub tick: Duration,
    /// Deltas kept for slow clients before they are resynced.
    pub ring: usize,
    /// The engine.
    pub picture: PictureConfig,
}

struct Space {
    picture: Picture,
    handle: SpaceHandle,
}

/// Counters touched per event, looked up once.
struct Counters {
    applied: metrics::Counter,
    duplicate: metrics::Counter,
    outdated: metrics::Counter,
    gaps: metrics::Counter,
    missed: metrics::Counter,
}

impl Counters {
    fn new() -> Counters {
        let events =
            |label: &'static str| metrics::counter!("rm_fusion_events_total", "outcome" => label);
        Counters {
            applied: events("applied"),
            duplicate: events("duplicate"),
            outdated: events("outdated"),
            gaps: metrics::counter!("rm_fusion_seq_gaps_total"),
            missed: metrics::counter!("rm_fusion_seq_missed_total"),
        }
    }
}

/// Events taken from ingest's channel at a time.
const BATCH: usize = 256;

/// Owns every space's picture.
pub struct Driver {
    config: DriverConfig,
    hub: Arc<Hub>,
    spaces: BTreeMap<String, Space>,
    counters: Counters,
}

impl Driver {
    /// A driver with the `live` space open.
    pub fn new(config: DriverConfig, hub: Arc<Hub>) -> Driver {
        let mut d = Driver {
            config,
            hub,
            spaces: BTreeMap::new(),
            counters: Counters::new(),
        };
        d.open(fusion::space::LIVE);
        d
    }

    fn open(&mut self, name: &str) -> &mut Space {
        if !self.spaces.contains_key(name) {
            let (deltas, _) = broadcast::channel(self.config.ring.max(1));
            let handle = SpaceHandle {
                name: name.to_owned(),
                drill: fusion::space::is_drill(name),
                deltas,
            };
            self.hub.register(handle.clone());
            info!(space = name, drill = handle.drill, "space opened");
            metrics::gauge!("rm_spaces").increment(1.0);
            self.spaces.insert(
                name.to_owned(),
                Space {
                    picture: Picture::new(self.config.picture.clone()),
                    handle,
                },
            );
        }
        let Some(space) = self.spaces.get_mut(name) else {
            unreachable!("inserted above")
        };
        space
    }

    fn apply(&mut self, env: &Envelope, now: i64) {
        let space = self.open(&env.space);
        match space.picture.apply(env, now) {
            Ok(outcome) => {
                let c = &self.counters;
                match outcome {
                    Outcome::Applied => c.applied.increment(1),
                    Outcome::Gap(missed) => {
                        c.gaps.increment(1);
                        c.missed.increment(missed);
                        c.applied.increment(1);
                    }
                    Outcome::Duplicate => c.duplicate.increment(1),
                    Outcome::Outdated => c.outdated.increment(1),
                }
            }
            Err(refusal) => {
                metrics::counter!("rm_fusion_refused_total", "reason" => refusal.reason())
                    .increment(1);
                warn!(space = %env.space, entity = env.event.entity_id(), %refusal, "event refused by fusion");
            }
        }
    }

    fn flush(space: &mut Space, now: i64) {
        if let Some(delta) = space.picture.flush(now) {
            metrics::counter!("rm_fusion_deltas_total").increment(1);
            // No receivers is fine: nobody is watching this space.
            let _ = space.handle.deltas.send(Arc::new(delta));
        }
    }

    fn tick(&mut self) {
        let now = now_ms();
        for space in self.spaces.values_mut() {
            Self::flush(space, now);
        }
    }

    fn request(&mut self, req: Request) {
        match req {
            Request::Open { space, reply } => {
                let handle = self.open(&space).handle.clone();
                let _ = reply.send(handle);
            }
            Request::Snapshot {
                space,
                viewport,
                reply,
            } => {
                let now = now_ms();
                let answer = self.spaces.get_mut(&space).map(|s| {
                    // Flush first, so the snapshot's seq covers every event
                    // applied so far and the next delta continues from it.
                    Self::flush(s, now);
                    let vp = Viewport {
                        bbox: viewport.bbox,
                        res: s.picture.nearest_resolution(u8::from(viewport.res)),
                    };
                    SnapshotReply {
                        snapshot: s.picture.snapshot(&vp, now),
                        digest: s.picture.digest(),
                    }
                });
                let _ = reply.send(answer);
            }
            Request::Remove {
                space,
                kind,
                id,
                reply,
            } => {
                let result = match self.spaces.get_mut(&space) {
                    Some(s) => s.picture.remove(kind, &id).map_err(|e| e.to_string()),
                    None => Err(format!("no space {space:?}")),
                };
                let _ = reply.send(result);
            }
            Request::Ack {
                space,
                alert,
                reply,
            } => {
                let result = match self.spaces.get_mut(&space) {
                    Some(s) => s.picture.ack(&alert).map_err(|e| e.to_string()),
                    None => Err(format!("no space {space:?}")),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Runs until `shutdown` resolves or ingest and the viewer both hang up.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Envelope>,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => self.tick(),
                n = events.recv_many(&mut batch, BATCH), if !events.is_closed() || !events.is_empty() => {
                    if n == 0 {
                        continue;
                    }
                    let now = now_ms();
                    for env in batch.drain(..) {
                        self.apply(&env, now);
                    }
                }
                Some(req) = requests.recv() => self.request(req),
                else => break,
            }
        }
        self.tick();
    }
}
