//! The embedded MQTT broker (rumqttd), so that a single binary runs the
//! whole system. Production deployments point at an external broker
//! instead (`--mqtt`).

use std::collections::{BTreeMap, HashMap};
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
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    /// The server's own login, when the broker asks for one.
    own_login: Option<(String, String)>,
}

/// The user name the server itself logs in with when the embedded broker
/// has users; its password is new at every start.
pub const OWN_USER: &str = "rescuemate-server";

impl EmbeddedBroker {
    /// Starts a broker on `addr` (port 0 picks a free port) and returns once
    /// it accepts MQTT connections.
    pub fn start(addr: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_with_users(addr, &BTreeMap::new())
    }

    /// Starts a broker that admits only `users` (name → password), plus
    /// the server itself with a password made up for this run.
    pub fn start_with_users(
        addr: SocketAddr,
        users: &BTreeMap<String, String>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let own_login = if users.is_empty() {
            None
        } else {
            Some((OWN_USER.to_owned(), fresh_password()))
        };
        let auth = own_login.as_ref().map(|(u, p)| {
            let mut all: HashMap<String, String> =
                users.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            all.insert(u.clone(), p.clone());
            all
        });
        // rumqttd cannot report the port it bound, so bind first to learn
        // (and check) it, then hand it over.
        let probe = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
        let addr = probe
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        drop(probe);

        let mut broker = Broker::new(config(addr, auth));
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            })
            .map_err(|source| BrokerError::Bind { addr, source })?;

        let deadline = Instant::now() + START_TIMEOUT;
        while !answers_mqtt(addr, own_login.as_ref()) {
            if Instant::now() > deadline {
                return Err(BrokerError::Timeout(addr));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(%addr, users = users.len(), "embedded MQTT broker listening");
        Ok(EmbeddedBroker { addr, own_login })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://host:port` for clients.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// The URL the server itself connects with (its login included).
    pub fn own_url(&self) -> String {
        match &self.own_login {
            Some((u, p)) => format!("mqtt://{u}:{p}@{}", self.addr),
            None => self.url(),
        }
    }
}

/// 32 hex digits from the operating system's random source (the time as
/// a last resort, which only weakens a loopback-only password).
fn fresh_password() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = t.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a broker at `addr` answers an MQTT 3.1.1 CONNECT with a CONNACK.
/// A full handshake (rather than a bare TCP connect) proves the broker is
/// serving, and leaves no "connection closed" error in its log.
fn answers_mqtt(addr: SocketAddr, login: Option<&(String, String)>) -> bool {
    // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 10 s,
    // empty client id (allowed with a clean session), the login if any.
    let mut body: Vec<u8> = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 0];
    if let Some((user, password)) = login {
        body[7] |= 0xc0;
        for field in [user, password] {
            body.extend_from_slice(&u16::try_from(field.len()).unwrap_or(0).to_be_bytes());
            body.extend_from_slice(field.as_bytes());
        }
    }
    // One byte of remaining length: up to 127 (the login is short).
    let Some(len) = u8::try_from(body.len()).ok().filter(|l| *l <= 127) else {
        return false;
    };
    let mut connect = vec![0x10, len];
    connect.extend_from_slice(&body);
    const DISCONNECT: [u8; 2] = [0xe0, 0];
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut connack = [0u8; 4];
    let ok = stream.write_all(&connect).is_ok()
        && stream.read_exact(&mut connack).is_ok()
        && connack[0] == 0x20
        && connack[3] == 0;
    let _ = stream.write_all(&DISCONNECT);
    ok
}

fn config(addr: SocketAddr, auth: Option<HashMap<String, String>>) -> Config {
    let server = ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: BROKER_MAX_PAYLOAD_BYTES,
            max_inflight_count: 500,
            auth,
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
