//! Security and hardening, end to end against the real binary: every
//! endpoint and websocket action under every role, the origin check,
//! connection and message limits, hostile REST bodies, the entity cap,
//! graceful shutdown, and the embedded broker's users.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CONTROL: &str = "control-token-0123456789";
const FIELD: &str = "field-token-0123456789";
const DRILL: &str = "drill-token-0123456789";
/// The field token's area: St. Pauli and the port, not Wilhelmsburg.
const AREA: [f64; 4] = [9.9, 53.53, 10.0, 53.56];

fn sha256_hex(s: &str) -> String {
    // The test computes digests with the system's tool, as an operator
    // following the README would.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{s}' | sha256sum"))
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rm-sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A config with the three tokens and `extra` lines.
fn config_with_tokens(dir: &std::path::Path, extra: &str) -> String {
    let text = format!(
        "{extra}\n\
         [[auth.tokens]]\nname = \"leitstelle\"\nrole = \"control\"\nsha256 = \"{}\"\n\n\
         [[auth.tokens]]\nname = \"elw-st-pauli\"\nrole = \"field\"\nsha256 = \"{}\"\narea = {AREA:?}\n\n\
         [[auth.tokens]]\nname = \"uebungsleitung\"\nrole = \"drill\"\nsha256 = \"{}\"\n",
        sha256_hex(CONTROL),
        sha256_hex(FIELD),
        sha256_hex(DRILL),
    );
    let path = dir.join("rescuemate.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

/// (status, body) of a request with an optional bearer token and body.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let uri = format!("http://{addr}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                agent.get(&uri)
            } else {
                agent.delete(&uri)
            };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&uri);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r = r.header("Content-Type", "application/json");
            r.send(body.unwrap_or(""))
        }
    };
    match result {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

async fn ws_connect(addr: SocketAddr, query: &str, origin: Option<&str>) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}/ws?{query}")
        .into_client_request()
        .expect("request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", o.parse().expect("header value"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket connect: {e}"),
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// Publishes the little scene the role tests look at: a unit and a gauge
/// inside the field token's area, a unit and a gauge over its threshold
/// outside it, and the same in a drill space.
async fn scene(mqtt_port: u16) {
    let (c, _rx) = mqtt_client(mqtt_port, "scene").await;
    let now = now_ms();
    for (space, prefix) in [("live", ""), ("drill-sturmflut", "d-")] {
        let units = [("hlf-in", 53.545, 9.97), ("hlf-out", 53.50, 10.01)];
        for (id, lat, lon) in units {
            publish(
                &c,
                &format!("rm/v1/{space}/unit/{prefix}{id}/pos"),
                json!({"ts": now, "lat": lat, "lon": lon}).to_string(),
                false,
            )
            .await;
        }
        let gauges = [("g-in", 53.545, 9.968, 1.0), ("g-out", 53.49, 10.02, 6.0)];
        for (id, lat, lon, v) in gauges {
            let meta = json!({"kind": "water_level", "unit": "m NHN", "lat": lat, "lon": lon});
            publish(
                &c,
                &format!("rm/v1/{space}/sensor/{prefix}{id}/meta"),
                meta.to_string(),
                true,
            )
            .await;
            publish(
                &c,
                &format!("rm/v1/{space}/sensor/{prefix}{id}/obs"),
                json!({"ts": now, "value": v}).to_string(),
                false,
            )
            .await;
        }
    }
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Waits until the control token's snapshot of `space` holds `units`
/// units and an alert; returns the first alert's id.
async fn wait_scene(addr: SocketAddr, space: &str) -> String {
    eventually("the scene in the picture", Duration::from_secs(15), || {
        let (status, body) = call(
            addr,
            "GET",
            &format!("/api/v1/{space}/snapshot?res=8"),
            Some(CONTROL),
            None,
        );
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["units"].as_array()?.len() == 2)
            .then(|| v["alerts"][0]["id"].as_str().map(str::to_owned))
            .flatten()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_and_websocket_action_checks_the_role() {
    let dir = scratch("roles");
    let config = config_with_tokens(&dir, "");
    let (proc, addr, mqtt_port) = start_server(&["--config", &config]);
    scene(mqtt_port).await;
    let live_alert = wait_scene(addr, "live").await;
    let drill_alert = wait_scene(addr, "drill-sturmflut").await;

    let incident = json!({"id": "feu-1", "keyword": "FEU3", "severity": 3, "geometry":
        {"type": "Polygon", "coordinates": [[[9.96, 53.54], [9.98, 53.54], [9.98, 53.55], [9.96, 53.54]]]}})
    .to_string();
    let drill_incident = incident.replace("feu-1", "d-feu-1");
    // Map images answer 501 in a build without them (feature `render`).
    const IMAGE: &str = if cfg!(feature = "render") {
        "ok"
    } else {
        "501"
    };
    // (method, path, body, what each of none / control / field / drill gets)
    // "ok" is any 2xx; the rest are exact statuses.
    let table: Vec<(&str, String, Option<&str>, [&str; 4])> = vec![
        ("GET", "/healthz".into(), None, ["ok", "ok", "ok", "ok"]),
        ("GET", "/".into(), None, ["ok", "ok", "ok", "ok"]),
        ("GET", "/metrics".into(), None, ["401", "ok", "403", "403"]),
        (
            "GET",
            "/api/v1/spaces".into(),
            None,
            ["ok", "ok", "ok", "ok"],
        ),
        (
            "GET",
            "/api/v1/live/snapshot".into(),
            None,
            ["401", "ok", "ok", "403"],
        ),
        (
            "GET",
            "/api/v1/drill-sturmflut/snapshot".into(),
            None,
            ["401", "ok", "ok", "ok"],
        ),
        (
            "GET",
            "/api/v1/live/render.png?bbox=9.9,53.5,10.1,53.6".into(),
            None,
            ["401", IMAGE, IMAGE, "403"],
        ),
        (
            "GET",
            "/api/v1/drill-sturmflut/render.png?bbox=9.9,53.5,10.1,53.6".into(),
            None,
            ["401", IMAGE, IMAGE, IMAGE],
        ),
        (
            "GET",
            "/api/v1/live/mission-log".into(),
            None,
            ["401", "ok", "403", "403"],
        ),
        (
            "GET",
            "/api/v1/drill-sturmflut/mission-log".into(),
            None,
            ["401", "ok", "403", "ok"],
        ),
        (
            "GET",
            "/api/v1/live/history".into(),
            None,
            ["401", "400", "400", "403"],
        ),
        (
            "POST",
            "/api/v1/live/incidents".into(),
            Some(incident.as_str()),
            ["401", "ok", "403", "403"],
        ),
        (
            "DELETE",
            "/api/v1/live/incidents/feu-1".into(),
            None,
            ["401", "ok", "403", "403"],
        ),
        (
            "POST",
            "/api/v1/drill-sturmflut/incidents".into(),
            Some(drill_incident.as_str()),
            ["401", "ok", "403", "ok"],
        ),
        (
            "POST",
            format!("/api/v1/live/alerts/{live_alert}/ack"),
            None,
            ["401", "ok", "403", "403"],
        ),
        (
            "POST",
            format!("/api/v1/drill-sturmflut/alerts/{drill_alert}/ack"),
            None,
            ["401", "ok", "403", "ok"],
        ),
        (
            "DELETE",
            "/api/v1/live/units/hlf-out".into(),
            None,
            ["401", "ok", "403", "403"],
        ),
        (
            "DELETE",
            "/api/v1/live/sensors/g-out".into(),
            None,
            ["401", "ok", "403", "403"],
        ),
        (
            "DELETE",
            "/api/v1/drill-sturmflut/units/d-hlf-out".into(),
            None,
            ["401", "404", "403", "ok"],
        ),
        (
            "POST",
            "/api/v1/live/reset".into(),
            None,
            ["401", "400", "403", "403"],
        ),
        (
            "POST",
            "/api/v1/drill-sturmflut/reset".into(),
            None,
            ["401", "ok", "403", "ok"],
        ),
    ];
    // The order matters for the writes: the refused tokens go first, then
    // drill, then control (so on drill spaces control comes second and
    // finds the unit removed already).
    let tokens = [None, Some(FIELD), Some(DRILL), Some(CONTROL)];
    let column = |t: Option<&str>| match t {
        None => 0,
        Some(CONTROL) => 1,
        Some(FIELD) => 2,
        _ => 3,
    };
    let mut wrong = Vec::new();
    for (method, path, body, expect) in &table {
        for t in tokens {
            let (status, text) = call(addr, method, path, t, *body);
            let want = expect[column(t)];
            let good = match want {
                "ok" => (200..300).contains(&status),
                n => n.parse::<u16>().ok() == Some(status),
            };
            if !good {
                wrong.push(format!(
                    "{method} {path} as {t:?}: {status} (want {want}) {text}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "role table violated:\n{}",
        wrong.join("\n")
    );

    // A wrong token is refused everywhere, with a Bearer challenge.
    let (status, body) = call(addr, "GET", "/api/v1/spaces", Some("guess"), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown access token"), "{body}");

    // The acknowledgement names who gave it.
    let (_, log) = call(addr, "GET", "/api/v1/live/mission-log", Some(CONTROL), None);
    let log: Value = serde_json::from_str(&log).expect("json");
    let acked = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["kind"] == "alert_acked")
        .expect("an ack in the mission log")
        .clone();
    assert_eq!(acked["actor"], "leitstelle", "{acked}");

    // The field token sees its area only, whatever it asks for (REST).
    let (_, snap) = call(
        addr,
        "GET",
        "/api/v1/live/snapshot?res=8",
        Some(FIELD),
        None,
    );
    let snap: Value = serde_json::from_str(&snap).expect("json");
    assert_eq!(ids(&snap, "units"), ["hlf-in"], "{snap}");
    assert_eq!(ids(&snap, "sensors"), ["g-in"]);
    let far = call(
        addr,
        "GET",
        "/api/v1/live/snapshot?bbox=10.1,53.4,10.2,53.45",
        Some(FIELD),
        None,
    );
    assert_eq!(far.0, 403, "a bbox outside the area: {}", far.1);

    // Websocket: a token on the query; the field client's snapshot is cut
    // to its area and it may not acknowledge; no token is refused.
    assert_eq!(ws_connect(addr, "space=live", None).await.err(), Some(401));
    assert_eq!(
        ws_connect(addr, &format!("space=live&token={DRILL}"), None)
            .await
            .err(),
        Some(403)
    );
    let mut field = ws_connect(addr, &format!("space=live&token={FIELD}"), None)
        .await
        .expect("field connects");
    send(&mut field, json!({"type": "subscribe", "res": 8})).await;
    let snap = ws_next(&mut field, Duration::from_secs(5))
        .await
        .expect("snapshot");
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(ids(&snap, "units"), ["hlf-in"], "{snap}");
    send(&mut field, json!({"type": "ack", "alert": live_alert})).await;
    let refused = ws_next(&mut field, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("role field"),
        "{refused}"
    );
    // The unit outside moves into the area: now it is shown; the one
    // inside leaves: removed, and its new position is not sent.
    let (c, _rx) = mqtt_client(mqtt_port, "mover").await;
    let t = now_ms();
    publish(
        &c,
        "rm/v1/live/unit/hlf-in/pos",
        json!({"ts": t, "lat": 53.40, "lon": 10.30}).to_string(),
        false,
    )
    .await;
    let delta = removal_of(&mut field, "hlf-in").await;
    assert!(
        delta["units"]
            .as_array()
            .is_none_or(|u| u.iter().all(|x| x["id"] != "hlf-in")),
        "the position outside leaked: {delta}"
    );
    let mut control = ws_connect(addr, &format!("space=live&token={CONTROL}"), None)
        .await
        .expect("control connects");
    send(&mut control, json!({"type": "subscribe", "res": 8})).await;
    let snap = ws_next(&mut control, Duration::from_secs(5))
        .await
        .expect("snapshot");
    let open = snap["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|a| a["acked"] == false)
        .and_then(|a| a["id"].as_str())
        .map(str::to_owned);
    if let Some(alert) = open {
        send(&mut control, json!({"type": "ack", "alert": alert})).await;
        let ok = ws_next(&mut control, Duration::from_secs(5)).await;
        assert!(
            ok.as_ref()
                .is_some_and(|m| m["type"] == "acked" || m["type"] == "delta"),
            "{ok:?}"
        );
    }
    drop(proc);
}

/// Reads until the server's close frame; its code, or None when the
/// stream ended without one or nothing came within `secs`. Text messages
/// on the way are handed to `seen`.
async fn close_code(ws: &mut Ws, secs: u64, mut seen: impl FnMut(&str)) -> Option<u16> {
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(secs), ws.next()).await {
        match msg {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(Message::Text(t)) => seen(t.as_str()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Publishes unit `id` at a position and waits until the picture has it.
async fn put_unit(addr: SocketAddr, c: &rumqttc::AsyncClient, id: &str) {
    publish(
        c,
        &format!("rm/v1/live/unit/{id}/pos"),
        json!({"ts": now_ms(), "lat": 53.5, "lon": 10.0}).to_string(),
        false,
    )
    .await;
    eventually("the unit shown", Duration::from_secs(10), || {
        snapshot(addr, "live")?["units"]
            .as_array()?
            .iter()
            .find(|u| u["id"] == id)
            .map(|_| ())
    })
    .await;
}

/// Reads the client's messages until one removes unit `id`.
async fn removal_of(ws: &mut Ws, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = ws_next(ws, left).await.expect("a delta removing the unit");
        let removed = msg["units_removed"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == id));
        if removed {
            return msg;
        }
        assert!(
            msg["units"]
                .as_array()
                .is_none_or(|u| u.iter().all(|x| x["id"] != id)),
            "the position outside the area leaked: {msg}"
        );
    }
}

/// Connects, retrying while the server frees a place.
async fn ws_connect_retry(addr: SocketAddr, query: &str) -> Ws {
    for _ in 0..50 {
        if let Ok(ws) = ws_connect(addr, query, None).await {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no websocket place freed within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_connections_and_message_rates_are_limited() {
    let dir = scratch("limits");
    let config = config_with_tokens(
        &dir,
        "[limits]\nws_clients_per_ip = 3\nws_messages_per_s = 5\nws_burst = 10\n\n\
         [auth]\nallowed_origins = [\"https://lage.example\"]\npublic_spaces = [\"drill-*\"]\n\
         public_metrics = true\n",
    );
    let (proc, addr, _mqtt) = start_server(&["--config", &config]);
    let q = format!("space=live&token={CONTROL}");

    // Origins: foreign refused, configured and same-origin allowed, none
    // (a non-browser client) allowed.
    assert_eq!(
        ws_connect(addr, &q, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    let a = ws_connect(addr, &q, Some("https://lage.example")).await;
    let b = ws_connect(addr, &q, Some(&format!("http://{addr}"))).await;
    let c = ws_connect(addr, &q, None).await;
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    // A fourth connection from this address is over the limit.
    assert_eq!(ws_connect(addr, &q, None).await.err(), Some(429));
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ws = ws_connect_retry(addr, &q).await;

    // Public drill space without a token; acting there still needs one.
    let mut public = {
        drop(b);
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws_connect_retry(addr, "space=drill-open").await
    };
    send(&mut public, json!({"type": "ack", "alert": "A1"})).await;
    let m = ws_next(&mut public, Duration::from_secs(5))
        .await
        .expect("answer");
    assert!(m["error"].as_str().unwrap_or("").contains("token"), "{m}");

    // Rate: a burst of 10 is taken, then refusals; 50 refusals in a row
    // close the connection with "policy violation".
    for _ in 0..80 {
        let _ = ws
            .send(Message::Text(
                json!({"type":"ack","alert":"A999"}).to_string().into(),
            ))
            .await;
    }
    let mut rate_errors = 0;
    let closed_with = close_code(&mut ws, 5, |t| {
        rate_errors += usize::from(t.contains("too many messages"));
    })
    .await;
    assert!(rate_errors >= 30, "refused for rate: {rate_errors}");
    assert_eq!(closed_with, Some(1008), "closed as a policy violation");
    let refused = metric(
        addr,
        "rm_limit_refused_total",
        &["limit=\"ws_message_rate\""],
    );
    assert!(refused.unwrap_or(0.0) >= 30.0, "{refused:?}");

    // Oversized message: the connection is closed with "message too big".
    drop(ws);
    let mut big = ws_connect_retry(addr, &q).await;
    let huge = format!("{{\"type\":\"ack\",\"alert\":\"{}\"}}", "x".repeat(20_000));
    let _ = big.send(Message::Text(huge.into())).await;
    assert_eq!(
        close_code(&mut big, 5, |_| {}).await,
        Some(1009),
        "closed as too big"
    );
    drop((c, proc));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rest_bodies_are_refused_and_good_ones_land() {
    let (proc, addr, _mqtt) = start_server(&[]);
    let post = |body: &str| call(addr, "POST", "/api/v1/live/incidents", None, Some(body));
    let cases = [
        ("not json", 400),
        ("[1,2,3]", 400),
        ("{\"keyword\":\"FEU\"}", 400), // no id
        ("{\"id\":\"../../etc\",\"keyword\":\"FEU\"}", 400),
        (
            "{\"id\":\"x\",\"keyword\":\"FEU\",\"severity\":9,\"geometry\":{\"type\":\"Point\",\"coordinates\":[9,53]}}",
            422,
        ),
        (
            "{\"id\":\"x\",\"keyword\":\"FEU\",\"severity\":2,\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,-89],[179,-89],[179,89],[0,89],[0,-89]]]}}",
            422,
        ),
    ];
    for (body, want) in cases {
        let (status, text) = post(body);
        assert_eq!(status, want, "{body}: {text}");
        assert!(text.contains("error"), "{text}");
    }
    let huge = format!("{{\"id\":\"x\",\"title\":\"{}\"}}", "a".repeat(70_000));
    assert_eq!(post(&huge).0, 413, "larger than limits.rest_body_bytes");

    let good = json!({"id": "feu-2", "keyword": "FEU3", "severity": 3, "title": "Brand Hafen",
        "geometry": {"type": "Polygon", "coordinates": [[[9.96, 53.54], [9.98, 53.54], [9.98, 53.55], [9.96, 53.54]]]}});
    assert_eq!(post(&good.to_string()).0, 201);
    let snap = eventually("the incident shown", Duration::from_secs(5), || {
        let s = snapshot(addr, "live")?;
        (!s["incidents"].as_array()?.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(snap["incidents"][0]["keyword"], "FEU3");
    assert_eq!(
        call(addr, "DELETE", "/api/v1/live/incidents/feu-2", None, None).0,
        204
    );
    eventually("the incident closed", Duration::from_secs(5), || {
        let s = snapshot(addr, "live")?;
        s["incidents"].as_array()?.is_empty().then_some(())
    })
    .await;
    // The server is still fine after all of it.
    assert_eq!(http_get(addr, "/healthz").0, 200);
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_ids_is_capped_with_an_alert() {
    let dir = scratch("cap");
    let config = dir.join("cap.toml");
    std::fs::write(&config, "[fusion]\nmax_entities = 50\n").expect("config");
    let (proc, addr, mqtt_port) = start_server(&["--config", &config.to_string_lossy()]);
    let (c, _rx) = mqtt_client(mqtt_port, "flood").await;
    let t = now_ms();
    for i in 0..200 {
        let topic = format!("rm/v1/live/unit/flood-{i}/pos");
        publish(
            &c,
            &topic,
            json!({"ts": t, "lat": 53.5, "lon": 10.0}).to_string(),
            false,
        )
        .await;
    }
    let snap = eventually("the flood refused", Duration::from_secs(15), || {
        let refused = metric(addr, "rm_fusion_refused_total", &["reason=\"entity_cap\""])?;
        (refused >= 150.0).then(|| snapshot(addr, "live")).flatten()
    })
    .await;
    assert_eq!(snap["units"].as_array().expect("units").len(), 50);
    let capacity: Vec<&Value> = snap["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == "capacity")
        .collect();
    assert_eq!(capacity.len(), 1, "{capacity:?}");
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_flushes_the_log_and_checkpoints() {
    let dir = scratch("sigterm");
    let data = dir.join("data");
    let (mut proc, addr, mqtt_port) = start_server(&["--data", &data.to_string_lossy()]);
    let (c, _rx) = mqtt_client(mqtt_port, "before-stop").await;
    put_unit(addr, &c, "hlf-1").await;
    let (mut ws, _) = ws_subscribe(addr, "live", [9.0, 53.0, 11.0, 54.0], 8).await;
    proc.signal("TERM");
    assert_eq!(
        close_code(&mut ws, 10, |_| {}).await,
        Some(1001),
        "clients are told the server is going away"
    );
    let status = proc.wait_exit(15);
    assert!(status.success(), "{status:?}");
    let checkpoints: Vec<String> = std::fs::read_dir(data.join("live"))
        .expect("live log folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("checkpoint-") && n.ends_with(".json"))
        .collect();
    assert!(!checkpoints.is_empty(), "a shutdown checkpoint");
    // A restart shows the unit again.
    let (_proc2, addr2, _) = start_server(&["--data", &data.to_string_lossy()]);
    let snap = snapshot(addr2, "live").expect("snapshot");
    assert_eq!(ids(&snap, "units"), ["hlf-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_with_users_refuses_anonymous_publishers() {
    let dir = scratch("users");
    let config = dir.join("users.toml");
    std::fs::write(
        &config,
        "[mqtt.embedded_users]\npegel-gw = \"pegel-password-1\"\n",
    )
    .expect("config");
    let (proc, addr, mqtt_port) = start_server(&["--config", &config.to_string_lossy()]);
    // The server itself got in (it is healthy); a sensor gateway with its
    // login gets its data in; an anonymous client is refused.
    let mut opts = rumqttc::MqttOptions::new("gw", "127.0.0.1", mqtt_port);
    opts.set_credentials("pegel-gw", "pegel-password-1");
    let (gw, mut gw_loop) = rumqttc::AsyncClient::new(opts, 10);
    tokio::spawn(async move { while gw_loop.poll().await.is_ok() {} });
    put_unit(addr, &gw, "hlf-9").await;
    for (user, pass) in [(None, None), (Some("pegel-gw"), Some("wrong-password"))] {
        let mut opts = rumqttc::MqttOptions::new("intruder", "127.0.0.1", mqtt_port);
        if let (Some(u), Some(p)) = (user, pass) {
            opts.set_credentials(u, p);
        }
        let (_c, mut ev) = rumqttc::AsyncClient::new(opts, 10);
        let first = tokio::time::timeout(Duration::from_secs(5), ev.poll()).await;
        let refused = match &first {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)))) => {
                a.code != rumqttc::ConnectReturnCode::Success
            }
            Ok(Err(_)) => true,
            _ => false,
        };
        assert!(refused, "{user:?} got in: {first:?}");
    }
    drop(proc);
}
