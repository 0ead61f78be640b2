//! Browser tests of the web client against the real binary.
//!
//! Each starts `rescuemate demo --http 127.0.0.1:0`, reads the URL it prints
//! and runs a script in `tests/browser/` (Node.js + playwright-core driving
//! Debian's headless Chromium):
//! - `smoke.mjs`: the page must go live, show cells, receive deltas and
//!   render; the screenshot lands in `target/browser-smoke.png`.
//! - `history.mjs`: the time slider shows the picture of the past that REST
//!   `snapshot?at=` answers and returns to live; the mission log lists the
//!   scenario's alerts and an acknowledgement; a drill space (filled by
//!   `rescuemate sim` first) is reset to empty. Screenshots:
//!   `target/browser-past.png`, `target/browser-mission-log.png`,
//!   `target/browser-drill-reset.png`.
//! - `layouts.mjs` starts `rescuemate serve` itself (it kills and restarts
//!   it): wall and tablet layouts, unit symbols by organisation, type and
//!   radio status, an alert in the panel within a second of a threshold
//!   crossing and its acknowledgement, reconnecting with the last picture
//!   marked old and a fresh snapshot after the restart, the EXERCISE
//!   banner. Screenshots (CI artifacts): `target/browser-artifacts/wall.png`,
//!   `tablet.png`, `tablet-offline.png`.
//!
//! `tests/browser/render_bench.mjs` (the rendering benchmark, README) is run
//! by hand against a running server; no test asserts its frame times.
//!
//! Needs `/usr/bin/chromium` and `node`; it runs `npm ci` in `tests/browser`
//! itself when `node_modules` is missing. Without them the test is skipped
//! with a message, unless `RM_REQUIRE_ALL=1` (set by CI), which turns a skip
//! into a failure.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the demo may take to print its URL.
const URL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the node script may run (its own waits add up to about a minute).
const SMOKE_TIMEOUT: Duration = Duration::from_secs(150);
/// How long the history test's node script may run.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the layouts test's node script may run.
const LAYOUTS_TIMEOUT: Duration = Duration::from_secs(240);
/// Where the layouts test leaves its screenshots for CI to keep.
const ARTIFACTS: &str = "target/browser-artifacts";
/// Lines of the demo's stderr kept to explain a failure.
const LOG_LINES: usize = 200;

/// Kills and reaps a child process when dropped, also when a test panics.
struct KillOnDrop {
    child: Child,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What is missing to run the test here, if anything.
fn missing_prerequisites(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let browser_dir = root.join("tests/browser");
    // Once per test process: the tests run side by side, and two `npm ci`
    // in one folder delete each other's files (seen on a fresh clone).
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if !browser_dir.join("node_modules/playwright-core").is_dir() {
            // Best effort: a failure shows up as the missing folder below.
            let _ = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&browser_dir)
                .stdout(Stdio::null())
                .status();
        }
    });
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install -y chromium)"));
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("tests/browser/node_modules (npm ci in tests/browser)".to_owned());
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("node on PATH".to_owned());
    }
    missing
}

/// The last lines of a child's output, collected by a reader thread.
type Lines = Arc<Mutex<VecDeque<String>>>;

/// Keeps the last lines of a child's output for error messages.
fn collect_lines(stream: impl Read + Send + 'static) -> (Lines, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(VecDeque::new()));
    let sink = Arc::clone(&lines);
    let reader = thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut buf) = sink.lock() {
                if buf.len() == LOG_LINES {
                    buf.pop_front();
                }
                buf.push_back(line);
            }
        }
    });
    (lines, reader)
}

/// Waits a little for reader threads to reach the end of their pipes (a
/// leftover grandchild could keep a pipe open, so never wait forever).
fn settle(readers: &[JoinHandle<()>]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !readers.iter().all(JoinHandle::is_finished) {
        thread::sleep(Duration::from_millis(20));
    }
}

fn dump(lines: &Lines) -> String {
    lines
        .lock()
        .map(|buf| buf.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// The first `http://…` token in a line.
fn url_in(line: &str) -> Option<String> {
    token_in(line, "http://")
}

/// The first token in a line that starts with `scheme`, without trailing
/// punctuation.
fn token_in(line: &str, scheme: &str) -> Option<String> {
    let start = line.find(scheme)?;
    let token = line[start..].split_whitespace().next()?;
    Some(
        token
            .trim_end_matches([',', ';', '.', ')', '"', '\''])
            .to_owned(),
    )
}

/// Waits for a child with a deadline; kills it when the deadline passes.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// One browser test at a time: two demos and two Chromiums on a small
/// machine make both slow enough to time out.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// The repository root, or None (after saying why) when the prerequisites
/// are missing and the test is to be skipped.
fn root_or_skip(test: &str) -> Option<&'static Path> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let required = std::env::var("RM_REQUIRE_ALL").is_ok_and(|v| v == "1");
    let missing = missing_prerequisites(root);
    if missing.is_empty() {
        return Some(root);
    }
    let why = format!("browser test needs: {}", missing.join(", "));
    assert!(!required, "{why} (RM_REQUIRE_ALL=1)");
    eprintln!("SKIPPED: {test}: {why}; CI installs these (RM_REQUIRE_ALL=1)");
    None
}

/// A running `rescuemate demo` and what its banner says.
struct Demo {
    /// Killed when dropped.
    _process: KillOnDrop,
    /// The page to open.
    url: String,
    /// Its embedded broker.
    mqtt: String,
    /// The demo's stderr, for failure messages.
    log: Lines,
}

fn start_demo(root: &Path) -> Demo {
    let mut demo = KillOnDrop {
        child: Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args(["demo", "--http", "127.0.0.1:0"])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rescuemate demo"),
    };
    let (log, _) = collect_lines(demo.child.stderr.take().expect("demo stderr"));

    // Read stdout on a thread (and keep draining it) so the demo never
    // blocks on a full pipe; hand the lines over until the URL shows up.
    let stdout = demo.child.stdout.take().expect("demo stdout");
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + URL_TIMEOUT;
    let mut seen = Vec::new();
    let (url, mqtt) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = url_in(&line) {
                    let mqtt = token_in(&line, "mqtt://").unwrap_or_default();
                    break (url, mqtt);
                }
                seen.push(line);
            }
            Err(err) => panic!(
                "demo printed no http:// URL ({err:?}); exit: {:?}\nstdout:\n{}\nstderr:\n{}",
                demo.child.try_wait(),
                seen.join("\n"),
                dump(&log)
            ),
        }
    };
    eprintln!("demo serves {url} (MQTT {mqtt})");
    Demo {
        _process: demo,
        url,
        mqtt,
        log,
    }
}

/// Runs `node <args>` in the repository root; panics with its output (and
/// the demo's log) unless it succeeds within `limit`.
fn run_node(root: &Path, args: &[&str], limit: Duration, demo: &Demo) {
    run_node_logged(root, args, limit, Some(&demo.log));
}

/// `run_node` with the log of whatever server the script talks to, if any.
fn run_node_logged(root: &Path, args: &[&str], limit: Duration, log: Option<&Lines>) {
    let mut node = Command::new("node")
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let (node_out, out_reader) = collect_lines(node.stdout.take().expect("node stdout"));
    let (node_err, err_reader) = collect_lines(node.stderr.take().expect("node stderr"));
    let status = wait_with_deadline(&mut node, limit);
    settle(&[out_reader, err_reader]);
    let out = dump(&node_out);
    let err = dump(&node_err);

    match status {
        Some(s) if s.success() => {
            eprintln!("{out}");
            if !err.is_empty() {
                eprintln!("{err}");
            }
        }
        other => panic!(
            "node {} failed ({}):\nstdout:\n{out}\nstderr:\n{err}\nserver stderr:\n{}",
            args.join(" "),
            other.map_or_else(|| format!("timed out after {limit:?}"), |s| s.to_string()),
            log.map(dump).unwrap_or_default()
        ),
    }
}

#[test]
fn web_client_goes_live_in_headless_chromium() {
    let Some(root) = root_or_skip("browser smoke test") else {
        return;
    };
    let _one = ONE_BROWSER.lock().unwrap_or_else(PoisonError::into_inner);
    let demo = start_demo(root);
    run_node(
        root,
        &[
            "tests/browser/smoke.mjs",
            &demo.url,
            "target/browser-smoke.png",
        ],
        SMOKE_TIMEOUT,
        &demo,
    );
}

/// The drill space the history test resets.
const DRILL: &str = "drill-browser";
/// How long the simulator fills it (the live space's log grows meanwhile).
const DRILL_FILL: &str = "8s";

#[test]
fn time_slider_mission_log_and_drill_reset_in_headless_chromium() {
    let Some(root) = root_or_skip("browser history test") else {
        return;
    };
    let _one = ONE_BROWSER.lock().unwrap_or_else(PoisonError::into_inner);
    let demo = start_demo(root);
    assert!(
        demo.mqtt.starts_with("mqtt://"),
        "no broker URL in the demo's banner"
    );

    // A drill space with data in it and then nobody publishing, so that a
    // reset must leave it empty; meanwhile the live space gathers history.
    let mut sim = KillOnDrop {
        child: Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args(["sim", "--mqtt", &demo.mqtt, "--space", DRILL])
            .args(["--speed", "60", "--duration", DRILL_FILL])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rescuemate sim"),
    };
    let filled = wait_with_deadline(&mut sim.child, Duration::from_secs(60));
    assert!(
        filled.is_some_and(|s| s.success()),
        "sim into {DRILL} failed: {filled:?}\ndemo stderr:\n{}",
        dump(&demo.log)
    );

    run_node(
        root,
        &["tests/browser/history.mjs", &demo.url, "target", DRILL],
        HISTORY_TIMEOUT,
        &demo,
    );
}

#[test]
fn wall_and_tablet_layouts_alerts_and_reconnect_in_headless_chromium() {
    let Some(root) = root_or_skip("browser layouts test") else {
        return;
    };
    let _one = ONE_BROWSER.lock().unwrap_or_else(PoisonError::into_inner);
    // The script starts (and kills, and restarts) the server itself.
    run_node_logged(
        root,
        &[
            "tests/browser/layouts.mjs",
            env!("CARGO_BIN_EXE_rescuemate"),
            ARTIFACTS,
        ],
        LAYOUTS_TIMEOUT,
        None,
    );
}

#[test]
fn url_is_found_in_the_demo_banner() {
    assert_eq!(
        url_in("RESCUE MATE demo: open http://127.0.0.1:43123/").as_deref(),
        Some("http://127.0.0.1:43123/")
    );
    assert_eq!(
        url_in("listening (http://[::1]:8080/).").as_deref(),
        Some("http://[::1]:8080/")
    );
    assert_eq!(url_in("no url here"), None);
    assert_eq!(
        token_in(
            "open http://x/  (MQTT mqtt://127.0.0.1:4321; Ctrl-C)",
            "mqtt://"
        )
        .as_deref(),
        Some("mqtt://127.0.0.1:4321")
    );
}
