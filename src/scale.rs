//! Scale-out (DESIGN §7): what a fusion shard publishes for gateways, and
//! `rescuemate gateway`, which serves the merged picture of all shards.
//!
//! Topics (under `rm/shards/v1/`, outside the sensor contract `rm/v1/`):
//! - `{shard}/{space}/delta`: each delta of the shard's picture (JSON, the
//!   websocket contract's delta with `"full": false`), QoS 1;
//! - `{shard}/{space}/full`: the shard's whole picture (every cell at every
//!   resolution, `"full": true`), retained, at start, on request and now
//!   and then;
//! - `{shard}/_state`: `{"online":true}` retained while the shard is
//!   connected, `{"online":false}` as its will when it is not;
//! - `{shard}/_control`: what gateways ask of a shard: `{"op":"resync",
//!   "space"}` (publish the whole picture) or `{"op":"ack","space","alert",
//!   "actor"}`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fusion::{Delta, Mosaic, Resolution, ShardDelta};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};
use viewer::hub::{Hub, HubError, Request, SnapshotReply, SpaceHandle};

use crate::config::Config;
use crate::driver::{DigestAt, Pacing};
use crate::server::stopped;

/// Root of the shards' topics.
pub const SHARD_ROOT: &str = "rm/shards/v1";
/// Largest message a shard publishes or a gateway takes (a whole picture).
const MAX_PACKET_BYTES: usize = 256 * 1024 * 1024;
/// Keep-alive of the shards' and gateways' MQTT links: a shard killed
/// without a goodbye is reported by its will within about 1.5 times this.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A gateway asks a shard for its whole picture at most this often.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Wire<'a> {
    full: bool,
    #[serde(flatten)]
    delta: &'a Delta,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Control {
    Resync {
        space: Option<String>,
    },
    Ack {
        space: String,
        alert: String,
        actor: Option<String>,
    },
}

fn options(url: &str, client_id: &str) -> anyhow::Result<MqttOptions> {
    let mut o = ingest::mqtt_options(url, client_id)?;
    o.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    o.set_keep_alive(KEEP_ALIVE);
    o.set_clean_session(true);
    Ok(o)
}

/// Publishes a shard's pictures for the gateways until `shutdown`.
pub async fn publish_shard(
    hub: Arc<Hub>,
    url: String,
    client_id: String,
    shard: u32,
    full_every: Duration,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut opts = options(&url, &client_id)?;
    let state = format!("{SHARD_ROOT}/{shard}/_state");
    opts.set_last_will(LastWill::new(
        &state,
        r#"{"online":false}"#,
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut events) = AsyncClient::new(opts, 4096);
    let (tx, mut deltas) = mpsc::channel::<(String, Option<Arc<Delta>>)>(1024);
    let mut followed: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut spaces_tick = tokio::time::interval(Duration::from_millis(200));
    let mut full_tick = tokio::time::interval(full_every);
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            ev = events.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(shard, "shard publishing for gateways");
                    let _ = client.try_publish(&state, QoS::AtLeastOnce, true, r#"{"online":true}"#);
                    let _ = client.try_subscribe(format!("{SHARD_ROOT}/{shard}/_control"), QoS::AtLeastOnce);
                    for space in followed.keys() {
                        publish_full(&hub, &client, shard, space).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    match serde_json::from_slice::<Control>(&p.payload) {
                        Ok(Control::Resync { space }) => {
                            let names: Vec<String> = match space {
                                Some(s) => vec![s],
                                None => followed.keys().cloned().collect(),
                            };
                            for s in names {
                                publish_full(&hub, &client, shard, &s).await;
                            }
                        }
                        Ok(Control::Ack { space, alert, actor }) => {
                            if let Err(e) = hub.ack(&space, &alert, actor.as_deref()).await {
                                warn!(shard, %space, %alert, error = %e, "a gateway's acknowledgement was refused");
                            }
                        }
                        Err(e) => warn!(shard, error = %e, "unreadable control message"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(shard, error = %e, "shard link to the broker down; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = spaces_tick.tick() => {
                for info in hub.list() {
                    if followed.contains_key(&info.name) {
                        continue;
                    }
                    let Ok(handle) = hub.open(&info.name).await else { continue };
                    let mut rx = handle.deltas.subscribe();
                    let tx = tx.clone();
                    let name = info.name.clone();
                    let task = tokio::spawn(async move {
                        loop {
                            let item = match rx.recv().await {
                                Ok(d) => Some(d),
                                Err(broadcast::error::RecvError::Lagged(_)) => None,
                                Err(broadcast::error::RecvError::Closed) => return,
                            };
                            if tx.send((name.clone(), item)).await.is_err() {
                                return;
                            }
                        }
                    });
                    publish_full(&hub, &client, shard, &info.name).await;
                    followed.insert(info.name, task);
                }
            }
            _ = full_tick.tick() => {
                for space in followed.keys() {
                    publish_full(&hub, &client, shard, space).await;
                }
            }
            Some((space, delta)) = deltas.recv() => match delta {
                Some(d) if d.resync => publish_full(&hub, &client, shard, &space).await,
                Some(d) => match serde_json::to_vec(&Wire { full: false, delta: &d }) {
                    Ok(bytes) => {
                        let topic = format!("{SHARD_ROOT}/{shard}/{space}/delta");
                        if client.publish(topic, QoS::AtLeastOnce, false, bytes).await.is_err() {
                            metrics::counter!("rm_shard_deltas_dropped_total").increment(1);
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot serialise a delta"),
                },
                // Fell behind its own picture: the whole picture instead.
                None => publish_full(&hub, &client, shard, &space).await,
            },
        }
    }
    for (_, t) in followed {
        t.abort();
    }
    let _ = client
        .publish(&state, QoS::AtLeastOnce, true, r#"{"online":false}"#)
        .await;
    let _ = client.disconnect().await;
    // Let the goodbye go out.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

async fn publish_full(hub: &Hub, client: &AsyncClient, shard: u32, space: &str) {
    match hub.export(space).await {
        Ok(d) => match serde_json::to_vec(&Wire {
            full: true,
            delta: &d,
        }) {
            Ok(bytes) => {
                metrics::counter!("rm_shard_full_published_total").increment(1);
                let topic = format!("{SHARD_ROOT}/{shard}/{space}/full");
                let _ = client.publish(topic, QoS::AtLeastOnce, true, bytes).await;
            }
            Err(e) => warn!(error = %e, "cannot serialise the whole picture"),
        },
        Err(e) => warn!(%space, error = %e, "cannot export the picture"),
    }
}

/// What the gateway's MQTT task hands its owner task.
enum FromShard {
    Picture {
        shard: u32,
        space: String,
        delta: Box<ShardDelta>,
    },
    State {
        shard: u32,
        online: bool,
    },
}

/// A running gateway.
pub struct Gateway {
    /// The HTTP address bound.
    pub http: SocketAddr,
    /// Resolves when it has stopped.
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts a gateway: subscribes to the shards' pictures and serves their
/// merge over HTTP and websockets.
pub async fn start_gateway(
    config: &Config,
    url: String,
    shards: u32,
    http: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Gateway> {
    anyhow::ensure!(shards >= 1, "--shards must be at least 1");
    let auth = Arc::new(
        viewer::auth::Auth::new(&config.auth)
            .map_err(|e| anyhow::anyhow!(e))
            .context("invalid [auth]")?,
    );
    crate::server::check_protected_mode(http, &auth)?;
    let client_id = format!(
        "rescuemate-gateway-{}-{}",
        std::process::id(),
        ingest::now_ms()
    );
    let (client, mut events) = AsyncClient::new(options(&url, &client_id)?, 4096);
    let (tx, rx) = mpsc::channel::<FromShard>(1024);
    let connected = Arc::new(AtomicBool::new(false));
    let link_up = connected.clone();
    let sub = client.clone();
    let mqtt_stop = stopped(shutdown.clone());
    let mqtt_task = tokio::spawn(async move {
        tokio::pin!(mqtt_stop);
        loop {
            let ev = tokio::select! {
                () = &mut mqtt_stop => break,
                ev = events.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    link_up.store(true, Ordering::Relaxed);
                    info!("gateway connected; subscribing to the shards' pictures");
                    for f in ["+/+/delta", "+/+/full", "+/_state"] {
                        let _ = sub.try_subscribe(format!("{SHARD_ROOT}/{f}"), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(m) = read_shard_message(&p.topic, &p.payload)
                        && tx.send(m).await.is_err()
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    link_up.store(false, Ordering::Relaxed);
                    debug!(error = %e, "gateway link to the broker down; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let _ = sub.disconnect().await;
    });

    let (request_tx, request_rx) = mpsc::channel(256);
    let hub = Hub::new(request_tx);
    let resolutions = config.picture()?.resolutions;
    let owner = Owner {
        hub: hub.clone(),
        client,
        shards,
        resolutions,
        ring: config.http.ws_ring,
        spaces: BTreeMap::new(),
        asked: HashMap::new(),
        online: vec![false; shards as usize],
        pacing: Pacing::of(&config.fusion),
        tick: config.tick(),
        ticks_waited: 0,
    };
    let owner_task = tokio::spawn(owner.run(rx, request_rx, stopped(shutdown.clone())));

    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("cannot listen on {http}"))?;
    let http = listener.local_addr()?;
    let ready = connected;
    let mut state = viewer::AppState::new(
        hub,
        crate::server::metrics_recorder(),
        Arc::new(move || ready.load(Ordering::Relaxed)),
    );
    state.auth = auth;
    state.gate = viewer::limits::Gate::new(config.limits.clone());
    state.closing = shutdown.clone();
    let app = viewer::app(state);
    info!(%http, shards, "RESCUE MATE gateway listening");
    let http_shutdown = stopped(shutdown);
    let done = tokio::spawn(async move {
        viewer::run(listener, app, http_shutdown)
            .await
            .context("HTTP server failed")?;
        let _ = mqtt_task.await;
        let _ = owner_task.await;
        Ok(())
    });
    Ok(Gateway { http, done })
}

fn read_shard_message(topic: &str, payload: &[u8]) -> Option<FromShard> {
    let rest = topic.strip_prefix(SHARD_ROOT)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let shard: u32 = parts.first()?.parse().ok()?;
    match parts.as_slice() {
        [_, "_state"] => {
            #[derive(Deserialize)]
            struct State {
                online: bool,
            }
            let s: State = serde_json::from_slice(payload).ok()?;
            Some(FromShard::State {
                shard,
                online: s.online,
            })
        }
        [_, space, "delta" | "full"] if fusion::space::is_valid_space(space) => {
            match serde_json::from_slice::<ShardDelta>(payload) {
                Ok(delta) => Some(FromShard::Picture {
                    shard,
                    space: (*space).to_owned(),
                    delta: Box::new(delta),
                }),
                Err(e) => {
                    metrics::counter!("rm_gateway_refused_total").increment(1);
                    warn!(%topic, error = %e, "unreadable shard message");
                    None
                }
            }
        }
        _ => None,
    }
}

struct GwSpace {
    mosaic: Mosaic,
    handle: SpaceHandle,
    /// The merged digest at the mosaic's seq (each snapshot reply carries
    /// one; computing it serialises the whole picture).
    digest: DigestAt,
}

struct Owner {
    hub: Arc<Hub>,
    client: AsyncClient,
    shards: u32,
    resolutions: Vec<Resolution>,
    ring: usize,
    spaces: BTreeMap<String, GwSpace>,
    asked: HashMap<(u32, String), Instant>,
    online: Vec<bool>,
    /// The merged deltas' interval while many clients watch, as on a
    /// server ([`Pacing`]).
    pacing: Pacing,
    /// The gateway's tick.
    tick: Duration,
    /// Ticks since the merged deltas last went out.
    ticks_waited: u32,
}

const NOT_ON_A_GATEWAY: &str =
    "a gateway serves the merged picture only: do this on the shard's server or via the broker";

impl Owner {
    fn open(&mut self, name: &str) -> &mut GwSpace {
        if !self.spaces.contains_key(name) {
            let (deltas, _) = broadcast::channel(self.ring.max(1));
            let handle = SpaceHandle {
                name: name.to_owned(),
                drill: fusion::space::is_drill(name),
                deltas,
            };
            self.hub.register(handle.clone());
            let mut mosaic = Mosaic::new(self.shards, &self.resolutions);
            for (i, online) in self.online.iter().enumerate() {
                if !online {
                    mosaic.set_online(i as u32, false);
                }
            }
            self.spaces.insert(
                name.to_owned(),
                GwSpace {
                    mosaic,
                    handle,
                    digest: DigestAt::default(),
                },
            );
        }
        let Some(s) = self.spaces.get_mut(name) else {
            unreachable!("inserted above")
        };
        s
    }

    fn ask_resync(&mut self, shard: u32, space: &str) {
        let key = (shard, space.to_owned());
        if self
            .asked
            .get(&key)
            .is_some_and(|t| t.elapsed() < RESYNC_EVERY)
        {
            return;
        }
        self.asked.insert(key, Instant::now());
        if let Ok(bytes) = serde_json::to_vec(&Control::Resync {
            space: Some(space.to_owned()),
        }) {
            let _ = self.client.try_publish(
                format!("{SHARD_ROOT}/{shard}/_control"),
                QoS::AtLeastOnce,
                false,
                bytes,
            );
        }
    }

    fn take(&mut self, m: FromShard) {
        match m {
            FromShard::Picture {
                shard,
                space,
                delta,
            } => {
                if shard >= self.shards {
                    warn!(shard, "a shard beyond --shards publishes: ignored");
                    return;
                }
                let s = self.open(&space);
                if let Err(e) = s.mosaic.apply(shard, *delta) {
                    debug!(error = %e, "asking the shard for its whole picture");
                    self.ask_resync(shard, &space);
                }
            }
            FromShard::State { shard, online } => {
                if let Some(o) = self.online.get_mut(shard as usize) {
                    *o = online;
                }
                if online {
                    info!(shard, "shard online");
                } else {
                    warn!(shard, "shard offline: its regions are shown lost");
                }
                metrics::gauge!("rm_gateway_shards_online")
                    .set(self.online.iter().filter(|o| **o).count() as f64);
                for s in self.spaces.values_mut() {
                    s.mosaic.set_online(shard, online);
                }
            }
        }
    }

    /// Every how many ticks the merged deltas go out now.
    fn ticks_per_delta(&self) -> u32 {
        let spaces = self.spaces.values().map(|s| &s.handle);
        self.pacing.ticks_per_delta_shown(spaces, self.tick)
    }

    /// A tick of the gateway's own clock: the merged deltas go out when
    /// their interval has passed.
    fn tick(&mut self) {
        self.ticks_waited += 1;
        if self.ticks_waited >= self.ticks_per_delta() {
            self.flush_all();
        }
    }

    /// Shards' deltas arrived: passed on at once while few clients watch,
    /// else with the gateway's next paced tick.
    fn shard_deltas_taken(&mut self) {
        if self.ticks_per_delta() == 1 {
            self.flush_all();
        }
    }

    /// Every space's merged delta now.
    fn flush_all(&mut self) {
        self.ticks_waited = 0;
        for s in self.spaces.values_mut() {
            if let Some(d) = s.mosaic.flush() {
                let _ = s.handle.deltas.send(Arc::new(d));
            }
        }
    }

    fn request(&mut self, req: Request) {
        match req {
            Request::Open { space, reply } => {
                let _ = reply.send(self.open(&space).handle.clone());
            }
            Request::Snapshot {
                space,
                viewport,
                reply,
            } => {
                let answer = self.spaces.get_mut(&space).map(|s| {
                    if let Some(d) = s.mosaic.flush() {
                        let _ = s.handle.deltas.send(Arc::new(d));
                    }
                    let mosaic = &s.mosaic;
                    SnapshotReply {
                        snapshot: mosaic.snapshot(&viewport),
                        digest: s.digest.get(mosaic.seq(), || mosaic.digest()),
                    }
                });
                let _ = reply.send(answer);
            }
            Request::Ack {
                space,
                alert,
                actor,
                reply,
            } => {
                let answer = match fusion::mosaic::shard_alert_id(&alert) {
                    Some((shard, id)) if shard < self.shards => {
                        let msg = Control::Ack {
                            space,
                            alert: id.to_owned(),
                            actor,
                        };
                        match serde_json::to_vec(&msg) {
                            Ok(bytes) => self
                                .client
                                .try_publish(
                                    format!("{SHARD_ROOT}/{shard}/_control"),
                                    QoS::AtLeastOnce,
                                    false,
                                    bytes,
                                )
                                .map_err(|e| format!("cannot reach the shard: {e}")),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    _ => Err(format!("unknown alert {alert:?}")),
                };
                let _ = reply.send(answer);
            }
            Request::Export { reply, .. } => {
                let _ = reply.send(None);
            }
            Request::Remove { reply, .. }
            | Request::Submit { reply, .. }
            | Request::Reset { reply, .. } => {
                let _ = reply.send(Err(NOT_ON_A_GATEWAY.to_owned()));
            }
            Request::History { reply, .. } => {
                let _ = reply.send(Err(HubError::Refused(NOT_ON_A_GATEWAY.to_owned())));
            }
            Request::MissionLog { reply, .. } => {
                let _ = reply.send(Err(NOT_ON_A_GATEWAY.to_owned()));
            }
            Request::HistoryRange { reply, .. } => {
                let _ = reply.send(Err(NOT_ON_A_GATEWAY.to_owned()));
            }
        }
    }

    async fn run(
        mut self,
        mut from_shards: mpsc::Receiver<FromShard>,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => self.tick(),
                Some(m) = from_shards.recv() => {
                    // A shard's delta is already one tick's worth: passed
                    // on at once (with whatever else has arrived) rather
                    // than held for this gateway's own tick, unless many
                    // clients watch (then paced as on a server).
                    self.take(m);
                    for _ in 0..64 {
                        match from_shards.try_recv() {
                            Ok(m) => self.take(m),
                            Err(_) => break,
                        }
                    }
                    self.shard_deltas_taken();
                }
                Some(r) = requests.recv() => self.request(r),
                else => break,
            }
        }
    }
}
