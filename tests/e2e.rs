//! End to end through the real binary with its embedded broker: MQTT over
//! TCP in, websocket out, REST and metrics beside.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const HAMBURG: [f64; 4] = [9.6, 53.3, 10.4, 53.8];
const RESOLUTIONS: [u8; 5] = [6, 7, 8, 9, 10];
const GAUGE: (f64, f64) = (53.545_6, 9.970_0);

fn has_sensor(delta: &Value, id: &str, value: Option<f64>) -> bool {
    delta["sensors"].as_array().is_some_and(|s| {
        s.iter()
            .any(|s| s["id"] == id && value.is_none_or(|v| s["value"].as_f64() == Some(v)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_reaches_every_websocket_within_a_second_in_the_reference_cell() {
    let (_proc, addr, mqtt_port) = start_server(&[]);
    let mut clients = Vec::new();
    for res in RESOLUTIONS {
        let (ws, snap) = ws_subscribe(addr, "live", HAMBURG, res).await;
        assert_eq!(snap["res"], res);
        assert_eq!(snap["drill"], false);
        clients.push((res, ws, snap["seq"].as_u64().expect("seq")));
    }
    let (mqtt, _) = mqtt_client(mqtt_port, "e2e-publisher").await;
    let meta =
        json!({"kind":"water_level","unit":"m NHN","lat":GAUGE.0,"lon":GAUGE.1,"name":"St. Pauli"});
    publish(
        &mqtt,
        "rm/v1/live/sensor/e2e-gauge/meta",
        meta.to_string(),
        true,
    )
    .await;
    for (_, ws, seq) in &mut clients {
        let d = ws_until(ws, *seq, Duration::from_secs(5), |d| {
            has_sensor(d, "e2e-gauge", None)
        })
        .await
        .expect("the sensor's description arrives");
        *seq = d["seq"].as_u64().expect("seq");
    }

    let published = Instant::now();
    let obs = json!({"ts": now_ms(), "value": 5.0, "seq": 1});
    publish(
        &mqtt,
        "rm/v1/live/sensor/e2e-gauge/obs",
        obs.to_string(),
        false,
    )
    .await;

    let reference = reference_cells(GAUGE.0, GAUGE.1, &RESOLUTIONS);
    if reference.is_none() {
        assert!(
            !require_all(),
            "RM_REQUIRE_ALL=1 but Python h3 is not installed"
        );
        eprintln!("NOTE: Python h3 not installed; checking cells against h3o only");
    }
    let ll = h3o::LatLng::new(GAUGE.0, GAUGE.1).expect("valid");
    for (i, (res, ws, seq)) in clients.iter_mut().enumerate() {
        let d = ws_until(ws, *seq, Duration::from_secs(5), |d| {
            has_sensor(d, "e2e-gauge", Some(5.0))
        })
        .await
        .expect("the observation arrives");
        let elapsed = published.elapsed();
        eprintln!("publish -> websocket delta (res {res}): {elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(1),
            "res {res}: took {elapsed:?}"
        );
        let cells: Vec<&Value> = d["cells"]
            .as_array()
            .expect("cells changed")
            .iter()
            .collect();
        assert_eq!(
            cells.len(),
            1,
            "res {res}: only the viewport's resolution: {d}"
        );
        let cell = cells[0];
        assert_eq!(cell["res"], *res);
        assert_eq!(cell["max_level"], 2, "5.0 m NHN is above 3.6 and 4.6");
        assert_eq!(cell["sensors"], 1);
        let ours = cell["h3"].as_str().expect("h3 string");
        let h3o_cell = ll
            .to_cell(h3o::Resolution::Ten)
            .parent(h3o::Resolution::try_from(*res).expect("res"))
            .expect("a parent")
            .to_string();
        assert_eq!(ours, h3o_cell, "res {res}");
        if let Some(r) = &reference {
            assert_eq!(
                ours, r[i],
                "res {res}: H3 reference implementation disagrees"
            );
        }
    }

    let (status, body) = http_get(addr, "/api/v1/live/snapshot?res=10&bbox=9.9,53.5,10.0,53.6");
    assert_eq!(status, 200, "{body}");
    let snap: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["digest"].as_str().expect("digest").len(), 64);
    assert!(
        snap["sensors"]
            .as_array()
            .expect("sensors")
            .iter()
            .any(|s| s["id"] == "e2e-gauge")
    );
    assert_eq!(snap["alerts"][0]["kind"], "threshold");
    let (status, body) = http_get(addr, "/api/v1/spaces");
    assert_eq!(status, 200);
    assert!(body.contains("\"live\""), "{body}");
    assert_eq!(http_delete(addr, "/api/v1/live/sensors/e2e-gauge"), 204);
    assert_eq!(http_delete(addr, "/api/v1/live/sensors/e2e-gauge"), 404);
    let (_, body) = http_get(addr, "/api/v1/live/snapshot?res=10");
    let snap: Value = serde_json::from_str(&body).expect("json");
    assert!(
        !snap["sensors"]
            .as_array()
            .expect("sensors")
            .iter()
            .any(|s| s["id"] == "e2e-gauge"),
        "removed by the operator"
    );
    let (status, _) = http_get(addr, "/api/v1/Live!/snapshot");
    assert_eq!(status, 400, "invalid space names are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_dead_lettered_and_the_server_keeps_working() {
    let (mut proc, addr, mqtt_port) = start_server(&[]);
    let (ws_client, snap) = ws_subscribe(addr, "live", HAMBURG, 8).await;
    let mut ws = ws_client;
    let (mqtt, mut incoming) = mqtt_client(mqtt_port, "e2e-garbage").await;
    mqtt.subscribe("rm/v1/+/dead-letter", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let future = now_ms() + 3_600_000;
    let garbage: Vec<(&str, Vec<u8>, &str)> = vec![
        ("rm/v1/live/sensor/g1/obs", b"not json".to_vec(), "bad_json"),
        (
            "rm/v1/live/unit/u1/pos",
            br#"{"ts":1,"lat":200,"lon":0}"#.to_vec(),
            "out_of_range",
        ),
        (
            "rm/v1/live/sensor/g1/obs",
            vec![b'7'; 70 * 1024],
            "too_large",
        ),
        ("rm/v1/NOPE/sensor/g1/obs", b"{}".to_vec(), "bad_space"),
        (
            "rm/v1/live/unit/u1/status",
            format!(r#"{{"ts":{future},"status":3}}"#).into_bytes(),
            "future_timestamp",
        ),
        ("rm/v1/live/whatever", vec![0xff, 0xfe, 0x00], "bad_topic"),
        (
            "rm/v1/drill-x/sensor/g2/obs",
            br#"{"ts":"yesterday","value":1}"#.to_vec(),
            "bad_timestamp",
        ),
        ("rm/v1/live/unit/bad$id/pos", b"{}".to_vec(), "bad_id"),
    ];
    for (topic, payload, _) in &garbage {
        publish(&mqtt, topic, payload.clone(), false).await;
    }

    let mut letters = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while letters.len() < garbage.len() {
        let p = tokio::time::timeout_at(deadline, incoming.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} dead letters: {letters:?}", letters.len()))
            .expect("mqtt client alive");
        let v: Value = serde_json::from_slice(&p.payload).expect("dead letter is JSON");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        assert!(v["received_at"].is_string(), "{v}");
        letters.push((
            p.topic.clone(),
            v["topic"].as_str().expect("topic").to_owned(),
        ));
    }
    for (topic, _, _) in &garbage {
        assert!(
            letters.iter().any(|(_, t)| t == topic),
            "no dead letter for {topic}"
        );
    }
    assert!(
        letters
            .iter()
            .any(|(dl, t)| dl == "rm/v1/drill-x/dead-letter" && t.contains("drill-x")),
        "dead letters go to the space the topic names: {letters:?}"
    );

    assert!(
        proc.child.try_wait().expect("wait").is_none(),
        "server still running"
    );
    let valid = json!({"ts": now_ms(), "lat": 53.55, "lon": 9.99});
    publish(&mqtt, "rm/v1/live/unit/hlf-1/pos", valid.to_string(), false).await;
    let seq = snap["seq"].as_u64().expect("seq");
    ws_until(&mut ws, seq, Duration::from_secs(5), |d| {
        d["units"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["id"] == "hlf-1"))
    })
    .await
    .expect("valid input after garbage still flows");

    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    for (_, _, reason) in &garbage {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("rm_ingest_refused_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no refusal counter for {reason} in:\n{metrics}"));
        let n: f64 = line
            .rsplit(' ')
            .next()
            .expect("value")
            .parse()
            .expect("number");
        assert!(n >= 1.0, "{line}");
    }
    assert!(
        metrics.contains("rm_ingest_dead_letters_total"),
        "{metrics}"
    );
    assert_eq!(http_get(addr, "/healthz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_message_that_is_wrong_gets_an_error_not_a_disconnect() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let (_proc, addr, _) = start_server(&[]);
    let (mut ws, _) = ws_subscribe(addr, "live", HAMBURG, 8).await;
    for bad in [
        r#"{"type":"subscribe","bbox":[1,2],"res":8}"#,
        r#"{"type":"subscribe","bbox":[9,54,10,53],"res":8}"#,
        r#"{"type":"subscribe","res":99}"#,
        r#"{"type":"dance"}"#,
        r#"{"type":"ack","alert":"A404"}"#,
        "][",
    ] {
        ws.send(Message::Text(bad.into())).await.expect("send");
        let reply = ws_next(&mut ws, Duration::from_secs(5))
            .await
            .expect("a reply");
        assert_eq!(reply["type"], "error", "{bad} -> {reply}");
    }
    let (ws2, snap) = ws_subscribe(addr, "drill-e2e", HAMBURG, 7).await;
    assert_eq!(snap["drill"], true);
    assert_eq!(snap["space"], "drill-e2e");
    drop(ws2);
    let (status, body) = http_get(addr, "/api/v1/spaces");
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"{"name":"drill-e2e","drill":true}"#),
        "{body}"
    );
}
