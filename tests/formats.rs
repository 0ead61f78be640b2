//! The foreign formats end to end: SenML, Cursor-on-Target, SensorThings
//! and CAP published with Mosquitto's own client (`mosquitto_pub`) to a
//! Mosquitto started by the test, through the server into the picture; bad
//! payloads dead-lettered with their reason and counted; and MQTT 5 shared
//! subscriptions splitting one stream between two servers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ingest::wire::rfc3339_text as rfc3339;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(30);

/// Publishes QoS 1 with `mosquitto_pub` (a client this team did not write).
fn mosquitto_pub(port: u16, topic: &str, payload: &str) {
    let ok = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .stdout(Stdio::null())
        .status()
        .expect("run mosquitto_pub")
        .success();
    assert!(ok, "mosquitto_pub to {topic} failed");
}

fn tools() -> Option<&'static str> {
    let bin = mosquitto_binary();
    let skip = skip_unless(bin.is_some(), "mosquitto (apt-get install mosquitto)")
        || skip_unless(
            have("mosquitto_pub", "--help"),
            "mosquitto_pub (apt-get install mosquitto-clients)",
        );
    if skip { None } else { bin }
}

fn write_config(dir: &Path, name: &str, text: &str) -> String {
    std::fs::create_dir_all(dir).expect("config dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

fn serve(config: &str, broker: u16) -> (Proc, SocketAddr) {
    let url = format!("mqtt://127.0.0.1:{broker}");
    let proc = Proc::rescuemate(&[
        "serve",
        "--config",
        config,
        "--mqtt",
        &url,
        "--http",
        "127.0.0.1:0",
    ]);
    let addr = proc.http_addr();
    wait_healthy(addr);
    (proc, addr)
}

fn find<'a>(snap: &'a Value, list: &str, id: &str) -> Option<&'a Value> {
    snap[list].as_array()?.iter().find(|e| e["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_formats_reach_the_picture_and_bad_ones_are_dead_lettered() {
    let Some(bin) = tools() else { return };
    let port = free_port();
    let _broker = Mosquitto::start(bin, port, Persistence::Off);
    let dir = std::env::temp_dir().join(format!("rm-formats-{}", std::process::id()));
    let config = write_config(
        &dir,
        "formats.toml",
        r#"
[mqtt]
client_id = "rm-formats-test"

[formats.senml_kinds]
closed = "gate_closed"

[[formats.datastreams]]
id = "4711"
sensor = "pegel-bunthaus"
kind = "water_level"
unit = "m NHN"
lat = 53.4618
lon = 10.0647
name = "Bunthaus"
"#,
    );
    let (_server, addr) = serve(&config, port);
    let (watcher, mut letters) = mqtt_client(port, "dead-letter-watcher").await;
    watcher
        .subscribe("rm/v1/live/dead-letter", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let now = now_ms();
    let secs = now as f64 / 1000.0;
    // SenML: a gauge and a flood gate with their position.
    mosquitto_pub(
        port,
        "rm/v1/live/senml/gw-elbe",
        &format!(
            r#"[{{"bn":"pegel-stpauli:","bt":{secs},"n":"water_level","u":"m NHN","v":5.31}},
               {{"n":"lat","v":53.5457}},{{"n":"lon","v":9.9703}},
               {{"bn":"sperrwerk-billwerder:","n":"closed","vb":true}},
               {{"u":"lat","v":53.5293}},{{"u":"lon","v":10.0574}}]"#
        ),
    );
    // CoT: a TAK phone in an ambulance.
    mosquitto_pub(
        port,
        "rm/v1/live/cot",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<event version="2.0" uid="ANDROID-77aa01bc" type="a-f-G-U-i-m-ag" how="m-g" time="{t}" start="{t}" stale="{s}">
<point lat="53.4951" lon="10.0118" hae="9999999.0" ce="8.0" le="9999999.0"/>
<detail><contact callsign="RTW 3-83-2"/><track course="120.0" speed="9.5"/></detail></event>"#,
            t = rfc3339(now - 1_000),
            s = rfc3339(now + 120_000),
        ),
    );
    // SensorThings: a FROST observation of a configured Datastream.
    mosquitto_pub(
        port,
        "v1.1/Datastreams(4711)/Observations",
        &format!(
            r#"{{"@iot.id":81234,"phenomenonTime":"{}","resultTime":null,"result":4.87}}"#,
            rfc3339(now - 2_000)
        ),
    );
    // CAP: a storm-surge warning for Wilhelmsburg.
    mosquitto_pub(
        port,
        "rm/v1/live/cap",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
<identifier>mow.DE-HH-S-SE017-20261123-17-000</identifier>
<sender>opendata@example.hamburg</sender><sent>{sent}</sent>
<status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
<info><language>de-DE</language><category>Met</category><event>STURMFLUT</event>
<urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty>
<expires>{expires}</expires>
<headline>Schwere Sturmflut in Wilhelmsburg</headline>
<area><areaDesc>Wilhelmsburg</areaDesc>
<polygon>53.48,9.98 53.48,10.04 53.52,10.04 53.52,9.98 53.48,9.98</polygon></area></info></alert>"#,
            sent = rfc3339(now - 3_000),
            expires = rfc3339(now + 3_600_000),
        ),
    );
    // Not ours: a TAK ping is ignored, not refused.
    mosquitto_pub(
        port,
        "rm/v1/live/cot",
        &format!(
            r#"<event version="2.0" uid="ANDROID-77aa01bc-ping" type="t-x-c-t" how="h-g-i-g-o" time="{t}" start="{t}" stale="{s}"><point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/><detail/></event>"#,
            t = rfc3339(now),
            s = rfc3339(now + 10_000),
        ),
    );

    let snap = eventually("every format in the picture", PATIENCE, || {
        let s = snapshot(addr, "live")?;
        let ready = find(&s, "sensors", "pegel-stpauli.water_level").is_some()
            && find(&s, "sensors", "sperrwerk-billwerder.gate_closed").is_some()
            && find(&s, "sensors", "pegel-bunthaus").is_some()
            && find(&s, "units", "ANDROID-77aa01bc").is_some()
            && find(&s, "incidents", "mow.DE-HH-S-SE017-20261123-17-000").is_some();
        ready.then_some(s)
    })
    .await;
    let gauge = find(&snap, "sensors", "pegel-stpauli.water_level").expect("senml gauge");
    assert_eq!(gauge["kind"], "water_level");
    assert_eq!(gauge["value"], 5.31);
    assert_eq!(
        gauge["level"], 2,
        "5.31 m NHN: above the second storm-surge class"
    );
    let gate = find(&snap, "sensors", "sperrwerk-billwerder.gate_closed").expect("gate");
    assert_eq!(gate["value"], 1.0);
    let frost = find(&snap, "sensors", "pegel-bunthaus").expect("sensorthings");
    assert_eq!(
        (frost["value"].as_f64(), frost["name"].as_str()),
        (Some(4.87), Some("Bunthaus"))
    );
    let rtw = find(&snap, "units", "ANDROID-77aa01bc").expect("cot unit");
    assert_eq!(rtw["callsign"], "RTW 3-83-2");
    assert_eq!(rtw["type"], "RTW");
    assert_eq!(rtw["org"], "aid");
    assert_eq!(rtw["accuracy"], 8.0);
    let surge = find(&snap, "incidents", "mow.DE-HH-S-SE017-20261123-17-000").expect("cap");
    assert_eq!(surge["keyword"], "STURMFLUT");
    assert_eq!(surge["severity"], 3);
    assert_eq!(surge["title"], "Schwere Sturmflut in Wilhelmsburg");
    assert!(surge["expires_ms"].as_i64().is_some_and(|t| t > now));
    eventually("the ping counted as ignored", PATIENCE, || {
        metric(
            addr,
            "rm_ingest_ignored_total",
            &[r#"reason="cot_not_a_unit""#],
        )
        .filter(|v| *v >= 1.0)
    })
    .await;

    // Bad input of each format: refused with its reason, dead-lettered,
    // counted; the loop goes on.
    let bad = [
        (
            "rm/v1/live/senml/gw-elbe",
            r#"[{"n":"no-kind-here","v":1}]"#,
            "bad_senml",
        ),
        ("rm/v1/live/cot", "<event uid=", "bad_cot"),
        (
            "v1.1/Datastreams(999)/Observations",
            r#"{"phenomenonTime":"2026-11-23T10:00:00Z","result":1}"#,
            "unknown_datastream",
        ),
        ("rm/v1/live/cap", "<alert>", "bad_cap"),
    ];
    for (topic, payload, _) in bad {
        mosquitto_pub(port, topic, payload);
    }
    for (topic, _, reason) in bad {
        let label = format!(r#"reason="{reason}""#);
        eventually(&format!("{reason} counted"), PATIENCE, || {
            metric(addr, "rm_ingest_refused_total", &[&label]).filter(|v| *v >= 1.0)
        })
        .await;
        let letter = tokio::time::timeout(PATIENCE, letters.recv())
            .await
            .expect("a dead letter in time")
            .expect("dead-letter channel open");
        let body: Value = serde_json::from_slice(&letter.payload).expect("dead letter is JSON");
        assert_eq!(body["topic"], topic, "dead letters arrive in order");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Still alive: a good SenML value after the bad ones.
    mosquitto_pub(
        port,
        "rm/v1/live/senml/gw-elbe",
        &format!(
            r#"[{{"bn":"pegel-stpauli:","bt":{},"n":"water_level","v":5.42}}]"#,
            secs + 1.0
        ),
    );
    eventually("the next value applied", PATIENCE, || {
        let s = snapshot(addr, "live")?;
        (find(&s, "sensors", "pegel-stpauli.water_level")?["value"] == 5.42).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_shared_subscriptions_split_one_stream_between_two_servers() {
    let Some(bin) = tools() else { return };
    let port = free_port();
    let _broker = Mosquitto::start(bin, port, Persistence::Off);
    let dir = std::env::temp_dir().join(format!("rm-shared-{}", std::process::id()));
    let config = |n: u32| {
        write_config(
            &dir,
            &format!("replica-{n}.toml"),
            &format!(
                "[mqtt]\nclient_id = \"rm-replica-{n}\"\nversion = 5\nshare_group = \"rescuemate\"\n"
            ),
        )
    };
    let (_a, addr_a) = serve(&config(1), port);
    let (_b, addr_b) = serve(&config(2), port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (publisher, _) = mqtt_client(port, "shared-publisher").await;
    const N: u64 = 200;
    let ts = now_ms() - 60_000;
    for i in 0..N {
        let payload = format!(r#"{{"ts":{},"value":{i}}}"#, ts + i as i64);
        publish(
            &publisher,
            &format!("rm/v1/live/sensor/s{i}/obs"),
            payload,
            false,
        )
        .await;
    }
    let (a, b) = eventually(
        "every message accepted once by one of the two",
        PATIENCE,
        || {
            let a = metric(addr_a, "rm_ingest_accepted_total", &[]).unwrap_or(0.0);
            let b = metric(addr_b, "rm_ingest_accepted_total", &[]).unwrap_or(0.0);
            (a + b >= N as f64).then_some((a, b))
        },
    )
    .await;
    // Settle, then check nothing arrived twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a2 = metric(addr_a, "rm_ingest_accepted_total", &[]).unwrap_or(0.0);
    let b2 = metric(addr_b, "rm_ingest_accepted_total", &[]).unwrap_or(0.0);
    assert_eq!(
        a2 + b2,
        N as f64,
        "each message to exactly one replica ({a}, {b})"
    );
    assert!(
        a2 > 0.0 && b2 > 0.0,
        "both replicas got a share: {a2} and {b2}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The simulator publishing SenML, Cursor-on-Target and SensorThings
/// (`--format`): the storm surge's gauges and vehicles reach the picture
/// through those decoders (SensorThings with the Datastream table the
/// simulator prints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_speaks_senml_cot_and_sensorthings() {
    let table = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args(["sim", "--print-datastreams"])
        .output()
        .expect("run rescuemate sim --print-datastreams");
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout).expect("UTF-8");
    assert!(table.contains("sensor = \"pegel-st-pauli\""), "{table}");
    let dir = std::env::temp_dir().join(format!("rm-sim-formats-{}", std::process::id()));
    let config = write_config(&dir, "sim.toml", &table);
    let (_server, addr, mqtt_port) = start_server(&["--config", &config]);
    // CoT last: a unit shows the source of its newest fix.
    for format in ["senml", "sensorthings", "cot"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args([
                "sim",
                "--mqtt",
                &format!("mqtt://127.0.0.1:{mqtt_port}"),
                "--format",
                format,
                "--speed",
                "60",
                "--duration",
                "3s",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .expect("run rescuemate sim");
        assert!(
            out.status.success(),
            "sim --format {format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let snap = eventually(
        "gauges of every format and CoT vehicles in the picture",
        PATIENCE,
        || {
            let s = snapshot(addr, "live")?;
            let gauges = s["sensors"]
                .as_array()?
                .iter()
                .filter(|g| {
                    g["id"]
                        .as_str()
                        .is_some_and(|id| id.ends_with(".water_level"))
                        && g["value"].is_number()
                })
                .count();
            // SensorThings: named by the Datastream table as the scenario
            // names them.
            let frost = find(&s, "sensors", "pegel-st-pauli")?;
            if !(frost["value"].is_number() && frost["kind"] == "water_level") {
                return None;
            }
            let cot_units = s["units"]
                .as_array()?
                .iter()
                .filter(|u| u["source"] == "cot" && u["lat"].is_number())
                .count();
            (gauges > 0 && cot_units > 0).then_some(s)
        },
    )
    .await;
    let fire = snap["units"]
        .as_array()
        .expect("units")
        .iter()
        .find(|u| u["source"] == "cot" && u["org"] == "fire")
        .expect("a fire engine reported over CoT");
    assert!(fire["callsign"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(
        metric(addr, "rm_ingest_refused_total", &[]).unwrap_or(0.0),
        0.0,
        "nothing the simulator sent was refused"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
