//! `rescuemate bench fusion --json`: a small run prints its figures as one
//! JSON object on the last line. Timings are not asserted (machines vary).

mod common;

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_fusion_prints_json_figures_last() {
    let out = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args(["bench", "fusion", "--json", "--events", "20000"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run rescuemate bench fusion");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.len() > 1,
        "expected human-readable lines before the JSON:\n{stdout}"
    );
    let last = lines.last().copied().unwrap_or_default();
    let v: Value = serde_json::from_str(last).expect("last line is JSON");
    for key in [
        "events_per_s",
        "raw_events_per_s",
        "ratio",
        "bytes_per_cell",
        "cells_res10",
        "cells_total",
        "events",
        "recover_events_per_s",
    ] {
        let n = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number in {last}"));
        assert!(n > 0.0, "{key} = {n} is not positive in {last}");
    }
    assert_eq!(v["events"].as_u64(), Some(20_000));
    assert!(v["cells_total"].as_u64() >= v["cells_res10"].as_u64());
}

/// Whether Mosquitto is installed; says so when it is not (and fails
/// when `RM_REQUIRE_ALL=1` asks for every test to run).
fn mosquitto_installed() -> bool {
    let found = [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    if !found {
        assert!(
            std::env::var("RM_REQUIRE_ALL").as_deref() != Ok("1"),
            "RM_REQUIRE_ALL=1 but mosquitto is not installed"
        );
        eprintln!("SKIPPED: mosquitto is not available on this machine (CI installs it)");
    }
    found
}

/// `rescuemate bench ingest --json` in both modes against the Mosquitto it
/// starts: every message arrives at both subscribers (the run would fail
/// otherwise) and the figures are there.
#[test]
fn bench_ingest_prints_json_figures_last_in_both_modes() {
    if !mosquitto_installed() {
        return;
    }
    for mode in ["live", "drain"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args([
                "bench",
                "ingest",
                "--json",
                "--mode",
                mode,
                "--messages",
                "3000",
                "--runs",
                "1",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .expect("run rescuemate bench ingest");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "bench ingest --mode {mode} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        let v: Value = serde_json::from_str(last).expect("last line is JSON");
        assert_eq!(v["mode"], mode);
        assert_eq!(v["messages"].as_u64(), Some(3_000));
        for key in ["bare_msgs_per_s", "ours_msgs_per_s", "ingest_ratio"] {
            let n = v[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} is not a number in {last}"));
            assert!(n > 0.0, "{key} = {n} is not positive in {last}");
        }
    }
}

/// `rescuemate bench e2e --quick --json`: the whole pipeline at low rates
/// with a few websocket clients; the figures are there and sane.
#[test]
fn bench_e2e_quick_prints_json_figures_last() {
    if !mosquitto_installed() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
        .args([
            "bench",
            "e2e",
            "--json",
            "--quick",
            "--ingest-runs",
            "1",
            "--snapshot-runs",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run rescuemate bench e2e");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench e2e failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(v["bench"], "e2e");
    for key in [
        "ingest_ratio",
        "bare_msgs_per_s",
        "ours_msgs_per_s",
        "latency_p50_ms_low",
        "latency_p99_ms_low",
        "latency_max_ms_low",
        "latency_p50_ms_high",
        "latency_p99_ms_high",
        "latency_max_ms_high",
        "server_cpu_s_per_10k_events",
        "server_rss_bytes",
        "bytes_per_cell",
        "snapshot_ms",
        "snapshot_cells",
    ] {
        let n = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number in {last}"));
        assert!(n > 0.0, "{key} = {n} is not positive in {last}");
    }
    for phase in ["low", "high"] {
        let p = &v[phase];
        assert!(p["latency_samples"].as_u64() > Some(0), "{phase}: {p}");
        assert!(p["accepted_per_s"].as_f64() > Some(0.0), "{phase}: {p}");
        assert!(
            p["latency_p50_ms"].as_f64() <= p["latency_p99_ms"].as_f64()
                && p["latency_p99_ms"].as_f64() <= p["latency_max_ms"].as_f64(),
            "{phase}: percentiles out of order: {p}"
        );
    }
    assert_eq!(v["snapshot_cells"].as_u64(), Some(2_000));
}
