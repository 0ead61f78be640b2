//! Command line (DESIGN §9).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sensors_sim::SimOptions;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::server::{self, BrokerChoice};

/// RESCUE MATE: a real-time disaster situation picture.
#[derive(Debug, Parser)]
#[command(name = "rescuemate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embedded broker + storm-surge scenario + server; prints the URL to open.
    Demo(DemoArgs),
    /// The server: ingest, fusion, viewer.
    Serve(ServeArgs),
    /// Publishes a scenario, a scenario file or a load to an MQTT broker.
    Sim(SimArgs),
    /// Serves the merged picture of fusion shards (scale-out): websockets
    /// and REST from the shards' deltas received over MQTT.
    Gateway(GatewayArgs),
    /// Replays an event log into a drill space (in-process or via a broker).
    Replay(crate::replay::ReplayArgs),
    /// Writes a time window of the event log as one Arrow IPC file.
    Export(ExportArgs),
    /// Draws a map image (PNG) of a space, from an event log or a server.
    Render(crate::render_cmd::RenderArgs),
    /// Benchmarks; `--json` prints one JSON object as the last line.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Data folder holding the event log.
    #[arg(long)]
    data: PathBuf,
    /// The space whose log is exported.
    #[arg(long, default_value = "live")]
    space: String,
    /// Only what was received at or after this time (RFC 3339 or epoch ms).
    #[arg(long)]
    from: Option<String>,
    /// …and at or before this time.
    #[arg(long)]
    to: Option<String>,
    /// The Arrow IPC file to write (`.arrow`).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, default_value = crate::config::DEFAULT_HTTP)]
    http: SocketAddr,
    /// Scenario-time compression of the simulated scenario.
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// Built-in scenario to show: storm-surge, fire-plume, mass-casualty or
    /// heavy-rain.
    #[arg(long, default_value = "storm-surge")]
    scenario: String,
    /// Data folder for the event log; default: a new folder under the
    /// system's temporary folder, so the time slider has a past to show.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file (TOML); see deploy/rescuemate.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP listen address (overrides the config).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Run the embedded MQTT broker on this address (the default).
    #[arg(long, conflicts_with = "mqtt")]
    embedded_broker: Option<SocketAddr>,
    /// Use an external broker instead: mqtt://[user:pass@]host[:port].
    #[arg(long)]
    mqtt: Option<String>,
    /// Data folder for the event log (overrides `[log] dir`): every
    /// accepted event is written there, and a restart rebuilds the picture
    /// from it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run as fusion shard I of N (0-based): own the regions `[shard]`
    /// assigns to I, subscribe only to their region-aware topics, and
    /// publish the picture for gateways.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u32, u32)>,
}

#[derive(Debug, Args)]
struct GatewayArgs {
    /// Configuration file (TOML): [http], [auth], [limits], [fusion]
    /// resolutions (the shards' own).
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP listen address (overrides the config).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The broker the shards publish to: mqtt://[user:pass@]host[:port].
    #[arg(long)]
    mqtt: String,
    /// How many fusion shards there are (`serve --shard I/N`'s N).
    #[arg(long)]
    shards: u32,
}

/// `I/N`: shard I (0-based) of N.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, e.g. 0/2"))?;
    let i: u32 = i.parse().map_err(|_| format!("{s:?}: I is not a number"))?;
    let n: u32 = n.parse().map_err(|_| format!("{s:?}: N is not a number"))?;
    if n == 0 || i >= n {
        return Err(format!("{s:?}: shards are numbered 0 to N-1"));
    }
    Ok((i, n))
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Broker: mqtt://[user:pass@]host[:port].
    #[arg(long, required_unless_present_any = ["print_datastreams", "print_scenario"])]
    mqtt: Option<String>,
    /// Built-in scenario to play: storm-surge, fire-plume, mass-casualty
    /// or heavy-rain.
    #[arg(long, default_value = "storm-surge")]
    scenario: String,
    /// Play a scenario file instead (TOML; see crates/sensors-sim/SCENARIOS.md).
    #[arg(long, conflicts_with_all = ["scenario", "load"])]
    scenario_file: Option<PathBuf>,
    /// Print a built-in scenario's file (a start for one of your own) and exit.
    #[arg(long, value_name = "NAME")]
    print_scenario: Option<String>,
    /// Load mode: publish --sensors and --units at --rate instead of a scenario.
    #[arg(long)]
    load: bool,
    /// Load mode: simulated sensors.
    #[arg(long, default_value_t = 1000, requires = "load")]
    sensors: u32,
    /// Load mode: simulated units.
    #[arg(long, default_value_t = 100, requires = "load")]
    units: u32,
    /// Load mode: messages per second; 0 = as fast as the broker takes them.
    #[arg(long, default_value_t = 1000.0, requires = "load")]
    rate: f64,
    /// Faults to inject, comma-separated: duplicates, out-of-order, late,
    /// future, malformed, silent, seq-gap (or all).
    #[arg(long)]
    faults: Option<sensors_sim::Faults>,
    /// Probability of each fault per message (per source for silent).
    #[arg(long, default_value_t = 0.05)]
    fault_rate: f64,
    /// Space to publish into: live or drill-<name>.
    #[arg(long, default_value = "live")]
    space: String,
    /// Publish region-aware topics (rm/v1/{space}/r/{region}/…) for fusion
    /// shards: the region is the H3 cell of the entity's position.
    #[arg(long)]
    regional: bool,
    /// H3 resolution of the regions (the shards' `[shard] res`).
    #[arg(long, default_value_t = 3, requires = "regional")]
    region_res: u8,
    /// Scenario seconds per wall-clock second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the scenario's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this long (e.g. 90s, 10m, 2h); default: run until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Publish format: native, senml (sensor observations as SenML packs),
    /// cot (unit positions as Cursor-on-Target events) or sensorthings
    /// (sensor observations as SensorThings Observations; live only).
    #[arg(long, default_value = "native")]
    format: sensors_sim::Format,
    /// Print the `[[formats.datastreams]]` config table the server needs
    /// for `--format sensorthings`, and exit.
    #[arg(long)]
    print_datastreams: bool,
}

/// `90s`, `10m`, `2h`, `500ms`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 2h"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Sends `true` on Ctrl-C or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            () = term => {},
        }
        info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Runs a command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Gateway(a) => gateway(a).await,
        Command::Demo(a) => demo(a).await,
        Command::Sim(a) => sim(a).await,
        Command::Replay(a) => crate::replay::run(a, shutdown_signal()).await,
        Command::Export(a) => export(a),
        Command::Render(a) => crate::render_cmd::run(a).await,
        Command::Bench(b) => crate::bench::run(b),
    }
}

fn export(a: ExportArgs) -> anyhow::Result<()> {
    if !fusion::space::is_valid_space(&a.space) {
        bail!("--space {:?} is not a space name", a.space);
    }
    let time = |s: &Option<String>| -> anyhow::Result<Option<i64>> {
        s.as_deref()
            .map(|t| {
                t.parse::<i64>().or_else(|_| {
                    ingest::wire::rfc3339_ms(t)
                        .map_err(|e| anyhow::anyhow!("{t:?}: not RFC 3339 or epoch ms: {e}"))
                })
            })
            .transpose()
    };
    let window = ingest::log::Window {
        from_ms: time(&a.from)?,
        to_ms: time(&a.to)?,
    };
    let dir = a.data.join(&a.space);
    if ingest::log::segments(&dir)?.is_empty() {
        bail!(
            "no event log for space {:?} in {}",
            a.space,
            a.data.display()
        );
    }
    let report = ingest::log::export(&dir, window, &a.out)
        .with_context(|| format!("cannot export to {}", a.out.display()))?;
    for d in &report.damaged {
        warn!(segment = %d.segment.display(), records_read = d.records_read, error = %d.error, "damaged segment: exported up to the damage");
    }
    println!(
        "exported {} records of {:?} to {} ({} damaged segments)",
        report.records,
        a.space,
        a.out.display(),
        report.damaged.len()
    );
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let broker = match (a.mqtt, a.embedded_broker) {
        (Some(url), _) => BrokerChoice::External(url),
        (None, Some(addr)) => BrokerChoice::Embedded(addr),
        (None, None) => match &config.mqtt.url {
            Some(url) => BrokerChoice::External(url.clone()),
            None => BrokerChoice::Embedded(config.mqtt.embedded),
        },
    };
    let http = a.http.unwrap_or(config.http.listen);
    let mut config = config;
    if let Some(data) = a.data {
        config.log.dir = Some(data);
    }
    if let Some((_, n)) = a.shard {
        // Checked before anything starts: assignments beyond N are errors.
        config.shard.map(n)?;
        if matches!(broker, BrokerChoice::Embedded(_)) {
            bail!("a shard needs the shared broker: --mqtt URL (or [mqtt] url)");
        }
    }
    config.shard_role = a.shard;
    let shutdown = shutdown_signal();
    let running = server::start(&config, broker, http, shutdown).await?;
    println!(
        "RESCUE MATE serving http://{}/ (MQTT {})",
        running.http, running.broker_url
    );
    let _ = std::io::stdout().flush();
    running.done.await.context("server task panicked")?
}

async fn gateway(a: GatewayArgs) -> anyhow::Result<()> {
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let http = a.http.unwrap_or(config.http.listen);
    let shutdown = shutdown_signal();
    let gw = crate::scale::start_gateway(&config, a.mqtt, a.shards, http, shutdown).await?;
    println!(
        "RESCUE MATE gateway serving http://{}/ ({} shards)",
        gw.http, a.shards
    );
    let _ = std::io::stdout().flush();
    gw.done.await.context("gateway task panicked")?
}

async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let opts = SimOptions {
        speed: a.speed,
        ..SimOptions::new(a.scenario.as_str())
    };
    opts.validate()?;
    let mut config = Config::default();
    let data = a.data.unwrap_or_else(|| {
        // Process ids come round again: the time makes the folder new.
        std::env::temp_dir().join(format!(
            "rescuemate-demo-{}-{}",
            std::process::id(),
            ingest::now_ms()
        ))
    });
    info!(data = %data.display(), "demo event log");
    config.log.dir = Some(data);
    // The scenario runs faster than its wall-clock stamps: vehicles would
    // look like jumping sources without plausible speeds to match.
    config.sources = config.sources.compressed(a.speed);
    let shutdown = shutdown_signal();
    // Any free port for the broker, so the demo runs beside a local Mosquitto.
    let any_port: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let running = server::start(
        &config,
        BrokerChoice::Embedded(any_port),
        a.http,
        shutdown.clone(),
    )
    .await?;
    let broker_url = running.broker_url.clone();
    let scenario = opts.scenario.clone();
    let mqtt = ingest::mqtt_options(&broker_url, "rescuemate-demo-sim")?;
    let sim = tokio::spawn(sensors_sim::run(mqtt, opts, server::stopped(shutdown)));
    println!(
        "RESCUE MATE demo: open http://{}/  (scenario {scenario}, MQTT {broker_url}; Ctrl-C stops)",
        running.http
    );
    let _ = std::io::stdout().flush();
    let served = running.done.await.context("server task panicked")?;
    match sim.await {
        Ok(Ok(report)) => info!(published = report.published, "simulator stopped"),
        Ok(Err(e)) => warn!(error = %e, "simulator failed"),
        Err(e) => warn!(error = %e, "simulator task panicked"),
    }
    served
}

async fn sim(a: SimArgs) -> anyhow::Result<()> {
    if let Some(name) = &a.print_scenario {
        let Some(text) = sensors_sim::builtin_file(name) else {
            bail!(
                "unknown scenario {name:?} (known: {})",
                sensors_sim::scenarios().join(", ")
            );
        };
        print!("{text}");
        return Ok(());
    }
    if a.print_datastreams {
        let mut scenario = match &a.scenario_file {
            Some(path) => sensors_sim::Scenario::from_file(path, "live", a.seed)?,
            None => sensors_sim::Scenario::new(&a.scenario, "live", a.seed)?,
        };
        let first = scenario.step(0.0, ingest::now_ms());
        print!("{}", sensors_sim::format::datastream_table(&first));
        return Ok(());
    }
    let Some(url) = a.mqtt else {
        bail!("--mqtt is needed to publish");
    };
    let opts = SimOptions {
        scenario: a.scenario,
        space: a.space,
        speed: a.speed,
        seed: a.seed,
        duration: a.duration,
        format: a.format,
        file: a.scenario_file,
        load: a.load.then_some(sensors_sim::LoadOptions {
            sensors: a.sensors,
            units: a.units,
            rate: a.rate,
        }),
        faults: sensors_sim::Faults {
            rate: a.fault_rate,
            ..a.faults.unwrap_or_default()
        },
        regions: a.regional.then_some(a.region_res),
        ..SimOptions::default()
    };
    opts.validate()?;
    let opts_faults = opts.faults.any();
    let mqtt = ingest::mqtt_options(&url, &format!("rescuemate-sim-{}", std::process::id()))?;
    let shutdown = shutdown_signal();
    let report = sensors_sim::run(mqtt, opts, server::stopped(shutdown)).await?;
    println!(
        "published {} messages ({} acknowledged, {} dropped) over {:.0} scenario seconds",
        report.published, report.acknowledged, report.dropped, report.scenario_seconds
    );
    if opts_faults {
        let f = report.faults;
        println!(
            "faults: {} duplicated, {} out of order, {} late, {} future, {} malformed, {} sources silent ({} messages), {} seq skipped",
            f.duplicated,
            f.reordered,
            f.late,
            f.future,
            f.malformed,
            f.silenced_sources,
            f.silenced,
            f.seq_skipped
        );
    }
    if report.published == 0 {
        bail!("nothing was published");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
