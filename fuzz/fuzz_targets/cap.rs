#![no_main]
//! CAP 1.2 alerts: `rm/v1/drill-x/cap` (a drill space, so `Exercise`
//! alerts are accepted) with any payload. Besides the general invariants:
//! closes first, each incident closed at most once, at most one upsert and
//! that last, not closing itself; its geometry a Polygon or MultiPolygon;
//! its expiry not before its time.

use fusion::Event;
use libfuzzer_sys::fuzz_target;
use rescuemate_fuzz::{DEFAULT_DECODER, decode_checked, excerpt};

const TOPIC: &str = "rm/v1/drill-x/cap";

fuzz_target!(|data: &[u8]| {
    let Ok(envelopes) = decode_checked(&DEFAULT_DECODER, TOPIC, data) else {
        return;
    };
    let fail = |why: &str| -> ! { panic!("{why}: {envelopes:?}; payload {:?}", excerpt(data)) };
    let mut closed: Vec<&str> = Vec::new();
    for (i, e) in envelopes.iter().enumerate() {
        match &e.event {
            Event::IncidentClosed(c) => {
                if closed.contains(&c.id.as_str()) {
                    fail("an incident closed twice");
                }
                closed.push(&c.id);
            }
            Event::Incident(u) => {
                if i + 1 != envelopes.len() {
                    fail("an upsert that is not the last event");
                }
                if closed.contains(&u.id.as_str()) {
                    fail("an alert that closes itself");
                }
                let kind = u.geometry.get("type").and_then(|t| t.as_str());
                if !matches!(kind, Some("Polygon" | "MultiPolygon")) {
                    fail("a CAP geometry that is not a Polygon or MultiPolygon");
                }
                if u.expires_ms.is_some_and(|x| x < u.ts_ms) {
                    fail("expires before sent");
                }
            }
            _ => fail("CAP produced an event that is not an incident"),
        }
    }
});
