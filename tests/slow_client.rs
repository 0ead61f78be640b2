//! A websocket client that stops reading must never slow the core: its
//! queue is bounded, and when it falls behind it is resynced with a fresh
//! snapshot whose seq continues the deltas that follow.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_resynced_with_a_snapshot() {
    let dir = std::env::temp_dir().join(format!("rm-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("small-ring.toml");
    // A ring of 4 deltas: 200 ms of ticks before a stalled client lags.
    std::fs::write(&config, "[http]\nws_ring = 4\n").expect("write config");
    let config_arg = config.to_string_lossy().into_owned();
    let (_proc, addr, mqtt_port) = start_server(&["--config", &config_arg]);

    // A socket with a tiny receive buffer, so the server's writes block soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws?space=live"), stream)
        .await
        .expect("websocket handshake");
    let sub = json!({"type":"subscribe","bbox":[9.0,53.0,11.0,54.0],"res":10});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .expect("subscribe");
    let first = ws_next(&mut ws, Duration::from_secs(5))
        .await
        .expect("snapshot");
    assert_eq!(first["type"], "snapshot");

    // Flood: 300 units moving every 20 ms for 3 s, while the client reads nothing.
    let (mqtt, _) = mqtt_client(mqtt_port, "slow-flood").await;
    let started = Instant::now();
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        round += 1;
        let ts = now_ms();
        for u in 0..300u32 {
            let lat = 53.40 + f64::from(u % 20) * 0.01 + f64::from(round) * 1e-5;
            let lon = 9.80 + f64::from(u / 20) * 0.02;
            let p = json!({"ts": ts, "lat": lat, "lon": lon, "speed": 10.0});
            mqtt.publish(
                format!("rm/v1/live/unit/u{u}/pos"),
                rumqttc::QoS::AtMostOnce,
                false,
                p.to_string(),
            )
            .await
            .expect("queue publish");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Now read until the stream is drained: somewhere in it there must be
    // an unrequested snapshot, and every delta must continue from the
    // message before it.
    let mut resynced = false;
    let mut last: Option<u64> = None;
    while let Some(msg) = ws_next(&mut ws, Duration::from_secs(2)).await {
        let seq = msg["seq"].as_u64().expect("seq");
        match msg["type"].as_str() {
            Some("snapshot") => resynced = true,
            Some("delta") if resynced => {
                assert_eq!(
                    Some(seq),
                    last.map(|l| l + 1),
                    "deltas continue from the resync"
                );
            }
            Some("delta") => {}
            other => panic!("unexpected message {other:?}: {msg}"),
        }
        last = Some(seq);
    }
    assert!(resynced, "the stalled client was never resynced");
    let last = last.expect("messages were read");
    let p = json!({"ts": now_ms(), "lat": 53.55, "lon": 9.99});
    mqtt.publish(
        "rm/v1/live/unit/late/pos",
        rumqttc::QoS::AtLeastOnce,
        false,
        p.to_string(),
    )
    .await
    .expect("publish");
    let next = ws_next(&mut ws, Duration::from_secs(5))
        .await
        .expect("a delta");
    assert_eq!(next["type"], "delta");
    assert_eq!(
        next["seq"].as_u64(),
        Some(last + 1),
        "the client is current again"
    );

    let (_, metrics) = http_get(addr, "/metrics");
    let resyncs = metrics
        .lines()
        .find(|l| l.starts_with("rm_ws_resyncs_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(resyncs >= 1.0, "rm_ws_resyncs_total counts it:\n{metrics}");
    // The server kept up meanwhile: a fresh client gets every unit.
    let (_, snap): (Ws, Value) = ws_subscribe(addr, "live", [9.0, 53.0, 11.0, 54.0], 8).await;
    assert_eq!(snap["units"].as_array().expect("units").len(), 301);
    let _ = std::fs::remove_dir_all(&dir);
}
