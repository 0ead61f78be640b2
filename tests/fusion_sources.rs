//! Several sources per unit and sensors that lie, end to end: published
//! over MQTT to the real binary, read back from its REST snapshot.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const GPS: (f64, f64) = (53.545_7, 9.966_6);
const GAUGE: (f64, f64) = (53.545_6, 9.970_0);
const METRES_PER_DEGREE: f64 = 111_195.0;

fn north((lat, lon): (f64, f64), m: f64) -> (f64, f64) {
    (lat + m / METRES_PER_DEGREE, lon)
}

fn metres((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let dy = (lat2 - lat1) * METRES_PER_DEGREE;
    let dx = (lon2 - lon1) * METRES_PER_DEGREE * lat1.to_radians().cos();
    dx.hypot(dy)
}

/// Polls the snapshot until `ok` holds (10 s at most); returns it.
fn snapshot_until(addr: std::net::SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(addr, "/api/v1/live/snapshot?res=10");
        if status == 200 {
            let v: Value = serde_json::from_str(&body).expect("snapshot is JSON");
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within 10 s: {v}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unit<'a>(snap: &'a Value, id: &str) -> Option<&'a Value> {
    snap["units"].as_array()?.iter().find(|u| u["id"] == id)
}

fn pos(ts: i64, (lat, lon): (f64, f64), source: &str, accuracy: f64) -> String {
    json!({"ts": ts, "lat": lat, "lon": lon, "source": source, "accuracy": accuracy}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gps_fix_outweighs_the_radio_a_far_radio_fix_is_a_conflict_and_a_jumping_gauge_is_suspect()
 {
    // The process is killed when `_server` drops.
    let (_server, addr, mqtt_port) = start_server(&[]);
    let (mqtt, _incoming) = mqtt_client(mqtt_port, "e2e-sources").await;
    let t0 = now_ms() - 120_000;

    let meta = json!({"callsign": "HLF 20-1", "type": "HLF", "org": "fire"}).to_string();
    publish(&mqtt, "rm/v1/live/unit/hlf-20-1/meta", meta, true).await;
    publish(
        &mqtt,
        "rm/v1/live/unit/hlf-20-1/pos",
        pos(t0, GPS, "gps", 5.0),
        false,
    )
    .await;
    let radio = north(GPS, 100.0);
    publish(
        &mqtt,
        "rm/v1/live/unit/hlf-20-1/pos",
        pos(t0 + 1_000, radio, "radio", 300.0),
        false,
    )
    .await;
    let snap = snapshot_until(addr, "two sources", |s| {
        unit(s, "hlf-20-1").is_some_and(|u| u["sources"].as_array().is_some_and(|a| a.len() == 2))
    });
    let u = unit(&snap, "hlf-20-1").expect("unit");
    let fused = (
        u["lat"].as_f64().expect("lat"),
        u["lon"].as_f64().expect("lon"),
    );
    assert!(
        metres(fused, GPS) < 10.0,
        "fused {fused:?}, GPS {GPS:?}: {u}"
    );
    assert!(u["accuracy"].as_f64().expect("accuracy") >= 5.0);
    assert!(u.get("conflict").is_none(), "{u}");

    let far = north(GPS, 3_000.0);
    publish(
        &mqtt,
        "rm/v1/live/unit/hlf-20-1/pos",
        pos(t0 + 60_000, far, "radio", 300.0),
        false,
    )
    .await;
    let snap = snapshot_until(addr, "a position conflict", |s| {
        s["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["kind"] == "position_conflict" && x["entity"] == "hlf-20-1")
        })
    });
    assert_eq!(unit(&snap, "hlf-20-1").expect("unit")["conflict"], true);

    // A status from the TAK app is refused; the radio's counts.
    let cot = json!({"ts": t0 + 2_000, "status": 6, "source": "cot"}).to_string();
    publish(&mqtt, "rm/v1/live/unit/hlf-20-1/status", cot, false).await;
    let radio_status = json!({"ts": t0 + 3_000, "status": 3, "source": "radio"}).to_string();
    publish(
        &mqtt,
        "rm/v1/live/unit/hlf-20-1/status",
        radio_status,
        false,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(addr, "/metrics")
        .1
        .contains("rm_fusion_refused_total{reason=\"status_not_authoritative\"} 1")
    {
        assert!(Instant::now() < deadline, "the refusal is counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    snapshot_until(addr, "the radio's status", |s| {
        unit(s, "hlf-20-1")
            .is_some_and(|u| u["status"] == 3 && u["status_age_ms"].as_i64().is_some())
    });

    let gauge =
        json!({"kind": "water_level", "unit": "m NHN", "lat": GAUGE.0, "lon": GAUGE.1}).to_string();
    publish(&mqtt, "rm/v1/live/sensor/g-stpauli/meta", gauge, true).await;
    let obs = |ts: i64, v: f64| json!({"ts": ts, "value": v}).to_string();
    publish(
        &mqtt,
        "rm/v1/live/sensor/g-stpauli/obs",
        obs(t0, 2.9),
        false,
    )
    .await;
    publish(
        &mqtt,
        "rm/v1/live/sensor/g-stpauli/obs",
        obs(t0 + 60_000, 5.9),
        false,
    )
    .await;
    let snap = snapshot_until(addr, "the jump", |s| {
        s["sensors"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["id"] == "g-stpauli" && x["value"] == 5.9)
        })
    });
    let s = snap["sensors"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == "g-stpauli"))
        .expect("gauge");
    assert_eq!(s["quality"], "suspect", "{s}");
    assert_eq!(s["quality_reason"], "spike", "{s}");
    assert_eq!(s["level"], 0, "{s}");
    let hot: Vec<&Value> = snap["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .filter(|c| c["hazard"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert!(hot.is_empty(), "a suspect reading sets no hazard: {hot:?}");
}
