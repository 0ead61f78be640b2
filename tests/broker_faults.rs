//! The ingest side against real brokers when things go wrong: Mosquitto
//! killed (`kill -9`) mid-stream and restarted, an offline burst longer
//! than Mosquitto's queue, and NATS' MQTT listener as a second broker.
//!
//! What these tests hold the server to: it reconnects by itself, renews
//! its subscriptions when the broker forgot them, and loss is never
//! silent. A broker may lose messages (Mosquitto drops what exceeds its
//! queue and, after `kill -9` with the default autosave, the whole
//! session), so every observation carries the sensor's `seq`, and every
//! `seq` the publisher sent must be either applied by fusion or counted as
//! missed (`rm_fusion_seq_missed_total`, with a `seq_gap` alert).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SPACE: &str = "live";
const GAUGE: (f64, f64) = (53.545_6, 9.970_0);
/// Generous: the test machine may be small and busy.
const PATIENCE: Duration = Duration::from_secs(30);

/// The value a gauge reports with `seq`: stays below every threshold, and
/// the picture's value tells which `seq` it came from.
fn value(seq: u64) -> f64 {
    1.0 + seq as f64 / 1000.0
}

fn seq_of(value: f64) -> u64 {
    ((value - 1.0) * 1000.0).round() as u64
}

/// One gauge that numbers its observations (`seq`), one second apart in
/// event time, starting an hour ago.
struct Gauge {
    id: &'static str,
    t0: i64,
}

impl Gauge {
    fn new(id: &'static str) -> Gauge {
        Gauge {
            id,
            t0: now_ms() - 3_600_000,
        }
    }

    fn meta_topic(&self) -> String {
        format!("rm/v1/{SPACE}/sensor/{}/meta", self.id)
    }

    fn obs_topic(&self) -> String {
        format!("rm/v1/{SPACE}/sensor/{}/obs", self.id)
    }

    fn meta(&self) -> String {
        json!({"kind": "water_level", "unit": "m NHN", "lat": GAUGE.0, "lon": GAUGE.1,
               "name": self.id})
        .to_string()
    }

    fn obs(&self, seq: u64) -> String {
        let ts = self.t0 + i64::try_from(seq).expect("small seq") * 1000;
        json!({"ts": ts, "value": value(seq), "seq": seq}).to_string()
    }

    async fn publish_meta(&self, p: &Publisher) {
        p.publish(&self.meta_topic(), self.meta(), true).await;
    }

    async fn publish(&self, p: &Publisher, seqs: std::ops::RangeInclusive<u64>, gap: Duration) {
        for seq in seqs {
            p.publish(&self.obs_topic(), self.obs(seq), false).await;
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
    }

    /// The `seq` of the value the picture shows, if any.
    fn shown(&self, addr: SocketAddr) -> Option<u64> {
        let snap = snapshot(addr, SPACE)?;
        sensor_of(&snap, self.id)?["value"].as_f64().map(seq_of)
    }

    /// Waits until the picture shows `seq`'s value.
    async fn wait_shown(&self, addr: SocketAddr, seq: u64) {
        eventually(&format!("{} shows seq {seq}", self.id), PATIENCE, || {
            (self.shown(addr) == Some(seq)).then_some(())
        })
        .await;
    }

    /// Keeps reporting (one new `seq` every 200 ms, from `next` on) until
    /// the picture shows the newest one, as a sensor that reports
    /// periodically would; returns the last `seq` published.
    async fn report_until_shown(&self, p: &Publisher, addr: SocketAddr, next: u64) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        let mut seq = next;
        loop {
            p.publish(&self.obs_topic(), self.obs(seq), false).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if self.shown(addr) == Some(seq) {
                return seq;
            }
            assert!(
                Instant::now() < deadline,
                "{}: seq {seq} not shown within {PATIENCE:?} (shown: {:?})",
                self.id,
                self.shown(addr)
            );
            seq += 1;
        }
    }
}

/// What fusion did with the observations, read from `/metrics`.
#[derive(Debug)]
struct Accounting {
    /// Events applied (this test's one sensor description included).
    applied: u64,
    duplicates: u64,
    outdated: u64,
    /// `seq` values skipped, by gaps seen.
    missed: u64,
    gaps: u64,
    refused: u64,
}

fn counter(addr: SocketAddr, name: &str, labels: &[&str]) -> u64 {
    metric(addr, name, labels).unwrap_or(0.0) as u64
}

fn accounting(addr: SocketAddr) -> Accounting {
    Accounting {
        applied: counter(addr, "rm_fusion_events_total", &[r#"outcome="applied""#]),
        duplicates: counter(addr, "rm_fusion_events_total", &[r#"outcome="duplicate""#]),
        outdated: counter(addr, "rm_fusion_events_total", &[r#"outcome="outdated""#]),
        missed: counter(addr, "rm_fusion_seq_missed_total", &[]),
        gaps: counter(addr, "rm_fusion_seq_gaps_total", &[]),
        refused: counter(addr, "rm_fusion_refused_total", &[]),
    }
}

fn seq_gap_alerts(addr: SocketAddr, id: &str) -> Vec<Value> {
    let snap = snapshot(addr, SPACE).expect("snapshot");
    snap["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == "seq_gap" && a["entity"] == id)
        .cloned()
        .collect()
}

/// Loss is never silent: the picture shows `last`, and every `seq` from
/// `first` to `last` was either applied or counted as missed; where any
/// was missed, a `seq_gap` alert says so. `first` is the first `seq` this
/// server process saw (None: unknown, derive it). Returns the accounting.
fn assert_accounted(addr: SocketAddr, gauge: &Gauge, first: Option<u64>, last: u64) -> Accounting {
    let acc = accounting(addr);
    eprintln!("fusion accounting: {acc:?}");
    assert_eq!(gauge.shown(addr), Some(last), "the newest value is shown");
    assert_eq!(acc.refused, 0, "nothing refused: {acc:?}");
    // One event applied was the sensor's description (a repeated identical
    // description counts as a duplicate); the rest are observations, in
    // increasing `seq` (their event times increase with it).
    let observations = acc
        .applied
        .checked_sub(1)
        .expect("the description was applied");
    let accounted = observations + acc.missed;
    match first {
        Some(first) => assert_eq!(
            accounted,
            last - first + 1,
            "every seq in {first}..={last} is applied or counted as missed: {acc:?}"
        ),
        None => assert!(accounted <= last, "{acc:?}"),
    }
    let alerts = seq_gap_alerts(addr, gauge.id);
    if acc.missed > 0 {
        assert!(acc.gaps > 0, "{acc:?}");
        assert!(
            !alerts.is_empty(),
            "{} seq values missed but no seq_gap alert",
            acc.missed
        );
        eprintln!("seq_gap alert: {}", alerts[0]);
    } else {
        assert!(alerts.is_empty(), "no gap, yet an alert: {alerts:?}");
    }
    acc
}

/// The server's `connected to MQTT broker` log lines.
fn connects_logged(server: &Proc) -> Vec<String> {
    server.log_lines("connected to MQTT broker")
}

fn mosquitto_or_skip() -> Option<&'static str> {
    let bin = mosquitto_binary();
    if bin.is_none() {
        skip_unless(false, "mosquitto (apt-get install mosquitto)");
    }
    bin
}

/// Observations 1..=N at a modest rate; Mosquitto is killed (`kill -9`)
/// mid-stream, some observations are published while it is down, it is
/// restarted on the same port, the publisher reconnects and goes on.
async fn broker_killed_mid_stream(persistence: Persistence) {
    const N: u64 = 400;
    const BEFORE_KILL: u64 = 150;
    const WHILE_DOWN: u64 = 20;
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let started = Instant::now();
    let mut broker = Mosquitto::start(bin, free_port(), persistence);
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let gauge = Gauge::new("kill9-gauge");
    let publisher = Publisher::connect(broker.port, "kill9-publisher").await;
    gauge.publish_meta(&publisher).await;
    let (server, addr) = start_server_with_broker(&url);
    eventually("the retained description arrives", PATIENCE, || {
        snapshot(addr, SPACE)
            .filter(|s| sensor_of(s, gauge.id).is_some())
            .map(|_| ())
    })
    .await;

    let gap = Duration::from_millis(10);
    gauge.publish(&publisher, 1..=BEFORE_KILL, gap).await;
    broker.kill9();
    let killed = Instant::now();
    // Degraded mode: not ready (a load balancer and the web client can
    // tell), and the picture still served.
    eventually("healthz reports the lost broker", PATIENCE, || {
        (http_get(addr, "/healthz").0 == 503).then_some(())
    })
    .await;
    assert!(
        snapshot(addr, SPACE).is_some_and(|s| sensor_of(&s, gauge.id).is_some()),
        "the picture stays served while the broker is down"
    );
    // Published while the broker is down: the client holds them and sends
    // them once it is back, possibly before the server has subscribed
    // again. They may be lost: that is the point.
    gauge
        .publish(&publisher, BEFORE_KILL + 1..=BEFORE_KILL + WHILE_DOWN, gap)
        .await;
    broker.restart();
    eprintln!("broker down for {:?}", killed.elapsed());
    publisher.wait_connects(2).await;

    // The server reconnects by itself ...
    eventually("the server reconnects", PATIENCE, || {
        let connected = metric(addr, "rm_mqtt_connected", &[])?;
        let errors = metric(addr, "rm_mqtt_connection_errors_total", &[])?;
        (connected == 1.0 && errors > 0.0).then_some(())
    })
    .await;
    // ... and receives what is published now: its subscriptions hold
    // (restored with the session, or renewed). A message the decoder
    // refuses proves it without touching fusion's accounting.
    let probe = format!("rm/v1/{SPACE}/sensor/probe/obs");
    let deadline = Instant::now() + PATIENCE;
    while counter(addr, "rm_ingest_refused_total", &[]) == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing published after the broker's restart reached the server"
        );
        publisher.publish(&probe, "probe", false).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gauge
        .publish(&publisher, BEFORE_KILL + WHILE_DOWN + 1..=N, gap)
        .await;
    gauge.wait_shown(addr, N).await;

    let acc = assert_accounted(addr, &gauge, Some(1), N);
    let errors = metric(addr, "rm_mqtt_connection_errors_total", &[]).unwrap_or(0.0);
    let connects = connects_logged(&server);
    eprintln!(
        "{persistence:?}: {} of {N} observations applied, {} missed in {} gap(s), {} duplicate(s), \
         {} outdated; {errors} connection error(s); publisher pubacks {}; server connections: \
         {connects:#?}",
        acc.applied - 1,
        acc.missed,
        acc.gaps,
        acc.duplicates,
        acc.outdated,
        publisher.pubacks.load(Ordering::Relaxed),
    );
    assert!(connects.len() >= 2, "{connects:?}");
    // With the default autosave, `kill -9` loses the server's session: the
    // reconnection must have found none, so the subscriptions the probe
    // proved were renewed by the server, not restored by the broker.
    let last_connect = connects.last().map(String::as_str).unwrap_or_default();
    if persistence == Persistence::Default && last_connect.contains("session_present") {
        assert!(
            last_connect.contains("session_present=false"),
            "expected the broker to have lost the session: {last_connect}"
        );
    }
    let log = broker.log();
    let log: Vec<&str> = log.lines().filter(|l| !l.contains("Saving")).collect();
    eprintln!("mosquitto log: {log:#?}");
    eprintln!("took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_and_its_session_lost_nothing_is_lost_silently() {
    broker_killed_mid_stream(Persistence::Default).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_with_its_session_saved_nothing_is_lost_silently() {
    broker_killed_mid_stream(Persistence::EveryChange).await;
}

/// How the server is taken away while the burst is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGSTOP / SIGCONT: the process keeps its picture; its connection
    /// stays open but nothing is read or acknowledged.
    Frozen,
    /// `kill -9`, then a new process with the same client id: the broker
    /// keeps the persistent session, the new process starts from nothing.
    Killed,
}

/// An offline burst longer than Mosquitto's queue (1,000 by default): the
/// broker acknowledges it all to the publisher and drops what does not fit.
async fn burst_beyond_the_queue(outage: Outage) {
    const BEFORE: u64 = 10;
    const BURST: u64 = 1_500;
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let started = Instant::now();
    let broker = Mosquitto::start(bin, free_port(), Persistence::Default);
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let gauge = Gauge::new("burst-gauge");
    let publisher = Publisher::connect(broker.port, "burst-publisher").await;
    gauge.publish_meta(&publisher).await;
    let (mut server, mut addr) = start_server_with_broker(&url);
    gauge
        .publish(&publisher, 1..=BEFORE, Duration::from_millis(10))
        .await;
    gauge.wait_shown(addr, BEFORE).await;

    match outage {
        Outage::Frozen => server.signal("STOP"),
        Outage::Killed => {
            server.child.kill().expect("kill -9 the server");
            server.child.wait().expect("the server is gone");
        }
    }
    gauge
        .publish(&publisher, BEFORE + 1..=BEFORE + BURST, Duration::ZERO)
        .await;
    // The description, then every observation: all acknowledged by the
    // broker, whether it keeps them or not.
    publisher.wait_acked(1 + BEFORE + BURST).await;
    match outage {
        Outage::Frozen => server.signal("CONT"),
        // Same client id (the configured one), so the same session.
        Outage::Killed => (server, addr) = start_server_with_broker(&url),
    }
    let last = gauge
        .report_until_shown(&publisher, addr, BEFORE + BURST + 1)
        .await;
    let first = match outage {
        Outage::Frozen => Some(1),
        // The new process saw neither the first observations nor knows
        // which ones; every `seq` from its first on must be accounted.
        Outage::Killed => None,
    };
    let acc = assert_accounted(addr, &gauge, first, last);
    assert!(
        acc.missed > 0,
        "{BURST} messages for an offline client with a queue of 1,000: some must show as missed: {acc:?}"
    );
    let observations = acc.applied - 1;
    let first_seen = last + 1 - (observations + acc.missed);
    eprintln!(
        "{outage:?}: published seq 1..={last}; this process applied {observations} from seq \
         {first_seen} on, missed {} in {} gap(s), {} duplicate(s), {} outdated; server \
         connections: {:#?}",
        acc.missed,
        acc.gaps,
        acc.duplicates,
        acc.outdated,
        connects_logged(&server)
    );
    let log = broker.log();
    let dropped: Vec<&str> = log.lines().filter(|l| l.contains("dropped")).collect();
    eprintln!("mosquitto about dropping: {dropped:?}");
    eprintln!("took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_queue_for_a_frozen_server_shows_as_a_gap() {
    burst_beyond_the_queue(Outage::Frozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_queue_for_a_killed_server_shows_as_a_gap_after_its_restart() {
    burst_beyond_the_queue(Outage::Killed).await;
}

/// A backlog far larger than the MQTT client's request queue (1,024), as a
/// broker without a queue limit delivers it at once on reconnection: every
/// message must be acknowledged in the end. (An acknowledgement refused by
/// a full request queue used to be dropped; the broker then kept waiting
/// for it and ingest stalled.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_clients_request_queue_drains_completely() {
    const BACKLOG: u64 = 30_000;
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let broker = Mosquitto::start_with(
        bin,
        free_port(),
        Persistence::Off,
        "max_queued_messages 0\nmax_queued_bytes 0\n",
    );
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let mut gauge = Gauge::new("backlog-gauge");
    // One observation a second of event time: start early enough that the
    // last is not in the future.
    gauge.t0 = now_ms() - 10 * 3_600_000;
    let publisher = Publisher::connect(broker.port, "backlog-publisher").await;
    gauge.publish_meta(&publisher).await;
    let (mut server, addr) = start_server_with_broker(&url);
    gauge.publish(&publisher, 1..=1, Duration::ZERO).await;
    gauge.wait_shown(addr, 1).await;
    server.child.kill().expect("kill -9 the server");
    server.child.wait().expect("the server is gone");
    gauge
        .publish(&publisher, 2..=BACKLOG + 1, Duration::ZERO)
        .await;
    publisher.wait_acked(2 + BACKLOG).await;
    // Same client id, same session: the whole backlog comes at once.
    let (server, addr) = start_server_with_broker(&url);
    gauge.wait_shown(addr, BACKLOG + 1).await;
    let acc = accounting(addr);
    assert_eq!(
        (acc.applied, acc.missed),
        (1 + BACKLOG, 0),
        "every queued message applied, none missed: {acc:?}"
    );
    // Nothing left unacknowledged: once the client has caught up, no
    // acknowledgement waits and the broker redelivers nothing.
    eventually("every acknowledgement sent", PATIENCE, || {
        (metric(addr, "rm_ingest_acks_waiting", &[]).unwrap_or(0.0) == 0.0).then_some(())
    })
    .await;
    // Sent means received: the broker forgets what was acknowledged. A
    // server started afresh on the same session (kill -9, no event log, so
    // it would apply anything redelivered) gets only what comes next: the
    // sensor's retained description (it subscribes afresh) and the new
    // observation.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(server);
    let (server, addr) = start_server_with_broker(&url);
    gauge
        .publish(&publisher, BACKLOG + 2..=BACKLOG + 2, Duration::ZERO)
        .await;
    gauge.wait_shown(addr, BACKLOG + 2).await;
    let acc = accounting(addr);
    assert_eq!(
        (acc.applied, acc.duplicates),
        (2, 0),
        "nothing redelivered after the backlog was acknowledged: {acc:?}"
    );
    drop(server);
}

/// Where `nats-server` is installed, if it is.
fn nats_binary() -> Option<&'static str> {
    [
        "/usr/sbin/nats-server",
        "/usr/local/bin/nats-server",
        "/usr/bin/nats-server",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .or_else(|| have("nats-server", "--version").then_some("nats-server"))
}

/// A NATS server of the test's own (JetStream on, MQTT listener on a free
/// port); killed and its folder removed when dropped.
struct Nats {
    child: Child,
    dir: std::path::PathBuf,
    mqtt_port: u16,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nats {
    fn start(bin: &str) -> Nats {
        let client_port = free_port();
        let mqtt_port = loop {
            let p = free_port();
            if p != client_port {
                break p;
            }
        };
        let dir = std::env::temp_dir().join(format!("rm-nats-{}-{mqtt_port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "server_name: rm_test_{mqtt_port}\nlisten: 127.0.0.1:{client_port}\n\
                 jetstream {{\n  store_dir: \"{}\"\n}}\nmqtt {{\n  listen: 127.0.0.1:{mqtt_port}\n}}\n",
                dir.join("jetstream").display()
            ),
        )
        .expect("write config");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let nats = Nats {
            child,
            dir,
            mqtt_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server's MQTT listener not up within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nats
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_works_against_nats_mqtt() {
    let Some(bin) = nats_binary() else {
        skip_unless(false, "nats-server (apt-get install nats-server)");
        return;
    };
    let started = Instant::now();
    let nats = Nats::start(bin);
    let publisher = Publisher::connect(nats.mqtt_port, "nats-publisher").await;
    // Retained before the server exists.
    let gauge = Gauge::new("nats-gauge");
    gauge.publish_meta(&publisher).await;
    let unit_meta = json!({"callsign": "HLF 20-1", "type": "HLF", "org": "fire"});
    publisher
        .publish(
            &format!("rm/v1/{SPACE}/unit/nats-hlf/meta"),
            unit_meta.to_string(),
            true,
        )
        .await;
    publisher.wait_acked(2).await;

    let (_server, addr) = start_server_with_broker(&format!("mqtt://127.0.0.1:{}", nats.mqtt_port));
    let (mut ws, snap) = ws_subscribe(addr, SPACE, [9.6, 53.3, 10.4, 53.8], 10).await;
    let mut seq = snap["seq"].as_u64().expect("seq");
    let unit_of = |v: &Value| {
        v["units"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["id"] == "nats-hlf"))
            .cloned()
    };
    let described = |v: &Value| sensor_of(v, gauge.id).is_some() && unit_of(v).is_some();
    // The retained descriptions arrive (both in the snapshot, or in deltas).
    if !described(&snap) {
        eventually("the retained descriptions arrive", PATIENCE, || {
            snapshot(addr, SPACE).filter(|s| described(s)).map(|_| ())
        })
        .await;
    }

    gauge.publish(&publisher, 1..=3, Duration::ZERO).await;
    let pos = json!({"ts": now_ms(), "lat": 53.55, "lon": 9.99, "heading": 90});
    publisher
        .publish(
            &format!("rm/v1/{SPACE}/unit/nats-hlf/pos"),
            pos.to_string(),
            false,
        )
        .await;
    let sensor_ok =
        |v: &Value| sensor_of(v, gauge.id).is_some_and(|s| s["value"].as_f64() == Some(value(3)));
    let unit_ok = |v: &Value| unit_of(v).is_some_and(|u| u["lat"].as_f64() == Some(53.55));
    let (mut sensor_seen, mut unit_seen) = (false, false);
    while !(sensor_seen && unit_seen) {
        let d = ws_until(&mut ws, seq, PATIENCE, |d| sensor_ok(d) || unit_ok(d))
            .await
            .expect("the observation and the position arrive over the websocket");
        seq = d["seq"].as_u64().expect("seq");
        sensor_seen |= sensor_ok(&d);
        unit_seen |= unit_ok(&d);
    }
    let (_, snap) = ws_subscribe(addr, SPACE, [9.6, 53.3, 10.4, 53.8], 10).await;
    let unit = unit_of(&snap).expect("the unit is in a fresh snapshot");
    assert_eq!(unit["callsign"], "HLF 20-1", "{unit}");
    assert_eq!(
        sensor_of(&snap, gauge.id).expect("the gauge")["value"].as_f64(),
        Some(value(3))
    );
    assert!(
        snap["cells"].as_array().is_some_and(|c| !c.is_empty()),
        "{snap}"
    );
    eprintln!("took {:?}", started.elapsed());
}
