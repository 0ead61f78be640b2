use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use fusion::{
    Envelope, Event, IncidentClosed, IncidentUpsert, SensorMeta, SensorObs, UnitMeta, UnitPos,
    UnitStatus,
};

use super::*;

/// A fresh folder under the system's temporary folder.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rm-log-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn env(space: &str, received_ms: i64, event: Event) -> Record {
    Record::Event(Envelope {
        space: space.to_owned(),
        received_ms,
        event,
    })
}

/// One record of every kind, with optional fields both set and unset.
fn every_kind(space: &str, t: i64) -> Vec<Record> {
    vec![
        env(
            space,
            t,
            Event::SensorMeta(SensorMeta {
                id: "pegel-st-pauli".into(),
                kind: "water_level".into(),
                unit: "m NHN".into(),
                lat: 53.5456,
                lon: 9.9706,
                name: Some("St. Pauli".into()),
                thresholds: Some(vec![3.6, 4.6, 5.6]),
            }),
        ),
        env(
            space,
            t + 1,
            Event::SensorObs(SensorObs {
                id: "pegel-st-pauli".into(),
                ts_ms: t - 500,
                value: 5.87,
                lat: None,
                lon: None,
                seq: Some(42),
                quality: None,
            }),
        ),
        env(
            space,
            t + 2,
            Event::SensorObs(SensorObs {
                id: "mobile-co".into(),
                ts_ms: t,
                value: 31.0,
                lat: Some(53.5),
                lon: Some(10.0),
                seq: None,
                quality: Some(0.9),
            }),
        ),
        env(
            space,
            t + 3,
            Event::UnitMeta(UnitMeta {
                id: "hlf-20-1".into(),
                callsign: "HLF 20-1".into(),
                unit_type: "HLF".into(),
                org: "fire".into(),
                strength: Some(9),
            }),
        ),
        env(
            space,
            t + 4,
            Event::UnitPos(UnitPos {
                id: "hlf-20-1".into(),
                ts_ms: t,
                lat: 53.49,
                lon: 10.01,
                heading: Some(90.0),
                speed: Some(12.5),
                accuracy: Some(8.0),
                source: Some("tracker".into()),
                ttl_ms: Some(300_000),
            }),
        ),
        env(
            space,
            t + 5,
            Event::UnitPos(UnitPos {
                id: "hlf-20-1".into(),
                ts_ms: t + 1,
                lat: 53.491,
                lon: 10.011,
                heading: None,
                speed: None,
                accuracy: None,
                source: None,
                ttl_ms: None,
            }),
        ),
        env(
            space,
            t + 6,
            Event::UnitStatus(UnitStatus {
                id: "hlf-20-1".into(),
                ts_ms: t + 2,
                status: 3,
                source: None,
            }),
        ),
        env(
            space,
            t + 7,
            Event::Incident(IncidentUpsert {
                id: "feu3-billbrook".into(),
                ts_ms: t,
                keyword: "FEU3".into(),
                severity: 3,
                geometry: serde_json::json!({"type":"Point","coordinates":[10.08,53.53]}),
                title: Some("Lagerhalle".into()),
                expires_ms: Some(t + 3_600_000),
            }),
        ),
        env(
            space,
            t + 8,
            Event::IncidentClosed(IncidentClosed {
                id: "feu3-billbrook".into(),
            }),
        ),
        Record::Op(OpRecord {
            space: space.to_owned(),
            at_ms: t + 9,
            actor: Some("leitstelle".into()),
            op: Op::Ack {
                alert: "S3".into(),
                about: Some(AlertAbout {
                    kind: "stale_source".into(),
                    entity: "pegel-st-pauli".into(),
                    related: None,
                }),
            },
        }),
        Record::Op(OpRecord {
            space: space.to_owned(),
            at_ms: t + 10,
            actor: None,
            op: Op::Remove {
                entity: Removed::Sensor,
                id: "mobile-co".into(),
            },
        }),
    ]
}

fn read_all(dir: &std::path::Path) -> (Vec<Record>, ReadReport) {
    let mut got = Vec::new();
    let report = read_space(dir, Window::default(), |r| got.push(r)).expect("read");
    (got, report)
}

#[test]
fn every_kind_survives_a_batch() {
    let records = every_kind("live", 1_780_000_000_000);
    let batch = to_batch(&records).expect("batch");
    assert_eq!(batch.num_rows(), records.len());
    let mut back = Vec::new();
    for_each_record(&batch, |r| back.push(r)).expect("read back");
    assert_eq!(back, records);
}

#[test]
fn appended_records_read_back_in_order_and_per_space() {
    let dir = scratch("order");
    let mut log = EventLog::open(LogConfig::new(&dir)).expect("open");
    let t = 1_780_000_000_000;
    let live = every_kind("live", t);
    let drill = every_kind("drill-x", t);
    for chunk in live.chunks(3) {
        log.append("live", chunk, t).expect("append");
    }
    log.append("drill-x", &drill, t).expect("append");
    assert_eq!(spaces(&dir).expect("spaces"), vec!["drill-x", "live"]);
    let (got, report) = read_all(&dir.join("live"));
    assert_eq!(got, live);
    assert!(report.damaged.is_empty(), "{report:?}");
    let (got, _) = read_all(&dir.join("drill-x"));
    assert_eq!(got, drill);
}

#[test]
fn segments_rotate_by_size_and_age_and_a_restart_begins_a_new_one() {
    let dir = scratch("rotate");
    let mut config = LogConfig::new(&dir);
    config.segment_bytes = 4_000;
    config.segment_ms = 60_000;
    let t = 1_780_000_000_000;
    let mut log = EventLog::open(config.clone()).expect("open");
    let mut all = Vec::new();
    for i in 0..40 {
        let r = every_kind("live", t + i * 100);
        log.append("live", &r, t + i * 100).expect("append");
        all.extend(r);
    }
    let by_size = segments(&dir.join("live")).expect("segments").len();
    assert!(by_size > 2, "rotated by size: {by_size} segments");
    // Past the age limit: a new segment even though the last is small.
    log.append("live", &every_kind("live", t + 120_000), t + 120_000)
        .expect("append");
    all.extend(every_kind("live", t + 120_000));
    assert_eq!(
        segments(&dir.join("live")).expect("segments").len(),
        by_size + 1
    );
    drop(log);
    // A new writer never appends to an old segment.
    let mut log = EventLog::open(config).expect("reopen");
    log.append("live", &every_kind("live", t + 130_000), t + 130_000)
        .expect("append");
    all.extend(every_kind("live", t + 130_000));
    let segs = segments(&dir.join("live")).expect("segments");
    assert_eq!(segs.len(), by_size + 2);
    let indices: Vec<u64> = segs.iter().map(|s| s.index).collect();
    assert_eq!(indices, (0..indices.len() as u64).collect::<Vec<_>>());
    let (got, report) = read_all(&dir.join("live"));
    assert_eq!(got, all);
    // Unclosed segments (no end-of-stream marker) still read cleanly.
    assert!(report.damaged.is_empty(), "{report:?}");
}

#[test]
fn a_segment_cut_short_is_reported_and_the_rest_still_read() {
    let dir = scratch("torn");
    let t = 1_780_000_000_000;
    let mut log = EventLog::open(LogConfig::new(&dir)).expect("open");
    let first = every_kind("live", t);
    log.append("live", &first, t).expect("append");
    log.append("live", &every_kind("live", t + 50), t + 50)
        .expect("append");
    drop(log);
    // A crash mid-write: the second batch loses its tail.
    let seg = segments(&dir.join("live")).expect("segments")[0]
        .path
        .clone();
    let len = std::fs::metadata(&seg).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open");
    f.set_len(len - 40).expect("truncate");
    // The restarted server writes on into a new segment.
    let mut log = EventLog::open(LogConfig::new(&dir)).expect("reopen");
    let later = every_kind("live", t + 1_000);
    log.append("live", &later, t + 1_000).expect("append");
    drop(log);

    let (got, report) = read_all(&dir.join("live"));
    let mut want = first.clone();
    want.extend(later);
    assert_eq!(got, want, "the torn batch is lost, the rest is there");
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].segment, seg);
    assert_eq!(report.damaged[0].records_read, first.len() as u64);
    assert!(
        report.damaged[0].error.contains("ends inside a batch"),
        "{}",
        report.damaged[0].error
    );
}

#[test]
fn garbage_and_foreign_files_are_reported_not_fatal() {
    let dir = scratch("garbage");
    let space = dir.join("live");
    std::fs::create_dir_all(&space).expect("mkdir");
    let t = 1_780_000_000_000;
    std::fs::File::create(space.join("00000000-1.arrows"))
        .and_then(|mut f| f.write_all(b"\xff\xff\xff\xffnot arrow at all, just bytes"))
        .expect("write");
    std::fs::File::create(space.join("00000001-2.arrows")).expect("empty file");
    std::fs::File::create(space.join("notes.txt")).expect("ignored");
    let mut log = EventLog::open(LogConfig::new(&dir)).expect("open");
    let good = every_kind("live", t);
    log.append("live", &good, t).expect("append");
    drop(log);
    let (got, report) = read_all(&space);
    assert_eq!(got, good);
    assert_eq!(report.damaged.len(), 2, "{report:?}");
    assert_eq!(report.segments, 3);
}

#[test]
fn windows_select_by_receive_time() {
    let dir = scratch("window");
    let mut config = LogConfig::new(&dir);
    config.segment_ms = 1_000;
    let mut log = EventLog::open(config).expect("open");
    let t = 1_780_000_000_000;
    for i in 0..10 {
        log.append("live", &every_kind("live", t + i * 1_000), t + i * 1_000)
            .expect("append");
    }
    drop(log);
    let window = Window {
        from_ms: Some(t + 3_000),
        to_ms: Some(t + 5_005),
    };
    let mut got = Vec::new();
    let report = read_space(&dir.join("live"), window, |r| got.push(r)).expect("read");
    assert!(got.iter().all(|r| window.holds(r.received_ms())));
    // Rows received 3 000..=3 010, 4 000..=4 010 and 5 000..=5 005.
    assert_eq!(got.len(), 11 + 11 + 6);
    assert!(report.segments < 10, "segments outside skipped: {report:?}");
}

#[test]
fn bad_space_names_never_become_folders() {
    let dir = scratch("badspace");
    let mut log = EventLog::open(LogConfig::new(&dir)).expect("open");
    let r = every_kind("../etc", 1);
    assert!(matches!(
        log.append("../etc", &r, 1),
        Err(LogError::BadSpace(_))
    ));
}

#[test]
fn a_reset_drill_starts_afresh_and_keeps_the_old_log_aside() {
    let dir = scratch("reset");
    let mut log = EventLog::open(LogConfig::new(&dir)).expect("open");
    let t = 1_780_000_000_000;
    log.append("drill-x", &every_kind("drill-x", t), t)
        .expect("append");
    log.reset("drill-x", t + 5).expect("reset");
    let after = every_kind("drill-x", t + 10);
    log.append("drill-x", &after, t + 10).expect("append");
    let (got, _) = read_all(&dir.join("drill-x"));
    assert_eq!(got, after);
    assert!(dir.join(format!("drill-x.reset-{}", t + 5)).is_dir());
    assert_eq!(spaces(&dir).expect("spaces"), vec!["drill-x"]);
}

#[test]
fn export_writes_an_arrow_file() {
    let dir = scratch("export");
    let mut log = EventLog::open(LogConfig::new(&dir)).expect("open");
    let t = 1_780_000_000_000;
    let records = every_kind("live", t);
    log.append("live", &records, t).expect("append");
    drop(log);
    let out = dir.join("out.arrow");
    let report = export(&dir.join("live"), Window::default(), &out).expect("export");
    assert_eq!(report.records, records.len() as u64);
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::fs::File::open(&out).expect("open"), None)
            .expect("an Arrow IPC file");
    let mut back = Vec::new();
    for b in reader {
        for_each_record(&b.expect("batch"), |r| back.push(r)).expect("records");
    }
    assert_eq!(back, records);
}
