//! Shared harness of the end-to-end tests: runs the real `rescuemate`
//! binary, talks to it with a real MQTT client and a real websocket client.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
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
    /// Its log (stderr) lines, when started with [`Proc::rescuemate_logged`].
    pub log: Arc<Mutex<Vec<String>>>,
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
        Self::spawn(args, "warn,rumqttd=off", false)
    }

    /// Like [`Proc::rescuemate`] with the log at `rust_log` (e.g.
    /// `info,rumqttd=off`), kept in `log` for the test to read and shown
    /// with the test's output.
    pub fn rescuemate_logged(args: &[&str], rust_log: &str) -> Proc {
        Self::spawn(args, rust_log, true)
    }

    fn spawn(args: &[&str], rust_log: &str, keep_log: bool) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args(args)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(if keep_log {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
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
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            let pid = child.id();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[rescuemate {pid}] {line}");
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        Proc { child, lines, log }
    }

    /// The log lines so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// Waits for the process to exit, at most `secs` seconds.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit within {secs} s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a stdout line containing `http://` and returns the address.
    pub fn http_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200))
                && let Some(rest) = line.split("http://").nth(1)
            {
                let addr = rest.split('/').next().expect("address");
                return addr.parse().expect("socket address");
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

/// An HTTP client that hands back error statuses instead of failing.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// DELETE `path` and return the status.
pub fn http_delete(addr: SocketAddr, path: &str) -> u16 {
    agent()
        .delete(&format!("http://{addr}{path}"))
        .call()
        .map_or(0, |r| r.status().as_u16())
}

/// POST an empty body to `path` and return the status.
pub fn http_post(addr: SocketAddr, path: &str) -> u16 {
    agent()
        .post(&format!("http://{addr}{path}"))
        .send_empty()
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

/// Sends a signal by name (`STOP`, `CONT`, `KILL`, …) to a process.
pub fn send_signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{name} {pid} failed");
}

/// Starts `rescuemate serve` against an external broker (`mqtt://…`), its
/// log kept at info level, and waits until it is healthy.
pub fn start_server_with_broker(url: &str) -> (Proc, SocketAddr) {
    let proc = Proc::rescuemate_logged(
        &["serve", "--mqtt", url, "--http", "127.0.0.1:0"],
        "info,rumqttd=off",
    );
    let addr = proc.http_addr();
    wait_healthy(addr);
    (proc, addr)
}

/// The sum of a metric's samples in `/metrics` whose labels contain every
/// one of `labels` (e.g. `outcome="applied"`); None when the server has not
/// reported it (yet) or does not answer.
pub fn metric(addr: SocketAddr, name: &str, labels: &[&str]) -> Option<f64> {
    let (status, text) = http_get(addr, "/metrics");
    if status != 200 {
        return None;
    }
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let (label_part, value) = match rest.rsplit_once(' ') {
            Some(split) => split,
            None => continue,
        };
        if labels.iter().all(|l| label_part.contains(l)) {
            let v: f64 = value.parse().expect("a metric value is a number");
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// Polls `check` every 50 ms until it gives a value; fails the test after
/// `timeout`, naming `what`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The REST snapshot of a space at resolution 10, the whole world.
pub fn snapshot(addr: SocketAddr, space: &str) -> Option<Value> {
    let (status, body) = http_get(addr, &format!("/api/v1/{space}/snapshot?res=10"));
    if status != 200 {
        return None;
    }
    Some(serde_json::from_str(&body).expect("snapshot is JSON"))
}

/// The entry of `id` in a snapshot's or delta's `sensors`.
pub fn sensor_of<'a>(snap: &'a Value, id: &str) -> Option<&'a Value> {
    snap["sensors"].as_array()?.iter().find(|s| s["id"] == id)
}

/// An MQTT publisher whose event loop is polled in the background (it
/// reconnects on its own); counts what the broker answered.
pub struct Publisher {
    pub client: AsyncClient,
    /// Connections the broker accepted.
    pub connacks: Arc<AtomicU64>,
    /// QoS 1 publishes the broker acknowledged.
    pub pubacks: Arc<AtomicU64>,
}

impl Publisher {
    /// Connects (clean session) and waits until the broker accepted.
    pub async fn connect(port: u16, id: &str) -> Publisher {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let connacks = Arc::new(AtomicU64::new(0));
        let pubacks = Arc::new(AtomicU64::new(0));
        let (c, p) = (connacks.clone(), pubacks.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let publisher = Publisher {
            client,
            connacks,
            pubacks,
        };
        publisher.wait_connects(1).await;
        publisher
    }

    /// Waits until the broker accepted `n` connections in all.
    pub async fn wait_connects(&self, n: u64) {
        eventually(
            &format!("publisher connection {n}"),
            Duration::from_secs(30),
            || (self.connacks.load(Ordering::Relaxed) >= n).then_some(()),
        )
        .await;
    }

    /// Waits until the broker acknowledged `n` publishes in all.
    pub async fn wait_acked(&self, n: u64) {
        eventually(
            &format!("{n} publishes acknowledged"),
            Duration::from_secs(30),
            || (self.pubacks.load(Ordering::Relaxed) >= n).then_some(()),
        )
        .await;
    }

    /// Publishes QoS 1 (waits only while the client's request queue is full).
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        publish(&self.client, topic, payload, retain).await;
    }
}

/// Where Mosquitto is installed, if it is.
pub fn mosquitto_binary() -> Option<&'static str> {
    [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// How a test's Mosquitto keeps its state on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk.
    Off,
    /// On, with Mosquitto's default autosave (every 30 minutes and at a
    /// clean shutdown): a `kill -9` loses what changed since.
    Default,
    /// On, saved after every change (`autosave_interval 1`,
    /// `autosave_on_changes true`).
    EveryChange,
}

/// A Mosquitto of the test's own on a free port, with its own config and
/// persistence folder; killed (and its folder removed) when dropped.
pub struct Mosquitto {
    bin: &'static str,
    pub port: u16,
    pub dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Mosquitto {
    /// Starts Mosquitto on `port` and waits until it listens.
    pub fn start(bin: &'static str, port: u16, persistence: Persistence) -> Mosquitto {
        Mosquitto::start_with(bin, port, persistence, "")
    }

    /// The same, with `extra` lines appended to its config.
    pub fn start_with(
        bin: &'static str,
        port: u16,
        persistence: Persistence,
        extra: &str,
    ) -> Mosquitto {
        let dir = std::env::temp_dir().join(format!("rm-mosquitto-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Started as root, Mosquitto runs as its own user: that user must be
        // able to write its persistence and log files here.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .expect("open the temp dir to the broker's user");
        }
        let mut config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\n\
             log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\n",
            log = dir.join("mosquitto.log").display()
        );
        match persistence {
            Persistence::Off => config.push_str("persistence false\n"),
            Persistence::Default | Persistence::EveryChange => {
                config.push_str(&format!(
                    "persistence true\npersistence_location {}/\n",
                    dir.display()
                ));
                if persistence == Persistence::EveryChange {
                    config.push_str("autosave_interval 1\nautosave_on_changes true\n");
                }
            }
        }
        config.push_str(extra);
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, config).expect("write config");
        let mut broker = Mosquitto {
            bin,
            port,
            dir,
            conf,
            child: None,
        };
        broker.restart();
        broker
    }

    /// Starts it (again) with the same config, port and folder; waits until
    /// it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let child = Command::new(self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} within 10 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}
