//! RESCUE MATE ingest: everything between the wire and the fusion engine.
//!
//! It owns the MQTT contract ([`wire`], [`topic`]), decoding and validation
//! ([`decode`]; the foreign formats [`senml`], [`cot`], [`cap`] and
//! [`sensorthings`], routed by [`formats`] and [`route`]), the MQTT loop ([`mqtt`]) and the embedded broker
//! ([`broker`]). It turns messages into [`fusion::Envelope`]s and hands them
//! on over a bounded channel; it never touches the picture itself.
//!
//! Bad input is counted per reason, logged and dead-lettered; it never stops
//! the loop.

pub mod broker;
pub mod cap;
pub mod cot;
pub mod decode;
pub mod error;
pub mod formats;
pub mod log;
pub mod mqtt;
pub mod route;
pub mod senml;
pub mod sensorthings;
pub mod topic;
pub mod wire;

pub use broker::{BrokerError, EmbeddedBroker};
pub use decode::{Decoded, Decoder};
pub use error::DecodeError;
pub use formats::{Formats, FormatsConfig};
pub use mqtt::{IngestConfig, LinkStatus, mqtt_options, now_ms};
