#![no_main]
//! Cursor-on-Target events: `rm/v1/live/cot` with any payload. Besides the
//! general invariants: an accepted event is the description and then the
//! position of one unit, the position from source `cot` with a time-to-live.

use fusion::Event;
use libfuzzer_sys::fuzz_target;
use rescuemate_fuzz::{DEFAULT_DECODER, decode_checked, excerpt};

const TOPIC: &str = "rm/v1/live/cot";

fuzz_target!(|data: &[u8]| {
    let Ok(envelopes) = decode_checked(&DEFAULT_DECODER, TOPIC, data) else {
        return;
    };
    let ok = match envelopes.as_slice() {
        [meta, pos] => match (&meta.event, &pos.event) {
            (Event::UnitMeta(m), Event::UnitPos(p)) => {
                m.id == p.id && p.source.as_deref() == Some("cot") && p.ttl_ms.is_some()
            }
            _ => false,
        },
        _ => false,
    };
    assert!(
        ok,
        "not [UnitMeta, UnitPos] of one unit from cot: {envelopes:?}; payload {:?}",
        excerpt(data)
    );
});
