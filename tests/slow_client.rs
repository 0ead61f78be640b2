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

/// Resident memory of a process, bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Moves `units` units once, all at the same time stamp.
async fn move_units(mqtt: &rumqttc::AsyncClient, units: u32, round: u32) {
    let ts = now_ms();
    for u in 0..units {
        let lat = 53.40 + f64::from(u % 40) * 0.005 + f64::from(round) * 1e-5;
        let lon = 9.80 + f64::from(u / 40) * 0.008;
        let p = json!({"ts": ts, "lat": lat, "lon": lon, "speed": 10.0});
        mqtt.publish(
            format!("rm/v1/live/unit/m{u}/pos"),
            rumqttc::QoS::AtMostOnce,
            false,
            p.to_string(),
        )
        .await
        .expect("queue publish");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stalled_clients_cost_bounded_memory() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: reads /proc for the server's memory");
        return;
    }
    let (proc, addr, mqtt_port) = start_server(&[]);
    let pid = proc.child.id();
    let (mqtt, _) = mqtt_client(mqtt_port, "stall-flood").await;
    const UNITS: u32 = 2_000;
    // The picture first, so that what follows measures the clients only.
    for round in 0..40 {
        move_units(&mqtt, UNITS, round).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(pid);

    // 40 clients that subscribe to everything at the finest resolution and
    // then never read again, on sockets with tiny receive buffers.
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let stream = socket.connect(addr).await.expect("connect");
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}/ws?space=live"), stream)
                .await
                .expect("handshake");
        let sub = json!({"type":"subscribe","res":10});
        ws.send(Message::Text(sub.to_string().into()))
            .await
            .expect("subscribe");
        stalled.push(ws);
    }
    // Every unit moves every 50 ms for 6 s: about 120 deltas of 2,000
    // units each that no stalled client takes.
    let mut peak = before;
    for round in 40..160 {
        move_units(&mqtt, UNITS, round).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if round % 10 == 0 {
            peak = peak.max(rss_bytes(pid));
        }
    }
    peak = peak.max(rss_bytes(pid));
    let grown = peak.saturating_sub(before);
    eprintln!(
        "server RSS {} MiB before the stalled clients, peak {} MiB with them",
        before >> 20,
        peak >> 20
    );
    // Unbounded queues would hold ~120 deltas × 40 clients (hundreds of
    // MiB); bounded, each client holds one message in flight.
    assert!(
        grown < 96 << 20,
        "memory grew by {} MiB with 40 stalled clients",
        grown >> 20
    );
    // And the server still serves a fresh client the whole picture.
    let (_, snap): (Ws, Value) = ws_subscribe(addr, "live", [9.0, 53.0, 11.0, 54.0], 8).await;
    assert_eq!(
        snap["units"].as_array().expect("units").len(),
        UNITS as usize
    );
    drop(stalled);
}
