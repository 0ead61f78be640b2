//! `rescuemate bench ingest`: is ingest the bottleneck? The rate at which
//! our server accepts native JSON from a broker, next to the rate a bare
//! MQTT subscriber reaches on the same broker in the same run.
//!
//! Two methods (`--mode`). `live` (the default): the bare subscriber and
//! our server (in-process) are subscribed at the same time while a
//! publisher sends N messages as fast as the broker takes them; each side's
//! rate is N over the time from its first message to its last. Both see
//! the same stream, so a ratio below 1 means ours fell behind the broker.
//!
//! `drain`, the harsher one: both sides drain the same backlog. A persistent QoS 1 session
//! subscribes and goes away; a publisher puts N messages on the broker,
//! which queues them for the session (our Mosquitto runs without a queue
//! limit); then the subscriber comes back and the clock runs from its
//! connection until it has all N. The bare subscriber is an MQTT client
//! that counts and acknowledges; ours is the whole server in-process
//! (decode, validate, hand to fusion, acknowledge once fusion has the
//! event, fusion applying and flushing). Runs alternate bare and ours; the
//! medians and their ratio are reported.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use crate::config::Config;
use crate::server::{self, BrokerChoice};

/// Options of `bench ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Print one JSON object with the figures as the last line.
    #[arg(long)]
    json: bool,
    /// Messages per run.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Runs of each side; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Use this broker (mqtt://host:port) instead of starting Mosquitto.
    /// It must queue at least `--messages` for an offline session.
    #[arg(long)]
    mqtt: Option<String>,
    /// After each run of our server, print its `rm_` metrics (backlog,
    /// acknowledgements waiting, outcomes) to stderr.
    #[arg(long)]
    show_metrics: bool,
    /// `live`: both subscribed while a publisher publishes; `drain`: each
    /// drains a backlog queued for it.
    #[arg(long, value_enum, default_value_t = Mode::Live)]
    mode: Mode,
    /// Publishing clients in `live` mode (one alone cannot fill the broker).
    #[arg(long, default_value_t = 8)]
    publishers: usize,
}

/// How the two subscribers are fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Both subscribed to one stream as it is published.
    Live,
    /// Each drains a backlog the broker queued for it.
    Drain,
}

/// The issue's target.
const TARGET_RATIO: f64 = 0.9;
const PATIENCE: Duration = Duration::from_secs(120);
/// Sensors the messages are spread over (each numbers its own `seq`).
const SENSORS: usize = 1_000;

/// A Mosquitto of our own, stopped and cleaned up when dropped.
pub(crate) struct Mosquitto {
    child: Child,
    dir: PathBuf,
}

impl Mosquitto {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts Mosquitto on a free loopback port: the process and its URL.
fn start_mosquitto() -> anyhow::Result<(Mosquitto, String)> {
    let bin = [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .context("Mosquitto not found (apt-get install mosquitto), or pass --mqtt URL")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("rm-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("mosquitto.conf");
    // No queue limit: the whole backlog waits for the session.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_queued_bytes 0\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start mosquitto")?;
    let m = Mosquitto { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not listen within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((m, format!("mqtt://127.0.0.1:{port}")))
}

fn options(url: &str, id: &str) -> anyhow::Result<MqttOptions> {
    let mut o = ingest::mqtt_options(url, id)?;
    o.set_clean_session(false);
    Ok(o)
}

/// Publishes `n` native observations QoS 1 from `publishers` clients at
/// once (each owns a share of the sensors, so every sensor's `seq` stays in
/// order) and waits for every PUBACK.
async fn preload(url: &str, n: usize, run: usize, publishers: usize) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let mut o = options(url, &format!("rm-bench-publisher-{p}"))?;
        o.set_inflight(1_000);
        tasks.push(tokio::spawn(publish_share(o, n, run, p, publishers)));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn publish_share(
    o: MqttOptions,
    n: usize,
    run: usize,
    share: usize,
    shares: usize,
) -> anyhow::Result<()> {
    let mine: Vec<usize> = (0..n).filter(|i| (i % SENSORS) % shares == share).collect();
    let expected = mine.len();
    let (client, mut eventloop) = AsyncClient::new(o, 1_000);
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < expected {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("publisher lost the broker: {e}")),
            }
        }
        Ok(())
    });
    let ts = ingest::now_ms() - 600_000;
    let base = run * n;
    for i in mine {
        let sensor = i % SENSORS;
        let seq = base / SENSORS + i / SENSORS + 1;
        let value = 1.0 + (i % 97) as f64 / 100.0;
        let payload = format!(
            r#"{{"ts":{},"value":{value},"seq":{seq},"lat":53.5{sensor:03},"lon":9.9{sensor:03}}}"#,
            ts + (base + i) as i64
        );
        client
            .publish(
                format!("rm/v1/live/sensor/bench-{sensor}/obs"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await?;
    }
    tokio::time::timeout(PATIENCE, acks)
        .await
        .context("the broker did not acknowledge every message")???;
    let _ = client.disconnect().await;
    Ok(())
}

/// Connects with `opts`, subscribes to the native contract if `subscribe`,
/// waits for the broker's answer (SUBACK, or CONNACK) and leaves.
async fn visit(opts: MqttOptions, subscribe: bool) -> anyhow::Result<()> {
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    if subscribe {
        client.subscribe("rm/v1/#", QoS::AtLeastOnce).await?;
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) if subscribe => return Ok(()),
                Ok(Event::Incoming(Packet::ConnAck(_))) if !subscribe => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        }
    })
    .await
    .context("no answer from the broker")??;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// Subscribes a persistent session `id` and leaves, so the broker queues
/// for it.
async fn open_session(url: &str, id: &str) -> anyhow::Result<()> {
    visit(options(url, id)?, true).await
}

/// Ends session `id` (a clean connection), so that later runs' messages
/// are not queued for it.
async fn close_session(url: &str, id: &str) -> anyhow::Result<()> {
    let mut o = ingest::mqtt_options(url, id)?;
    o.set_clean_session(true);
    visit(o, false).await
}

/// The bare subscriber drains the backlog: messages per second.
async fn bare(url: &str, n: usize, run: usize) -> anyhow::Result<f64> {
    let id = format!("rm-bench-bare-{run}");
    open_session(url, &id).await?;
    preload(url, n, run, 1).await?;
    let (client, mut eventloop) = AsyncClient::new(options(url, &id)?, 1_000);
    let mut start = None;
    let mut got = 0;
    tokio::time::timeout(PATIENCE, async {
        while got < n {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => start = Some(Instant::now()),
                Ok(Event::Incoming(Packet::Publish(_))) => got += 1,
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("bare subscriber: {e}")),
            }
        }
        Ok(())
    })
    .await
    .context("the bare subscriber did not get every message")??;
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    let _ = client.disconnect().await;
    drop(eventloop);
    close_session(url, &id).await?;
    Ok(n as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// Both subscribed to the stream as it is published: (bare, ours, publish)
/// messages per second.
pub(crate) async fn live(
    url: &str,
    n: usize,
    run: usize,
    publishers: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut config = Config::default();
    config.mqtt.client_id = format!("rm-bench-live-ours-{run}");
    let (stop, stopped) = watch::channel(false);
    let running = server::start(
        &config,
        BrokerChoice::External(url.to_owned()),
        "127.0.0.1:0".parse()?,
        stopped,
    )
    .await?;
    let link = running.link.clone();
    let ready_by = Instant::now() + Duration::from_secs(10);
    while !link.is_ready() {
        if Instant::now() > ready_by {
            bail!("our server did not subscribe within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut o = ingest::mqtt_options(url, &format!("rm-bench-live-bare-{run}"))?;
    o.set_clean_session(true);
    let (bare, mut eventloop) = AsyncClient::new(o, 1_000);
    bare.subscribe("rm/v1/#", QoS::AtLeastOnce).await?;
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let counter = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        let (mut first, mut got) = (None, 0);
        while got < n {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    first.get_or_insert_with(Instant::now);
                    got += 1;
                }
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("bare subscriber: {e}")),
            }
        }
        Ok(first.map_or(Duration::ZERO, |f| f.elapsed()))
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .context("the bare subscriber got no SUBACK")??;
    let before = link.accepted();
    let publishing = tokio::spawn({
        let url = url.to_owned();
        async move {
            let t = Instant::now();
            preload(&url, n, run, publishers)
                .await
                .map(|()| t.elapsed())
        }
    });
    let (mut first, deadline) = (None, Instant::now() + PATIENCE);
    while link.accepted() < before + n as u64 {
        if first.is_none() && link.accepted() > before {
            first = Some(Instant::now());
        }
        if Instant::now() > deadline {
            bail!(
                "our server accepted {} of {n} in {PATIENCE:?}",
                link.accepted() - before
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ours = first.map_or(Duration::ZERO, |f| f.elapsed());
    let bare_took = tokio::time::timeout(PATIENCE, counter)
        .await
        .context("the bare subscriber did not get every message")???;
    let published = tokio::time::timeout(PATIENCE, publishing)
        .await
        .context("publishing did not finish")???;
    let _ = bare.disconnect().await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), running.done).await;
    close_session(url, &config.mqtt.client_id).await?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    Ok((rate(bare_took), rate(ours), rate(published)))
}

/// Our server drains the backlog: messages per second accepted.
async fn ours(url: &str, n: usize, run: usize, show_metrics: bool) -> anyhow::Result<f64> {
    let id = format!("rm-bench-ours-{run}");
    open_session(url, &id).await?;
    preload(url, n, run, 1).await?;
    let mut config = Config::default();
    config.mqtt.client_id = id.clone();
    let (stop, stopped) = watch::channel(false);
    let http = "127.0.0.1:0".parse()?;
    let began = Instant::now();
    let running = server::start(
        &config,
        BrokerChoice::External(url.to_owned()),
        http,
        stopped,
    )
    .await?;
    let link = running.link.clone();
    let mut start = None;
    let deadline = began + PATIENCE;
    while link.accepted() < n as u64 {
        if start.is_none() && link.connects() > 0 {
            start = Some(Instant::now());
        }
        if Instant::now() > deadline {
            if let Ok(mut r) = ureq::get(&format!("http://{}/metrics", running.http)).call() {
                let text = r.body_mut().read_to_string().unwrap_or_default();
                for l in text.lines().filter(|l| l.starts_with("rm_")) {
                    eprintln!("{l}");
                }
            }
            bail!(
                "our server accepted {} of {n} messages in {PATIENCE:?}",
                link.accepted()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.unwrap_or(began).elapsed();
    if show_metrics && let Ok(mut r) = ureq::get(&format!("http://{}/metrics", running.http)).call()
    {
        let text = r.body_mut().read_to_string().unwrap_or_default();
        for l in text.lines().filter(|l| l.starts_with("rm_")) {
            eprintln!("{l}");
        }
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), running.done).await;
    close_session(url, &id).await?;
    Ok(n as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// The median (of at least one value).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// Runs the benchmark.
pub fn ingest_bench(a: &IngestArgs) -> anyhow::Result<()> {
    if a.messages == 0 || a.runs == 0 {
        bail!("--messages and --runs must be at least 1");
    }
    // A runtime of its own, on a thread of its own: the command line
    // already runs inside one.
    let a = IngestArgs {
        publishers: a.publishers.max(1),
        ..a.clone()
    };
    std::thread::spawn(move || measure(&a))
        .join()
        .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

/// The broker a benchmark uses: `mqtt` when given, else a Mosquitto of
/// its own (stopped when the handle is dropped).
pub(crate) fn broker_for(mqtt: Option<&str>) -> anyhow::Result<(Option<Mosquitto>, String)> {
    Ok(match mqtt {
        Some(url) => (None, url.to_owned()),
        None => {
            let (m, url) = start_mosquitto()?;
            (Some(m), url)
        }
    })
}

fn measure(a: &IngestArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (_mosquitto, url) = broker_for(a.mqtt.as_deref())?;
    let (mut bare_rates, mut our_rates) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for run in 0..a.runs {
            let (b, o) = match a.mode {
                Mode::Live => {
                    let (b, o, p) = live(&url, a.messages, run, a.publishers).await?;
                    eprintln!("run {}: published at {p:.0} msg/s", run + 1);
                    (b, o)
                }
                Mode::Drain => (
                    bare(&url, a.messages, run).await?,
                    ours(&url, a.messages, run, a.show_metrics).await?,
                ),
            };
            eprintln!(
                "run {}: bare subscriber {b:.0} msg/s, our server {o:.0} msg/s, ratio {:.2}",
                run + 1,
                o / b
            );
            bare_rates.push(b);
            our_rates.push(o);
        }
        anyhow::Ok(())
    })?;
    let ratios: Vec<f64> = our_rates
        .iter()
        .zip(&bare_rates)
        .map(|(o, b)| o / b)
        .collect();
    let (bare_m, ours_m, ratio) = (
        median(bare_rates.clone()),
        median(our_rates.clone()),
        median(ratios.clone()),
    );
    println!(
        "ingest: {} messages per run, {} runs, broker {url}",
        a.messages, a.runs
    );
    println!("  bare MQTT subscriber  {bare_m:>10.0} msg/s (median)");
    println!("  our server (accepted) {ours_m:>10.0} msg/s (median)");
    println!(
        "  ingest_ratio {ratio:.2} (target ≥ {TARGET_RATIO}: {})",
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    if a.json {
        let json = serde_json::json!({
            "bench": "ingest",
            "mode": format!("{:?}", a.mode).to_lowercase(),
            "messages": a.messages,
            "runs": a.runs,
            "bare_msgs_per_s": bare_m.round(),
            "ours_msgs_per_s": ours_m.round(),
            "ingest_ratio": (ratio * 1000.0).round() / 1000.0,
            "ratios": ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "target_ratio": TARGET_RATIO,
        });
        println!("{json}");
    }
    Ok(())
}
