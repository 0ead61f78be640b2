#![no_main]
//! SensorThings Observations: `v1.1/Datastreams(4711)/Observations` with
//! any payload, Datastream 4711 configured (sensor `pegel-st-pauli`). Besides
//! the general invariants: an accepted Observation is an optional
//! description of the configured sensor (its kind and unit) and then one
//! observation of it.

use fusion::Event;
use libfuzzer_sys::fuzz_target;
use rescuemate_fuzz::{
    CONFIGURED_DECODER, DATASTREAM_KIND, DATASTREAM_SENSOR, DATASTREAM_UNIT, decode_checked,
    excerpt,
};

const TOPIC: &str = "v1.1/Datastreams(4711)/Observations";

fuzz_target!(|data: &[u8]| {
    let Ok(envelopes) = decode_checked(&CONFIGURED_DECODER, TOPIC, data) else {
        return;
    };
    let obs_ok =
        |e: &fusion::Envelope| matches!(&e.event, Event::SensorObs(o) if o.id == DATASTREAM_SENSOR);
    let ok = match envelopes.as_slice() {
        [obs] => obs_ok(obs),
        [meta, obs] => {
            obs_ok(obs)
                && matches!(&meta.event, Event::SensorMeta(m)
                    if m.id == DATASTREAM_SENSOR && m.kind == DATASTREAM_KIND && m.unit == DATASTREAM_UNIT)
        }
        _ => false,
    };
    assert!(
        ok,
        "not [SensorMeta?, SensorObs] of {DATASTREAM_SENSOR}: {envelopes:?}; payload {:?}",
        excerpt(data)
    );
});
