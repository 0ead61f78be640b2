//! `replay`: an event log played again into a drill space (DESIGN §6, §9).
//!
//! In-process (the default), the records go straight to an owner task of
//! their own whose pictures' clock is the log's, served on `--http` like
//! any server, so the drill looks exactly as the original did, EXERCISE
//! marked. With `--mqtt`, they are published on the native contract into
//! the drill space of a broker a running server listens to, their times
//! moved to now. Either way nothing replayed is written into the live log:
//! the in-process replay writes no log at all, and a server writes what it
//! receives for a drill space into that space's own folder.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use fusion::{Envelope, Event};
use ingest::log::{self, Record, Window};
use ingest::wire::{self, WireTime};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use viewer::AppState;
use viewer::hub::Hub;

use crate::config::Config;
use crate::driver::{Clock, Driver, DriverConfig, Feed, Pacing};
use crate::server::stopped;

/// `rescuemate replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Data folder holding the event log.
    #[arg(long)]
    data: PathBuf,
    /// Drill space to replay into (`drill-<name>`).
    #[arg(long)]
    space: String,
    /// The space whose log is replayed.
    #[arg(long, default_value = "live")]
    source: String,
    /// Speed factor (0.5 … 100), or `max` for as fast as possible.
    #[arg(long, default_value = "1")]
    speed: String,
    /// Replay only what was received at or after this time (RFC 3339 or epoch ms).
    #[arg(long)]
    from: Option<String>,
    /// …and at or before this time.
    #[arg(long)]
    to: Option<String>,
    /// Publish into this broker (mqtt://…) instead of replaying in-process.
    #[arg(long)]
    mqtt: Option<String>,
    /// In-process: serve the drill on this address.
    #[arg(long, default_value = crate::config::DEFAULT_HTTP)]
    http: SocketAddr,
    /// Configuration file (the picture's settings), as for `serve`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// In-process: record the digest after every N records (checkpoints).
    #[arg(long, default_value_t = 0)]
    every: u64,
    /// Print the summary as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// In-process: stop when the log is played instead of serving on.
    #[arg(long)]
    exit: bool,
}

/// A digest along the way.
#[derive(Debug, Serialize)]
struct Checkpoint {
    records: u64,
    digest: String,
}

/// What a replay did.
#[derive(Debug, Serialize)]
struct Summary {
    space: String,
    source: String,
    records: u64,
    damaged_segments: usize,
    wall_ms: u64,
    records_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    checkpoints: Vec<Checkpoint>,
}

fn parse_speed(s: &str) -> anyhow::Result<Option<f64>> {
    if s == "max" {
        return Ok(None);
    }
    let x: f64 = s
        .parse()
        .ok()
        .filter(|x: &f64| (0.5..=100.0).contains(x))
        .with_context(|| format!("--speed {s:?}: a factor from 0.5 to 100, or max"))?;
    Ok(Some(x))
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse() {
        return Ok(ms);
    }
    wire::rfc3339_ms(s).map_err(|e| anyhow::anyhow!("{s:?}: not RFC 3339 or epoch ms: {e}"))
}

/// Where a record stands with respect to the window's start.
enum Before {
    /// Inside the window: paced.
    No,
    /// Before it, but a description (sensor or unit meta, incident): the
    /// drill needs it, so it goes first, unpaced.
    Description,
    /// Before it: left out.
    Skip,
}

fn before_window(r: &Record, window: Window) -> Before {
    match window.from_ms {
        Some(from) if r.received_ms() < from => match r {
            Record::Event(Envelope {
                event:
                    Event::SensorMeta(_)
                    | Event::UnitMeta(_)
                    | Event::Incident(_)
                    | Event::IncidentClosed(_),
                ..
            }) => Before::Description,
            _ => Before::Skip,
        },
        _ => Before::No,
    }
}

/// The log's records in order, each handed out when it is due: read on a
/// thread of their own, paced by the speed, descriptions from before the
/// window's start first (unpaced), everything else before it left out.
struct Paced {
    rx: mpsc::Receiver<Record>,
    reading: tokio::task::JoinHandle<anyhow::Result<log::ReadReport>>,
    window: Window,
    pace: Pace,
}

impl Paced {
    fn start(dir: PathBuf, window: Window, speed: Option<f64>) -> Paced {
        let (tx, rx) = mpsc::channel(8_192);
        // From the beginning: descriptions before the window are needed.
        let read = Window {
            from_ms: None,
            ..window
        };
        let reading = tokio::task::spawn_blocking(move || {
            let report = log::read_space(&dir, read, |r| {
                // A closed receiver means the replay stopped: skip the rest.
                let _ = tx.blocking_send(r);
            })?;
            Ok(report)
        });
        Paced {
            rx,
            reading,
            window,
            pace: Pace { speed, start: None },
        }
    }

    async fn next(&mut self) -> Option<Record> {
        loop {
            let r = self.rx.recv().await?;
            match before_window(&r, self.window) {
                Before::No => {
                    self.pace.wait(r.received_ms()).await;
                    return Some(r);
                }
                Before::Description => return Some(r),
                Before::Skip => {}
            }
        }
    }

    /// What reading found, once every record was taken.
    async fn finish(self) -> anyhow::Result<log::ReadReport> {
        self.reading.await.context("log reader panicked")?
    }
}

/// Paces records: the wall time at which each is due.
struct Pace {
    speed: Option<f64>,
    start: Option<(i64, Instant)>,
}

impl Pace {
    async fn wait(&mut self, received_ms: i64) {
        let Some(speed) = self.speed else { return };
        let (t0, w0) = *self.start.get_or_insert((received_ms, Instant::now()));
        let offset_ms = (received_ms - t0).max(0) as f64 / speed;
        let due = w0 + Duration::from_secs_f64(offset_ms / 1_000.0);
        tokio::time::sleep_until(due.into()).await;
    }
}

fn owner_gone() -> anyhow::Error {
    anyhow::anyhow!("the replay's owner task stopped")
}

/// Runs `replay`.
pub async fn run(a: ReplayArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if !fusion::space::is_valid_space(&a.space) || !fusion::space::is_drill(&a.space) {
        bail!(
            "--space {:?}: replays go into a drill space, drill-<name> with [a-z0-9-]",
            a.space
        );
    }
    if !fusion::space::is_valid_space(&a.source) {
        bail!("--source {:?} is not a space name", a.source);
    }
    let dir = a.data.join(&a.source);
    if log::segments(&dir)?.is_empty() {
        bail!(
            "no event log for space {:?} in {}",
            a.source,
            a.data.display()
        );
    }
    let speed = parse_speed(&a.speed)?;
    let window = Window {
        from_ms: a.from.as_deref().map(parse_time).transpose()?,
        to_ms: a.to.as_deref().map(parse_time).transpose()?,
    };
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let started = Instant::now();
    let (records, read, digest, checkpoints) = match &a.mqtt {
        Some(url) => {
            let (n, read) = through_broker(&a, url, &dir, window, speed).await?;
            (n, read, None, Vec::new())
        }
        None => {
            let (n, read, digest, checkpoints) =
                in_process(&a, &config, &dir, window, speed, shutdown.clone()).await?;
            (n, read, Some(digest), checkpoints)
        }
    };
    for d in &read.damaged {
        tracing::warn!(segment = %d.segment.display(), records_read = d.records_read, error = %d.error, "damaged segment: read up to the damage");
    }
    let wall = started.elapsed();
    let summary = Summary {
        space: a.space.clone(),
        source: a.source.clone(),
        records,
        damaged_segments: read.damaged.len(),
        wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        records_per_s: records as f64 / wall.as_secs_f64().max(1e-9),
        digest,
        checkpoints,
    };
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "replayed {} records of {:?} into {:?} in {:.1} s{}",
            summary.records,
            summary.source,
            summary.space,
            wall.as_secs_f64(),
            summary
                .digest
                .as_deref()
                .map(|d| format!(", digest {d}"))
                .unwrap_or_default()
        );
    }
    let _ = std::io::stdout().flush();
    if a.mqtt.is_none() && !a.exit {
        println!("the drill stays served until Ctrl-C");
        stopped(shutdown).await;
    }
    Ok(())
}

type InProcess = (u64, log::ReadReport, String, Vec<Checkpoint>);

async fn in_process(
    a: &ReplayArgs,
    config: &Config,
    dir: &std::path::Path,
    window: Window,
    speed: Option<f64>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<InProcess> {
    let (request_tx, request_rx) = mpsc::channel(256);
    let hub = Hub::new(request_tx);
    let clock = Arc::new(AtomicI64::new(0));
    let driver = Driver::new(
        DriverConfig {
            tick: config.tick(),
            pacing: Pacing::of(&config.fusion),
            ring: config.http.ws_ring,
            picture: config.picture()?,
            clock: Clock::Log(clock),
            retention_ms: 0,
        },
        hub.clone(),
    );
    let (feed_tx, feed_rx) = mpsc::channel(4_096);
    // No ingest: the channel's sender stays here, unused.
    let (_events_tx, events_rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut outer = shutdown.clone();
    tokio::spawn(async move {
        let _ = outer.wait_for(|s| *s).await;
        let _ = stop_tx.send(true);
    });
    tokio::spawn(driver.run(
        events_rx,
        request_rx,
        Some(feed_rx),
        stopped(stop_rx.clone()),
    ));
    hub.open(&a.space).await?;
    // No tokens here: loopback only, as for an open server.
    crate::server::check_protected_mode(a.http, &viewer::auth::Auth::default())?;
    let listener = tokio::net::TcpListener::bind(a.http)
        .await
        .with_context(|| format!("cannot listen on {}", a.http))?;
    let http = listener.local_addr()?;
    let mut state = AppState::new(hub.clone(), None, Arc::new(|| true));
    state.closing = stop_rx.clone();
    let app = viewer::app(state);
    tokio::spawn(viewer::run(listener, app, stopped(stop_rx)));
    println!(
        "RESCUE MATE replay: open http://{http}/?space={} (EXERCISE, from {:?})",
        a.space, a.source
    );
    let _ = std::io::stdout().flush();

    let digest = |space: String| {
        let feed = feed_tx.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            feed.send(Feed::Digest { space, reply })
                .await
                .map_err(|_| owner_gone())?;
            rx.await.map_err(|_| owner_gone())
        }
    };
    let mut records = Paced::start(dir.to_path_buf(), window, speed);
    let mut n = 0u64;
    let mut checkpoints = Vec::new();
    while let Some(r) = records.next().await {
        feed_tx
            .send(Feed::Record(r.into_space(&a.space)))
            .await
            .map_err(|_| owner_gone())?;
        n += 1;
        if a.every > 0 && n.is_multiple_of(a.every) {
            checkpoints.push(Checkpoint {
                records: n,
                digest: digest(a.space.clone()).await?,
            });
        }
        if *shutdown.borrow() {
            break;
        }
    }
    let read = records.finish().await?;
    let last = digest(a.space.clone()).await?;
    Ok((n, read, last, checkpoints))
}

async fn through_broker(
    a: &ReplayArgs,
    url: &str,
    dir: &std::path::Path,
    window: Window,
    speed: Option<f64>,
) -> anyhow::Result<(u64, log::ReadReport)> {
    let opts = ingest::mqtt_options(url, &format!("rescuemate-replay-{}", std::process::id()))?;
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 1_000);
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = acked.clone();
    let pump = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "replay's MQTT connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    let mut records = Paced::start(dir.to_path_buf(), window, speed);
    let mut n = 0u64;
    while let Some(r) = records.next().await {
        // Operators' actions stay with the original: the drill's own
        // operators act for themselves.
        let Record::Event(env) = r else { continue };
        let shift = ingest::now_ms() - env.received_ms;
        let (topic, payload, retain) = native_message(&a.space, &env, shift)?;
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
            .await
            .context("cannot publish to the broker")?;
        n += 1;
    }
    let read = records.finish().await?;
    // At least once: wait until the broker has confirmed every publish
    // before saying goodbye.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let confirmed = acked.load(std::sync::atomic::Ordering::Relaxed);
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(30), pump).await;
    if confirmed < n {
        bail!("the broker confirmed {confirmed} of {n} replayed messages within 30 s");
    }
    Ok((n, read))
}

/// An event as a native-contract message in `space`, its times moved by
/// `shift_ms` (so a replay looks current to the server).
fn native_message(
    space: &str,
    env: &Envelope,
    shift_ms: i64,
) -> anyhow::Result<(String, Vec<u8>, bool)> {
    let ts = |t: i64| WireTime::Millis(t + shift_ms);
    let e = &env.event;
    let topic = log::native_topic(space, e);
    let (payload, retain) = match e {
        Event::SensorMeta(m) => (
            serde_json::to_vec(&wire::SensorMetaMsg {
                kind: m.kind.clone(),
                unit: m.unit.clone(),
                lat: m.lat,
                lon: m.lon,
                name: m.name.clone(),
                thresholds: m.thresholds.clone(),
            })?,
            true,
        ),
        Event::SensorObs(o) => (
            serde_json::to_vec(&wire::SensorObsMsg {
                ts: ts(o.ts_ms),
                value: o.value,
                lat: o.lat,
                lon: o.lon,
                seq: o.seq,
                quality: o.quality,
            })?,
            false,
        ),
        Event::UnitMeta(m) => (
            serde_json::to_vec(&wire::UnitMetaMsg {
                callsign: m.callsign.clone(),
                unit_type: m.unit_type.clone(),
                org: m.org.clone(),
                strength: m.strength,
            })?,
            true,
        ),
        Event::UnitPos(p) => (
            serde_json::to_vec(&wire::UnitPosMsg {
                ts: ts(p.ts_ms),
                lat: p.lat,
                lon: p.lon,
                heading: p.heading,
                speed: p.speed,
                accuracy: p.accuracy,
                source: p.source.clone(),
            })?,
            false,
        ),
        Event::UnitStatus(s) => (
            serde_json::to_vec(&wire::UnitStatusMsg {
                ts: ts(s.ts_ms),
                status: s.status,
                source: s.source.clone(),
            })?,
            false,
        ),
        Event::Incident(i) => (
            serde_json::to_vec(&wire::IncidentMsg {
                ts: ts(i.ts_ms),
                keyword: i.keyword.clone(),
                severity: i.severity,
                geometry: i.geometry.clone(),
                title: i.title.clone(),
                expires: i.expires_ms.map(ts),
            })?,
            true,
        ),
        Event::IncidentClosed(_) => (Vec::new(), true),
    };
    Ok((topic, payload, retain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_and_times_parse() {
        assert_eq!(parse_speed("max").expect("max"), None);
        assert_eq!(parse_speed("10").expect("10"), Some(10.0));
        assert_eq!(parse_speed("0.5").expect("0.5"), Some(0.5));
        assert!(parse_speed("0.1").is_err());
        assert!(parse_speed("1000").is_err());
        assert!(parse_speed("fast").is_err());
        assert_eq!(parse_time("1780000000000").expect("ms"), 1_780_000_000_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").expect("rfc 3339"), 1_000);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn before_the_window_only_descriptions_are_replayed() {
        let rec = |received_ms, event| {
            Record::Event(Envelope {
                space: "live".into(),
                received_ms,
                event,
            })
        };
        let meta = Event::UnitMeta(fusion::UnitMeta {
            id: "hlf".into(),
            callsign: "HLF 1".into(),
            unit_type: "HLF".into(),
            org: "fire".into(),
            strength: None,
        });
        let obs = Event::SensorObs(fusion::SensorObs::value("g".into(), 5, 1.0));
        let w = Window {
            from_ms: Some(100),
            to_ms: None,
        };
        assert!(matches!(
            before_window(&rec(10, meta.clone()), w),
            Before::Description
        ));
        assert!(matches!(
            before_window(&rec(10, obs.clone()), w),
            Before::Skip
        ));
        assert!(matches!(
            before_window(&rec(100, obs.clone()), w),
            Before::No
        ));
        assert!(matches!(
            before_window(&rec(10, obs), Window::default()),
            Before::No
        ));
    }

    #[test]
    fn replayed_messages_decode_back_to_the_event_moved_in_time() {
        let env = Envelope {
            space: "live".into(),
            received_ms: 1_000_000,
            event: Event::SensorObs(fusion::SensorObs {
                id: "pegel-st-pauli".into(),
                ts_ms: 999_000,
                value: 5.2,
                lat: None,
                lon: None,
                seq: Some(7),
                quality: None,
            }),
        };
        let (topic, payload, retain) = native_message("drill-x", &env, 60_000).expect("encode");
        assert!(!retain);
        let decoded = ingest::Decoder::default()
            .decode(&topic, &payload, 1_060_000)
            .expect("our own decoder takes it");
        let back = decoded.into_iter().next().expect("one event");
        assert_eq!(back.space, "drill-x");
        let Event::SensorObs(o) = back.event else {
            panic!("an observation")
        };
        assert_eq!((o.ts_ms, o.value, o.seq), (1_059_000, 5.2, Some(7)));
    }
}
