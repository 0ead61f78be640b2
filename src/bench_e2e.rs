//! `rescuemate bench e2e`: the whole pipeline as an operator runs it, in
//! one run: broker → our server → websocket clients.
//!
//! Parts, in this order:
//!
//! 1. **Ingest ratio**: the `live` method of `bench ingest` (a bare MQTT
//!    subscriber and our server in-process on the same stream).
//! 2. **Snapshot and memory**: a fresh server (a child process,
//!    `rescuemate serve`) is given sensors in `--snapshot-cells` distinct
//!    res-10 cells; the growth of its resident set per active cell, then
//!    the time from a websocket client's connect to its first complete
//!    snapshot of the whole picture at res 10, several times.
//! 3. **Latency under load**: another fresh server; paced publishers send
//!    native observations whose `ts` is the wall clock when the message is
//!    made, at a steady rate, while K websocket clients, each subscribed to
//!    a viewport of its own (a field commander's sector), read deltas. A
//!    delta carries each changed sensor with `ts_ms`, the event time of its
//!    last value, which is that publish time: latency = the client's wall
//!    clock when the frame arrives − `ts_ms`, one clock, one machine. Every
//!    sensor reports once a second (as many sensors as events per second),
//!    so no value hides another within a tick. Twice: the low rate with few
//!    clients, the high rate with many.
//!
//! The server runs as a child process so that its CPU time (`utime` +
//! `stime` from `/proc/<pid>/stat`) and resident set (`VmRSS`) are its own,
//! apart from the publishers, the clients and the broker (Linux only:
//! elsewhere they read 0).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use h3o::{CellIndex, LatLng, Resolution};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::bench_ingest::{self, median};

/// Options of `bench e2e`.
#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    /// Print one JSON object with the figures as the last line.
    #[arg(long)]
    json: bool,
    /// Use this broker (mqtt://host:port) instead of starting Mosquitto.
    #[arg(long)]
    mqtt: Option<String>,
    /// A small run for smoke tests: low rates, few clients, small picture,
    /// short phases (explicit options still apply on top).
    #[arg(long)]
    quick: bool,
    /// Measured time of each latency phase, seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Time each latency phase runs before measuring starts, seconds.
    #[arg(long)]
    warmup: Option<f64>,
    /// Events per second of the low-rate phase.
    #[arg(long)]
    low_rate: Option<f64>,
    /// Websocket clients of the low-rate phase.
    #[arg(long)]
    low_clients: Option<usize>,
    /// Events per second of the high-rate phase.
    #[arg(long)]
    high_rate: Option<f64>,
    /// Websocket clients of the high-rate phase.
    #[arg(long)]
    high_clients: Option<usize>,
    /// Distinct res-10 cells of the snapshot picture.
    #[arg(long)]
    snapshot_cells: Option<usize>,
    /// Clients that take the snapshot one after another; the median counts.
    #[arg(long, default_value_t = 3)]
    snapshot_runs: usize,
    /// Messages per run of the ingest-ratio part.
    #[arg(long)]
    ingest_messages: Option<usize>,
    /// Runs of the ingest-ratio part; the median is reported.
    #[arg(long, default_value_t = 3)]
    ingest_runs: usize,
    /// Publishing clients (each owns a share of the sensors).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Side of each client's square viewport, kilometres.
    #[arg(long, default_value_t = 3.0)]
    viewport_km: f64,
    /// H3 resolution the clients subscribe at.
    #[arg(long, default_value_t = 9)]
    res: u8,
}

/// What one run measures with.
#[derive(Debug, Clone)]
struct Plan {
    duration: Duration,
    warmup: Duration,
    phases: [(f64, usize); 2],
    snapshot_cells: usize,
    snapshot_runs: usize,
    ingest_messages: usize,
    ingest_runs: usize,
    publishers: usize,
    viewport_km: f64,
    res: u8,
}

impl Plan {
    fn from_args(a: &E2eArgs) -> anyhow::Result<Plan> {
        let q = a.quick;
        let secs = |v: Option<f64>, quick: f64, full: f64, name: &str| {
            let s = v.unwrap_or(if q { quick } else { full });
            Duration::try_from_secs_f64(s).map_err(|e| anyhow::anyhow!("--{name} {s}: {e}"))
        };
        let plan = Plan {
            duration: secs(a.duration, 3.0, 20.0, "duration")?,
            warmup: secs(a.warmup, 1.0, 3.0, "warmup")?,
            phases: [
                (
                    a.low_rate.unwrap_or(if q { 500.0 } else { 10_000.0 }),
                    a.low_clients.unwrap_or(if q { 5 } else { 100 }),
                ),
                (
                    a.high_rate.unwrap_or(if q { 1_000.0 } else { 50_000.0 }),
                    a.high_clients.unwrap_or(if q { 20 } else { 1_000 }),
                ),
            ],
            snapshot_cells: a.snapshot_cells.unwrap_or(if q { 2_000 } else { 100_000 }),
            snapshot_runs: a.snapshot_runs,
            ingest_messages: a.ingest_messages.unwrap_or(if q { 3_000 } else { 100_000 }),
            ingest_runs: a.ingest_runs,
            publishers: a.publishers,
            viewport_km: a.viewport_km,
            res: a.res,
        };
        for (rate, clients) in plan.phases {
            if !(rate.is_finite() && (1.0..=MAX_RATE).contains(&rate)) {
                bail!("rates must be between 1 and {MAX_RATE} events per second, got {rate}");
            }
            if !(1..=MAX_CLIENTS).contains(&clients) {
                bail!("clients must be between 1 and {MAX_CLIENTS}, got {clients}");
            }
        }
        if plan.duration.is_zero() {
            bail!("--duration must be longer than zero");
        }
        if !(1..=MAX_SNAPSHOT_CELLS).contains(&plan.snapshot_cells) {
            bail!("--snapshot-cells must be between 1 and {MAX_SNAPSHOT_CELLS}");
        }
        if plan.snapshot_runs == 0 || plan.ingest_runs == 0 || plan.ingest_messages == 0 {
            bail!("--snapshot-runs, --ingest-runs and --ingest-messages must be at least 1");
        }
        if !(1..=64).contains(&plan.publishers) {
            bail!("--publishers must be between 1 and 64");
        }
        if !(plan.viewport_km.is_finite() && plan.viewport_km > 0.0 && plan.viewport_km <= 100.0) {
            bail!("--viewport-km must be more than 0 and at most 100");
        }
        if Resolution::try_from(plan.res).is_err() {
            bail!("--res {} is not an H3 resolution (0-15)", plan.res);
        }
        Ok(plan)
    }

    /// Sensors of the latency phases: one report per sensor per second at
    /// the higher rate.
    fn sensors(&self) -> usize {
        self.phases
            .iter()
            .map(|(rate, _)| rate.ceil() as usize)
            .max()
            .unwrap_or(1)
    }
}

/// The issue's targets.
const TARGET_RATIO: f64 = 0.9;
const TARGET_P99_LOW_MS: f64 = 100.0;
const TARGET_P99_HIGH_MS: f64 = 250.0;
const TARGET_CORES_HIGH: f64 = 0.5;
const TARGET_SNAPSHOT_MS: f64 = 1_000.0;

const MAX_RATE: f64 = 1_000_000.0;
const MAX_CLIENTS: usize = 10_000;
const MAX_SNAPSHOT_CELLS: usize = 1_000_000;
/// How long start-up steps (a server, all clients, a backlog) may take.
const PATIENCE: Duration = Duration::from_secs(120);
/// The publishers' pacing step.
const PACE: Duration = Duration::from_millis(2);
/// Linux reports process times in these ticks per second (`USER_HZ`).
const USER_HZ: f64 = 100.0;
/// Hamburg, the box of the other benchmarks and the simulator's load.
const SOUTH: f64 = 53.40;
const NORTH: f64 = 53.73;
const WEST: f64 = 9.74;
const EAST: f64 = 10.32;
/// The centre the snapshot picture's cells spread around (Rathausmarkt).
const CENTRE: (f64, f64) = (53.5503, 9.9930);
const KM_PER_DEGREE_LAT: f64 = 111.32;

/// Runs the benchmark.
pub fn e2e_bench(a: &E2eArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(a)?;
    let a = a.clone();
    // A runtime of its own, on a thread of its own: the command line
    // already runs inside one.
    std::thread::spawn(move || measure(&a, &plan))
        .join()
        .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

fn measure(a: &E2eArgs, plan: &Plan) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mosquitto, url) = bench_ingest::broker_for(a.mqtt.as_deref())?;
    let broker_pid = mosquitto.as_ref().map(bench_ingest::Mosquitto::pid);
    let report = rt.block_on(async {
        let ingest = ingest_ratio(&url, plan).await?;
        let snapshot = snapshot_part(&url, plan).await?;
        let phases = latency_part(&url, plan, broker_pid).await?;
        anyhow::Ok(Report {
            ingest,
            snapshot,
            phases,
        })
    })?;
    drop(mosquitto);
    report.print(a, plan, &url);
    Ok(())
}

// ---------------------------------------------------------------------------
// The server as a child process.

/// `rescuemate serve` against the broker, killed when dropped.
struct Server {
    child: Child,
    http: SocketAddr,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// Starts a server with an ingest session of its own (`name`), waits
    /// until it is ready.
    async fn start(url: &str, name: &str) -> anyhow::Result<Server> {
        let dir = std::env::temp_dir().join(format!(
            "rm-bench-e2e-{}-{name}-{}",
            std::process::id(),
            ingest::now_ms()
        ));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("rescuemate.toml");
        std::fs::write(
            &config,
            // Every benchmark client comes from loopback: the per-address
            // limit (64 by default) would refuse all but the first 64.
            format!(
                "[mqtt]\nclient_id = \"rm-bench-e2e-{name}-{}\"\n\
                 [limits]\nws_clients = 100000\nws_clients_per_ip = 100000\n",
                std::process::id()
            ),
        )?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--mqtt", url, "--http", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start `rescuemate serve`")?;
        let stdout = child.stdout.take().context("no stdout of the server")?;
        let mut server = Server {
            child,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        // The first line names the address; the server prints nothing else.
        let line = tokio::time::timeout(
            PATIENCE,
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await
        .context("the server did not start")???;
        server.http = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .with_context(|| format!("no address in the server's first line {line:?}"))?;
        let deadline = Instant::now() + PATIENCE;
        while http_get(server.http, "/healthz").await.is_err() {
            if Instant::now() > deadline {
                bail!("the server was not ready within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Messages its ingest accepted so far.
    async fn accepted(&self) -> anyhow::Result<u64> {
        let text = http_get(self.http, "/metrics").await?;
        Ok(metric(&text, "rm_ingest_accepted_total").unwrap_or(0.0) as u64)
    }

    /// Waits until ingest accepted at least `n` messages and one more tick
    /// has passed.
    async fn wait_accepted(&self, n: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.accepted().await?;
            if got >= n {
                break;
            }
            if Instant::now() > deadline {
                bail!("the server accepted {got} of {n} messages within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }
}

/// The body of a 200 answer to `GET path`.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut r = ureq::get(&url).call()?;
        Ok(r.body_mut().read_to_string()?)
    })
    .await?
}

/// The value of an unlabelled Prometheus sample.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

/// CPU seconds (user + system) a process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (in parentheses, which may hold
    // spaces): state is the first, utime the 12th, stime the 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / USER_HZ,
        _ => 0.0,
    }
}

/// Resident set size of a process, bytes.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------
// Publishing.

/// One message to publish.
struct Outgoing {
    topic: String,
    payload: String,
    retain: bool,
}

/// A connected QoS 1 publisher that counts acknowledgements.
struct Publisher {
    client: AsyncClient,
    acked: watch::Receiver<u64>,
    sent: u64,
}

impl Publisher {
    async fn connect(url: &str, id: &str) -> anyhow::Result<Publisher> {
        let mut o = ingest::mqtt_options(url, id)?;
        o.set_inflight(1_000);
        let (client, mut eventloop) = AsyncClient::new(o, 10_000);
        let (acks, acked) = watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acks.send_modify(|n| *n += 1),
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) if acks.is_closed() => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Publisher {
            client,
            acked,
            sent: 0,
        })
    }

    async fn send(&mut self, m: Outgoing) -> anyhow::Result<()> {
        self.client
            .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
            .await?;
        self.sent += 1;
        Ok(())
    }

    /// Waits until the broker acknowledged everything sent, then leaves.
    async fn finish(mut self) -> anyhow::Result<()> {
        let sent = self.sent;
        tokio::time::timeout(PATIENCE, self.acked.wait_for(|n| *n >= sent))
            .await
            .context("the broker did not acknowledge every message")??;
        let _ = self.client.disconnect().await;
        Ok(())
    }
}

/// Publishes every message, spread over `publishers` clients by `share`
/// (messages of one share keep their order), and waits for the broker.
async fn publish_all(
    url: &str,
    msgs: Vec<(usize, Outgoing)>,
    publishers: usize,
    name: &str,
) -> anyhow::Result<()> {
    let mut shares: Vec<Vec<Outgoing>> = (0..publishers).map(|_| Vec::new()).collect();
    for (share, m) in msgs {
        shares[share % publishers].push(m);
    }
    let mut tasks = Vec::new();
    for (p, share) in shares.into_iter().enumerate() {
        let mut publisher = Publisher::connect(url, &format!("rm-bench-e2e-{name}-{p}")).await?;
        tasks.push(tokio::spawn(async move {
            for m in share {
                publisher.send(m).await?;
            }
            publisher.finish().await
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn sensor_meta(id: &str, kind: &str, unit: &str, lat: f64, lon: f64, retain: bool) -> Outgoing {
    Outgoing {
        topic: format!("rm/v1/live/sensor/{id}/meta"),
        payload: format!(r#"{{"kind":"{kind}","unit":"{unit}","lat":{lat:.6},"lon":{lon:.6}}}"#),
        retain,
    }
}

fn sensor_obs(id: &str, ts_ms: i64, value: f64, seq: u64) -> Outgoing {
    Outgoing {
        topic: format!("rm/v1/live/sensor/{id}/obs"),
        payload: format!(r#"{{"ts":{ts_ms},"value":{value:.2},"seq":{seq}}}"#),
        retain: false,
    }
}

/// Kinds of the load's sensors, with their unit and a value range below
/// the first threshold (no alerts: they would go to every client).
const KINDS: [(&str, &str, f64, f64); 2] = [
    ("rain_rate", "mm/h", 0.5, 8.0),
    ("pm10", "µg/m³", 5.0, 40.0),
];

/// A small deterministic generator (SplitMix64) for places.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

// ---------------------------------------------------------------------------
// Part 1: ingest ratio.

struct IngestFigures {
    bare: f64,
    ours: f64,
    ratio: f64,
}

async fn ingest_ratio(url: &str, plan: &Plan) -> anyhow::Result<IngestFigures> {
    let (mut bare, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..plan.ingest_runs {
        let (b, o, _) = bench_ingest::live(url, plan.ingest_messages, run, 8).await?;
        eprintln!(
            "ingest run {}: bare {b:.0} msg/s, ours {o:.0} msg/s, ratio {:.2}",
            run + 1,
            o / b
        );
        bare.push(b);
        ours.push(o);
        ratios.push(o / b);
    }
    Ok(IngestFigures {
        bare: median(bare),
        ours: median(ours),
        ratio: median(ratios),
    })
}

// ---------------------------------------------------------------------------
// Part 2: memory and the first snapshot.

struct SnapshotFigures {
    cells: usize,
    sensors: usize,
    bytes: usize,
    received_ms: f64,
    decoded_ms: f64,
    rss_growth: u64,
    bytes_per_cell: f64,
}

/// The first `n` res-10 cells around the centre, ring by ring.
fn cells_around(n: usize) -> anyhow::Result<Vec<CellIndex>> {
    let centre = LatLng::new(CENTRE.0, CENTRE.1)?.to_cell(Resolution::Ten);
    let mut k = 0u32;
    // A disk of radius k holds 3k(k+1)+1 cells.
    while (3 * k as usize * (k as usize + 1) + 1) < n {
        k += 1;
    }
    let mut cells: Vec<CellIndex> = centre.grid_disk::<Vec<_>>(k);
    cells.truncate(n);
    Ok(cells)
}

async fn snapshot_part(url: &str, plan: &Plan) -> anyhow::Result<SnapshotFigures> {
    let server = Server::start(url, "snapshot").await?;
    let pid = server.pid();
    // Let start-up allocations settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes(pid);
    let cells = cells_around(plan.snapshot_cells)?;
    let ts = ingest::now_ms() - 1_000;
    let mut msgs = Vec::with_capacity(cells.len() * 2);
    for (i, cell) in cells.iter().enumerate() {
        let p = LatLng::from(*cell);
        let id = format!("e2e-cell-{i:07}");
        let (kind, unit, lo, hi) = KINDS[i % KINDS.len()];
        // Not retained: the latency part's server must not inherit them.
        msgs.push((i, sensor_meta(&id, kind, unit, p.lat(), p.lng(), false)));
        let value = lo + (hi - lo) * (i % 10) as f64 / 10.0;
        msgs.push((i, sensor_obs(&id, ts, value, 1)));
    }
    let total = msgs.len() as u64;
    let t = Instant::now();
    publish_all(url, msgs, plan.publishers, "snapshot").await?;
    server.wait_accepted(total).await?;
    eprintln!(
        "snapshot picture: {} cells' sensors published and accepted in {:.1} s",
        cells.len(),
        t.elapsed().as_secs_f64()
    );
    let after = rss_bytes(pid);
    let mut runs = Vec::new();
    for _ in 0..plan.snapshot_runs {
        runs.push(first_snapshot(server.http).await?);
    }
    let cells_seen = runs.iter().map(|r| r.cells).max().unwrap_or(0);
    if cells_seen < cells.len() {
        bail!(
            "the snapshot holds {cells_seen} res-10 cells, {} expected",
            cells.len()
        );
    }
    for (i, r) in runs.iter().enumerate() {
        eprintln!(
            "snapshot {}: {} cells, {} sensors, {:.1} MB, received in {:.0} ms, decoded after {:.0} ms",
            i + 1,
            r.cells,
            r.sensors,
            r.bytes as f64 / 1e6,
            r.received_ms,
            r.decoded_ms
        );
    }
    let growth = after.saturating_sub(before);
    Ok(SnapshotFigures {
        cells: cells_seen,
        sensors: runs.iter().map(|r| r.sensors).max().unwrap_or(0),
        bytes: runs.iter().map(|r| r.bytes).max().unwrap_or(0),
        received_ms: median(runs.iter().map(|r| r.received_ms).collect()),
        decoded_ms: median(runs.iter().map(|r| r.decoded_ms).collect()),
        rss_growth: growth,
        bytes_per_cell: growth as f64 / cells_seen.max(1) as f64,
    })
}

struct SnapshotRun {
    cells: usize,
    sensors: usize,
    bytes: usize,
    received_ms: f64,
    decoded_ms: f64,
}

/// Connects, subscribes to the whole picture at res 10 and times the
/// first snapshot: until its frame is in, and until it is parsed.
async fn first_snapshot(http: SocketAddr) -> anyhow::Result<SnapshotRun> {
    let t = Instant::now();
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{http}/ws?space=live"),
        Some(config),
        true,
    )
    .await
    .context("websocket connect")?;
    ws.send(Message::text(r#"{"type":"subscribe","res":10}"#))
        .await?;
    let text = tokio::time::timeout(PATIENCE, async {
        while let Some(msg) = ws.next().await {
            if let Message::Text(text) = msg? {
                return anyhow::Ok(text);
            }
        }
        bail!("the server closed the websocket before a snapshot")
    })
    .await
    .context("no snapshot")??;
    let received_ms = t.elapsed().as_secs_f64() * 1000.0;
    let v: serde_json::Value = serde_json::from_str(text.as_str())?;
    let decoded_ms = t.elapsed().as_secs_f64() * 1000.0;
    if v["type"] != "snapshot" {
        bail!("expected a snapshot first, got {}", v["type"]);
    }
    let count = |key: &str| v[key].as_array().map_or(0, Vec::len);
    let _ = ws.close(None).await;
    Ok(SnapshotRun {
        cells: count("cells"),
        sensors: count("sensors"),
        bytes: text.len(),
        received_ms,
        decoded_ms,
    })
}

// ---------------------------------------------------------------------------
// Part 3: latency under load.

struct PhaseFigures {
    rate: f64,
    clients: usize,
    published_per_s: f64,
    accepted_per_s: f64,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    bare_p50_ms: f64,
    bare_p99_ms: f64,
    server_cpu_s: f64,
    server_cores: f64,
    cpu_s_per_10k: f64,
    broker_cores: f64,
    bench_cores: f64,
    rss_bytes: u64,
    deltas: u64,
    resyncs: u64,
    seq_gaps: u64,
}

async fn latency_part(
    url: &str,
    plan: &Plan,
    broker_pid: Option<u32>,
) -> anyhow::Result<Vec<PhaseFigures>> {
    let server = Server::start(url, "latency").await?;
    let sensors = plan.sensors();
    let mut places = Rng(7);
    let mut msgs = Vec::with_capacity(sensors);
    let mut located = Vec::with_capacity(sensors);
    for i in 0..sensors {
        let (lat, lon) = (places.range(SOUTH, NORTH), places.range(WEST, EAST));
        let (kind, unit, ..) = KINDS[i % KINDS.len()];
        msgs.push((i, sensor_meta(&sensor_id(i), kind, unit, lat, lon, true)));
        located.push((lat, lon));
    }
    let before = server.accepted().await?;
    publish_all(url, msgs, plan.publishers, "meta").await?;
    server.wait_accepted(before + sensors as u64).await?;
    let seqs: Arc<Vec<AtomicU64>> = Arc::new((0..sensors).map(|_| AtomicU64::new(0)).collect());
    let mut out = Vec::new();
    for (rate, clients) in plan.phases {
        let f = phase(url, plan, &server, broker_pid, rate, clients, &seqs).await?;
        eprintln!(
            "{:.0} events/s, {} clients: published {:.0}/s, accepted {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples; bare MQTT subscriber p50 {:.1} ms, p99 {:.1} ms); server {:.2} cores, {:.3} CPU s per 10,000 events, {:.0} MB resident; {} resyncs, {} seq gaps",
            f.rate,
            f.clients,
            f.published_per_s,
            f.accepted_per_s,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.samples,
            f.bare_p50_ms,
            f.bare_p99_ms,
            f.server_cores,
            f.cpu_s_per_10k,
            f.rss_bytes as f64 / 1e6,
            f.resyncs,
            f.seq_gaps,
        );
        out.push(f);
    }
    Ok(out)
}

fn sensor_id(i: usize) -> String {
    format!("e2e-s-{i:07}")
}

/// What a client saw while recording.
#[derive(Default)]
struct ClientLog {
    latencies_ms: Vec<f32>,
    deltas: u64,
    resyncs: u64,
    seq_gaps: u64,
}

/// The fields of a server message a client needs here.
#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    sensors: Vec<Stamped>,
}

/// A sensor in a delta (`ts_ms`), or an observation as published (`ts`).
#[derive(Deserialize)]
struct Stamped {
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(default)]
    ts: Option<i64>,
}

/// A square viewport of `km` around a random point of the box.
fn viewport(rng: &mut Rng, km: f64) -> [f64; 4] {
    let (lat, lon) = (rng.range(SOUTH, NORTH), rng.range(WEST, EAST));
    let dlat = km / 2.0 / KM_PER_DEGREE_LAT;
    let dlon = dlat / lat.to_radians().cos();
    [lon - dlon, lat - dlat, lon + dlon, lat + dlat]
}

/// Connects, subscribes to `bbox` and waits for the snapshot; then reads
/// until `stop`, recording latencies while `recording` is set.
async fn client(
    http: SocketAddr,
    bbox: [f64; 4],
    res: u8,
    since_ms: i64,
    ready: tokio::sync::mpsc::Sender<()>,
    recording: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<ClientLog> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws?space=live"))
        .await
        .context("websocket connect")?;
    let [w, s, e, n] = bbox;
    ws.send(Message::text(format!(
        r#"{{"type":"subscribe","bbox":[{w},{s},{e},{n}],"res":{res}}}"#
    )))
    .await?;
    let mut log = ClientLog::default();
    let mut last_seq = None;
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the server closed a websocket"),
        };
        let received_ms = wall_ms();
        let m: Incoming = serde_json::from_str(text.as_str())?;
        let on = recording.load(Ordering::Relaxed);
        match m.kind.as_str() {
            "snapshot" => {
                if last_seq.is_none() {
                    let _ = ready.send(()).await;
                } else if on {
                    log.resyncs += 1;
                }
                last_seq = Some(m.seq);
            }
            "delta" => {
                if on {
                    log.deltas += 1;
                    if last_seq.is_some_and(|l| m.seq != l + 1) {
                        log.seq_gaps += 1;
                    }
                    for s in &m.sensors {
                        if let Some(ts) = s.ts_ms.filter(|ts| *ts >= since_ms) {
                            log.latencies_ms.push((received_ms - ts as f64) as f32);
                        }
                    }
                }
                last_seq = Some(m.seq);
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(log)
}

/// A bare MQTT subscriber to the observations: the latency from publish
/// to a plain client of the same broker, the part of ours that is the
/// publishers' and the broker's.
async fn bare_latency(
    url: String,
    recording: Arc<AtomicBool>,
    since_ms: i64,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<f32>> {
    let mut o = ingest::mqtt_options(&url, &format!("rm-bench-e2e-bare-{since_ms}"))?;
    o.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(o, 1_000);
    client
        .subscribe("rm/v1/live/sensor/+/obs", QoS::AtLeastOnce)
        .await?;
    let mut out = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stop.changed() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) if recording.load(Ordering::Relaxed) => {
                let received_ms = wall_ms();
                if let Ok(m) = serde_json::from_slice::<Stamped>(&p.payload)
                    && let Some(ts) = m.ts.filter(|ts| *ts >= since_ms)
                {
                    out.push((received_ms - ts as f64) as f32);
                }
            }
            Ok(_) => {}
            Err(e) => {
                // An overloaded broker may drop this reference client; the
                // benchmark goes on with what it recorded.
                eprintln!("bare subscriber lost the broker ({e}): its latencies end here");
                break;
            }
        }
    }
    let _ = client.disconnect().await;
    Ok(out)
}

/// Publishes observations of `ids` round-robin at `rate` until `stop`,
/// each stamped with the wall clock as it is made.
async fn paced(
    mut publisher: Publisher,
    ids: Vec<usize>,
    rate: f64,
    seqs: Arc<Vec<AtomicU64>>,
    published: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut next = 0;
    while !*stop.borrow() {
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        while publisher.sent < due {
            let i = ids[next];
            next = (next + 1) % ids.len();
            let seq = seqs[i].fetch_add(1, Ordering::Relaxed) + 1;
            let (_, _, lo, hi) = KINDS[i % KINDS.len()];
            let value = lo + (hi - lo) * (seq % 20) as f64 / 20.0;
            let m = sensor_obs(&sensor_id(i), ingest::now_ms(), value, seq);
            publisher.send(m).await?;
            published.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(PACE).await;
    }
    publisher.finish().await
}

/// p50, p99 and max of `xs` (all 0 when empty).
fn percentiles(xs: &mut [f32]) -> [f64; 3] {
    if xs.is_empty() {
        return [0.0; 3];
    }
    xs.sort_by(f32::total_cmp);
    let at = |p: f64| f64::from(xs[((xs.len() - 1) as f64 * p).round() as usize]);
    [at(0.5), at(0.99), at(1.0)]
}

/// The resources of our server, the broker and this process at a moment.
struct Usage {
    at: Instant,
    server_cpu: f64,
    broker_cpu: f64,
    bench_cpu: f64,
    accepted: u64,
    published: u64,
}

async fn usage(
    server: &Server,
    broker_pid: Option<u32>,
    published: &AtomicU64,
) -> anyhow::Result<Usage> {
    Ok(Usage {
        at: Instant::now(),
        server_cpu: cpu_seconds(server.pid()),
        broker_cpu: broker_pid.map_or(0.0, cpu_seconds),
        bench_cpu: cpu_seconds(std::process::id()),
        accepted: server.accepted().await?,
        published: published.load(Ordering::Relaxed),
    })
}

async fn phase(
    url: &str,
    plan: &Plan,
    server: &Server,
    broker_pid: Option<u32>,
    rate: f64,
    clients: usize,
    seqs: &Arc<Vec<AtomicU64>>,
) -> anyhow::Result<PhaseFigures> {
    let since_ms = ingest::now_ms();
    let (stop_tx, stop) = watch::channel(false);
    let recording = Arc::new(AtomicBool::new(false));
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(clients);
    let mut rng = Rng(clients as u64);
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        readers.push(tokio::spawn(client(
            server.http,
            viewport(&mut rng, plan.viewport_km),
            plan.res,
            since_ms,
            ready_tx.clone(),
            recording.clone(),
            stop.clone(),
        )));
    }
    drop(ready_tx);
    tokio::time::timeout(PATIENCE, async {
        let mut got = 0;
        let mut check = tokio::time::interval(Duration::from_millis(200));
        while got < clients {
            tokio::select! {
                r = ready.recv() => {
                    r.context("a client failed before its snapshot")?;
                    got += 1;
                }
                _ = check.tick() => {
                    // A client that ended before its snapshot (refused,
                    // closed) would otherwise be waited for in vain.
                    if let Some(i) = readers.iter().position(|h| h.is_finished()) {
                        let why = match (&mut readers[i]).await {
                            Ok(Err(e)) => format!("{e:#}"),
                            Ok(Ok(_)) => "it stopped".to_owned(),
                            Err(e) => e.to_string(),
                        };
                        bail!("client {i} ended before its snapshot: {why}");
                    }
                }
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("not every client got its snapshot")??;

    // Sensors publishing in this phase: one report each per second.
    let active = (rate.ceil() as usize).min(seqs.len());
    let per = rate / plan.publishers as f64;
    let published = Arc::new(AtomicU64::new(0));
    let (pub_stop_tx, pub_stop) = watch::channel(false);
    let bare = tokio::spawn(bare_latency(
        url.to_owned(),
        recording.clone(),
        since_ms,
        stop.clone(),
    ));
    let mut publishers = Vec::new();
    for p in 0..plan.publishers {
        let ids: Vec<usize> = (p..active).step_by(plan.publishers).collect();
        if ids.is_empty() {
            continue;
        }
        let publisher = Publisher::connect(url, &format!("rm-bench-e2e-load-{rate}-{p}")).await?;
        publishers.push(tokio::spawn(paced(
            publisher,
            ids,
            per,
            seqs.clone(),
            published.clone(),
            pub_stop.clone(),
        )));
    }
    tokio::time::sleep(plan.warmup).await;
    recording.store(true, Ordering::Relaxed);
    let u0 = usage(server, broker_pid, &published).await?;
    tokio::time::sleep(plan.duration).await;
    let u1 = usage(server, broker_pid, &published).await?;
    recording.store(false, Ordering::Relaxed);
    let rss = rss_bytes(server.pid());
    let _ = pub_stop_tx.send(true);
    for p in publishers {
        p.await??;
    }
    let _ = stop_tx.send(true);
    let mut bare = bare.await??;
    let bare_p = percentiles(&mut bare);
    let mut latencies: Vec<f32> = Vec::new();
    let (mut deltas, mut resyncs, mut seq_gaps) = (0, 0, 0);
    for r in readers {
        let log = r.await??;
        latencies.extend(log.latencies_ms);
        deltas += log.deltas;
        resyncs += log.resyncs;
        seq_gaps += log.seq_gaps;
    }
    if latencies.is_empty() {
        bail!("no client saw a sensor change at {rate} events/s: viewports too small?");
    }
    let [p50_ms, p99_ms, max_ms] = percentiles(&mut latencies);
    let wall = u1.at.duration_since(u0.at).as_secs_f64();
    let accepted = u1.accepted.saturating_sub(u0.accepted) as f64;
    let server_cpu = u1.server_cpu - u0.server_cpu;
    Ok(PhaseFigures {
        rate,
        clients,
        published_per_s: u1.published.saturating_sub(u0.published) as f64 / wall,
        accepted_per_s: accepted / wall,
        samples: latencies.len(),
        p50_ms,
        p99_ms,
        max_ms,
        bare_p50_ms: bare_p[0],
        bare_p99_ms: bare_p[1],
        server_cpu_s: server_cpu,
        server_cores: server_cpu / wall,
        cpu_s_per_10k: server_cpu / (accepted / 10_000.0).max(1e-9),
        broker_cores: (u1.broker_cpu - u0.broker_cpu) / wall,
        bench_cores: (u1.bench_cpu - u0.bench_cpu) / wall,
        rss_bytes: rss,
        deltas,
        resyncs,
        seq_gaps,
    })
}

// ---------------------------------------------------------------------------
// The report.

struct Report {
    ingest: IngestFigures,
    snapshot: SnapshotFigures,
    phases: Vec<PhaseFigures>,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

impl Report {
    fn print(&self, a: &E2eArgs, plan: &Plan, url: &str) {
        let (i, s) = (&self.ingest, &self.snapshot);
        let (low, high) = (&self.phases[0], &self.phases[1]);
        let full = !a.quick;
        println!(
            "e2e: broker {url}, {} publishers, viewports {} km at res {}, {:.0} s measured per phase",
            plan.publishers,
            plan.viewport_km,
            plan.res,
            plan.duration.as_secs_f64()
        );
        println!(
            "  ingest_ratio {:.2} (bare {:.0} msg/s, ours {:.0} msg/s; target ≥ {TARGET_RATIO}: {})",
            i.ratio,
            i.bare,
            i.ours,
            met(i.ratio >= TARGET_RATIO)
        );
        for (f, target) in [(low, TARGET_P99_LOW_MS), (high, TARGET_P99_HIGH_MS)] {
            println!(
                "  {:.0} events/s, {} clients: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; server {:.2} cores, {:.3} CPU s per 10,000 events{}",
                f.rate,
                f.clients,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.server_cores,
                f.cpu_s_per_10k,
                if full {
                    format!(" (p99 target ≤ {target} ms: {})", met(f.p99_ms <= target))
                } else {
                    String::new()
                }
            );
        }
        println!(
            "  server resident {:.0} MB at {:.0} events/s; {:.0} bytes per active res-10 cell",
            high.rss_bytes as f64 / 1e6,
            high.rate,
            s.bytes_per_cell
        );
        println!(
            "  first snapshot of {} cells ({:.1} MB): {:.0} ms to receive, {:.0} ms to decode (target ≤ {TARGET_SNAPSHOT_MS} ms: {})",
            s.cells,
            s.bytes as f64 / 1e6,
            s.received_ms,
            s.decoded_ms,
            met(s.received_ms <= TARGET_SNAPSHOT_MS)
        );
        if full {
            println!(
                "  server at {:.0} events/s: {:.2} cores (target ≤ {TARGET_CORES_HIGH}: {})",
                high.rate,
                high.server_cores,
                met(high.server_cores <= TARGET_CORES_HIGH)
            );
        }
        if !a.json {
            return;
        }
        let phase = |f: &PhaseFigures| {
            serde_json::json!({
                "rate": f.rate,
                "clients": f.clients,
                "published_per_s": f.published_per_s.round(),
                "accepted_per_s": f.accepted_per_s.round(),
                "latency_samples": f.samples,
                "latency_p50_ms": round(f.p50_ms, 1),
                "latency_p99_ms": round(f.p99_ms, 1),
                "latency_max_ms": round(f.max_ms, 1),
                "bare_mqtt_p50_ms": round(f.bare_p50_ms, 1),
                "bare_mqtt_p99_ms": round(f.bare_p99_ms, 1),
                "server_cpu_s": round(f.server_cpu_s, 2),
                "server_cores": round(f.server_cores, 3),
                "server_cpu_s_per_10k_events": round(f.cpu_s_per_10k, 4),
                "broker_cores": round(f.broker_cores, 3),
                "bench_cores": round(f.bench_cores, 3),
                "server_rss_bytes": f.rss_bytes,
                "deltas": f.deltas,
                "resyncs": f.resyncs,
                "seq_gaps": f.seq_gaps,
            })
        };
        let json = serde_json::json!({
            "bench": "e2e",
            "quick": a.quick,
            "duration_s": plan.duration.as_secs_f64(),
            "viewport_km": plan.viewport_km,
            "res": plan.res,
            "publishers": plan.publishers,
            "ingest_ratio": round(i.ratio, 3),
            "bare_msgs_per_s": i.bare.round(),
            "ours_msgs_per_s": i.ours.round(),
            "low": phase(low),
            "high": phase(high),
            "latency_p50_ms_low": round(low.p50_ms, 1),
            "latency_p99_ms_low": round(low.p99_ms, 1),
            "latency_max_ms_low": round(low.max_ms, 1),
            "latency_p50_ms_high": round(high.p50_ms, 1),
            "latency_p99_ms_high": round(high.p99_ms, 1),
            "latency_max_ms_high": round(high.max_ms, 1),
            "server_cpu_s_per_10k_events": round(high.cpu_s_per_10k, 4),
            "server_cores_high": round(high.server_cores, 3),
            "server_rss_bytes": high.rss_bytes,
            "bytes_per_cell": s.bytes_per_cell.round(),
            "snapshot_rss_growth_bytes": s.rss_growth,
            "snapshot_cells": s.cells,
            "snapshot_sensors": s.sensors,
            "snapshot_bytes": s.bytes,
            "snapshot_ms": round(s.received_ms, 1),
            "snapshot_decoded_ms": round(s.decoded_ms, 1),
            "targets": {
                "ingest_ratio": TARGET_RATIO,
                "latency_p99_ms_low": TARGET_P99_LOW_MS,
                "latency_p99_ms_high": TARGET_P99_HIGH_MS,
                "server_cores_high": TARGET_CORES_HIGH,
                "snapshot_ms": TARGET_SNAPSHOT_MS,
            },
        });
        println!("{json}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_parse() {
        let me = std::process::id();
        assert!(rss_bytes(me) > 0);
        assert!(cpu_seconds(me) >= 0.0);
        let text = "# TYPE rm_ingest_accepted_total counter\nrm_ingest_accepted_total 42\nrm_ingest_accepted_totalx 1\n";
        assert_eq!(metric(text, "rm_ingest_accepted_total"), Some(42.0));
        assert_eq!(metric(text, "rm_missing"), None);
    }

    #[test]
    fn snapshot_cells_are_distinct() {
        let cells = cells_around(1_000).expect("cells");
        assert_eq!(cells.len(), 1_000);
        let distinct: std::collections::HashSet<_> = cells.iter().collect();
        assert_eq!(distinct.len(), 1_000);
    }
}
