//! The MQTT loop: subscribe, decode, hand accepted events to fusion,
//! dead-letter the rest. It never stops on bad input, and reconnects with
//! backoff when the broker goes away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fusion::Envelope;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, PubAck, PubRec, Publish, QoS, Request, v5};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::decode::Decoder;
use crate::error::DecodeError;
use crate::route::minimal_filters;
use crate::wire::{DeadLetterMsg, MAX_PAYLOAD_BYTES, WireTime, dead_letter_topic};

/// Default subscription: the whole native contract, every space.
pub const NATIVE_FILTER: &str = "rm/v1/#";
/// Topic filters per SUBSCRIBE packet.
const SUBSCRIBE_BATCH: usize = 200;
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
    #[error(
        "invalid MQTT URL {url:?}: {reason} (expected mqtt://[user:pass@]host[:port] or mqtts://…)"
    )]
    Invalid {
        /// The URL as given (password removed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file for `mqtts://` cannot be used.
    #[error("MQTT TLS CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Makes ring the process's TLS crypto provider (once; a second call, or
/// one after another provider was installed, changes nothing).
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS for `mqtts://` that trusts the CA certificates (PEM) in `ca_file`
/// instead of the system's roots: a control room's own broker PKI.
pub fn tls_transport(ca_file: &std::path::Path) -> Result<rumqttc::Transport, MqttUrlError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    install_crypto();
    let bad = |reason: String| MqttUrlError::Ca {
        path: ca_file.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable PEM certificate in it".into()));
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
    ))
}

/// MQTT options for `url` (`mqtt://[user:pass@]host[:port]`), with our
/// settings for an ingest or publisher session.
pub fn mqtt_options(url: &str, client_id: &str) -> Result<MqttOptions, MqttUrlError> {
    install_crypto();
    let mut opts =
        MqttOptions::parse_url(with_client_id(url, client_id)).map_err(|e| invalid(url, e))?;
    opts.set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_INCOMING_PACKET_BYTES);
    opts.set_keep_alive(Duration::from_secs(15));
    Ok(opts)
}

/// `url` with `client_id` added, unless it names one itself.
fn with_client_id(url: &str, client_id: &str) -> String {
    if url.contains("client_id=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}client_id={client_id}")
}

fn invalid(url: &str, reason: impl std::fmt::Display) -> MqttUrlError {
    MqttUrlError::Invalid {
        url: redact(url),
        reason: reason.to_string(),
    }
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
    /// MQTT 5 shared-subscription group (`$share/<group>/…`): replicas in
    /// one group share the messages, each delivered to one of them.
    pub share_group: Option<String>,
    /// How many of the events sent to fusion are in the event log (counted
    /// from the start of this loop). When set, a message is acknowledged to
    /// the broker only once its events are logged, so an event the broker
    /// was told is safe survives a crash of this process; when unset, once
    /// fusion's channel has them.
    pub logged: Option<watch::Receiver<u64>>,
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
            share_group: None,
            logged: None,
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
    accepted: AtomicU64,
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

    /// Messages accepted and handed to fusion (or its backlog) so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Wall clock in epoch milliseconds: ingest stamps receive times with it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The protocol version of the ingest session, with its options.
#[derive(Debug, Clone)]
pub enum Session {
    /// MQTT 3.1.1.
    V311(Box<MqttOptions>),
    /// MQTT 5.
    V5(Box<v5::MqttOptions>),
}

impl From<MqttOptions> for Session {
    fn from(o: MqttOptions) -> Session {
        Session::V311(Box::new(o))
    }
}

impl From<v5::MqttOptions> for Session {
    fn from(o: v5::MqttOptions) -> Session {
        Session::V5(Box::new(o))
    }
}

/// How long a broker keeps our MQTT 5 session (and queues QoS 1 messages
/// for it) while we are away.
const SESSION_EXPIRY_S: u32 = 7 * 24 * 3600;

/// MQTT 5 options for `url`, like [`mqtt_options`].
pub fn mqtt5_options(url: &str, client_id: &str) -> Result<v5::MqttOptions, MqttUrlError> {
    install_crypto();
    let mut opts =
        v5::MqttOptions::parse_url(with_client_id(url, client_id)).map_err(|e| invalid(url, e))?;
    let max = u32::try_from(MAX_INCOMING_PACKET_BYTES).unwrap_or(u32::MAX);
    opts.set_max_packet_size(Some(max));
    opts.set_keep_alive(Duration::from_secs(15));
    Ok(opts)
}

/// A received message of either protocol version.
enum Msg {
    V311(Publish),
    V5(v5::mqttbytes::v5::Publish),
}

impl Msg {
    fn topic(&self) -> &str {
        match self {
            Msg::V311(p) => &p.topic,
            // A topic that is not UTF-8 matches no pattern: refused.
            Msg::V5(p) => std::str::from_utf8(&p.topic).unwrap_or("\u{fffd}"),
        }
    }

    fn payload(&self) -> &[u8] {
        match self {
            Msg::V311(p) => &p.payload,
            Msg::V5(p) => &p.payload,
        }
    }
}

/// What the loop needs to know of an incoming packet.
#[expect(
    clippy::large_enum_variant,
    reason = "moved once from the event loop to the handler; boxing would allocate per message"
)]
enum Incoming {
    Connected { session_present: bool },
    Subscribed { refused: usize },
    Message(Msg),
    Other,
}

/// The client side of either protocol version.
#[expect(
    clippy::large_enum_variant,
    reason = "one per ingest loop; the larger MQTT 5 event loop is boxed already"
)]
enum Link {
    V311(AsyncClient, rumqttc::EventLoop),
    V5(v5::AsyncClient, Box<v5::EventLoop>),
}

impl Link {
    fn new(session: Session) -> Link {
        match session {
            Session::V311(mut opts) => {
                // A persistent session: QoS 1 messages published while we
                // reconnect are kept by the broker for us.
                opts.set_clean_session(false);
                opts.set_manual_acks(true);
                let (c, e) = AsyncClient::new(*opts, 1024);
                Link::V311(c, e)
            }
            Session::V5(mut opts) => {
                opts.set_clean_start(false);
                opts.set_session_expiry_interval(Some(SESSION_EXPIRY_S));
                opts.set_manual_acks(true);
                let (c, e) = v5::AsyncClient::new(*opts, 1024);
                Link::V5(c, Box::new(e))
            }
        }
    }

    async fn poll(&mut self) -> Result<Incoming, String> {
        use rumqttc::v5::mqttbytes::v5::{Packet as P5, SubscribeReasonCode};
        match self {
            Link::V311(_, e) => match e.poll().await.map_err(|e| e.to_string())? {
                Event::Incoming(Packet::ConnAck(a)) => Ok(Incoming::Connected {
                    session_present: a.session_present,
                }),
                Event::Incoming(Packet::SubAck(a)) => Ok(Incoming::Subscribed {
                    refused: a
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .count(),
                }),
                Event::Incoming(Packet::Publish(p)) => Ok(Incoming::Message(Msg::V311(p))),
                _ => Ok(Incoming::Other),
            },
            Link::V5(_, e) => match e.poll().await.map_err(|e| e.to_string())? {
                v5::Event::Incoming(P5::ConnAck(a)) => Ok(Incoming::Connected {
                    session_present: a.session_present,
                }),
                v5::Event::Incoming(P5::SubAck(a)) => Ok(Incoming::Subscribed {
                    refused: a
                        .return_codes
                        .iter()
                        .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                        .count(),
                }),
                v5::Event::Incoming(P5::Publish(p)) => Ok(Incoming::Message(Msg::V5(p))),
                _ => Ok(Incoming::Other),
            },
        }
    }

    /// Asks for QoS 1 subscriptions to `filters` in one SUBSCRIBE.
    fn subscribe(&self, filters: &[String]) -> Result<(), String> {
        match self {
            Link::V311(c, _) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
                )
                .map_err(|e| e.to_string()),
            Link::V5(c, _) => c
                .try_subscribe_many(filters.iter().map(|f| {
                    v5::mqttbytes::v5::Filter::new(f.clone(), v5::mqttbytes::QoS::AtLeastOnce)
                }))
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues the acknowledgement of a message without waiting; false if
    /// the client's request queue is full.
    fn try_ack(&self, m: &Msg) -> bool {
        match (self, m) {
            (Link::V311(c, _), Msg::V311(p)) => c.try_ack(p).is_ok(),
            (Link::V5(c, _), Msg::V5(p)) => c.try_ack(p).is_ok(),
            // A message of the other protocol cannot come from this link.
            _ => true,
        }
    }

    /// Publishes at most once without waiting; false if the request queue
    /// is full.
    fn publish_now(&self, topic: String, payload: Vec<u8>) -> bool {
        match self {
            Link::V311(c, _) => c
                .try_publish(topic, QoS::AtMostOnce, false, payload)
                .is_ok(),
            Link::V5(c, _) => c
                .try_publish(topic, v5::mqttbytes::QoS::AtMostOnce, false, payload)
                .is_ok(),
        }
    }

    fn disconnect(&self) {
        let _ = match self {
            Link::V311(c, _) => c.try_disconnect().map_err(|e| e.to_string()),
            Link::V5(c, _) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// Acknowledgements in order, without ever waiting.
///
/// MQTT 3.1.1: they collect here and are written into the connection's
/// send buffer at the top of the loop, and flushed once the client has
/// handed out the packets it read (see [`Acks::send`]): a batch of
/// messages costs one write to the socket, not one per message (the
/// client's request queue flushes after every request).
///
/// MQTT 5: through the client's request queue; what it cannot take now
/// waits here and goes first next time. (The client reads incoming
/// messages in batches and sends one request per turn, so at high rates
/// its queue fills; an acknowledgement dropped there would leave the
/// broker waiting for it, and a broker with a full in-flight window sends
/// nothing more.)
///
/// A waiting acknowledgement keeps only its packet id and QoS (4 bytes, not
/// the message); how many wait is bounded by what the broker sent us
/// unacknowledged, and is reported as `rm_ingest_acks_waiting`.
struct Acks {
    waiting: VecDeque<Ack>,
    /// `rm_ingest_acks_waiting`, looked up once (it is set per message
    /// while acknowledgements wait).
    gauge: metrics::Gauge,
    /// Acknowledgements written into an MQTT 3.1.1 connection's send
    /// buffer since it was last flushed.
    unflushed: bool,
    /// What the gauge shows (MQTT 3.1.1).
    shown: usize,
}

/// What acknowledging a message needs.
#[derive(Clone, Copy)]
struct Ack {
    v5: bool,
    pkid: u16,
    /// QoS 1 (PUBACK) or 2 (PUBREC); QoS 0 needs none.
    qos: u8,
}

impl Ack {
    fn of(m: &Msg) -> Ack {
        let (v5, pkid, qos) = match m {
            Msg::V311(p) => (false, p.pkid, p.qos as u8),
            Msg::V5(p) => (true, p.pkid, p.qos as u8),
        };
        Ack { v5, pkid, qos }
    }

    /// A stand-in message carrying just what the client's ack needs.
    fn as_msg(self) -> Msg {
        if self.v5 {
            let qos = match self.qos {
                2 => v5::mqttbytes::QoS::ExactlyOnce,
                1 => v5::mqttbytes::QoS::AtLeastOnce,
                _ => v5::mqttbytes::QoS::AtMostOnce,
            };
            let mut p = v5::mqttbytes::v5::Publish::new("", qos, Vec::new(), None);
            p.pkid = self.pkid;
            Msg::V5(p)
        } else {
            let qos = match self.qos {
                2 => QoS::ExactlyOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::AtMostOnce,
            };
            let mut p = Publish::new("", qos, Vec::new());
            p.pkid = self.pkid;
            Msg::V311(p)
        }
    }
}

impl Acks {
    fn new() -> Acks {
        Acks {
            waiting: VecDeque::new(),
            gauge: metrics::gauge!("rm_ingest_acks_waiting"),
            unflushed: false,
            shown: 0,
        }
    }

    fn ack(&mut self, link: &Link, m: Msg) {
        if let Link::V311(..) = link {
            // Written in batches by `send`, at the top of the loop.
            self.waiting.push_back(Ack::of(&m));
            return;
        }
        if self.waiting.is_empty() && link.try_ack(&m) {
            return;
        }
        self.waiting.push_back(Ack::of(&m));
        self.gauge.set(self.waiting.len() as f64);
    }

    /// Sends what waits. MQTT 3.1.1: straight into the connection's send
    /// buffer, flushed once when the client has no more received packets
    /// to hand out (or `flush` asks, since the loop will not poll) rather
    /// than after each acknowledgement as the client's request queue
    /// does: one write to the socket for a batch of messages. MQTT 5
    /// (whose connection the client keeps to itself): through the request
    /// queue.
    async fn send(&mut self, link: &mut Link, flush: bool) {
        let Link::V311(_, e) = link else {
            self.retry(link);
            return;
        };
        let Some(network) = e.network.as_mut() else {
            // Not connected: they wait for the session to come back (and
            // are dropped if it does not).
            self.show_waiting();
            return;
        };
        let timeout = Duration::from_secs(e.network_options.connection_timeout());
        let flush = flush || e.state.events.is_empty();
        let written = tokio::time::timeout(timeout, async {
            while let Some(a) = self.waiting.front().copied() {
                let request = match a.qos {
                    1 => Request::PubAck(PubAck::new(a.pkid)),
                    2 => Request::PubRec(PubRec::new(a.pkid)),
                    _ => {
                        self.waiting.pop_front();
                        continue;
                    }
                };
                let packet = e
                    .state
                    .handle_outgoing_packet(request)
                    .map_err(|x| x.to_string())?;
                // The client notes each as an outgoing event for `poll`
                // to hand out; nobody reads those.
                e.state.events.pop_back();
                if let Some(packet) = packet {
                    network.write(packet).await.map_err(|x| x.to_string())?;
                }
                self.waiting.pop_front();
                self.unflushed = true;
            }
            if flush && self.unflushed {
                network.flush().await.map_err(|x| x.to_string())?;
                self.unflushed = false;
            }
            Ok::<(), String>(())
        })
        .await
        .unwrap_or_else(|_| Err("writing acknowledgements timed out".to_owned()));
        if let Err(error) = written {
            // The next poll reconnects; what was not written waits for
            // the session to come back.
            warn!(%error, "MQTT connection error while acknowledging");
            metrics::counter!("rm_mqtt_connection_errors_total").increment(1);
            e.clean();
            self.unflushed = false;
        }
        self.show_waiting();
    }

    /// Sets `rm_ingest_acks_waiting` when the number changed since it was
    /// last set.
    fn show_waiting(&mut self) {
        if self.shown != self.waiting.len() {
            self.shown = self.waiting.len();
            self.gauge.set(self.shown as f64);
        }
    }

    fn retry(&mut self, link: &Link) {
        if self.waiting.is_empty() {
            return;
        }
        while let Some(a) = self.waiting.front() {
            if !link.try_ack(&a.as_msg()) {
                break;
            }
            self.waiting.pop_front();
        }
        self.gauge.set(self.waiting.len() as f64);
    }

    /// Forgets acknowledgements of a connection whose session is gone.
    fn clear(&mut self) {
        self.waiting.clear();
        self.shown = 0;
        self.gauge.set(0.0);
    }
}

/// Acknowledgements held until the events before them are logged.
///
/// MQTT wants acknowledgements in the order the messages came, so once one
/// waits, every later one (even of a refused message) waits behind it.
struct Durable {
    logged: Option<watch::Receiver<u64>>,
    /// Events handed to fusion so far.
    sent: u64,
    /// (events sent when the message was done, its acknowledgement).
    held: VecDeque<(u64, Ack)>,
}

impl Durable {
    fn logged_now(&self) -> u64 {
        self.logged.as_ref().map_or(u64::MAX, |l| *l.borrow())
    }

    fn ack(&mut self, acks: &mut Acks, link: &Link, m: Msg) {
        if self.held.is_empty() && self.logged_now() >= self.sent {
            acks.ack(link, m);
        } else {
            self.held.push_back((self.sent, Ack::of(&m)));
        }
    }

    fn release(&mut self, acks: &mut Acks, link: &Link) {
        let logged = self.logged_now();
        while let Some((n, a)) = self.held.front() {
            if *n > logged {
                break;
            }
            acks.ack(link, a.as_msg());
            self.held.pop_front();
        }
    }

    /// Resolves when more events are logged (never without a log).
    async fn more_logged(&mut self) {
        match self.logged.as_mut() {
            Some(l) => {
                if l.changed().await.is_err() {
                    // The owner task is gone; the loop ends with it.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// Runs the ingest loop until `shutdown` resolves or fusion hangs up.
///
/// The session is persistent (MQTT 3.1.1 `clean_session = false`, MQTT 5
/// `clean_start = false` with a week's session expiry), and every
/// subscription is QoS 1. On each connection the broker's
/// `session_present` is checked: without a session (a new broker, or one
/// that lost its state) the subscriptions are renewed, and what was
/// published meanwhile may be gone — per-source `seq` gaps then show it.
///
/// Accepted events go to `events`, and a message is acknowledged to the
/// broker only once fusion has its events, or with an event log
/// ([`IngestConfig::logged`]) once they are logged (at least once, even if
/// this process dies in between). When fusion falls behind, events wait in a
/// bounded backlog ([`MAX_BACKLOG`], reported as `rm_ingest_backlog`)
/// while the loop keeps talking to the broker (keep-alives, acks), and the
/// broker holds the rest. Refused messages are counted per reason and
/// published to the space's dead-letter topic.
pub async fn run(
    session: impl Into<Session>,
    config: IngestConfig,
    events: mpsc::Sender<Envelope>,
    status: Arc<LinkStatus>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut link = Link::new(session.into());
    let mut backoff = BACKOFF_MIN;
    let mut ever_subscribed = false;
    let mut pending_subacks = 0usize;
    // Each event with the message to acknowledge once it is with fusion
    // (the last event of a message carries it).
    let mut backlog: VecDeque<(Envelope, Option<Msg>)> = VecDeque::new();
    let mut acks = Acks::new();
    let mut durable = Durable {
        logged: config.logged.clone(),
        sent: 0,
        held: VecDeque::new(),
    };
    let meters = Meters::new();
    tokio::pin!(shutdown);
    loop {
        durable.release(&mut acks, &link);
        acks.send(&mut link, backlog.len() >= MAX_BACKLOG).await;
        let polled = tokio::select! {
            () = &mut shutdown => break,
            () = durable.more_logged(), if !durable.held.is_empty() => continue,
            permit = events.reserve(), if !backlog.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some((env, m)) = backlog.pop_front() {
                    permit.send(env);
                    durable.sent += 1;
                    if let Some(m) = m {
                        durable.ack(&mut acks, &link, m);
                    }
                }
                meters.backlog.set(backlog.len() as f64);
                continue;
            }
            polled = link.poll(), if backlog.len() < MAX_BACKLOG => polled,
        };
        match polled {
            Ok(Incoming::Connected { session_present }) => {
                backoff = BACKOFF_MIN;
                status.connects.fetch_add(1, Ordering::Relaxed);
                status.connected.store(true, Ordering::Relaxed);
                metrics::gauge!("rm_mqtt_connected").set(1.0);
                info!(session_present, "connected to MQTT broker");
                if session_present && ever_subscribed {
                    status.subscribed.store(true, Ordering::Relaxed);
                    continue;
                }
                // Packet ids of the old connection mean nothing to a new
                // session: acknowledging them could confirm a different
                // message. Their events still go to fusion.
                for entry in &mut backlog {
                    entry.1 = None;
                }
                acks.clear();
                durable.held.clear();
                if ever_subscribed {
                    metrics::counter!("rm_mqtt_sessions_lost_total").increment(1);
                    warn!(
                        "the broker has no session for us: renewing subscriptions; messages published while we were away may be missing (seq gaps will show)"
                    );
                }
                status.subscribed.store(false, Ordering::Relaxed);
                let filters: Vec<String> = config
                    .filters
                    .iter()
                    .map(|f| match &config.share_group {
                        Some(g) => format!("$share/{g}/{f}"),
                        None => f.clone(),
                    })
                    .collect();
                // A shard subscribes to thousands of regions: a few
                // hundred filters per SUBSCRIBE.
                pending_subacks = 0;
                for chunk in filters.chunks(SUBSCRIBE_BATCH) {
                    match link.subscribe(chunk) {
                        Ok(()) => {
                            pending_subacks += 1;
                            if chunk.len() == 1 {
                                info!(filter = %chunk[0], "subscribing (QoS 1)");
                            } else {
                                info!(filters = chunk.len(), first = %chunk[0], "subscribing (QoS 1)");
                            }
                        }
                        Err(e) => {
                            metrics::counter!("rm_mqtt_subscriptions_refused_total").increment(1);
                            warn!(first = %chunk[0], error = %e, "subscribe request failed");
                        }
                    }
                }
            }
            Ok(Incoming::Subscribed { refused }) => {
                if refused > 0 {
                    metrics::counter!("rm_mqtt_subscriptions_refused_total")
                        .increment(refused as u64);
                    warn!(refused, "the broker refused a subscription");
                }
                pending_subacks = pending_subacks.saturating_sub(1);
                if pending_subacks == 0 {
                    ever_subscribed = true;
                    status.subscribed.store(true, Ordering::Relaxed);
                }
            }
            Ok(Incoming::Message(m)) => {
                match handle(
                    &meters,
                    &link,
                    &mut acks,
                    &mut durable,
                    &config,
                    &events,
                    &mut backlog,
                    m,
                ) {
                    Handled::Accepted => {
                        status.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Handled::Other => {}
                    Handled::FusionGone => break,
                }
            }
            Ok(Incoming::Other) => {}
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
    link.disconnect();
    status.connected.store(false, Ordering::Relaxed);
}

/// Meters touched per message, looked up once.
struct Meters {
    messages: metrics::Counter,
    accepted: metrics::Counter,
    backlog: metrics::Gauge,
}

impl Meters {
    fn new() -> Meters {
        Meters {
            messages: metrics::counter!("rm_ingest_messages_total"),
            accepted: metrics::counter!("rm_ingest_accepted_total"),
            backlog: metrics::gauge!("rm_ingest_backlog"),
        }
    }
}

/// What became of a message.
enum Handled {
    Accepted,
    /// Refused, ignored, or our own output.
    Other,
    FusionGone,
}

/// Handles one message without waiting: its events go to fusion now, or
/// behind the backlog when fusion is behind.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's parts, each borrowed separately for one message"
)]
fn handle(
    meters: &Meters,
    link: &Link,
    acks: &mut Acks,
    durable: &mut Durable,
    config: &IngestConfig,
    events: &mpsc::Sender<Envelope>,
    backlog: &mut VecDeque<(Envelope, Option<Msg>)>,
    m: Msg,
) -> Handled {
    let received_ms = now_ms();
    meters.messages.increment(1);
    match config.decoder.decode(m.topic(), m.payload(), received_ms) {
        Ok(decoded) => {
            meters.accepted.increment(1);
            let mut decoded = decoded.into_iter().peekable();
            let mut m = Some(m);
            while let Some(env) = decoded.next() {
                // The message is acknowledged with its last event.
                let last = decoded.peek().is_none();
                if !backlog.is_empty() {
                    backlog.push_back((env, if last { m.take() } else { None }));
                    continue;
                }
                match events.try_send(env) {
                    Ok(()) => durable.sent += 1,
                    Err(mpsc::error::TrySendError::Full(env)) => {
                        backlog.push_back((env, if last { m.take() } else { None }));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Handled::FusionGone,
                }
            }
            // All sent (or nothing to send): acknowledge now.
            if let Some(m) = m {
                durable.ack(acks, link, m);
            }
            if !backlog.is_empty() {
                meters.backlog.set(backlog.len() as f64);
            }
            Handled::Accepted
        }
        Err(DecodeError::OwnOutput) => {
            durable.ack(acks, link, m);
            Handled::Other
        }
        Err(DecodeError::Ignored(reason)) => {
            metrics::counter!("rm_ingest_ignored_total", "reason" => reason).increment(1);
            debug!(topic = %m.topic(), %reason, "ignored message");
            durable.ack(acks, link, m);
            Handled::Other
        }
        Err(e) => {
            refuse(link, config, m.topic(), &e, received_ms);
            durable.ack(acks, link, m);
            Handled::Other
        }
    }
}

/// Counts a refusal and publishes it on the dead-letter topic.
fn refuse(link: &Link, config: &IngestConfig, topic: &str, error: &DecodeError, received_ms: i64) {
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
    if link.publish_now(dead_letter_topic(space), payload) {
        metrics::counter!("rm_ingest_dead_letters_total").increment(1);
    } else {
        metrics::counter!("rm_ingest_dead_letters_dropped_total").increment(1);
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
