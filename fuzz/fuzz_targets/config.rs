#![no_main]
//! The configuration file: any text through the server's own parser (the
//! root crate's `src/config.rs`, compiled in here as a module). It must
//! never panic, and a config it accepts must yield everything the server
//! builds from it at start-up without a further error: the engine
//! settings, the foreign formats, the access tokens, the limits.

#[allow(
    dead_code,
    missing_docs,
    reason = "the server's module, of which the target uses the parser"
)]
#[path = "../../src/config.rs"]
mod config;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = config::Config::parse(text) else {
        return;
    };
    c.picture()
        .expect("an accepted config yields the engine settings");
    c.formats().expect("an accepted config yields its formats");
    viewer::auth::Auth::new(&c.auth).expect("an accepted config yields its tokens");
    c.limits.check().expect("an accepted config has usable limits");
    assert!(c.tick().as_millis() >= 1, "tick of zero accepted");
    assert!(c.mqtt.queue >= 1);
    if let Some(w) = c.log.writer() {
        assert!(w.segment_bytes >= 64 * 1024 && w.segment_ms >= 1000);
    }
});
