//! The same pipeline against Mosquitto, started by the test on a free port:
//! the server as a client of a standard external broker, retained
//! descriptions from before the server started included.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_works_against_mosquitto() {
    let Some(bin) = mosquitto_binary() else {
        skip_unless(false, "mosquitto (apt-get install mosquitto)");
        return;
    };
    let port = free_port();
    let _broker = Mosquitto::start(bin, port, Persistence::Off);
    let (mqtt, _) = mqtt_client(port, "mosq-publisher").await;
    // Retained before the server exists: it must still learn of the gauge.
    let meta =
        json!({"kind":"water_level","unit":"m NHN","lat":53.462,"lon":10.065,"name":"Bunthaus"});
    publish(
        &mqtt,
        "rm/v1/live/sensor/bunthaus/meta",
        meta.to_string(),
        true,
    )
    .await;

    let url = format!("mqtt://127.0.0.1:{port}");
    let proc = Proc::rescuemate(&["serve", "--mqtt", &url, "--http", "127.0.0.1:0"]);
    let addr = proc.http_addr();
    wait_healthy(addr);
    let (mut ws, snap) = ws_subscribe(addr, "live", [9.6, 53.3, 10.4, 53.8], 10).await;
    let mut seq = snap["seq"].as_u64().expect("seq");
    let known = |v: &serde_json::Value| {
        v["sensors"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["id"] == "bunthaus"))
    };
    if !known(&snap) {
        let d = ws_until(&mut ws, seq, Duration::from_secs(5), known)
            .await
            .expect("the retained description arrives");
        seq = d["seq"].as_u64().expect("seq");
    }

    let ts = now_ms();
    let published = Instant::now();
    publish(
        &mqtt,
        "rm/v1/live/sensor/bunthaus/obs",
        json!({"ts": ts, "value": 3.9}).to_string(),
        false,
    )
    .await;
    let d = ws_until(&mut ws, seq, Duration::from_secs(5), |d| {
        d["sensors"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["id"] == "bunthaus" && s["value"] == 3.9))
    })
    .await
    .expect("the observation arrives through Mosquitto");
    eprintln!(
        "publish -> websocket delta via Mosquitto: {:?}",
        published.elapsed()
    );
    assert!(
        published.elapsed() < Duration::from_secs(1),
        "{:?}",
        published.elapsed()
    );
    let expected = h3o::LatLng::new(53.462, 10.065)
        .expect("valid")
        .to_cell(h3o::Resolution::Ten)
        .to_string();
    assert_eq!(d["cells"][0]["h3"], expected.as_str());
    assert_eq!(d["cells"][0]["max_level"], 1);
}
