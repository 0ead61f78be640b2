//! Scale-out on one machine (DESIGN §7), every part a separate process: a
//! Mosquitto, two fusion shards (`serve --shard I/2`), two gateways
//! (`gateway --shards 2`) and, beside them, a single-node server, all fed
//! by `rescuemate sim --regional`. The gateways' merged picture has the
//! single node's digest; a killed shard's units read as lost on the
//! gateways; restarted, it recovers from its event log and the digests
//! agree again. Prints the cost of the sharded path (CPU and
//! publish-to-websocket latency, single node against shards + gateway).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The regions of the test: H3 resolution 8 (about 0.7 km² each), so that
/// Hamburg's load spans hundreds of regions on both shards, units cross
/// between shards, and the served resolutions 7 and 6 merge cells of both.
const CONFIG: &str = r#"
[shard]
res = 8
area = [9.70, 53.38, 10.36, 53.76]
"#;

fn digest(addr: SocketAddr) -> Option<String> {
    snapshot(addr, "live").and_then(|s| s["digest"].as_str().map(str::to_owned))
}

fn units(addr: SocketAddr) -> Vec<Value> {
    snapshot(addr, "live")
        .and_then(|s| s["units"].as_array().cloned())
        .unwrap_or_default()
}

/// CPU seconds a process has used (user + system).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime), counted after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn shard(url: &str, config: &Path, data: &Path, i: u32) -> (Proc, SocketAddr) {
    let shard = format!("{i}/2");
    let p = Proc::rescuemate_logged(
        &[
            "serve",
            "--shard",
            &shard,
            "--mqtt",
            url,
            "--http",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("path"),
            "--data",
            data.to_str().expect("path"),
        ],
        "info,rumqttd=off",
    );
    let addr = p.http_addr();
    wait_healthy(addr);
    (p, addr)
}

fn gateway(url: &str, config: &Path) -> (Proc, SocketAddr) {
    let p = Proc::rescuemate_logged(
        &[
            "gateway",
            "--mqtt",
            url,
            "--shards",
            "2",
            "--http",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("path"),
        ],
        "info,rumqttd=off",
    );
    let addr = p.http_addr();
    wait_healthy(addr);
    (p, addr)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rm-scale-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Median publish-to-websocket time of `n` unit positions, one at a time,
/// seen by a client of `addr` (a single node or a gateway).
async fn latency_ms(addr: SocketAddr, publisher: &Publisher, n: usize, tag: &str) -> f64 {
    let (mut ws, snap) = ws_subscribe(addr, "live", [9.70, 53.38, 10.36, 53.76], 10).await;
    let mut seq = snap["seq"].as_u64().expect("seq");
    let mut times = Vec::new();
    for k in 0..n {
        let id = format!("probe-{tag}-{k}");
        let (lat, lon) = (53.50 + 0.002 * k as f64, 9.95 + 0.003 * k as f64);
        let region = ingest::wire::region_of(lat, lon, 8).expect("region");
        let topic = format!("rm/v1/live/r/{region}/unit/{id}/pos");
        let payload = format!(r#"{{"ts":{},"lat":{lat},"lon":{lon}}}"#, now_ms());
        let sent = Instant::now();
        publisher.publish(&topic, payload, false).await;
        let got = ws_until(&mut ws, seq, Duration::from_secs(10), |d| {
            d["units"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u["id"] == id.as_str()))
        })
        .await
        .unwrap_or_else(|| panic!("{id} reached the websocket client of {addr}"));
        times.push(sent.elapsed().as_secs_f64() * 1000.0);
        seq = got["seq"].as_u64().expect("seq");
        // Let other deltas drain, so each probe starts from quiet, and
        // start the next one at another point of the tick.
        while let Some(d) = ws_next(&mut ws, Duration::from_millis(120)).await {
            seq = d["seq"].as_u64().unwrap_or(seq);
        }
        tokio::time::sleep(Duration::from_millis((k as u64 * 17) % 50)).await;
    }
    times.sort_by(f64::total_cmp);
    eprintln!("publish-to-websocket via {addr} ({tag}), ms: {times:.1?}");
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_picture_merges_to_the_single_node_digest() {
    let Some(bin) = mosquitto_binary() else {
        skip_unless(false, "mosquitto (the broker the shards share)");
        return;
    };
    let port = free_port();
    // Big queues: a message one subscriber drops and another keeps would
    // make the pictures differ for a reason that is not the merge.
    let _broker = Mosquitto::start_with(
        bin,
        port,
        Persistence::Off,
        "max_queued_messages 1000000\nmax_inflight_messages 1000\n",
    );
    let url = format!("mqtt://127.0.0.1:{port}");
    let dir = scratch("cfg");
    let config = dir.join("rescuemate.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let data = [scratch("shard0"), scratch("shard1")];

    let single = Proc::rescuemate_logged(
        &[
            "serve",
            "--mqtt",
            &url,
            "--http",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("path"),
        ],
        "info,rumqttd=off",
    );
    let single_addr = single.http_addr();
    wait_healthy(single_addr);
    let (shard0, shard0_addr) = shard(&url, &config, &data[0], 0);
    let (mut shard1, shard1_addr) = shard(&url, &config, &data[1], 1);
    let (gw_a, gw_a_addr) = gateway(&url, &config);
    let (gw_b, gw_b_addr) = gateway(&url, &config);
    let cpu_before = [
        cpu_s(single.child.id()),
        cpu_s(shard0.child.id()) + cpu_s(shard1.child.id()),
        cpu_s(gw_a.child.id()),
    ];

    let started = Instant::now();
    let sim = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args([
            "sim",
            "--mqtt",
            &url,
            "--load",
            "--sensors",
            "400",
            "--units",
            "80",
            "--rate",
            "2000",
            "--duration",
            "10s",
            "--seed",
            "5",
            "--regional",
            "--region-res",
            "8",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the simulator");
    assert!(
        sim.status.success(),
        "sim: {}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let want = eventually(
        "the single node's picture settles",
        Duration::from_secs(30),
        || {
            let a = digest(single_addr)?;
            std::thread::sleep(Duration::from_millis(500));
            (digest(single_addr)? == a).then_some(a)
        },
    )
    .await;
    let load_s = started.elapsed().as_secs_f64();
    for gw in [gw_a_addr, gw_b_addr] {
        eventually(
            "a gateway's merged digest equals the single node's",
            Duration::from_secs(30),
            || (digest(gw)? == want).then_some(()),
        )
        .await;
    }
    let cpu_after = [
        cpu_s(single.child.id()),
        cpu_s(shard0.child.id()) + cpu_s(shard1.child.id()),
        cpu_s(gw_a.child.id()),
    ];
    // Both shards hold part of the picture; units crossed between them.
    let held: Vec<usize> = [shard0_addr, shard1_addr]
        .iter()
        .map(|a| units(*a).len())
        .collect();
    assert!(held.iter().all(|n| *n > 5), "units per shard: {held:?}");
    assert_eq!(units(gw_a_addr).len(), 80);
    let handed = metric(
        shard0_addr,
        "rm_fusion_events_total",
        &["outcome=\"handed_over\""],
    )
    .unwrap_or(0.0)
        + metric(
            shard1_addr,
            "rm_fusion_events_total",
            &["outcome=\"handed_over\""],
        )
        .unwrap_or(0.0);
    assert!(handed > 0.0, "units handed over between shards: {handed}");
    let gw_snap = snapshot(gw_a_addr, "live").expect("gateway snapshot");
    let one_snap = snapshot(single_addr, "live").expect("single snapshot");
    assert_eq!(
        gw_snap["cells"].as_array().map(Vec::len),
        one_snap["cells"].as_array().map(Vec::len)
    );

    // Cost of the sharded path, while the picture is quiet.
    let publisher = Publisher::connect(port, "rm-scale-probe").await;
    publisher.wait_connects(1).await;
    let single_ms = latency_ms(single_addr, &publisher, 15, "one").await;
    let gateway_ms = latency_ms(gw_b_addr, &publisher, 15, "gw").await;
    eprintln!(
        "scale-out figures: load {load_s:.1} s; CPU s single node {:.2}, two shards {:.2}, one gateway {:.2}; \
         publish-to-websocket median single node {single_ms:.1} ms, via shard + gateway {gateway_ms:.1} ms",
        cpu_after[0] - cpu_before[0],
        cpu_after[1] - cpu_before[1],
        cpu_after[2] - cpu_before[2],
    );
    let want = eventually(
        "the single node settles after the probes",
        Duration::from_secs(30),
        || {
            let a = digest(single_addr)?;
            std::thread::sleep(Duration::from_millis(300));
            (digest(single_addr)? == a).then_some(a)
        },
    )
    .await;

    // Shard 1 dies without a goodbye: on the gateways its units read lost.
    let its_units: Vec<String> = units(shard1_addr)
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_owned))
        .collect();
    assert!(!its_units.is_empty());
    shard1.signal("KILL");
    let _ = shard1.child.wait();
    eventually(
        "the dead shard's units read lost on a gateway",
        Duration::from_secs(30),
        || {
            let lost: Vec<String> = units(gw_a_addr)
                .iter()
                .filter(|u| u["freshness"] == "lost")
                .filter_map(|u| u["id"].as_str().map(str::to_owned))
                .collect();
            (!lost.is_empty() && its_units.iter().all(|id| lost.contains(id))).then_some(())
        },
    )
    .await;
    // The other shard's units stay as they were.
    let fresh = units(gw_a_addr)
        .iter()
        .filter(|u| u["freshness"] != "lost")
        .count();
    assert!(fresh > 0, "shard 0's units are not lost");

    // Restarted from its event log, it publishes its picture again.
    let (_shard1, _) = shard(&url, &config, &data[1], 1);
    for gw in [gw_a_addr, gw_b_addr] {
        eventually(
            "the restarted shard's picture merges again",
            Duration::from_secs(30),
            || {
                (digest(gw)? == want && units(gw).iter().all(|u| u["freshness"] != "lost"))
                    .then_some(())
            },
        )
        .await;
    }

    // A gateway serves the merged picture; what changes a shard's own
    // records belongs to the shard...
    let refused = http_delete(gw_a_addr, "/api/v1/live/units/load-u-000001");
    assert!(
        (400..500).contains(&refused),
        "removal on a gateway: {refused}"
    );
    // ...except acknowledging an alert, which goes to its shard and comes
    // back to every gateway.
    let alert = eventually("an alert on the gateway", Duration::from_secs(10), || {
        snapshot(gw_a_addr, "live")?["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["acked"] == false && a["id"].as_str().is_some_and(|id| id.contains("-A")))
            .and_then(|a| a["id"].as_str().map(str::to_owned))
    })
    .await;
    assert_eq!(
        http_post(gw_a_addr, &format!("/api/v1/live/alerts/{alert}/ack")),
        204,
        "ack {alert} via a gateway"
    );
    eventually(
        "the acknowledgement reaches the other gateway",
        Duration::from_secs(10),
        || {
            snapshot(gw_b_addr, "live")?["alerts"]
                .as_array()?
                .iter()
                .any(|a| a["id"] == alert.as_str() && a["acked"] == true)
                .then_some(())
        },
    )
    .await;
    drop(gw_b);
    drop(shard0);
    for d in data.iter().chain([&dir]) {
        let _ = std::fs::remove_dir_all(d);
    }
}
