//! The event log end to end: the real binary with `--data`, killed with
//! SIGKILL and restarted, replayed, exported; a real broker in every case.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const MINUTE: i64 = 60_000;

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rm-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn obs(ts: i64, value: f64, seq: u64) -> String {
    format!(r#"{{"ts":{ts},"value":{value},"seq":{seq}}}"#)
}

fn digest_of(addr: std::net::SocketAddr, space: &str) -> String {
    snapshot(addr, space).expect("snapshot")["digest"]
        .as_str()
        .expect("digest")
        .to_owned()
}

/// The mission log's entries (JSON).
fn mission_log(addr: std::net::SocketAddr, space: &str) -> Vec<Value> {
    let (status, body) = http_get(addr, &format!("/api/v1/{space}/mission-log"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["entries"].as_array().expect("entries").clone()
}

/// Ids of the alerts raised by events (`A…`; the clock's `S…` are left
/// out of the digest).
fn event_alerts(snap: &Value) -> Vec<String> {
    snap["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["id"].as_str())
        .filter(|id| id.starts_with('A'))
        .map(str::to_owned)
        .collect()
}

/// `kill -9`, and waits until the process is gone.
fn kill9(proc: &mut Proc) {
    proc.signal("KILL");
    let _ = proc.child.wait();
}

/// Records in a space's log, read back with the binary's own export.
fn logged_records(data: &Path, space: &str) -> u64 {
    let out = data.join(format!("{space}-count.arrow"));
    let o = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args(["export", "--data"])
        .arg(data)
        .args(["--space", space, "--out"])
        .arg(&out)
        .output()
        .expect("run export");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("export said {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_recovers_its_picture_and_shows_the_past() {
    let data = data_dir("recover");
    let data_arg = data.to_str().expect("utf-8 path").to_owned();
    let (mut proc, addr, port) = start_server(&["--data", &data_arg]);
    let p = Publisher::connect(port, "recover-pub").await;
    let t0 = now_ms() - 60 * MINUTE;
    p.publish(
        "rm/v1/live/sensor/pegel-st-pauli/meta",
        r#"{"kind":"water_level","unit":"m NHN","lat":53.5456,"lon":9.9706,"name":"St. Pauli"}"#,
        true,
    )
    .await;
    p.publish(
        "rm/v1/live/unit/hlf-1/meta",
        r#"{"callsign":"HLF 1","type":"HLF","org":"fire"}"#,
        true,
    )
    .await;
    p.publish(
        "rm/v1/live/sensor/pegel-st-pauli/obs",
        obs(t0, 3.0, 1),
        false,
    )
    .await;
    p.publish(
        "rm/v1/live/sensor/pegel-st-pauli/obs",
        obs(t0 + 10 * MINUTE, 3.9, 2),
        false,
    )
    .await;
    p.publish(
        "rm/v1/live/unit/hlf-1/pos",
        format!(r#"{{"ts":{},"lat":53.50,"lon":10.00}}"#, t0 + 11 * MINUTE),
        false,
    )
    .await;
    let value_is = |v: f64| {
        move || {
            let s = snapshot(addr, "live")?;
            (sensor_of(&s, "pegel-st-pauli")?["value"].as_f64() == Some(v)).then_some(s)
        }
    };
    let first = eventually("first phase applied", Duration::from_secs(10), || {
        let s = value_is(3.9)()?;
        let placed = s["units"]
            .as_array()?
            .iter()
            .any(|u| u["id"] == "hlf-1" && u["lat"].is_number());
        placed.then_some(s)
    })
    .await;
    let mid_digest = first["digest"].as_str().expect("digest").to_owned();
    let mid_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Second phase: a higher level, a radio status, an acknowledgement and
    // an operator's removal.
    p.publish(
        "rm/v1/live/sensor/pegel-st-pauli/obs",
        obs(t0 + 20 * MINUTE, 4.8, 3),
        false,
    )
    .await;
    p.publish(
        "rm/v1/live/unit/hlf-1/status",
        format!(r#"{{"ts":{},"status":3}}"#, t0 + 21 * MINUTE),
        false,
    )
    .await;
    p.publish(
        "rm/v1/live/sensor/gas-1/meta",
        r#"{"kind":"gas_co","unit":"ppm","lat":53.52,"lon":10.05}"#,
        true,
    )
    .await;
    let snap = eventually("second phase applied", Duration::from_secs(10), || {
        let s = value_is(4.8)()?;
        let raised = event_alerts(&s).len();
        (raised >= 2 && sensor_of(&s, "gas-1").is_some()).then_some(s)
    })
    .await;
    let alert = event_alerts(&snap)[0].clone();
    let (mut ws, _) = ws_subscribe(addr, "live", [9.0, 53.0, 11.0, 54.0], 8).await;
    ws.send(Message::Text(
        format!(r#"{{"type":"ack","alert":"{alert}"}}"#).into(),
    ))
    .await
    .expect("send ack");
    assert_eq!(http_delete(addr, "/api/v1/live/sensors/gas-1"), 204);
    let before = eventually("ack and removal applied", Duration::from_secs(10), || {
        let s = snapshot(addr, "live")?;
        let acked = s["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["id"] == alert.as_str() && a["acked"] == true);
        (acked && sensor_of(&s, "gas-1").is_none()).then_some(s)
    })
    .await;
    let before_digest = before["digest"].as_str().expect("digest").to_owned();
    assert_ne!(before_digest, mid_digest);
    let journal_before = mission_log(addr, "live");
    let kinds: Vec<&str> = journal_before
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.iter().filter(|k| **k == "alert_raised").count() >= 2
            && kinds.contains(&"alert_acked")
            && kinds.contains(&"removed"),
        "{journal_before:?}"
    );

    kill9(&mut proc);
    // A crash can leave half a batch at the end of the newest segment:
    // reported, and everything before it still read.
    let newest = std::fs::read_dir(data.join("live"))
        .expect("live folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "arrows"))
        .max()
        .expect("a segment");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &[0xff, 0xff, 0xff, 0xff, 0x40, 0x01, 0, 0, 0x10])
        })
        .expect("tear the segment");
    let (proc2, addr2, _) = start_server(&["--data", &data_arg]);
    assert_eq!(
        metric(addr2, "rm_log_damaged_segments_total", &[]),
        Some(1.0),
        "the torn segment is reported"
    );
    let after = snapshot(addr2, "live").expect("snapshot after restart");
    assert_eq!(
        after["digest"], before_digest,
        "the recovered picture is the one before the kill"
    );
    assert_eq!(
        sensor_of(&after, "pegel-st-pauli").expect("gauge")["value"],
        4.8
    );
    assert!(
        sensor_of(&after, "gas-1").is_none(),
        "the removal is logged"
    );
    let acked = after["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .any(|a| a["id"] == alert.as_str() && a["acked"] == true);
    assert!(acked, "the acknowledgement is logged: {}", after["alerts"]);
    assert_eq!(
        mission_log(addr2, "live"),
        journal_before,
        "the mission log is kept, and recovery enters nothing twice"
    );
    let (status, csv) = http_get(addr2, "/api/v1/live/mission-log?format=csv");
    assert_eq!(status, 200);
    assert!(
        csv.starts_with("at,space,kind,about,actor,text\r\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), journal_before.len() + 1, "{csv}");
    let (status, range) = http_get(addr2, "/api/v1/live/history");
    assert_eq!(status, 200, "{range}");
    let range: Value = serde_json::from_str(&range).expect("json");
    assert!(range["from_ms"].as_i64().expect("from") <= mid_ms);

    // Time travel: the picture as it was between the phases.
    let (status, body) = http_get(addr2, &format!("/api/v1/live/snapshot?res=10&at={mid_ms}"));
    assert_eq!(status, 200, "{body}");
    let past: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(past["digest"], mid_digest.as_str());
    assert_eq!(past["at"], mid_ms);
    assert_eq!(
        sensor_of(&past, "pegel-st-pauli").expect("gauge")["value"],
        3.9
    );
    let (status, body) = http_get(addr2, "/api/v1/live/snapshot?at=yesterday");
    assert_eq!(status, 400, "{body}");
    drop(proc2);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_load_no_accepted_event_is_missing() {
    let Some(bin) = mosquitto_binary() else {
        skip_unless(false, "mosquitto");
        return;
    };
    let mqtt_port = free_port();
    // Nothing dropped for a server that is away for a moment.
    let _broker =
        Mosquitto::start_with(bin, mqtt_port, Persistence::Off, "max_queued_messages 0\n");
    let url = format!("mqtt://127.0.0.1:{mqtt_port}");
    let data = data_dir("load");
    std::fs::create_dir_all(&data).expect("mkdir");
    let conf = |id: &str| {
        let path = data.join(format!("{id}.toml"));
        std::fs::write(&path, format!("[mqtt]\nclient_id = \"{id}\"\n")).expect("config");
        path.to_str().expect("utf-8").to_owned()
    };
    let (conf_a, conf_b) = (conf("rm-killed"), conf("rm-reference"));
    let log_dir = data.join("log");
    let log_arg = log_dir.to_str().expect("utf-8").to_owned();
    let serve = |conf: &str, data: Option<&str>| {
        let mut args = vec![
            "serve",
            "--mqtt",
            &url,
            "--http",
            "127.0.0.1:0",
            "--config",
            conf,
        ];
        if let Some(d) = data {
            args.extend(["--data", d]);
        }
        let proc = Proc::rescuemate(&args);
        let addr = proc.http_addr();
        wait_healthy(addr);
        (proc, addr)
    };
    let (mut killed, killed_addr) = serve(&conf_a, Some(&log_arg));
    let (_reference, ref_addr) = serve(&conf_b, None);

    const SENSORS: u64 = 20;
    const EACH: u64 = 150;
    let p = Publisher::connect(mqtt_port, "load-pub").await;
    for s in 0..SENSORS {
        let (lat, lon) = (53.40 + 0.015 * s as f64, 9.80 + 0.02 * s as f64);
        p.publish(
            &format!("rm/v1/live/sensor/load-{s}/meta"),
            format!(r#"{{"kind":"people_count","unit":"persons","lat":{lat},"lon":{lon}}}"#),
            true,
        )
        .await;
    }
    let t0 = now_ms() - 10 * MINUTE;
    let mut published = SENSORS;
    let mut restarted = None;
    for i in 1..=EACH {
        for s in 0..SENSORS {
            let ts = t0 + i as i64 * 1_000;
            p.publish(
                &format!("rm/v1/live/sensor/load-{s}/obs"),
                obs(ts, (i % 40) as f64, i),
                false,
            )
            .await;
            published += 1;
        }
        if i == EACH / 3 {
            // Under load (once it has taken some): whatever the server
            // held only in memory dies with it.
            eventually("the server took some", Duration::from_secs(20), || {
                let applied = metric(killed_addr, "rm_fusion_events_total", &[])?;
                (applied >= 100.0).then_some(())
            })
            .await;
            kill9(&mut killed);
        }
        if i == EACH / 2 {
            restarted = Some(serve(&conf_a, Some(&log_arg)));
        }
    }
    p.wait_acked(published).await;
    let (_restarted, addr) = restarted.expect("restarted");
    let all_in = |a| {
        move || {
            let s = snapshot(a, "live")?;
            (0..SENSORS)
                .all(|i| {
                    sensor_of(&s, &format!("load-{i}"))
                        .is_some_and(|x| x["ts_ms"] == t0 + EACH as i64 * 1_000)
                })
                .then_some(s)
        }
    };
    let got = eventually(
        "restarted server has everything",
        Duration::from_secs(30),
        all_in(addr),
    )
    .await;
    let want = eventually(
        "reference has everything",
        Duration::from_secs(30),
        all_in(ref_addr),
    )
    .await;
    let gaps = got["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == "seq_gap")
        .count();
    assert_eq!(gaps, 0, "no observation went missing: {}", got["alerts"]);
    assert_eq!(
        metric(addr, "rm_fusion_seq_missed_total", &[]).unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        got["digest"], want["digest"],
        "killed and restarted, the picture equals the reference's"
    );
    let recovered = metric(addr, "rm_log_recovered_total", &[]).expect("recovered count");
    assert!(recovered > 0.0, "the restart read the log");
    let _ = std::fs::remove_dir_all(&data);
}

fn replay(data: &Path, extra: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args(["replay", "--data"])
        .arg(data)
        .args([
            "--space",
            "drill-replay",
            "--http",
            "127.0.0.1:0",
            "--json",
            "--exit",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run replay");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let last = stdout.lines().last().expect("output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_deterministic_at_any_speed_and_never_enter_the_live_log() {
    let data = data_dir("replay");
    let data_arg = data.to_str().expect("utf-8 path").to_owned();
    let (proc, addr, port) = start_server(&["--data", &data_arg]);
    let p = Publisher::connect(port, "replay-pub").await;
    let t0 = now_ms() - 30 * MINUTE;
    for s in 0..5 {
        p.publish(
            &format!("rm/v1/live/sensor/r-{s}/meta"),
            format!(
                r#"{{"kind":"water_level","unit":"m NHN","lat":{},"lon":9.97}}"#,
                53.50 + 0.03 * f64::from(s)
            ),
            true,
        )
        .await;
        p.publish(
            &format!("rm/v1/live/unit/u-{s}/meta"),
            format!(r#"{{"callsign":"RTW {s}","type":"RTW","org":"aid"}}"#),
            true,
        )
        .await;
    }
    // About a second and a half of traffic, with level changes and alerts.
    for i in 0..30u64 {
        for s in 0..5 {
            let ts = t0 + i as i64 * MINUTE;
            let level = 3.0 + 0.1 * i as f64;
            p.publish(
                &format!("rm/v1/live/sensor/r-{s}/obs"),
                obs(ts, level, i + 1),
                false,
            )
            .await;
            p.publish(
                &format!("rm/v1/live/unit/u-{s}/pos"),
                format!(
                    r#"{{"ts":{ts},"lat":{},"lon":{}}}"#,
                    53.5 + 0.001 * i as f64,
                    10.0 + 0.002 * f64::from(s)
                ),
                false,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = eventually("all applied", Duration::from_secs(10), || {
        let s = snapshot(addr, "live")?;
        (0..5)
            .all(|i| {
                sensor_of(&s, &format!("r-{i}")).is_some_and(|x| x["ts_ms"] == t0 + 29 * MINUTE)
            })
            .then_some(s)
    })
    .await;
    let live_digest = live["digest"].as_str().expect("digest").to_owned();
    // A clean stop closes the segments.
    proc.signal("TERM");
    let mut proc = proc;
    let _ = proc.child.wait();
    let live_records = logged_records(&data, "live");
    assert_eq!(live_records, 10 + 300, "every accepted event is logged");

    let a = replay(&data, &["--speed", "max", "--every", "50"]);
    let b = replay(&data, &["--speed", "max", "--every", "50"]);
    assert_eq!(a["records"], live_records);
    assert_eq!(a["checkpoints"].as_array().expect("checkpoints").len(), 6);
    assert_eq!(
        a["checkpoints"], b["checkpoints"],
        "same digest at every checkpoint"
    );
    assert_eq!(
        a["digest"],
        live_digest.as_str(),
        "the replay ends where the live picture did"
    );
    let x1 = replay(&data, &["--speed", "1"]);
    let x10 = replay(&data, &["--speed", "10"]);
    assert_eq!(x1["digest"], x10["digest"]);
    assert_eq!(x1["digest"], live_digest.as_str());
    let (w1, w10) = (
        x1["wall_ms"].as_u64().expect("ms"),
        x10["wall_ms"].as_u64().expect("ms"),
    );
    assert!(w1 >= 1_000, "×1 takes the recording's own time: {w1} ms");
    assert!(w10 < w1, "×10 is faster: {w10} vs {w1} ms");

    // Through a broker into a running server's drill space: the drill gets
    // its own folder and the live log does not grow. The clean stop left a
    // checkpoint of everything, so this start replays nothing.
    let (proc, addr, port) = start_server(&["--data", &data_arg]);
    assert_eq!(digest_of(addr, "live"), live_digest);
    assert_eq!(
        metric(addr, "rm_log_recovered_total", &[]).unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        metric(addr, "rm_log_checkpoints_restored_total", &[]),
        Some(1.0)
    );
    let url = format!("mqtt://127.0.0.1:{port}");
    let o = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args([
            "replay",
            "--data",
            &data_arg,
            "--space",
            "drill-replay",
            "--speed",
            "max",
            "--mqtt",
            &url,
        ])
        .output()
        .expect("run replay");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let drill = eventually(
        "the drill space shows the replay",
        Duration::from_secs(20),
        || {
            let s = snapshot(addr, "drill-replay")?;
            eprintln!("drill sensors: {}", s["sensors"]);
            // Times moved to now by the replay: the last value tells.
            let last = 3.0 + 0.1 * 29.0;
            (0..5)
                .all(|i| sensor_of(&s, &format!("r-{i}")).is_some_and(|x| x["value"] == last))
                .then_some(s)
        },
    )
    .await;
    assert_eq!(drill["drill"], true, "EXERCISE");
    let spaces: Value = serde_json::from_str(&http_get(addr, "/api/v1/spaces").1).expect("json");
    assert!(
        spaces
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["name"] == "drill-replay" && s["drill"] == true),
        "{spaces}"
    );
    proc.signal("TERM");
    let mut proc = proc;
    let _ = proc.child.wait();
    assert_eq!(logged_records(&data, "live"), live_records);
    assert_eq!(logged_records(&data, "drill-replay"), live_records);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn exports_are_read_by_pyarrow() {
    let script = "import pyarrow";
    let have = Command::new("python3")
        .args(["-c", script])
        .status()
        .is_ok_and(|s| s.success());
    if skip_unless(have, "python3 with pyarrow (pip install pyarrow)") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let data = data_dir("export");
    let data_arg = data.to_str().expect("utf-8 path").to_owned();
    let (proc, addr, port) = start_server(&["--data", &data_arg]);
    let t0 = now_ms() - 5 * MINUTE;
    rt.block_on(async {
        let p = Publisher::connect(port, "export-pub").await;
        p.publish(
            "rm/v1/live/sensor/x/meta",
            r#"{"kind":"rain_rate","unit":"mm/h","lat":53.55,"lon":10.0}"#,
            true,
        )
        .await;
        for i in 0..20u64 {
            p.publish(
                "rm/v1/live/sensor/x/obs",
                obs(t0 + i as i64 * 1_000, i as f64, i + 1),
                false,
            )
            .await;
        }
        eventually("applied", Duration::from_secs(10), || {
            let s = snapshot(addr, "live")?;
            (sensor_of(&s, "x")?["ts_ms"] == t0 + 19_000).then_some(())
        })
        .await;
    });
    proc.signal("TERM");
    let mut proc = proc;
    let _ = proc.child.wait();
    let out = data.join("window.arrow");
    let o = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args(["export", "--data", &data_arg, "--out"])
        .arg(&out)
        .output()
        .expect("export");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let check = format!(
        "import pyarrow.ipc as ipc, pyarrow.compute as pc\n\
         t = ipc.open_file({out:?}).read_all()\n\
         obs = t.filter(pc.equal(t.column('kind'), 'sensor_obs'))\n\
         print(t.num_rows, obs.num_rows, sum(obs.column('value').to_pylist()), t.schema.field('received_at').type)\n",
        out = out.to_str().expect("utf-8")
    );
    let py = Command::new("python3")
        .args(["-c", &check])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let text = String::from_utf8_lossy(&py.stdout);
    assert_eq!(
        text.trim(),
        "21 20 190.0 timestamp[ms, tz=UTC]",
        "rows, observations, their sum, the time type"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_can_be_reset_and_its_mission_log_says_so() {
    let data = data_dir("reset");
    let data_arg = data.to_str().expect("utf-8 path").to_owned();
    let (_proc, addr, port) = start_server(&["--data", &data_arg]);
    let p = Publisher::connect(port, "reset-pub").await;
    p.publish(
        "rm/v1/drill-surge/sensor/g/meta",
        r#"{"kind":"water_level","unit":"m NHN","lat":53.54,"lon":9.97}"#,
        false,
    )
    .await;
    p.publish(
        "rm/v1/drill-surge/sensor/g/obs",
        obs(now_ms() - MINUTE, 5.0, 1),
        false,
    )
    .await;
    eventually("the drill has its gauge", Duration::from_secs(10), || {
        sensor_of(&snapshot(addr, "drill-surge")?, "g").map(|_| ())
    })
    .await;
    let (mut ws, before) = ws_subscribe(addr, "drill-surge", [9.0, 53.0, 11.0, 54.0], 10).await;
    assert!(sensor_of(&before, "g").is_some(), "{before}");
    assert_eq!(
        http_post(addr, "/api/v1/live/reset"),
        400,
        "live is never reset"
    );
    assert_eq!(http_post(addr, "/api/v1/drill-surge/reset"), 204);
    // A client watching the drill is handed the empty picture at once.
    let mut fresh = None;
    while let Some(m) = ws_next(&mut ws, Duration::from_secs(5)).await {
        if m["type"] == "snapshot" {
            fresh = Some(m);
            break;
        }
    }
    let fresh = fresh.expect("a fresh snapshot after the reset");
    assert!(
        fresh["sensors"].as_array().expect("sensors").is_empty(),
        "{fresh}"
    );
    assert!(
        fresh["seq"].as_u64() > before["seq"].as_u64(),
        "the sequence goes on"
    );
    let (status, range) = http_get(addr, "/api/v1/drill-surge/history");
    assert_eq!(
        status, 200,
        "the reset drill's past begins at the reset: {range}"
    );
    let snap = snapshot(addr, "drill-surge").expect("snapshot");
    assert!(
        snap["sensors"].as_array().expect("sensors").is_empty(),
        "{snap}"
    );
    assert!(
        snap["alerts"].as_array().expect("alerts").is_empty(),
        "{snap}"
    );
    let kinds: Vec<String> = mission_log(addr, "drill-surge")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        kinds,
        ["drill_reset"],
        "a fresh mission log that begins with the reset"
    );
    let aside = std::fs::read_dir(&data)
        .expect("data folder")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("drill-surge.reset-")
        });
    assert!(aside, "the drill's old log is kept aside for review");
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_at_each_segment_keep_recovery_short() {
    let data = data_dir("checkpoints");
    std::fs::create_dir_all(&data).expect("mkdir");
    let conf = data.join("short-segments.toml");
    std::fs::write(&conf, "[log]\nsegment_ms = 1000\n").expect("config");
    let log_dir = data.join("log");
    let args = [
        "--data",
        log_dir.to_str().expect("utf-8"),
        "--config",
        conf.to_str().expect("utf-8"),
    ];
    let (mut proc, addr, port) = start_server(&args);
    let p = Publisher::connect(port, "cp-pub").await;
    let t0 = now_ms() - 30 * MINUTE;
    p.publish(
        "rm/v1/live/sensor/cp/meta",
        r#"{"kind":"water_level","unit":"m NHN","lat":53.54,"lon":9.97}"#,
        true,
    )
    .await;
    // Three and a half seconds of observations: four segments or so.
    for i in 0..35u64 {
        p.publish(
            "rm/v1/live/sensor/cp/obs",
            obs(t0 + i as i64 * MINUTE / 2, 3.0 + 0.05 * i as f64, i + 1),
            false,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = t0 + 34 * MINUTE / 2;
    eventually("all applied", Duration::from_secs(10), || {
        (sensor_of(&snapshot(addr, "live")?, "cp")?["ts_ms"] == last).then_some(())
    })
    .await;
    let before = digest_of(addr, "live");
    kill9(&mut proc);
    let live = log_dir.join("live");
    let checkpoints = std::fs::read_dir(&live)
        .expect("live folder")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        .count();
    assert!(
        checkpoints >= 3,
        "one checkpoint per segment begun: {checkpoints}"
    );
    let (_proc, addr, _) = start_server(&args);
    assert_eq!(
        digest_of(addr, "live"),
        before,
        "checkpoint + tail = the picture before the kill"
    );
    let replayed = metric(addr, "rm_log_recovered_total", &[]).unwrap_or(0.0);
    assert!(
        replayed < 20.0,
        "only the segment after the newest checkpoint is replayed: {replayed} of 36 records"
    );
    assert_eq!(
        metric(addr, "rm_log_checkpoints_restored_total", &[]),
        Some(1.0)
    );
    let _ = std::fs::remove_dir_all(&data);
}
