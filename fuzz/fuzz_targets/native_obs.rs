#![no_main]
//! Native sensor observations: `rm/v1/live/sensor/g1/obs` with any payload.
//! Besides the general invariants: an accepted message is one observation
//! of sensor `g1`.

use fusion::Event;
use libfuzzer_sys::fuzz_target;
use rescuemate_fuzz::{DEFAULT_DECODER, decode_checked, excerpt};

const TOPIC: &str = "rm/v1/live/sensor/g1/obs";

fuzz_target!(|data: &[u8]| {
    if let Ok(envelopes) = decode_checked(&DEFAULT_DECODER, TOPIC, data) {
        assert!(
            matches!(envelopes.as_slice(), [e] if matches!(&e.event, Event::SensorObs(o) if o.id == "g1")),
            "not one observation of g1: {envelopes:?}; payload {:?}",
            excerpt(data)
        );
    }
});
