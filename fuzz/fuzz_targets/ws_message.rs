#![no_main]
//! Websocket client messages (DESIGN §5): any text through the viewer's
//! parser. It must never panic; what it accepts must be usable as it is:
//! a subscription's bbox finite, in range and not upside down, its
//! resolution an H3 one; an acknowledgement's alert id 1-64 characters.
//! The error it gives is short (never the whole input echoed back).

use libfuzzer_sys::fuzz_target;
use viewer::ws::{ClientMsg, parse_client_message};

fuzz_target!(|data: &[u8]| {
    // Websocket text frames are UTF-8 (the protocol layer refuses others).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_client_message(text) {
        Ok(ClientMsg::Subscribe { bbox, res }) => {
            if let Some([w, s, e, n]) = bbox {
                assert!(
                    [w, s, e, n].iter().all(|v| v.is_finite()),
                    "non-finite bbox accepted: {text:?}"
                );
                assert!(
                    (-180.0..=180.0).contains(&w)
                        && (-180.0..=180.0).contains(&e)
                        && (-90.0..=90.0).contains(&s)
                        && (-90.0..=90.0).contains(&n)
                        && s <= n,
                    "bbox out of range accepted: {text:?}"
                );
            }
            assert!(res.is_none_or(|r| r <= 15), "resolution {res:?} accepted");
        }
        Ok(ClientMsg::Ack { alert }) => {
            assert!(
                (1..=64).contains(&alert.len()),
                "alert id of {} bytes accepted",
                alert.len()
            );
        }
        Err(e) => {
            assert!(e.len() <= 512, "error of {} bytes", e.len());
        }
    }
});
