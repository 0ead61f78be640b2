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
    ] {
        let n = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number in {last}"));
        assert!(n > 0.0, "{key} = {n} is not positive in {last}");
    }
    assert_eq!(v["events"].as_u64(), Some(20_000));
    assert!(v["cells_total"].as_u64() >= v["cells_res10"].as_u64());
}

/// `rescuemate bench ingest --json` in both modes against the Mosquitto it
/// starts: every message arrives at both subscribers (the run would fail
/// otherwise) and the figures are there.
#[test]
fn bench_ingest_prints_json_figures_last_in_both_modes() {
    if ![
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
    {
        assert!(
            std::env::var("RM_REQUIRE_ALL").as_deref() != Ok("1"),
            "RM_REQUIRE_ALL=1 but mosquitto is not installed"
        );
        eprintln!("SKIPPED: mosquitto is not available on this machine (CI installs it)");
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
