#![no_main]
//! Any topic, any payload: the input is `topic NUL payload` (no NUL: all
//! topic, empty payload; the topic is read as UTF-8 with invalid bytes
//! replaced, as MQTT topics are UTF-8). Uses the decoder with SensorThings
//! Datastream 4711 configured, so every route is reachable: the native
//! contract (all message types, dead-letter), SenML, CoT, CAP,
//! SensorThings, and unknown topics. Checks the general invariants, in
//! particular that an envelope's space is the one its topic names and that
//! a format-specific refusal names the format the topic routes to.

use libfuzzer_sys::fuzz_target;
use rescuemate_fuzz::{CONFIGURED_DECODER, decode_checked};

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let topic = String::from_utf8_lossy(topic);
    let _ = decode_checked(&CONFIGURED_DECODER, &topic, payload);
});
