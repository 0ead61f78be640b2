//! The websocket server against RFC 6455, frame by frame over a raw TCP
//! socket: the cases of the Autobahn test suite that apply to a server
//! that receives small JSON text messages (the suite itself needs Python
//! 2.7, which is not available here). Each case checks what the RFC
//! demands and that the server serves the next client afterwards.
//!
//! "Fail the connection" (RFC 6455 §7.1.7) allows either a close frame
//! with the status code or just closing TCP; where the RFC names a code
//! and a close frame arrives, its code is checked.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// A connected, upgraded raw socket.
struct Raw {
    tcp: TcpStream,
}

/// What the server sent back.
#[derive(Debug, PartialEq)]
enum Got {
    Frame {
        fin: bool,
        opcode: u8,
        payload: Vec<u8>,
    },
    Eof,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let (raw, status, headers) = Raw::handshake(addr, &[("Sec-WebSocket-Version", "13")]);
        assert_eq!(status, 101, "{headers}");
        raw
    }

    /// Sends an upgrade request with `extra` headers; returns the socket,
    /// the status and the response head.
    fn handshake(addr: SocketAddr, extra: &[(&str, &str)]) -> (Raw, u16, String) {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let mut req = format!(
            "GET /ws?space=live HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        );
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).expect("send handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tcp.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status == 101 {
            // RFC 6455 §1.3: base64(SHA-1(key + GUID)).
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            assert!(
                head.to_ascii_lowercase().contains(&format!(
                    "sec-websocket-accept: {}",
                    accept.to_ascii_lowercase()
                )),
                "accept key: {head}"
            );
        }
        (Raw { tcp }, status, head)
    }

    /// Sends one frame; `mask` false breaks the client's duty to mask.
    fn frame(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: bool) {
        let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
        let m = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65_536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x37, 0xfa, 0x21, 0x3d];
        if mask {
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        let _ = self.tcp.write_all(&f);
    }

    fn text(&mut self, s: &str) {
        self.frame(true, 0, 0x1, s.as_bytes(), true);
    }

    /// The next frame from the server.
    fn read(&mut self) -> Got {
        let mut h = [0u8; 2];
        if self.tcp.read_exact(&mut h).is_err() {
            return Got::Eof;
        }
        assert_eq!(h[1] & 0x80, 0, "a server must not mask (§5.1)");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.tcp.read_exact(&mut b).expect("length");
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.tcp.read_exact(&mut b).expect("length");
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        if self.tcp.read_exact(&mut payload).is_err() {
            return Got::Eof;
        }
        Got::Frame {
            fin: h[0] & 0x80 != 0,
            opcode: h[0] & 0x0f,
            payload,
        }
    }

    /// Reads until a close frame (its code) or the end of the stream
    /// (`None`); fails on any text message after a protocol violation.
    fn closed(&mut self) -> Option<u16> {
        loop {
            match self.read() {
                Got::Eof => return None,
                Got::Frame {
                    opcode: 0x8,
                    payload,
                    ..
                } => {
                    return (payload.len() >= 2)
                        .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                }
                Got::Frame {
                    opcode: 0x1,
                    payload,
                    ..
                } => {
                    panic!(
                        "served after a violation: {}",
                        String::from_utf8_lossy(&payload)
                    )
                }
                Got::Frame { .. } => {}
            }
        }
    }
}

/// Whether a failed connection carried the expected code, if any code.
fn failed_with(got: Option<u16>, code: u16) -> bool {
    got.is_none() || got == Some(code)
}

/// After each case, a well-behaved client is still served.
fn still_serves(addr: SocketAddr) {
    let mut ok = Raw::connect(addr);
    ok.text(r#"{"type":"subscribe","bbox":[9.9,53.5,10.1,53.6],"res":8}"#);
    match ok.read() {
        Got::Frame {
            opcode: 0x1,
            payload,
            ..
        } => {
            let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
            assert_eq!(v["type"], "snapshot");
        }
        other => panic!("no snapshot after the case: {other:?}"),
    }
    assert_eq!(http_get(addr, "/healthz").0, 200);
}

#[test]
fn rfc6455_cases() {
    let (_proc, addr, _) = start_server(&[]);

    // §4.2.1: a request without version 13 is refused with the versions
    // the server speaks.
    let (_, status, head) = Raw::handshake(addr, &[("Sec-WebSocket-Version", "8")]);
    assert!(matches!(status, 400 | 426), "{head}");
    let (_, status, _) = Raw::handshake(addr, &[]);
    assert!(matches!(status, 400 | 426), "no version: {status}");
    still_serves(addr);

    // §5.5.2/5.5.3 (Autobahn 2.x): ping is answered by a pong with the same
    // application data, up to 125 bytes.
    let mut c = Raw::connect(addr);
    let data: Vec<u8> = (0..125u8).collect();
    c.frame(true, 0, 0x9, &data, true);
    assert_eq!(
        c.read(),
        Got::Frame {
            fin: true,
            opcode: 0xA,
            payload: data
        }
    );
    // Binary ping payloads, empty ping.
    c.frame(true, 0, 0x9, b"", true);
    assert_eq!(
        c.read(),
        Got::Frame {
            fin: true,
            opcode: 0xA,
            payload: vec![]
        }
    );
    // An unsolicited pong is ignored (§5.5.3), then a message is served.
    c.frame(true, 0, 0xA, b"unsolicited", true);
    c.text(r#"{"type":"subscribe","res":8}"#);
    assert!(matches!(c.read(), Got::Frame { opcode: 0x1, .. }));

    // §5.4 (Autobahn 5.x): a fragmented text message with a ping between
    // its fragments: the pong comes at once, the message is served whole.
    let mut c = Raw::connect(addr);
    let msg = br#"{"type":"subscribe","bbox":[9.9,53.5,10.1,53.6],"res":8}"#;
    c.frame(false, 0, 0x1, &msg[..10], true);
    c.frame(true, 0, 0x9, b"mid", true);
    c.frame(false, 0, 0x0, &msg[10..30], true);
    c.frame(true, 0, 0x0, &msg[30..], true);
    assert_eq!(
        c.read(),
        Got::Frame {
            fin: true,
            opcode: 0xA,
            payload: b"mid".to_vec()
        }
    );
    match c.read() {
        Got::Frame {
            opcode: 0x1,
            payload,
            ..
        } => {
            assert!(String::from_utf8_lossy(&payload).contains("\"snapshot\""));
        }
        other => panic!("fragmented message not served: {other:?}"),
    }

    // §5.2 (Autobahn 3.x): reserved bits without an extension fail the
    // connection (1002).
    let mut c = Raw::connect(addr);
    c.frame(true, 0b100, 0x1, br#"{"type":"subscribe"}"#, true);
    assert!(failed_with(c.closed(), 1002), "RSV1");
    still_serves(addr);

    // §5.2 (Autobahn 4.x): reserved opcodes fail the connection.
    for opcode in [0x3, 0x7, 0xB, 0xF] {
        let mut c = Raw::connect(addr);
        c.frame(true, 0, opcode, b"", true);
        assert!(failed_with(c.closed(), 1002), "opcode {opcode:#x}");
    }
    still_serves(addr);

    // §5.1: an unmasked client frame fails the connection.
    let mut c = Raw::connect(addr);
    c.frame(true, 0, 0x1, br#"{"type":"subscribe"}"#, false);
    assert!(failed_with(c.closed(), 1002), "unmasked");
    still_serves(addr);

    // §5.5 (Autobahn 2.5, 5.1): control frames longer than 125 bytes or
    // fragmented fail the connection.
    let mut c = Raw::connect(addr);
    c.frame(true, 0, 0x9, &[0u8; 126], true);
    assert!(failed_with(c.closed(), 1002), "long ping");
    let mut c = Raw::connect(addr);
    c.frame(false, 0, 0x9, b"x", true);
    assert!(failed_with(c.closed(), 1002), "fragmented ping");
    // A continuation without a start (Autobahn 5.9).
    let mut c = Raw::connect(addr);
    c.frame(true, 0, 0x0, b"x", true);
    assert!(failed_with(c.closed(), 1002), "lone continuation");
    still_serves(addr);

    // §8.1 (Autobahn 6.x): text that is not UTF-8 fails with 1007.
    let mut c = Raw::connect(addr);
    c.frame(
        true,
        0,
        0x1,
        &[0xce, 0xba, 0xe1, 0xbd, 0xf4, 0x90, 0x80, 0x80],
        true,
    );
    assert!(failed_with(c.closed(), 1007), "invalid UTF-8");
    still_serves(addr);

    // Autobahn 9.x in small: a message above the server's limit fails
    // with 1009 without the server reading it all into memory.
    let mut c = Raw::connect(addr);
    let big = vec![b' '; 64 * 1024];
    c.frame(true, 0, 0x1, &big, true);
    assert!(failed_with(c.closed(), 1009), "too big");
    still_serves(addr);

    // §5.5.1 (Autobahn 7.x): a close is answered with a close (echoing the
    // code), then the server closes TCP.
    let mut c = Raw::connect(addr);
    c.frame(true, 0, 0x8, &[0x03, 0xe8, b'b', b'y', b'e'], true);
    assert_eq!(c.closed(), Some(1000));
    assert_eq!(c.read(), Got::Eof);
    // Invalid close codes (Autobahn 7.9): 999, 1004, 1005, 1006, 5000.
    for code in [999u16, 1004, 1005, 1006, 5000] {
        let mut c = Raw::connect(addr);
        c.frame(true, 0, 0x8, &code.to_be_bytes(), true);
        assert!(failed_with(c.closed(), 1002), "close code {code}");
    }
    // A close payload of one byte (Autobahn 7.3.2).
    let mut c = Raw::connect(addr);
    c.frame(true, 0, 0x8, &[0x03], true);
    assert!(failed_with(c.closed(), 1002), "one-byte close");
    still_serves(addr);

    // The protocol above ours: a text message that is not ours gets an
    // error message and the connection stays.
    let mut c = Raw::connect(addr);
    c.text("{\"type\":\"launch\"}");
    match c.read() {
        Got::Frame {
            opcode: 0x1,
            payload,
            ..
        } => {
            let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
            assert_eq!(v["type"], "error", "{v}");
        }
        other => panic!("{other:?}"),
    }
    c.text(r#"{"type":"subscribe","res":8}"#);
    assert!(matches!(c.read(), Got::Frame { opcode: 0x1, .. }));
}
