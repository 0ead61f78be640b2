//! `serve`: ingest, fusion and viewer in one process.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use ingest::mqtt::Session;
use ingest::{EmbeddedBroker, IngestConfig, LinkStatus};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use viewer::AppState;
use viewer::hub::Hub;

use crate::config::Config;
use crate::driver::{Clock, Driver, DriverConfig, Pacing};
use ingest::log::EventLog;

/// Where ingest gets its MQTT.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// Start the embedded broker on this address (port 0: any free port).
    Embedded(SocketAddr),
    /// Connect to an external broker.
    External(String),
}

/// A running server.
pub struct Running {
    /// The HTTP address actually bound.
    pub http: SocketAddr,
    /// `mqtt://…` of the broker in use (credentials removed).
    pub broker_url: String,
    /// The ingest session's state and counters.
    pub link: Arc<LinkStatus>,
    /// Resolves when the server has stopped.
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Resolves once `rx` says stop.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Refuses a non-loopback HTTP address while no access tokens exist
/// (protected mode, DESIGN §8).
pub(crate) fn check_protected_mode(
    addr: SocketAddr,
    auth: &viewer::auth::Auth,
) -> anyhow::Result<()> {
    if auth.is_open() && !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr}: no access tokens are configured, so the server \
             only listens on loopback (protected mode). Configure [[auth.tokens]], use --http \
             127.0.0.1:PORT, or put a reverse proxy with authentication in front of it"
        );
    }
    Ok(())
}

pub(crate) fn metrics_recorder() -> Option<PrometheusHandle> {
    // Only one recorder per process; a second server in the same process
    // (tests) shares the first one's.
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Starts broker (if embedded), ingest, the owner task and the HTTP server.
pub async fn start(
    config: &Config,
    broker: BrokerChoice,
    http: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let auth = Arc::new(
        viewer::auth::Auth::new(&config.auth)
            .map_err(|e| anyhow::anyhow!(e))
            .context("invalid [auth]")?,
    );
    check_protected_mode(http, &auth)?;
    let metrics = metrics_recorder();

    let url = match broker {
        BrokerChoice::Embedded(addr) => {
            let users = config.mqtt.embedded_users.clone();
            if users.is_empty() && !addr.ip().is_loopback() {
                bail!(
                    "refusing to run the embedded MQTT broker on {addr} without users: anyone on \
                     the network could publish into the picture. Configure [mqtt.embedded_users] \
                     or keep it on loopback"
                );
            }
            let b =
                tokio::task::spawn_blocking(move || EmbeddedBroker::start_with_users(addr, &users))
                    .await
                    .context("embedded broker start-up panicked")?
                    .context("cannot start the embedded MQTT broker")?;
            b.own_url()
        }
        BrokerChoice::External(url) => url,
    };
    let tls = match &config.mqtt.ca_file {
        Some(ca) if url.starts_with("mqtts://") || url.starts_with("ssl://") => {
            Some(ingest::mqtt::tls_transport(ca)?)
        }
        Some(_) => bail!("mqtt.ca_file is set, but the broker URL is not mqtts://"),
        None => None,
    };
    // Each shard keeps its own persistent session.
    let client_id = match config.shard_role {
        Some((i, n)) => format!("{}-shard-{i}of{n}", config.mqtt.client_id),
        None => config.mqtt.client_id.clone(),
    };
    let mut picture = config.picture()?;
    let mut filters = None;
    if let Some((i, n)) = config.shard_role {
        let map = config.shard.map(n)?;
        let regions = map
            .regions_of(i, config.shard.area()?.as_ref())
            .map_err(|e| anyhow::anyhow!("[shard]: {e}"))?;
        info!(
            shard = i,
            of = n,
            regions = regions.len(),
            res = u8::from(map.res()),
            "fusion shard"
        );
        filters = Some(
            regions
                .iter()
                .map(|r| format!("rm/v1/+/r/{r}/#"))
                .collect::<Vec<_>>(),
        );
        picture.shard = Some(fusion::Ownership { map, shard: i });
    }
    let mut opts = ingest::mqtt_options(&url, &client_id)?;
    if let Some(t) = &tls {
        opts.set_transport(t.clone());
    }
    let broker_url = {
        let (host, port) = opts.broker_address();
        let scheme = if url.starts_with("mqtts://") || url.starts_with("ssl://") {
            "mqtts"
        } else {
            "mqtt"
        };
        format!("{scheme}://{host}:{port}")
    };

    let (event_tx, event_rx) = mpsc::channel(config.mqtt.queue);
    let (request_tx, request_rx) = mpsc::channel(256);
    let hub = Hub::new(request_tx);
    let decoder = ingest::Decoder {
        future_tolerance_ms: config.mqtt.future_tolerance_ms,
        formats: Arc::new(config.formats()?),
    };
    let mut driver = Driver::new(
        DriverConfig {
            tick: config.tick(),
            pacing: Pacing::of(&config.fusion),
            ring: config.http.ws_ring,
            picture,
            clock: Clock::Wall,
            retention_ms: config.log.retention_ms,
        },
        hub.clone(),
    )
    .with_decoder(decoder.clone());
    let logged = match config.log.writer() {
        Some(log_config) => {
            let dir = log_config.dir.clone();
            let log = EventLog::open(log_config)
                .with_context(|| format!("cannot open the event log in {}", dir.display()))?;
            driver = driver.with_log(log);
            // Before ingest starts: the picture is rebuilt first, and what
            // the broker sends meanwhile waits in its queue.
            let started = std::time::Instant::now();
            let (d, recovered) = tokio::task::spawn_blocking(move || {
                let r = driver.recover();
                (driver, r)
            })
            .await
            .context("recovery panicked")?;
            driver = d;
            let recovered = recovered.context("cannot read the event log")?;
            for damage in &recovered.damaged {
                warn!(
                    segment = %damage.segment.display(),
                    records_read = damage.records_read,
                    error = %damage.error,
                    "event log segment damaged: read up to the damage, the rest of the log is used"
                );
            }
            info!(
                data = %dir.display(),
                records = ?recovered.records,
                damaged = recovered.damaged.len(),
                ms = started.elapsed().as_millis() as u64,
                "picture recovered from the event log"
            );
            Some(driver.logged())
        }
        None => None,
    };
    let driver_task =
        tokio::spawn(driver.run(event_rx, request_rx, None, stopped(shutdown.clone())));

    let link = Arc::new(LinkStatus::default());
    let mut ingest_config = IngestConfig::new(decoder);
    ingest_config.share_group = config.mqtt.share_group.clone();
    if let Some(f) = filters {
        ingest_config.filters = f;
    }
    ingest_config.logged = logged;
    let session: Session = match config.mqtt.version {
        5 => {
            let mut o5 = ingest::mqtt::mqtt5_options(&url, &client_id)?;
            if let Some(t) = tls {
                o5.set_transport(t);
            }
            o5.into()
        }
        _ => opts.into(),
    };
    let ingest_task = tokio::spawn(ingest::mqtt::run(
        session,
        ingest_config,
        event_tx,
        link.clone(),
        stopped(shutdown.clone()),
    ));

    let fanout = config.shard_role.map(|(i, _)| {
        tokio::spawn(crate::scale::publish_shard(
            hub.clone(),
            url.clone(),
            format!("{client_id}-pictures"),
            i,
            std::time::Duration::from_millis(config.shard.full_every_ms),
            shutdown.clone(),
        ))
    });
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("cannot listen on {http}"))?;
    let http = listener.local_addr()?;
    let ready = Arc::clone(&link);
    let mut state = AppState::new(hub, metrics, Arc::new(move || ready.is_ready()));
    state.auth = auth;
    state.gate = viewer::limits::Gate::new(config.limits.clone());
    state.closing = shutdown.clone();
    #[cfg(feature = "render")]
    let images = state.images.clone();
    let app = viewer::app(state);
    info!(%http, broker = %broker_url, "RESCUE MATE server listening");
    let http_shutdown = stopped(shutdown);
    let done = tokio::spawn(async move {
        viewer::run(listener, app, http_shutdown)
            .await
            .context("HTTP server failed")?;
        // The GPU device is released on the render thread before exit.
        #[cfg(feature = "render")]
        let _ = tokio::task::spawn_blocking(move || viewer::image::stop(&images)).await;
        let _ = ingest_task.await;
        if let Some(f) = fanout {
            let _ = f.await;
        }
        let _ = driver_task.await;
        Ok(())
    });
    Ok(Running {
        http,
        broker_url,
        link,
        done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_mode_refuses_public_addresses_until_tokens_exist() {
        let open = viewer::auth::Auth::default();
        let check = |a: &str, auth| check_protected_mode(a.parse().expect("addr"), auth);
        assert!(check("127.0.0.1:8080", &open).is_ok());
        assert!(check("[::1]:8080", &open).is_ok());
        let err = check("0.0.0.0:8080", &open).expect_err("public");
        assert!(err.to_string().contains("protected mode"));
        let tokens = viewer::auth::Auth::new(&viewer::auth::AuthConfig {
            tokens: vec![viewer::auth::TokenSpec {
                name: "leitstelle".into(),
                role: viewer::auth::Role::Control,
                sha256: "00".repeat(32),
                area: None,
            }],
            ..Default::default()
        })
        .expect("valid");
        assert!(
            check("0.0.0.0:8080", &tokens).is_ok(),
            "tokens: any address"
        );
    }
}
