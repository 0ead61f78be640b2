#![no_main]
//! Native incidents: `rm/v1/live/incident/i1` with any payload (GeoJSON
//! geometry checks). Besides the general invariants (which include an
//! independent GeoJSON check): an accepted message is one upsert of
//! incident `i1`, or its close exactly when the payload is empty.

use fusion::Event;
use libfuzzer_sys::fuzz_target;
use rescuemate_fuzz::{DEFAULT_DECODER, decode_checked, excerpt};

const TOPIC: &str = "rm/v1/live/incident/i1";

fuzz_target!(|data: &[u8]| {
    let result = decode_checked(&DEFAULT_DECODER, TOPIC, data);
    if data.is_empty() {
        assert!(
            matches!(result.as_deref(), Ok([e]) if matches!(&e.event, Event::IncidentClosed(c) if c.id == "i1")),
            "an empty payload must close i1: {result:?}"
        );
    } else if let Ok(envelopes) = result {
        assert!(
            matches!(envelopes.as_slice(), [e] if matches!(&e.event, Event::Incident(i) if i.id == "i1")),
            "not one upsert of i1: {envelopes:?}; payload {:?}",
            excerpt(data)
        );
    }
});
