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
use crate::driver::{Clock, Driver, DriverConfig};
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
fn check_protected_mode(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr}: no access tokens are configured, so the server \
             only listens on loopback (protected mode). Use --http 127.0.0.1:PORT, or put a \
             reverse proxy with authentication in front of it"
        );
    }
    Ok(())
}

fn metrics_recorder() -> Option<PrometheusHandle> {
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
    check_protected_mode(http)?;
    let metrics = metrics_recorder();

    let url = match broker {
        BrokerChoice::Embedded(addr) => {
            let b = tokio::task::spawn_blocking(move || EmbeddedBroker::start(addr))
                .await
                .context("embedded broker start-up panicked")?
                .context("cannot start the embedded MQTT broker")?;
            b.url()
        }
        BrokerChoice::External(url) => url,
    };
    let opts = ingest::mqtt_options(&url, &config.mqtt.client_id)?;
    let broker_url = {
        let (host, port) = opts.broker_address();
        format!("mqtt://{host}:{port}")
    };

    let (event_tx, event_rx) = mpsc::channel(config.mqtt.queue);
    let (request_tx, request_rx) = mpsc::channel(256);
    let hub = Hub::new(request_tx);
    let mut driver = Driver::new(
        DriverConfig {
            tick: config.tick(),
            ring: config.http.ws_ring,
            picture: config.picture()?,
            clock: Clock::Wall,
        },
        hub.clone(),
    );
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
    let mut ingest_config = IngestConfig::new(ingest::Decoder {
        future_tolerance_ms: config.mqtt.future_tolerance_ms,
        formats: Arc::new(config.formats()?),
    });
    ingest_config.share_group = config.mqtt.share_group.clone();
    ingest_config.logged = logged;
    let session: Session = match config.mqtt.version {
        5 => ingest::mqtt::mqtt5_options(&url, &config.mqtt.client_id)?.into(),
        _ => opts.into(),
    };
    let ingest_task = tokio::spawn(ingest::mqtt::run(
        session,
        ingest_config,
        event_tx,
        link.clone(),
        stopped(shutdown.clone()),
    ));

    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("cannot listen on {http}"))?;
    let http = listener.local_addr()?;
    let ready = Arc::clone(&link);
    let app = viewer::app(AppState {
        hub,
        metrics,
        ready: Arc::new(move || ready.is_ready()),
    });
    info!(%http, broker = %broker_url, "RESCUE MATE server listening");
    let http_shutdown = stopped(shutdown);
    let done = tokio::spawn(async move {
        viewer::run(listener, app, http_shutdown)
            .await
            .context("HTTP server failed")?;
        let _ = ingest_task.await;
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
    fn protected_mode_refuses_public_addresses() {
        assert!(check_protected_mode("127.0.0.1:8080".parse().expect("addr")).is_ok());
        assert!(check_protected_mode("[::1]:8080".parse().expect("addr")).is_ok());
        let err = check_protected_mode("0.0.0.0:8080".parse().expect("addr")).expect_err("public");
        assert!(err.to_string().contains("protected mode"));
    }
}
