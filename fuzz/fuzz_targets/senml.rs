#![no_main]
//! SenML packs (RFC 8428): `rm/v1/live/senml/gw1` with any payload.
//! Besides the general invariants: descriptions come before observations,
//! and the pack describes only sensors it also reports a value for.

use fusion::Event;
use libfuzzer_sys::fuzz_target;
use rescuemate_fuzz::{DEFAULT_DECODER, decode_checked, excerpt};

const TOPIC: &str = "rm/v1/live/senml/gw1";

fuzz_target!(|data: &[u8]| {
    let Ok(envelopes) = decode_checked(&DEFAULT_DECODER, TOPIC, data) else {
        return;
    };
    let first_obs = envelopes
        .iter()
        .position(|e| matches!(e.event, Event::SensorObs(_)))
        .unwrap_or(envelopes.len());
    for (i, e) in envelopes.iter().enumerate() {
        match &e.event {
            Event::SensorMeta(m) => {
                assert!(
                    i < first_obs,
                    "description after an observation: {envelopes:?}; payload {:?}",
                    excerpt(data)
                );
                assert!(
                    envelopes
                        .iter()
                        .any(|o| matches!(&o.event, Event::SensorObs(o) if o.id == m.id)),
                    "description of {} without an observation: {envelopes:?}; payload {:?}",
                    m.id,
                    excerpt(data)
                );
            }
            Event::SensorObs(_) => {}
            other => panic!("SenML produced {other:?}"),
        }
    }
});
