//! The embedded MQTT broker (rumqttd), so that a single binary runs the
//! whole system. Production deployments point at an external broker
//! instead (`--mqtt`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

/// How long start-up may take before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Payloads the embedded broker carries; larger than our ingest limit so
/// that ingest, not the broker, refuses (and dead-letters) oversize input.
const BROKER_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Why the embedded broker did not start.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// The address is taken or not ours to bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The broker did not accept connections in time.
    #[error("embedded broker did not come up on {0} within {START_TIMEOUT:?}")]
    Timeout(SocketAddr),
}

/// A running embedded broker. It lives as long as the process.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts a broker on `addr` (port 0 picks a free port) and returns once
    /// it accepts MQTT connections.
    pub fn start(addr: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        // rumqttd cannot report the port it bound, so bind first to learn
        // (and check) it, then hand it over.
        let probe = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
        let addr = probe
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        drop(probe);

        let mut broker = Broker::new(config(addr));
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            })
            .map_err(|source| BrokerError::Bind { addr, source })?;

        let deadline = Instant::now() + START_TIMEOUT;
        while !answers_mqtt(addr) {
            if Instant::now() > deadline {
                return Err(BrokerError::Timeout(addr));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(%addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker { addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://host:port` for clients.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

/// Whether a broker at `addr` answers an MQTT 3.1.1 CONNECT with a CONNACK.
/// A full handshake (rather than a bare TCP connect) proves the broker is
/// serving, and leaves no "connection closed" error in its log.
fn answers_mqtt(addr: SocketAddr) -> bool {
    // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 10 s,
    // empty client id (allowed with a clean session).
    const CONNECT: [u8; 14] = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 0];
    const DISCONNECT: [u8; 2] = [0xe0, 0];
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut connack = [0u8; 4];
    let ok = stream.write_all(&CONNECT).is_ok()
        && stream.read_exact(&mut connack).is_ok()
        && connack[0] == 0x20
        && connack[3] == 0;
    let _ = stream.write_all(&DISCONNECT);
    ok
}

fn config(addr: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: BROKER_MAX_PAYLOAD_BYTES,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}
