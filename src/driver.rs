//! The owner task: the one place the pictures live.
//!
//! It receives accepted events from ingest (bounded channel), writes them
//! to the event log, then applies them to the picture of their space
//! (write-ahead), and every tick flushes each picture into one delta that
//! it broadcasts. It also answers the viewer's requests (open a space,
//! snapshot, acknowledge, a picture of the past) between events, so
//! snapshots and deltas are always consistent by sequence number.
//!
//! The log is written here rather than in the ingest loop so that it holds
//! events and operators' actions in exactly the order the picture applied
//! them: that order is what makes a recovered or replayed picture's digest
//! equal the original's. Ingest acknowledges a message to the broker only
//! once [`Driver::logged`] has counted its events.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use fusion::{Envelope, Journal, JournalEntry, Outcome, Picture, PictureConfig, Viewport};
use ingest::log::{self, EventLog, MissionLog, Op, OpRecord, Record, Window};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn};
use viewer::hub::{Hub, HubError, Request, SnapshotReply, SpaceHandle};

use ingest::now_ms;

/// The pictures' clock.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The server's wall clock.
    #[default]
    Wall,
    /// Driven by a replayed log: the receive time of the record replayed
    /// last.
    Log(Arc<AtomicI64>),
}

impl Clock {
    /// Now, epoch milliseconds.
    pub fn now(&self) -> i64 {
        match self {
            Clock::Wall => now_ms(),
            Clock::Log(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// Settings of the owner task.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// How often deltas are emitted.
    pub tick: Duration,
    /// Deltas kept for slow clients before they are resynced.
    pub ring: usize,
    /// The engine.
    pub picture: PictureConfig,
    /// What "now" is.
    pub clock: Clock,
    /// Event log segments older than this are deleted at rotation, ms;
    /// 0 keeps everything.
    pub retention_ms: i64,
    /// How the delta interval stretches when many clients watch.
    pub pacing: Pacing,
}

/// How often deltas go out when many clients watch. Every delta costs
/// each watching client a cut, a frame and a send: with a thousand
/// clients that is 20,000 frames a second at a 50 ms tick, whatever the
/// event rate. Beyond `frames_per_s` (all clients together) the deltas
/// are emitted every few ticks instead, each covering those ticks, up to
/// `max_interval`; nothing is dropped, each client still gets every seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Delta frames per second, all watching clients together, up to
    /// which a delta goes out every tick; 0: every tick, always.
    pub frames_per_s: u32,
    /// The longest interval between deltas it stretches to.
    pub max_interval: Duration,
}

impl Default for Pacing {
    /// `[fusion]`'s defaults.
    fn default() -> Self {
        Pacing::of(&crate::config::FusionConfig::default())
    }
}

impl Pacing {
    /// The pacing `[fusion]` configures.
    pub fn of(fusion: &crate::config::FusionConfig) -> Pacing {
        Pacing {
            frames_per_s: fusion.frames_per_s,
            max_interval: Duration::from_millis(fusion.max_tick_ms),
        }
    }

    /// [`Pacing::ticks_per_delta`] for the websocket receivers of all
    /// `spaces` together, also shown as the gauge `rm_delta_interval_ms`
    /// (the server's owner task and the gateway).
    pub(crate) fn ticks_per_delta_shown<'a>(
        &self,
        spaces: impl Iterator<Item = &'a SpaceHandle>,
        tick: Duration,
    ) -> u32 {
        let watchers = spaces.map(|s| s.deltas.receiver_count()).sum();
        let every = self.ticks_per_delta(watchers, tick);
        metrics::gauge!("rm_delta_interval_ms").set(tick.as_secs_f64() * 1000.0 * f64::from(every));
        every
    }

    /// Every how many ticks of length `tick` a delta goes out while
    /// `watchers` clients receive them (at least 1).
    pub fn ticks_per_delta(&self, watchers: usize, tick: Duration) -> u32 {
        let tick_ms = tick.as_millis().max(1);
        if self.frames_per_s == 0 || watchers == 0 {
            return 1;
        }
        let most = (self.max_interval.as_millis() / tick_ms).max(1);
        // watchers × (1000 / tick_ms) frames a second at one tick per delta.
        let wanted = (watchers as u128 * 1000).div_ceil(tick_ms * u128::from(self.frames_per_s));
        u32::try_from(wanted.clamp(1, most)).unwrap_or(u32::MAX)
    }
}

/// What a replay hands the owner task, in order.
#[derive(Debug)]
pub enum Feed {
    /// A logged record (already moved into its drill space): applied with
    /// the log's clock, never logged again.
    Record(Record),
    /// The digest of `space` after everything fed before it.
    Digest {
        /// The space.
        space: String,
        /// Gets the digest.
        reply: oneshot::Sender<String>,
    },
}

/// What recovery found in the log.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Records applied, per space.
    pub records: BTreeMap<String, u64>,
    /// Segments that could not be read to their end.
    pub damaged: Vec<log::Damage>,
}

struct Space {
    picture: Picture,
    handle: SpaceHandle,
    /// Turns deltas into mission-log entries.
    journal: Journal,
    /// The mission log (in the space's folder with a data folder).
    mission: MissionLog,
    /// A drill has had its first event (and its `drill_opened` entry).
    begun: bool,
    /// The picture's digest at its seq.
    digest: DigestAt,
}

impl Space {
    /// The picture's digest, computed at most once per seq.
    fn digest(&mut self) -> String {
        let picture = &self.picture;
        self.digest.get(picture.seq(), || picture.digest())
    }
}

/// A picture's digest kept for one seq: every change of a picture's
/// content comes with a delta, so the same seq means the same digest, and
/// the clients that connect within one tick share one computation (it
/// serialises the whole picture). Used by the owner task and the gateway.
#[derive(Debug, Default)]
pub(crate) struct DigestAt(Option<(u64, String)>);

impl DigestAt {
    /// The digest at `seq`, computed by `digest` unless already known.
    pub(crate) fn get(&mut self, seq: u64, digest: impl FnOnce() -> String) -> String {
        match &self.0 {
            Some((at, d)) if *at == seq => d.clone(),
            _ => {
                let d = digest();
                self.0 = Some((seq, d.clone()));
                d
            }
        }
    }

    /// Forgets it (the content changed before the next seq).
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

impl Space {
    fn enter(&mut self, entries: Vec<JournalEntry>) {
        if let Err(e) = self.mission.append(entries) {
            metrics::counter!("rm_log_write_errors_total").increment(1);
            error!(error = %e, space = %self.handle.name, "cannot write the mission log");
        }
    }
}

/// Counters touched per event, looked up once.
struct Counters {
    applied: metrics::Counter,
    duplicate: metrics::Counter,
    outdated: metrics::Counter,
    elsewhere: metrics::Counter,
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
            elsewhere: events("handed_over"),
            gaps: metrics::counter!("rm_fusion_seq_gaps_total"),
            missed: metrics::counter!("rm_fusion_seq_missed_total"),
        }
    }
}

/// Pictures of the past rebuilt at the same time, at most.
const HISTORY_AT_ONCE: usize = 2;

/// Events taken from ingest's channel at a time.
const BATCH: usize = 256;

/// Owns every space's picture.
pub struct Driver {
    config: DriverConfig,
    hub: Arc<Hub>,
    spaces: BTreeMap<String, Space>,
    counters: Counters,
    log: Option<EventLog>,
    /// Events from ingest's channel that are logged (or, without a log,
    /// taken), counted from the start.
    logged: watch::Sender<u64>,
    /// Rebuilding from the log: what happened then is in the mission log
    /// already.
    recovering: bool,
    /// Reused for each batch.
    records: Vec<Record>,
    /// Permits for rebuilding pictures of the past.
    history_slots: Arc<Semaphore>,
    /// Decodes operators' reports over HTTP (the broker's decoder).
    decoder: Option<ingest::Decoder>,
    /// Ticks since the last delta ([`Pacing`]).
    ticks_waited: u32,
}

impl Driver {
    /// A driver with the `live` space open.
    pub fn new(config: DriverConfig, hub: Arc<Hub>) -> Driver {
        let mut d = Driver {
            config,
            hub,
            spaces: BTreeMap::new(),
            counters: Counters::new(),
            log: None,
            logged: watch::channel(0).0,
            recovering: false,
            records: Vec::with_capacity(BATCH),
            history_slots: Arc::new(Semaphore::new(HISTORY_AT_ONCE)),
            decoder: None,
            ticks_waited: 0,
        };
        d.open(fusion::space::LIVE);
        d
    }

    /// Takes operators' reports (incidents over HTTP) through `decoder`.
    pub fn with_decoder(mut self, decoder: ingest::Decoder) -> Driver {
        self.decoder = Some(decoder);
        self
    }

    /// Writes every event and action to `log` before applying it.
    pub fn with_log(mut self, log: EventLog) -> Driver {
        self.log = Some(log);
        // Spaces opened before (live) keep their mission log there too.
        let names: Vec<String> = self.spaces.keys().cloned().collect();
        for name in names {
            let mission = self.mission_log(&name);
            if let Some(s) = self.spaces.get_mut(&name) {
                s.mission = mission;
            }
        }
        self
    }

    /// How many of ingest's events are safe in the log (ingest holds its
    /// acknowledgements to the broker until then).
    pub fn logged(&self) -> watch::Receiver<u64> {
        self.logged.subscribe()
    }

    /// Rebuilds every space's picture from the log (blocking: call it
    /// before the loop, off the async threads).
    pub fn recover(&mut self) -> anyhow::Result<Recovery> {
        let mut report = Recovery::default();
        let Some(dir) = self.log.as_ref().map(|l| l.dir().to_path_buf()) else {
            return Ok(report);
        };
        let tick_ms = i64::try_from(self.config.tick.as_millis()).unwrap_or(50);
        self.recovering = true;
        let config = self.config.picture.clone();
        for name in log::spaces(&dir)? {
            let space = self.open(&name);
            let (restored, first) = newest_checkpoint(&dir.join(&name), &config, None);
            if let Some((picture, info)) = restored {
                info!(space = %name, checkpoint = %info.path.display(), "picture restored from its newest checkpoint");
                metrics::counter!("rm_log_checkpoints_restored_total").increment(1);
                space.picture = picture;
                space.digest.clear();
            }
            let (read, now) = replay_log(
                &mut space.picture,
                &dir.join(&name),
                first,
                Window::default(),
                tick_ms,
            )?;
            let all = Viewport {
                bbox: None,
                res: space.picture.resolutions()[0],
            };
            let shown = space.picture.snapshot(&all, now.unwrap_or(0));
            space.journal.seed(&shown);
            metrics::counter!("rm_log_recovered_total").increment(read.records);
            report.records.insert(name, read.records);
            report.damaged.extend(read.damaged);
        }
        self.recovering = false;
        if !report.damaged.is_empty() {
            metrics::counter!("rm_log_damaged_segments_total")
                .increment(report.damaged.len() as u64);
        }
        Ok(report)
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
            let mission = self.mission_log(name);
            let drill = handle.drill;
            let space = Space {
                picture: Picture::new(self.config.picture.clone()),
                handle,
                journal: Journal::default(),
                mission,
                // A drill begins with its first data, not when someone
                // merely looks at its name; recovered ones began before.
                begun: !drill || self.recovering,
                digest: DigestAt::default(),
            };
            self.spaces.insert(name.to_owned(), space);
        }
        let Some(space) = self.spaces.get_mut(name) else {
            unreachable!("inserted above")
        };
        space
    }

    /// Reads ahead what applying `group` (the next few events, of one
    /// space or several) will touch in its space's picture
    /// ([`Picture::read_ahead`]).
    fn read_ahead<'a>(&self, mut group: impl Iterator<Item = &'a Envelope> + Clone) {
        let Some(first) = group.clone().next() else {
            return;
        };
        if let Some(space) = self.spaces.get(&first.space)
            && group.all(|e| e.space == first.space)
        {
            std::hint::black_box(space.picture.read_ahead(group.clone()));
        }
    }

    /// Applies one event; the picture's clock is its receive time, so a
    /// recovered or replayed picture sees exactly what this one saw.
    fn apply(&mut self, env: &Envelope) -> Result<Outcome, fusion::Refusal> {
        let space = self.open(&env.space);
        if !space.begun {
            space.begun = true;
            let name = space.handle.name.clone();
            space.enter(vec![Journal::action(
                "drill_opened",
                Some(&name),
                None,
                format!("EXERCISE {name} begins"),
                env.received_ms,
            )]);
        }
        let result = space.picture.apply(env, env.received_ms);
        match &result {
            Ok(outcome) => {
                let c = &self.counters;
                match *outcome {
                    Outcome::Applied => c.applied.increment(1),
                    Outcome::Gap(missed) => {
                        c.gaps.increment(1);
                        c.missed.increment(missed);
                        c.applied.increment(1);
                    }
                    Outcome::Duplicate => c.duplicate.increment(1),
                    Outcome::Outdated => c.outdated.increment(1),
                    Outcome::Elsewhere => c.elsewhere.increment(1),
                }
            }
            Err(refusal) => {
                metrics::counter!("rm_fusion_refused_total", "reason" => refusal.reason())
                    .increment(1);
                warn!(space = %env.space, entity = env.event.entity_id(), %refusal, "event refused by fusion");
            }
        }
        result
    }

    /// An operator's report in the MQTT contract: decoded like a message
    /// from the broker, logged, applied; the refusal, if any, is answered.
    fn submit(
        &mut self,
        space: &str,
        topic: &str,
        payload: &[u8],
        actor: Option<&str>,
    ) -> Result<(), String> {
        let Some(decoder) = self.decoder.clone() else {
            return Err("this server takes no reports over HTTP".into());
        };
        let now = self.config.clock.now();
        let decoded = decoder
            .decode(topic, payload, now)
            .map_err(|e| format!("refused: {e}"))?;
        let envelopes: Vec<Envelope> = decoded.into_iter().filter(|e| e.space == space).collect();
        if envelopes.is_empty() {
            return Err("the report holds no event for this space".into());
        }
        if self.log.is_some() {
            let records: Vec<Record> = envelopes.iter().cloned().map(Record::Event).collect();
            if let Err(e) = self.append_logged(space, &records, now_ms()) {
                metrics::counter!("rm_log_write_errors_total").increment(1);
                error!(error = %e, space, "cannot write an operator's report to the event log");
            }
        }
        let mut refused = None;
        for env in &envelopes {
            if let Err(r) = self.apply(env) {
                refused.get_or_insert(r.to_string());
            }
        }
        info!(space, topic, actor, "operator report applied");
        refused.map_or(Ok(()), Err)
    }

    /// The mission log of `space`: its file with a data folder.
    fn mission_log(&self, space: &str) -> MissionLog {
        let Some(dir) = self.log.as_ref().map(|l| l.dir().join(space)) else {
            return MissionLog::in_memory();
        };
        match MissionLog::open(&dir) {
            Ok((m, 0)) => m,
            Ok((m, bad)) => {
                warn!(
                    space,
                    bad_lines = bad,
                    "mission log: unreadable lines skipped (a crash mid-write?)"
                );
                m
            }
            Err(e) => {
                metrics::counter!("rm_log_write_errors_total").increment(1);
                error!(error = %e, space, "cannot open the mission log: kept in memory only");
                MissionLog::in_memory()
            }
        }
    }

    fn flush(space: &mut Space, now: i64) {
        if let Some(delta) = space.picture.flush(now) {
            metrics::counter!("rm_fusion_deltas_total").increment(1);
            let entries = space.journal.observe(&delta, now);
            space.enter(entries);
            // No receivers is fine: nobody is watching this space.
            let _ = space.handle.deltas.send(Arc::new(delta));
        }
    }

    /// Logs a batch from ingest (one Arrow batch per run of one space),
    /// then applies it.
    fn take(&mut self, batch: &mut Vec<Envelope>) {
        let n = batch.len() as u64;
        if self.log.is_none() {
            for group in batch.chunks(fusion::READ_AHEAD) {
                self.read_ahead(group.iter());
                for env in group {
                    let _ = self.apply(env);
                }
            }
            batch.clear();
            self.logged.send_modify(|c| *c += n);
            return;
        }
        let mut records = std::mem::take(&mut self.records);
        records.extend(batch.drain(..).map(Record::Event));
        let now = now_ms();
        for run in records.chunk_by(|a, b| a.space() == b.space()) {
            if let Err(e) = self.append_logged(run[0].space(), run, now) {
                // Liveness first: the picture goes on, loudly degraded.
                metrics::counter!("rm_log_write_errors_total").increment(1);
                error!(error = %e, space = run[0].space(), events = run.len(), "cannot write the event log: these events are applied but not logged");
            }
            for group in run.chunks(fusion::READ_AHEAD) {
                self.read_ahead(group.iter().filter_map(|r| match r {
                    Record::Event(env) => Some(env),
                    Record::Op(_) => None,
                }));
                for r in group {
                    if let Record::Event(env) = r {
                        let _ = self.apply(env);
                    }
                }
            }
        }
        self.logged.send_modify(|c| *c += n);
        records.clear();
        self.records = records;
    }

    /// Empties a drill space's picture; its log and mission log are moved
    /// aside (kept for the after-action review) and begin afresh.
    fn reset(&mut self, space: &str, actor: Option<&str>) -> Result<(), String> {
        if !fusion::space::is_drill(space) {
            return Err(format!("{space:?} is not a drill space"));
        }
        let now = self.config.clock.now();
        let Some(seq) = self.spaces.get(space).map(|s| s.picture.seq()) else {
            return Err(format!("no space {space:?}"));
        };
        if let Some(log) = self.log.as_mut() {
            log.reset(space, now).map_err(|e| e.to_string())?;
        }
        let mission = self.mission_log(space);
        let config = self.config.picture.clone();
        let Some(s) = self.spaces.get_mut(space) else {
            return Err(format!("no space {space:?}"));
        };
        s.picture = Picture::new(config);
        s.digest.clear();
        // Clients go on counting, and resync at once: one delta that says
        // so, then the new picture's.
        s.picture.continue_seq(seq + 1);
        let _ = s
            .handle
            .deltas
            .send(Arc::new(fusion::Delta::resync(seq + 1)));
        s.journal = Journal::default();
        s.mission = mission;
        // The fresh log begins with the empty picture, so the drill's past
        // reaches back to the reset.
        if let Some(log) = self.log.as_mut() {
            let written = log
                .next_index(space)
                .map_err(anyhow::Error::from)
                .and_then(|segment| {
                    write_checkpoint(&log.dir().join(space), &s.picture, segment, now)
                });
            if let Err(e) = written {
                error!(error = %e, space, "cannot write the reset drill's first checkpoint");
            }
        }
        s.enter(vec![Journal::action(
            "drill_reset",
            Some(space),
            actor,
            format!("EXERCISE {space} reset: the picture starts empty"),
            now,
        )]);
        info!(space, "drill reset");
        Ok(())
    }

    /// Logs an operator's action that changed a picture.
    fn log_op(&mut self, space: &str, op: Op, actor: Option<&str>) {
        if self.log.is_none() {
            return;
        }
        let now = now_ms();
        let record = Record::Op(OpRecord {
            space: space.to_owned(),
            at_ms: now,
            actor: actor.map(str::to_owned),
            op,
        });
        if let Err(e) = self.append_logged(space, std::slice::from_ref(&record), now) {
            metrics::counter!("rm_log_write_errors_total").increment(1);
            error!(error = %e, space, "cannot write an operator's action to the event log");
        }
    }

    /// Appends to `space`'s log; when that begins a new segment, first
    /// writes a checkpoint of the picture (which then holds exactly the
    /// segments before it), so recovery replays at most one segment.
    fn append_logged(&mut self, space: &str, run: &[Record], now: i64) -> anyhow::Result<()> {
        self.open(space);
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        if let Some(segment) = log.begins_segment(space, now)?
            && let Some(s) = self.spaces.get_mut(space)
        {
            let dir = log.dir().join(space);
            Self::flush(s, now);
            if let Err(e) = write_checkpoint(&dir, &s.picture, segment, now) {
                metrics::counter!("rm_log_write_errors_total").increment(1);
                error!(error = %e, space, "cannot write a checkpoint: recovery will replay more of the log");
            } else if self.config.retention_ms > 0 {
                match log::prune(&dir, now - self.config.retention_ms) {
                    Ok(p) if p.segments > 0 => {
                        metrics::counter!("rm_log_pruned_segments_total")
                            .increment(p.segments as u64);
                        info!(
                            space,
                            segments = p.segments,
                            checkpoints = p.checkpoints,
                            "event log: segments past their retention deleted"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error!(error = %e, space, "cannot delete event log segments past their retention")
                    }
                }
            }
        }
        log.append(space, run, now)?;
        Ok(())
    }

    /// A tick: every space flushed into a delta, or, while many clients
    /// watch, every few ticks ([`Pacing`]).
    fn tick(&mut self) {
        let spaces = self.spaces.values().map(|s| &s.handle);
        let every = self
            .config
            .pacing
            .ticks_per_delta_shown(spaces, self.config.tick);
        self.ticks_waited += 1;
        if self.ticks_waited >= every {
            self.flush_all();
        }
    }

    /// Every space flushed into a delta now.
    fn flush_all(&mut self) {
        self.ticks_waited = 0;
        let now = self.config.clock.now();
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
                let now = self.config.clock.now();
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
                        digest: s.digest(),
                    }
                });
                let _ = reply.send(answer);
            }
            Request::Export { space, reply } => {
                let now = self.config.clock.now();
                let answer = self.spaces.get_mut(&space).map(|s| {
                    Self::flush(s, now);
                    s.picture.export(now)
                });
                let _ = reply.send(answer);
            }
            Request::Remove {
                space,
                kind,
                id,
                actor,
                reply,
            } => {
                let result = match self.spaces.get_mut(&space) {
                    Some(s) => {
                        s.digest.clear();
                        s.picture.remove(kind, &id).map_err(|e| e.to_string())
                    }
                    None => Err(format!("no space {space:?}")),
                };
                if result.is_ok() {
                    self.log_op(
                        &space,
                        Op::Remove {
                            entity: kind.into(),
                            id: id.clone(),
                        },
                        actor.as_deref(),
                    );
                    let now = self.config.clock.now();
                    let what = match kind {
                        fusion::EntityKind::Unit => "Unit",
                        fusion::EntityKind::Sensor => "Sensor",
                    };
                    if let Some(s) = self.spaces.get_mut(&space) {
                        s.enter(vec![Journal::action(
                            "removed",
                            Some(&id),
                            actor.as_deref(),
                            format!("{what} {id} removed from the picture by an operator"),
                            now,
                        )]);
                    }
                }
                let _ = reply.send(result);
            }
            Request::Ack {
                space,
                alert,
                actor,
                reply,
            } => {
                // A clock alert's id depends on tick times the log does not
                // hold: log what it is about, too.
                let about = self
                    .spaces
                    .get(&space)
                    .and_then(|s| s.picture.alert(&alert))
                    .filter(|a| a.id.starts_with('S'))
                    .map(|a| log::AlertAbout {
                        kind: a.kind.clone(),
                        entity: a.entity.clone(),
                        related: a.related.clone(),
                    });
                let result = match self.spaces.get_mut(&space) {
                    Some(s) => {
                        s.digest.clear();
                        s.picture.ack(&alert).map_err(|e| e.to_string())
                    }
                    None => Err(format!("no space {space:?}")),
                };
                if result.is_ok() {
                    // The event log first: the mission log must not say
                    // "acknowledged" of an ack a crash then loses.
                    self.log_op(
                        &space,
                        Op::Ack {
                            alert: alert.clone(),
                            about,
                        },
                        actor.as_deref(),
                    );
                    let now = self.config.clock.now();
                    if let Some(s) = self.spaces.get_mut(&space) {
                        let entry = s.journal.acked(&alert, actor.as_deref(), now);
                        s.enter(vec![entry]);
                    }
                }
                let _ = reply.send(result);
            }
            Request::MissionLog {
                space,
                limit,
                reply,
            } => {
                let result = match self.spaces.get(&space) {
                    Some(s) => Ok(s.mission.recent(limit)),
                    None => Err(format!("no space {space:?}")),
                };
                let _ = reply.send(result);
            }
            Request::HistoryRange { space, reply } => {
                let Some(dir) = self.log.as_ref().map(|l| l.dir().join(&space)) else {
                    let _ = reply.send(Err(NO_LOG.to_owned()));
                    return;
                };
                let now = self.config.clock.now();
                // Listing folders is I/O: not on the owner task.
                tokio::task::spawn_blocking(move || {
                    let _ = reply.send(
                        log_begins(&dir)
                            .map(|from| (from, now))
                            .ok_or_else(|| format!("no event log for {space:?} yet")),
                    );
                });
            }
            Request::Reset {
                space,
                actor,
                reply,
            } => {
                let _ = reply.send(self.reset(&space, actor.as_deref()));
            }
            Request::Submit {
                space,
                topic,
                payload,
                actor,
                reply,
            } => {
                let _ = reply.send(self.submit(&space, &topic, &payload, actor.as_deref()));
            }
            Request::History {
                space,
                at_ms,
                viewport,
                reply,
            } => {
                let Some(dir) = self.log.as_ref().map(|l| l.dir().join(&space)) else {
                    let _ = reply.send(Err(HubError::Refused(NO_LOG.to_owned())));
                    return;
                };
                // Each rebuild takes a core for a while: a few at a time,
                // so a slider dragged on many tablets cannot starve ingest.
                let Ok(permit) = self.history_slots.clone().try_acquire_owned() else {
                    metrics::counter!("rm_history_busy_total").increment(1);
                    let _ = reply.send(Err(HubError::Busy(format!(
                        "{HISTORY_AT_ONCE} pictures of the past are being rebuilt; try again in a moment"
                    ))));
                    return;
                };
                let config = self.config.picture.clone();
                let tick_ms = i64::try_from(self.config.tick.as_millis()).unwrap_or(50);
                // Reading the log may take a while: never on the owner task.
                tokio::task::spawn_blocking(move || {
                    let answer =
                        history(&dir, config, tick_ms, at_ms, viewport).map_err(HubError::Refused);
                    drop(permit);
                    let _ = reply.send(answer);
                });
            }
        }
    }

    fn feed(&mut self, item: Feed) {
        match item {
            Feed::Record(r) => {
                if let Clock::Log(t) = &self.config.clock {
                    t.store(r.received_ms(), Ordering::Relaxed);
                }
                let space = self.open(r.space());
                apply_record(&mut space.picture, &r);
            }
            Feed::Digest { space, reply } => {
                let now = self.config.clock.now();
                let s = self.open(&space);
                Self::flush(s, now);
                let _ = reply.send(s.picture.digest());
            }
        }
    }

    /// Runs until `shutdown` resolves or ingest and the viewer both hang up.
    /// `feed`: a replay's records, if this owner task serves one.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Envelope>,
        mut requests: mpsc::Receiver<Request>,
        mut feed: Option<mpsc::Receiver<Feed>>,
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
                    self.take(&mut batch);
                }
                Some(req) = requests.recv() => self.request(req),
                Some(item) = next_fed(&mut feed) => self.feed(item),
                else => break,
            }
        }
        self.flush_all();
        if let Some(log) = self.log.as_mut() {
            if let Err(e) = log.close() {
                error!(error = %e, "cannot close the event log's segments");
            }
            // A clean stop leaves nothing to replay: a checkpoint for the
            // segment that comes next.
            let now = self.config.clock.now();
            for (name, s) in &mut self.spaces {
                // A space that never logged anything has nothing to keep
                // (and gets no folder just for being looked at).
                if !log.dir().join(name).is_dir() {
                    continue;
                }
                let written =
                    log.next_index(name)
                        .map_err(anyhow::Error::from)
                        .and_then(|segment| {
                            Self::flush(s, now);
                            write_checkpoint(&log.dir().join(name), &s.picture, segment, now)
                        });
                if let Err(e) = written {
                    error!(error = %e, space = %name, "cannot write the shutdown checkpoint");
                }
            }
        }
    }
}

async fn next_fed(feed: &mut Option<mpsc::Receiver<Feed>>) -> Option<Feed> {
    match feed {
        Some(f) => f.recv().await,
        None => std::future::pending().await,
    }
}

/// Applies a logged record to a picture, its receive time as the clock.
pub fn apply_record(picture: &mut Picture, r: &Record) {
    match r {
        // Refusals and duplicates are the picture's to decide, as they
        // were the first time.
        Record::Event(env) => {
            let _ = picture.apply(env, env.received_ms);
        }
        Record::Op(o) => {
            let _ = match &o.op {
                Op::Ack { alert, about } => {
                    let now_id = about.as_ref().and_then(|a| {
                        picture.open_clock_alert(&a.kind, &a.entity, a.related.as_deref())
                    });
                    picture
                        .ack(now_id.as_deref().unwrap_or(alert))
                        .map_err(|e| e.to_string())
                }
                Op::Remove { entity, id } => picture
                    .remove((*entity).into(), id)
                    .map_err(|e| e.to_string()),
            };
        }
    }
}

/// Why a server without a data folder has no past to show.
const NO_LOG: &str = "this server keeps no event log (start it with --data DIR)";

/// How far back one space's log folder reaches: its first segment, or its
/// first checkpoint (a reset drill has one before any segment).
fn log_begins(dir: &Path) -> Option<i64> {
    let first_segment = log::segments(dir)
        .ok()
        .and_then(|s| s.first().map(|s| s.start_ms));
    let first_checkpoint = log::checkpoints(dir)
        .ok()
        .and_then(|c| c.iter().map(|c| c.at_ms).min());
    first_segment.into_iter().chain(first_checkpoint).min()
}

/// Writes a checkpoint of `picture` (just flushed) for `segment`.
fn write_checkpoint(dir: &Path, picture: &Picture, segment: u64, now: i64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let Some(cp) = picture.checkpoint() else {
        anyhow::bail!("the picture has unflushed changes");
    };
    let path = log::write_checkpoint(
        dir,
        &log::CheckpointFile {
            segment,
            at_ms: now,
            picture: cp,
        },
    )?;
    metrics::counter!("rm_log_checkpoints_total").increment(1);
    info!(checkpoint = %path.display(), ms = started.elapsed().as_millis() as u64, "checkpoint written");
    Ok(())
}

/// The newest usable checkpoint in `dir` (taken at or before `at_ms`, if
/// given), restored, and the first segment after it (0 without one).
fn newest_checkpoint(
    dir: &Path,
    config: &PictureConfig,
    at_ms: Option<i64>,
) -> (Option<(Picture, log::CheckpointInfo)>, u64) {
    let found = match log::checkpoints(dir) {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, dir = %dir.display(), "cannot list checkpoints: replaying the whole log");
            return (None, 0);
        }
    };
    for info in found.into_iter().rev() {
        if at_ms.is_some_and(|t| info.at_ms > t) {
            continue;
        }
        let restored = log::read_checkpoint(&info.path)
            .map_err(|e| e.to_string())
            .and_then(|f| Picture::restore(config.clone(), f.picture).map_err(|e| e.to_string()));
        match restored {
            Ok(p) => {
                let segment = info.segment;
                return (Some((p, info)), segment);
            }
            Err(e) => {
                metrics::counter!("rm_log_checkpoints_refused_total").increment(1);
                warn!(checkpoint = %info.path.display(), error = %e, "checkpoint not usable: trying an older one");
            }
        }
    }
    (None, 0)
}

/// Applies the records of `dir` from segment `first` on, inside `window`,
/// to `picture` with the log's clock, flushing as the live picture did: a
/// tick's worth of log time since the last flush means a tick came (with
/// its clock-driven changes, such as retention) before the next record.
/// Returns what was read and the last record's time (flushed at the end).
pub(crate) fn replay_log(
    picture: &mut Picture,
    dir: &Path,
    first: u64,
    window: Window,
    tick_ms: i64,
) -> anyhow::Result<(log::ReadReport, Option<i64>)> {
    let mut last_flush: Option<i64> = None;
    let mut now = None;
    // Records are played in groups of `READ_AHEAD`, the group's events
    // read ahead first (`Picture::read_ahead`, as the live owner task
    // does); each record is still applied, and each tick flushed, in the
    // log's order.
    let mut group: Vec<Record> = Vec::with_capacity(fusion::READ_AHEAD);
    let mut play = |picture: &mut Picture, group: &mut Vec<Record>| {
        std::hint::black_box(picture.read_ahead(group.iter().filter_map(|r| match r {
            Record::Event(env) => Some(env),
            Record::Op(_) => None,
        })));
        for r in group.drain(..) {
            let t = r.received_ms();
            if last_flush.is_none_or(|f| t - f >= tick_ms) {
                picture.flush(t);
                last_flush = Some(t);
            }
            apply_record(picture, &r);
            now = Some(t);
        }
    };
    let read = log::read_space_from(dir, first, window, |r| {
        group.push(r);
        if group.len() == fusion::READ_AHEAD {
            play(picture, &mut group);
        }
    })?;
    play(picture, &mut group);
    if let Some(t) = now {
        picture.flush(t);
    }
    Ok((read, now))
}

/// The picture of one space's log `dir` as it was at `at_ms`.
pub(crate) fn history(
    dir: &Path,
    config: PictureConfig,
    tick_ms: i64,
    at_ms: i64,
    viewport: Viewport,
) -> Result<SnapshotReply, String> {
    let (restored, first) = newest_checkpoint(dir, &config, Some(at_ms));
    let from_checkpoint = restored.is_some();
    let mut picture = restored.map_or_else(|| Picture::new(config), |(p, _)| p);
    let window = Window {
        from_ms: None,
        to_ms: Some(at_ms),
    };
    let (read, _) =
        replay_log(&mut picture, dir, first, window, tick_ms).map_err(|e| e.to_string())?;
    if read.segments == 0 && !from_checkpoint {
        return Err(format!(
            "the event log has nothing for this space at or before {at_ms}"
        ));
    }
    picture.flush(at_ms);
    let vp = Viewport {
        bbox: viewport.bbox,
        res: picture.nearest_resolution(u8::from(viewport.res)),
    };
    Ok(SnapshotReply {
        snapshot: picture.snapshot(&vp, at_ms),
        digest: picture.digest(),
    })
}

#[cfg(test)]
mod recovery_tests {
    //! Recovery against the live picture it replaces: the same records and
    //! actions, a `kill -9` (the driver dropped without closing), a restart.

    use super::*;
    use fusion::{Event, UnitMeta, UnitPos};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rm-driver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A driver logging into `dir`; `segment_bytes` 1 rotates at every append.
    fn driver(dir: &Path, picture: PictureConfig, segment_bytes: Option<u64>) -> Driver {
        let (tx, _rx) = mpsc::channel(8);
        let mut cfg = log::LogConfig::new(dir);
        if let Some(b) = segment_bytes {
            cfg.segment_bytes = b;
        }
        Driver::new(
            DriverConfig {
                tick: Duration::from_millis(50),
                ring: 8,
                picture,
                clock: Clock::Wall,
                retention_ms: 0,
                pacing: Pacing::default(),
            },
            Hub::new(tx),
        )
        .with_log(EventLog::open(cfg).expect("log"))
    }

    fn env(space: &str, t: i64, event: Event) -> Envelope {
        Envelope {
            space: space.into(),
            received_ms: t,
            event,
        }
    }

    fn meta(space: &str, id: &str, t: i64) -> Envelope {
        let m = UnitMeta {
            id: id.into(),
            callsign: format!("C {id}"),
            unit_type: "HLF".into(),
            org: "fire".into(),
            strength: None,
        };
        env(space, t, Event::UnitMeta(m))
    }

    fn pos(id: &str, t: i64, ttl_ms: Option<i64>) -> Envelope {
        let p = UnitPos {
            id: id.into(),
            ts_ms: t,
            lat: 53.55,
            lon: 9.99,
            heading: None,
            speed: None,
            accuracy: None,
            source: None,
            ttl_ms,
        };
        env("live", t, Event::UnitPos(p))
    }

    fn live(d: &mut Driver) -> &mut Space {
        d.spaces.get_mut("live").expect("present")
    }

    /// (id, kind, entity, acknowledged) of every alert, by id.
    fn alerts(p: &mut Picture, now: i64) -> Vec<(String, String, String, bool)> {
        let all = Viewport {
            bbox: None,
            res: p.resolutions()[0],
        };
        let mut v: Vec<_> = p
            .snapshot(&all, now)
            .alerts
            .into_iter()
            .map(|a| (a.id, a.kind, a.entity, a.acked))
            .collect();
        v.sort();
        v
    }

    /// The same without the ids: clock alerts (`S…`) are numbered at tick
    /// times the log does not hold, so a recovered picture may number
    /// them otherwise; what each is about and whether it is acknowledged
    /// must not change.
    fn what(alerts: &[(String, String, String, bool)]) -> Vec<(String, String, bool)> {
        let mut v: Vec<_> = alerts
            .iter()
            .map(|(_, k, e, acked)| (k.clone(), e.clone(), *acked))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn interleaved_batch_at_rotation_survives_recovery() {
        let dir = scratch("interleaved");
        let now = now_ms();
        let before = {
            let mut d = driver(&dir, PictureConfig::default(), Some(1));
            d.take(&mut vec![meta("live", "u0", now)]);
            d.take(&mut vec![
                meta("live", "u1", now),
                meta("drill-x", "d1", now),
                meta("live", "u2", now),
            ]);
            let s = live(&mut d);
            s.picture.flush(now_ms());
            s.picture.digest()
            // dropped without close: like kill -9
        };
        let mut d = driver(&dir, PictureConfig::default(), Some(1));
        d.recover().expect("recover");
        let s = live(&mut d);
        s.picture.flush(now_ms());
        assert_eq!(s.picture.digest(), before, "recovered live picture differs");
    }

    #[tokio::test]
    async fn retention_removal_between_records_survives_recovery() {
        let dir = scratch("retention");
        let picture = || PictureConfig {
            retention_ms: 2_000,
            ..PictureConfig::default()
        };
        let t0 = now_ms() - 60_000;
        let before = {
            let mut d = driver(&dir, picture(), None);
            d.take(&mut vec![meta("live", "u", t0), pos("u", t0, None)]);
            Driver::flush(live(&mut d), t0 + 50);
            Driver::flush(live(&mut d), t0 + 3_000); // a live tick: retention passed, u removed
            d.take(&mut vec![pos("u", t0 + 4_000, None)]);
            let s = live(&mut d);
            Driver::flush(s, t0 + 4_050);
            s.picture.digest()
        };
        let mut d = driver(&dir, picture(), None);
        d.recover().expect("recover");
        let s = live(&mut d);
        Driver::flush(s, t0 + 4_050);
        assert_eq!(
            s.picture.digest(),
            before,
            "recovered picture differs after a clock removal"
        );
    }

    #[tokio::test]
    async fn an_acked_clock_alert_stays_acked_after_recovery() {
        let dir = scratch("clock-ack");
        let t0 = now_ms() - 60_000;
        let ttl = Some(1_000);
        let end = now_ms() + 100;
        let before = {
            let mut d = driver(&dir, PictureConfig::default(), None);
            d.take(&mut vec![
                pos("a", t0, ttl),
                pos("b", t0 + 100, ttl),
                pos("a", t0 + 600, ttl),
            ]);
            for t in [t0 + 50, t0 + 1_100, t0 + 2_200, t0 + 3_300] {
                Driver::flush(live(&mut d), t);
            }
            d.take(&mut vec![pos("c", t0 + 5_000, ttl)]);
            let shown = alerts(&mut live(&mut d).picture, t0 + 5_000);
            let b_alert = shown
                .iter()
                .find(|a| a.2 == "b")
                .expect("b's stale alert")
                .0
                .clone();
            let (reply, rx) = oneshot::channel();
            d.request(Request::Ack {
                space: "live".into(),
                alert: b_alert,
                actor: Some("leitstelle".into()),
                reply,
            });
            rx.await.expect("answered").expect("acknowledged");
            Driver::flush(live(&mut d), end);
            alerts(&mut live(&mut d).picture, end)
        };
        let mut d = driver(&dir, PictureConfig::default(), None);
        d.recover().expect("recover");
        Driver::flush(live(&mut d), end);
        let after = alerts(&mut live(&mut d).picture, end);
        assert_eq!(what(&after), what(&before), "alerts after recovery differ");
        let acked_b = |v: &[(String, String, String, bool)]| v.iter().any(|a| a.2 == "b" && a.3);
        assert!(
            acked_b(&after),
            "b's alert is still the acknowledged one: {after:?}"
        );
    }
}

#[cfg(test)]
mod pacing_tests {
    use super::*;
    use fusion::{Event, UnitMeta};

    #[test]
    fn the_interval_stretches_with_the_watchers_and_stops_at_the_limit() {
        let p = Pacing::default();
        let tick = Duration::from_millis(50);
        // 20 deltas a second per client: 10,000 frames are 500 clients.
        assert_eq!(p.ticks_per_delta(0, tick), 1);
        assert_eq!(p.ticks_per_delta(100, tick), 1);
        assert_eq!(p.ticks_per_delta(500, tick), 1);
        assert_eq!(p.ticks_per_delta(501, tick), 2);
        assert_eq!(p.ticks_per_delta(1_000, tick), 2);
        assert_eq!(p.ticks_per_delta(1_600, tick), 4);
        assert_eq!(p.ticks_per_delta(100_000, tick), 4, "200 ms at most");
        let off = Pacing {
            frames_per_s: 0,
            ..p
        };
        assert_eq!(off.ticks_per_delta(100_000, tick), 1);
        // A limit shorter than the tick never stretches it.
        let short = Pacing {
            frames_per_s: 1,
            max_interval: Duration::from_millis(10),
        };
        assert_eq!(short.ticks_per_delta(1_000, tick), 1);
    }

    fn meta(id: &str) -> Envelope {
        Envelope {
            space: "live".into(),
            received_ms: now_ms(),
            event: Event::UnitMeta(UnitMeta {
                id: id.into(),
                callsign: id.into(),
                unit_type: "HLF".into(),
                org: "fire".into(),
                strength: None,
            }),
        }
    }

    /// With more watchers than the frame budget allows, a delta goes out
    /// every other tick and carries both ticks' changes; with few, every
    /// tick again. No seq is skipped.
    #[test]
    fn many_watchers_get_every_change_in_fewer_deltas() {
        let (tx, _rx) = mpsc::channel(8);
        let mut d = Driver::new(
            DriverConfig {
                tick: Duration::from_millis(50),
                ring: 64,
                picture: PictureConfig::default(),
                clock: Clock::Wall,
                retention_ms: 0,
                // Two clients at 20 deltas a second are 40 frames: over.
                pacing: Pacing {
                    frames_per_s: 30,
                    max_interval: Duration::from_millis(200),
                },
            },
            Hub::new(tx),
        );
        let handle = d.spaces["live"].handle.clone();
        let mut first = handle.deltas.subscribe();
        let second = handle.deltas.subscribe();
        d.take(&mut vec![meta("u1")]);
        d.tick();
        assert!(first.try_recv().is_err(), "held for the second tick");
        d.take(&mut vec![meta("u2")]);
        d.tick();
        let delta = first.try_recv().expect("a delta after two ticks");
        let ids: Vec<&str> = delta.units.iter().map(|u| &*u.id).collect();
        assert_eq!(ids, ["u1", "u2"], "both ticks' changes in one delta");
        let seq = delta.seq;
        drop(second);
        d.take(&mut vec![meta("u3")]);
        d.tick();
        let delta = first.try_recv().expect("one watcher: a delta every tick");
        assert_eq!(delta.seq, seq + 1);
        assert_eq!(delta.units.len(), 1);
    }
}
