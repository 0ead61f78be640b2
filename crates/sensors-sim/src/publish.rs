//! The MQTT publisher: a loop that steps a [`Scenario`] on a wall-clock tick
//! and hands its messages to rumqttc.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::faults::Injector;
use crate::format::Translator;
use crate::{Msg, Scenario, SimError, SimOptions, SimReport};

/// Requests the client may queue while the connection is down or busy. A few
/// seconds of the reference scenario; beyond that messages are dropped
/// rather than piling up without bound.
const QUEUE_CAPACITY: usize = 2_048;
/// How long to wait for the broker to acknowledge what was published before
/// disconnecting at the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the connection to close after the disconnect.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A load's publishing step.
const LOAD_TICK: Duration = Duration::from_millis(10);
/// Messages a load at full speed takes per turn.
const LOAD_BURST: usize = 512;
/// How long a load waits for room in the client's queue per message.
const LOAD_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the connection task reports to the publishing loop.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    /// The last attempt to reach the broker failed and no connection is up.
    down: bool,
    /// Successful connections.
    connections: u64,
    /// QoS 1 acknowledgements received.
    acked: u64,
}

/// Connects to the broker described by `mqtt`, plays the scenario named in
/// `opts` and publishes it until `opts.duration` has passed or `shutdown`
/// completes, then waits (briefly) for the broker to acknowledge what was
/// sent and disconnects.
///
/// Broker errors never end the run: the connection is retried with a short
/// backoff and messages that cannot be queued meanwhile are counted as
/// dropped. Message times are the wall clock; `opts.speed` only compresses
/// the scenario's own timeline.
pub async fn run(
    mqtt: MqttOptions,
    opts: SimOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<SimReport, SimError> {
    opts.validate()?;
    let mut scenario = Scenario::for_options(&opts)?;
    tracing::info!(
        scenario = scenario.name(),
        space = %opts.space,
        speed = opts.speed,
        seed = opts.seed,
        format = ?opts.format,
        broker = ?mqtt.broker_address(),
        "simulation starting"
    );

    let (client, eventloop) = AsyncClient::new(mqtt, QUEUE_CAPACITY);
    let (link_tx, mut link_rx) = watch::channel(Link::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let mut connection = tokio::spawn(drive_connection(eventloop, link_tx, Arc::clone(&stopping)));

    let mut translator = Translator::new(opts.format);
    let mut regions = opts.regions.map(crate::regional::Regionalizer::new);
    let mut injector = Injector::new(opts.faults, opts.seed);
    let mut report = SimReport::default();
    let started = Instant::now();
    // A load waits for the broker rather than dropping what does not fit,
    // and keeps its rate in small steps; at rate 0 it does not wait at all.
    let load_rate = opts.load.map(|l| l.rate);
    let tick = if load_rate.is_some() {
        LOAD_TICK
    } else {
        opts.tick
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let end = async {
        match opts.duration {
            Some(d) => tokio::time::sleep_until(started + d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown, end);

    let mut failure = None;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = &mut end => break,
            _ = ticker.tick(), if load_rate != Some(0.0) => {}
            () = tokio::task::yield_now(), if load_rate == Some(0.0) => {}
        }
        let scenario_s = started.elapsed().as_secs_f64() * opts.speed;
        let msgs = if load_rate == Some(0.0) {
            scenario.burst(LOAD_BURST, wall_clock_ms())
        } else {
            scenario.step(scenario_s, wall_clock_ms())
        };
        report.ticks += 1;
        report.scenario_seconds = scenario_s;
        let mut dropped = 0u64;
        let msgs = injector.apply(msgs);
        let out: Vec<Msg> = msgs
            .into_iter()
            .flat_map(|m| translator.translate(m))
            .flat_map(|m| match regions.as_mut() {
                Some(r) => r.route(m),
                None => vec![m],
            })
            .collect();
        let total = out.len() as u64;
        for (i, msg) in out.into_iter().enumerate() {
            let sent = if load_rate.is_some() {
                // Wait while the client's queue is full, but not forever: a
                // broker that takes nothing for that long costs this step
                // its remaining messages, so the run still ends on time.
                let publish = client.publish(msg.topic, QoS::AtLeastOnce, msg.retain, msg.payload);
                match tokio::time::timeout(LOAD_PUBLISH_TIMEOUT, publish).await {
                    Ok(r) => r,
                    Err(_) => {
                        dropped += total - i as u64;
                        break;
                    }
                }
            } else {
                client.try_publish(msg.topic, QoS::AtLeastOnce, msg.retain, msg.payload)
            };
            match sent {
                Ok(()) => report.published += 1,
                Err(e) if connection.is_finished() => {
                    failure = Some(e);
                    break;
                }
                Err(_) => dropped += 1,
            }
        }
        if failure.is_some() {
            break;
        }
        if dropped > 0 {
            tracing::warn!(dropped, "MQTT queue full, messages of this tick dropped");
            report.dropped += dropped;
        }
    }

    // Let the broker acknowledge what is in flight, unless it is unreachable.
    stopping.store(true, Ordering::SeqCst);
    let published = report.published;
    let drained = tokio::time::timeout(
        DRAIN_TIMEOUT,
        link_rx.wait_for(|l| l.acked >= published || l.down),
    )
    .await
    .is_ok();
    if !drained {
        tracing::warn!("not every message was acknowledged before the end");
    }
    if let Ok(Ok(())) = tokio::time::timeout(CLOSE_TIMEOUT, client.disconnect()).await {
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut connection)
            .await
            .is_err()
        {
            connection.abort();
        }
    } else {
        connection.abort();
    }
    let link = *link_rx.borrow();
    report.acknowledged = link.acked;
    report.connections = link.connections;
    report.faults = injector.counts;
    tracing::info!(?report, "simulation finished");
    match failure {
        Some(e) => Err(SimError::Mqtt(e)),
        None => Ok(report),
    }
}

/// Polls the MQTT event loop until the disconnect has gone out (or, once the
/// run is stopping, until the connection fails). Errors are logged and
/// retried after a growing pause; polling again is what makes rumqttc
/// reconnect.
async fn drive_connection(
    mut eventloop: EventLoop,
    link: watch::Sender<Link>,
    stopping: Arc<AtomicBool>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("connected to MQTT broker");
                backoff = MIN_BACKOFF;
                link.send_modify(|l| {
                    l.down = false;
                    l.connections += 1;
                });
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => link.send_modify(|l| l.acked += 1),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                link.send_modify(|l| l.down = true);
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Epoch milliseconds now; 0 should the clock be before 1970.
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
