//! Shared harness of the end-to-end tests: runs the real `rescuemate`
//! binary, talks to it with a real MQTT client and a real websocket client.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rumqttc::{AsyncClient, EventLoop, MqttOptions, QoS};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Set by CI: tests whose external tools are missing fail instead of skipping.
pub fn require_all() -> bool {
    std::env::var("RM_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Skips (returns true) when `what` is unavailable, unless CI requires it.
pub fn skip_unless(available: bool, what: &str) -> bool {
    if available {
        return false;
    }
    assert!(
        !require_all(),
        "RM_REQUIRE_ALL=1 but {what} is not available"
    );
    eprintln!("SKIPPED: {what} is not available on this machine (CI installs it)");
    true
}

/// Wall clock, epoch milliseconds (the same clock ingest stamps with).
pub use ingest::now_ms;

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// A child process that is killed when the test ends, however it ends.
pub struct Proc {
    pub child: Child,
    pub lines: std_mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `rescuemate` with `args`; stdout lines arrive on `lines`.
    pub fn rescuemate(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args(args)
            .env("RUST_LOG", "warn,rumqttd=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rescuemate");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// Waits for a stdout line containing `http://` and returns the address.
    pub fn http_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                if let Some(rest) = line.split("http://").nth(1) {
                    let addr = rest.split('/').next().expect("address");
                    return addr.parse().expect("socket address");
                }
            }
        }
        panic!("rescuemate did not print its URL within 30 s");
    }
}

/// Starts `rescuemate serve` with its embedded broker on a free port (plus
/// `extra` arguments) and waits until it is healthy; returns the process,
/// its HTTP address and the broker's port.
pub fn start_server(extra: &[&str]) -> (Proc, SocketAddr, u16) {
    let mqtt_port = free_port();
    let broker = format!("127.0.0.1:{mqtt_port}");
    let mut args = vec![
        "serve",
        "--embedded-broker",
        &broker,
        "--http",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let proc = Proc::rescuemate(&args);
    let addr = proc.http_addr();
    wait_healthy(addr);
    (proc, addr, mqtt_port)
}

/// DELETE `path` and return the status.
pub fn http_delete(addr: SocketAddr, path: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .delete(&format!("http://{addr}{path}"))
        .call()
        .map_or(0, |r| r.status().as_u16())
}

/// GET `path` and return (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    match agent.get(&format!("http://{addr}{path}")).call() {
        Ok(mut r) => {
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Waits until `/healthz` answers 200 (ingest connected and subscribed).
pub fn wait_healthy(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(addr, "/healthz").0 == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "server not healthy within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An MQTT client with its event loop polled in the background; incoming
/// publishes arrive on the returned channel.
pub async fn mqtt_client(
    port: u16,
    id: &str,
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, eventloop) = AsyncClient::new(opts, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(poll(eventloop, tx));
    (client, rx)
}

async fn poll(mut eventloop: EventLoop, tx: tokio::sync::mpsc::UnboundedSender<rumqttc::Publish>) {
    loop {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                let _ = tx.send(p);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Publishes QoS 1.
pub async fn publish(client: &AsyncClient, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.into())
        .await
        .expect("publish");
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects a websocket client and subscribes to a viewport; returns it
/// with the snapshot it received.
pub async fn ws_subscribe(addr: SocketAddr, space: &str, bbox: [f64; 4], res: u8) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?space={space}"))
        .await
        .expect("websocket connect");
    let sub = serde_json::json!({"type": "subscribe", "bbox": bbox, "res": res});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .expect("send subscribe");
    let snapshot = ws_next(&mut ws, Duration::from_secs(10))
        .await
        .expect("a snapshot");
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    (ws, snapshot)
}

/// The next JSON message, or None after `timeout`.
pub async fn ws_next<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    timeout: Duration,
) -> Option<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(t) = msg {
            return Some(serde_json::from_str(t.as_str()).expect("server sends JSON"));
        }
    }
}

/// Reads deltas until `pred` holds for one, checking that seq numbers are
/// consecutive; returns that delta.
pub async fn ws_until(
    ws: &mut Ws,
    mut seq: u64,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = ws_next(ws, left).await?;
        assert_eq!(msg["type"], "delta", "{msg}");
        let s = msg["seq"].as_u64().expect("seq");
        assert_eq!(s, seq + 1, "deltas are consecutive");
        seq = s;
        if pred(&msg) {
            return Some(msg);
        }
    }
}

/// The cells of a point according to Uber's reference implementation
/// (Python bindings of the C library), or None when it is not installed:
/// the point's cell at resolution 10 and that cell's parents, which is how
/// the picture indexes and rolls up (a parent is exactly the merge of its
/// children; for a few percent of points the parent differs from the
/// coarse cell that contains the point itself).
pub fn reference_cells(lat: f64, lon: f64, resolutions: &[u8]) -> Option<Vec<String>> {
    let script = format!(
        "import h3\nc = h3.latlng_to_cell({lat}, {lon}, 10)\nfor r in {resolutions:?}: print(h3.cell_to_parent(c, r))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// Whether a command runs.
pub fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
