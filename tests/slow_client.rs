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
    // Mosquitto, not the embedded broker: the embedded one lives in the
    // server's process and would count its own buffers as ours.
    let Some(bin) = mosquitto_binary() else {
        skip_unless(false, "mosquitto (apt-get install mosquitto)");
        return;
    };
    let mqtt_port = free_port();
    let _broker = Mosquitto::start(bin, mqtt_port, Persistence::Off);
    // The ring shared by all clients holds at most 32 deltas: with 2,000
    // units moving, each delta is a few hundred KiB, so the ring's bound
    // is part of what is measured (the default of 256 is about 8x).
    let dir = std::env::temp_dir().join(format!("rm-stalled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("ring.toml");
    std::fs::write(&config, "[http]\nws_ring = 32\n").expect("write config");
    let proc = Proc::rescuemate(&[
        "serve",
        "--mqtt",
        &format!("mqtt://127.0.0.1:{mqtt_port}"),
        "--http",
        "127.0.0.1:0",
        "--config",
        &config.to_string_lossy(),
    ]);
    let addr = proc.http_addr();
    wait_healthy(addr);
    let pid = proc.child.id();
    let (mqtt, _) = mqtt_client(mqtt_port, "stall-flood").await;
    const UNITS: u32 = 2_000;
    const STALLED: u64 = 20;
    // The picture first, so that what follows measures the clients only.
    for round in 0..40 {
        move_units(&mqtt, UNITS, round).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(pid);

    // 20 clients that subscribe to everything at the finest resolution and
    // then never read again, on sockets with tiny receive buffers.
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
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
    // Every unit moves every 100 ms for 16 s: about 160 deltas of 2,000
    // units each that no stalled client takes. Unbounded queues would grow
    // all the time (160 deltas x 20 clients: gigabytes); bounded, the
    // memory levels off once the ring is full and each client holds its
    // one message in flight (a resync snapshot of the whole picture at
    // res 10, about 1.5 MiB here, and the frame being written: measured
    // about 3.5 MiB per stalled client).
    let (mut early, mut late) = (before, before);
    for round in 40..200 {
        move_units(&mqtt, UNITS, round).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if round % 10 == 0 {
            let rss = rss_bytes(pid);
            if round < 120 {
                early = early.max(rss);
            } else {
                late = late.max(rss);
            }
        }
    }
    eprintln!(
        "server RSS {} MiB before the stalled clients, peak {} MiB in the first 8 s with them, {} MiB in the next 8 s",
        before >> 20,
        early >> 20,
        late >> 20
    );
    let grown = late.saturating_sub(before);
    assert!(
        grown < (32 << 20) + STALLED * (6 << 20),
        "memory grew by {} MiB with {STALLED} stalled clients",
        grown >> 20
    );
    assert!(
        late < early + (32 << 20),
        "memory kept growing: {} MiB, then {} MiB",
        early >> 20,
        late >> 20
    );
    // And the server still serves a fresh client the whole picture.
    let (_, snap): (Ws, Value) = ws_subscribe(addr, "live", [9.0, 53.0, 11.0, 54.0], 8).await;
    assert_eq!(
        snap["units"].as_array().expect("units").len(),
        UNITS as usize
    );
    drop(stalled);
}
