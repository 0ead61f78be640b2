//! The MQTT loop: subscribe, decode, hand accepted events to fusion,
//! dead-letter the rest. It never stops on bad input, and reconnects with
//! backoff when the broker goes away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fusion::Envelope;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::decode::Decoder;
use crate::error::DecodeError;
use crate::route::minimal_filters;
use crate::wire::{DeadLetterMsg, MAX_PAYLOAD_BYTES, WireTime, dead_letter_topic};

/// Default subscription: the whole native contract, every space.
pub const NATIVE_FILTER: &str = "rm/v1/#";
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The broker may deliver more than we accept; what is larger than this is
/// dropped by the client library before we see it, so leave room to refuse
/// (and dead-letter) payloads above our own limit ourselves.
const MAX_INCOMING_PACKET_BYTES: usize = 1024 * 1024;
/// Accepted events held while fusion is behind. Messages are acknowledged
/// to the broker only once fusion has them, so a broker stops sending at
/// its in-flight window (Mosquitto: 20 by default) long before this; the
/// bound is for brokers without one. Beyond it the loop stops reading
/// until fusion catches up.
pub const MAX_BACKLOG: usize = 10_000;

/// Why MQTT options could not be built.
#[derive(Debug, Error)]
pub enum MqttUrlError {
    /// The URL is malformed or uses an unsupported scheme.
    #[error("invalid MQTT URL {url:?}: {reason} (expected mqtt://[user:pass@]host[:port])")]
    Invalid {
        /// The URL as given (password removed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// MQTT options for `url` (`mqtt://[user:pass@]host[:port]`), with our
/// settings for an ingest or publisher session.
pub fn mqtt_options(url: &str, client_id: &str) -> Result<MqttOptions, MqttUrlError> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = if url.contains("client_id=") {
        url.to_owned()
    } else {
        format!("{url}{sep}client_id={client_id}")
    };
    let mut opts = MqttOptions::parse_url(full).map_err(|e| MqttUrlError::Invalid {
        url: redact(url),
        reason: e.to_string(),
    })?;
    opts.set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_INCOMING_PACKET_BYTES);
    opts.set_keep_alive(Duration::from_secs(15));
    Ok(opts)
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Settings of the ingest loop.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Topic filters to subscribe to.
    pub filters: Vec<String>,
    /// The decoder.
    pub decoder: Decoder,
}

impl IngestConfig {
    /// Subscribes to the native contract and to every topic pattern of the
    /// decoder's formats (filters another one covers are left out, so no
    /// message arrives twice).
    pub fn new(decoder: Decoder) -> IngestConfig {
        let mut filters = vec![NATIVE_FILTER.to_owned()];
        filters.extend(decoder.formats.filters());
        IngestConfig {
            filters: minimal_filters(&filters),
            decoder,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig::new(Decoder::default())
    }
}

/// Link state, for readiness and the picture's "is the feed alive" view.
#[derive(Debug, Default)]
pub struct LinkStatus {
    connected: AtomicBool,
    subscribed: AtomicBool,
    connects: AtomicU64,
}

impl LinkStatus {
    /// Connected and subscribed: messages flow.
    pub fn is_ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    /// How many times the broker accepted a connection (1 while the first
    /// connection holds).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }
}

/// Wall clock in epoch milliseconds: ingest stamps receive times with it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the ingest loop until `shutdown` resolves or fusion hangs up.
///
/// Accepted events go to `events`, and a message is acknowledged to the
/// broker only once fusion has its event (at least once, even if this
/// process dies in between). When fusion falls behind, events wait in a
/// bounded backlog ([`MAX_BACKLOG`], reported as `rm_ingest_backlog`)
/// while the loop keeps talking to the broker (keep-alives, acks), and the
/// broker holds the rest. Refused messages are counted per reason and
/// published to the space's dead-letter topic.
pub async fn run(
    opts: MqttOptions,
    config: IngestConfig,
    events: mpsc::Sender<Envelope>,
    status: Arc<LinkStatus>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut opts = opts;
    // A persistent session: QoS 1 messages published while we reconnect are
    // kept by the broker for us.
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let mut backoff = BACKOFF_MIN;
    // Each event with the message to acknowledge once it is with fusion
    // (the last event of a message carries it).
    let mut backlog: VecDeque<(Envelope, Option<Publish>)> = VecDeque::new();
    tokio::pin!(shutdown);
    loop {
        let polled = tokio::select! {
            () = &mut shutdown => break,
            permit = events.reserve(), if !backlog.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some((env, p)) = backlog.pop_front() {
                    permit.send(env);
                    if let Some(p) = p {
                        ack(&client, &p);
                    }
                }
                metrics::gauge!("rm_ingest_backlog").set(backlog.len() as f64);
                continue;
            }
            polled = eventloop.poll(), if backlog.len() < MAX_BACKLOG => polled,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = BACKOFF_MIN;
                status.connects.fetch_add(1, Ordering::Relaxed);
                status.connected.store(true, Ordering::Relaxed);
                metrics::gauge!("rm_mqtt_connected").set(1.0);
                info!(
                    session_present = ack.session_present,
                    "connected to MQTT broker"
                );
                if ack.session_present && status.subscribed.load(Ordering::Relaxed) {
                    continue;
                }
                for f in &config.filters {
                    if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                        warn!(filter = %f, error = %e, "subscribe request failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                status.subscribed.store(true, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if !handle(&client, &config, &events, &mut backlog, p) {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                status.connected.store(false, Ordering::Relaxed);
                metrics::gauge!("rm_mqtt_connected").set(0.0);
                metrics::counter!("rm_mqtt_connection_errors_total").increment(1);
                warn!(error = %e, retry_in_ms = backoff.as_millis(), "MQTT connection error");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    let _ = client.try_disconnect();
    status.connected.store(false, Ordering::Relaxed);
}

/// Acknowledges a message to the broker. A failure (the request queue is
/// full, or the connection changed) only means the broker delivers it
/// again, and fusion drops the copy.
fn ack(client: &AsyncClient, p: &Publish) {
    if client.try_ack(p).is_err() {
        metrics::counter!("rm_ingest_ack_failures_total").increment(1);
    }
}

/// Handles one message without waiting: its events go to fusion now, or
/// behind the backlog when fusion is behind. False when fusion has gone
/// away.
fn handle(
    client: &AsyncClient,
    config: &IngestConfig,
    events: &mpsc::Sender<Envelope>,
    backlog: &mut VecDeque<(Envelope, Option<Publish>)>,
    p: Publish,
) -> bool {
    let received_ms = now_ms();
    metrics::counter!("rm_ingest_messages_total").increment(1);
    match config.decoder.decode(&p.topic, &p.payload, received_ms) {
        Ok(decoded) => {
            metrics::counter!("rm_ingest_accepted_total").increment(1);
            let mut decoded = decoded.into_iter().peekable();
            let mut p = Some(p);
            while let Some(env) = decoded.next() {
                // The message is acknowledged with its last event.
                let last = decoded.peek().is_none();
                if !backlog.is_empty() {
                    backlog.push_back((env, if last { p.take() } else { None }));
                    continue;
                }
                match events.try_send(env) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(env)) => {
                        backlog.push_back((env, if last { p.take() } else { None }));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            // All sent (or nothing to send): acknowledge now.
            if let Some(p) = p {
                ack(client, &p);
            }
            metrics::gauge!("rm_ingest_backlog").set(backlog.len() as f64);
            true
        }
        Err(DecodeError::OwnOutput) => {
            ack(client, &p);
            true
        }
        Err(DecodeError::Ignored(reason)) => {
            metrics::counter!("rm_ingest_ignored_total", "reason" => reason).increment(1);
            debug!(topic = %p.topic, %reason, "ignored message");
            ack(client, &p);
            true
        }
        Err(e) => {
            refuse(client, config, &p.topic, &e, received_ms);
            ack(client, &p);
            true
        }
    }
}

/// Counts a refusal and publishes it on the dead-letter topic.
pub fn refuse(
    client: &AsyncClient,
    config: &IngestConfig,
    topic: &str,
    error: &DecodeError,
    received_ms: i64,
) {
    let reason = error.reason();
    metrics::counter!("rm_ingest_refused_total", "reason" => reason).increment(1);
    debug!(%topic, %reason, %error, "refused message");
    let space = config.decoder.space_of(topic);
    let letter = DeadLetterMsg {
        topic: topic.chars().take(MAX_PAYLOAD_BYTES / 16).collect(),
        error: error.to_string(),
        received_at: WireTime::rfc3339(received_ms),
    };
    let Ok(payload) = serde_json::to_vec(&letter) else {
        return;
    };
    // Never wait here: a full request queue must not stall ingest.
    match client.try_publish(dead_letter_topic(space), QoS::AtMostOnce, false, payload) {
        Ok(()) => metrics::counter!("rm_ingest_dead_letters_total").increment(1),
        Err(_) => metrics::counter!("rm_ingest_dead_letters_dropped_total").increment(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_options() {
        let o = mqtt_options("mqtt://127.0.0.1:1884", "rm-test").expect("valid");
        assert_eq!(o.broker_address(), ("127.0.0.1".to_owned(), 1884));
        assert_eq!(o.client_id(), "rm-test");
        let o = mqtt_options("mqtt://u:p@broker", "x").expect("valid");
        assert_eq!(o.broker_address().1, 1883);
        let err = mqtt_options("http://u:secret@broker", "x").expect_err("scheme");
        assert!(!err.to_string().contains("secret"));
    }
}
