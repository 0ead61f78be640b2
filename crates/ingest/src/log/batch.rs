//! The log's Arrow schema (DESIGN §6, a file-format contract) and the
//! conversion of records to and from record batches.
//!
//! The frequent events (observations, positions, radio statuses) are held
//! entirely in typed columns, so replay rebuilds them without parsing;
//! the rest (descriptions, incidents, operators' actions) also carry their
//! whole content as JSON in `payload`.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder, UInt8Builder,
    UInt64Builder,
};
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType, UInt8Type, UInt64Type};
use arrow_array::{Array, ArrayRef, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fusion::{Envelope, Event, SensorObs, UnitPos, UnitStatus};

use super::LogError;
use super::record::{OpRecord, Record, native_topic};

/// Column names, in schema order.
pub mod col {
    /// Server clock when ingest received the message (or the operator acted).
    pub const RECEIVED_AT: &str = "received_at";
    /// The event's own time, where it has one.
    pub const EVENT_AT: &str = "event_at";
    /// `live` or `drill-<name>`.
    pub const SPACE: &str = "space";
    /// The native-contract topic the event maps to.
    pub const TOPIC: &str = "topic";
    /// `sensor_obs`, `unit_pos`, … or an action: `ack`, `remove_unit`, `remove_sensor`.
    pub const KIND: &str = "kind";
    /// The entity's id (the alert's, for `ack`).
    pub const ENTITY: &str = "entity";
    /// WGS 84 latitude.
    pub const LAT: &str = "lat";
    /// WGS 84 longitude.
    pub const LON: &str = "lon";
    /// A sensor's value.
    pub const VALUE: &str = "value";
    /// A unit's radio status.
    pub const STATUS: &str = "status";
    /// The source's sequence number.
    pub const SEQ: &str = "seq";
    /// A sensor's quality indicator.
    pub const QUALITY: &str = "quality";
    /// A fix's heading, degrees.
    pub const HEADING: &str = "heading";
    /// A fix's speed, m/s.
    pub const SPEED: &str = "speed";
    /// A fix's accuracy, metres.
    pub const ACCURACY: &str = "accuracy";
    /// The feed of a fix or status.
    pub const SOURCE: &str = "source";
    /// A fix's own time-to-live, milliseconds.
    pub const TTL_MS: &str = "ttl_ms";
    /// Who acted (actions only).
    pub const ACTOR: &str = "actor";
    /// The whole record as JSON, for kinds the typed columns do not hold.
    pub const PAYLOAD: &str = "payload";
}

/// The schema every segment is written with.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
            let f =
                |name: &str, t: &DataType, nullable: bool| Field::new(name, t.clone(), nullable);
            let utf8 = DataType::Utf8;
            let f64t = DataType::Float64;
            Arc::new(Schema::new(vec![
                f(col::RECEIVED_AT, &ts, false),
                f(col::EVENT_AT, &ts, true),
                f(col::SPACE, &utf8, false),
                f(col::TOPIC, &utf8, true),
                f(col::KIND, &utf8, false),
                f(col::ENTITY, &utf8, false),
                f(col::LAT, &f64t, true),
                f(col::LON, &f64t, true),
                f(col::VALUE, &f64t, true),
                f(col::STATUS, &DataType::UInt8, true),
                f(col::SEQ, &DataType::UInt64, true),
                f(col::QUALITY, &f64t, true),
                f(col::HEADING, &f64t, true),
                f(col::SPEED, &f64t, true),
                f(col::ACCURACY, &f64t, true),
                f(col::SOURCE, &utf8, true),
                f(col::TTL_MS, &DataType::Int64, true),
                f(col::ACTOR, &utf8, true),
                f(col::PAYLOAD, &utf8, true),
            ]))
        })
        .clone()
}

/// Column builders for one batch.
struct Builders {
    received: TimestampMillisecondBuilder,
    event_at: TimestampMillisecondBuilder,
    space: StringBuilder,
    topic: StringBuilder,
    kind: StringBuilder,
    entity: StringBuilder,
    lat: Float64Builder,
    lon: Float64Builder,
    value: Float64Builder,
    status: UInt8Builder,
    seq: UInt64Builder,
    quality: Float64Builder,
    heading: Float64Builder,
    speed: Float64Builder,
    accuracy: Float64Builder,
    source: StringBuilder,
    ttl: Int64Builder,
    actor: StringBuilder,
    payload: StringBuilder,
}

impl Builders {
    fn new(n: usize) -> Builders {
        let ts = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let s = || StringBuilder::with_capacity(n, n * 8);
        let f = || Float64Builder::with_capacity(n);
        Builders {
            received: ts(),
            event_at: ts(),
            space: s(),
            topic: StringBuilder::with_capacity(n, n * 40),
            kind: s(),
            entity: s(),
            lat: f(),
            lon: f(),
            value: f(),
            status: UInt8Builder::with_capacity(n),
            seq: UInt64Builder::with_capacity(n),
            quality: f(),
            heading: f(),
            speed: f(),
            accuracy: f(),
            source: s(),
            ttl: Int64Builder::with_capacity(n),
            actor: s(),
            payload: s(),
        }
    }

    /// The columns every kind fills alike, then per kind the rest.
    fn push(&mut self, r: &Record) -> Result<(), LogError> {
        self.received.append_value(r.received_ms());
        self.space.append_value(r.space());
        let mut pos = None;
        let mut value = None;
        let mut status = None;
        let mut seq = None;
        let mut quality = None;
        let mut fix = (None, None, None);
        let mut source = None;
        let mut ttl = None;
        let mut payload = None;
        match r {
            Record::Event(env) => {
                let e = &env.event;
                self.event_at.append_option(e.ts_ms());
                self.topic.append_value(native_topic(&env.space, e));
                self.kind.append_value(e.kind());
                self.entity.append_value(e.entity_id());
                self.actor.append_null();
                match e {
                    Event::SensorObs(o) => {
                        pos = o.lat.zip(o.lon);
                        value = Some(o.value);
                        seq = o.seq;
                        quality = o.quality;
                    }
                    Event::UnitPos(p) => {
                        pos = Some((p.lat, p.lon));
                        fix = (p.heading, p.speed, p.accuracy);
                        source = p.source.as_deref();
                        ttl = p.ttl_ms;
                    }
                    Event::UnitStatus(s) => {
                        status = Some(s.status);
                        source = s.source.as_deref();
                    }
                    Event::SensorMeta(m) => {
                        pos = Some((m.lat, m.lon));
                        payload = Some(serde_json::to_string(e)?);
                    }
                    Event::UnitMeta(_) | Event::Incident(_) | Event::IncidentClosed(_) => {
                        payload = Some(serde_json::to_string(e)?);
                    }
                }
            }
            Record::Op(o) => {
                self.event_at.append_null();
                self.topic.append_null();
                self.kind.append_value(o.op.kind());
                self.entity.append_value(o.op.entity());
                self.actor.append_option(o.actor.as_deref());
                payload = Some(serde_json::to_string(&o.op)?);
            }
        }
        self.lat.append_option(pos.map(|p| p.0));
        self.lon.append_option(pos.map(|p| p.1));
        self.value.append_option(value);
        self.status.append_option(status);
        self.seq.append_option(seq);
        self.quality.append_option(quality);
        self.heading.append_option(fix.0);
        self.speed.append_option(fix.1);
        self.accuracy.append_option(fix.2);
        self.source.append_option(source);
        self.ttl.append_option(ttl);
        self.payload.append_option(payload);
        Ok(())
    }

    fn finish(mut self) -> Result<RecordBatch, LogError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.received.finish()),
            Arc::new(self.event_at.finish()),
            Arc::new(self.space.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.entity.finish()),
            Arc::new(self.lat.finish()),
            Arc::new(self.lon.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.quality.finish()),
            Arc::new(self.heading.finish()),
            Arc::new(self.speed.finish()),
            Arc::new(self.accuracy.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.ttl.finish()),
            Arc::new(self.actor.finish()),
            Arc::new(self.payload.finish()),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

/// Records as one record batch.
pub fn to_batch(records: &[Record]) -> Result<RecordBatch, LogError> {
    let mut b = Builders::new(records.len());
    for r in records {
        b.push(r)?;
    }
    b.finish()
}

/// Typed views of a batch's columns, checked once per batch.
struct Columns<'a> {
    received: &'a PrimitiveArray<TimestampMillisecondType>,
    event_at: &'a PrimitiveArray<TimestampMillisecondType>,
    space: &'a StringArray,
    kind: &'a StringArray,
    entity: &'a StringArray,
    lat: &'a PrimitiveArray<Float64Type>,
    lon: &'a PrimitiveArray<Float64Type>,
    value: &'a PrimitiveArray<Float64Type>,
    status: &'a PrimitiveArray<UInt8Type>,
    seq: &'a PrimitiveArray<UInt64Type>,
    quality: &'a PrimitiveArray<Float64Type>,
    heading: &'a PrimitiveArray<Float64Type>,
    speed: &'a PrimitiveArray<Float64Type>,
    accuracy: &'a PrimitiveArray<Float64Type>,
    source: &'a StringArray,
    ttl: &'a PrimitiveArray<Int64Type>,
    actor: &'a StringArray,
    payload: &'a StringArray,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, LogError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| LogError::Format(format!("column {name:?} missing or of the wrong type")))
}

impl<'a> Columns<'a> {
    fn of(b: &'a RecordBatch) -> Result<Columns<'a>, LogError> {
        Ok(Columns {
            received: column(b, col::RECEIVED_AT)?,
            event_at: column(b, col::EVENT_AT)?,
            space: column(b, col::SPACE)?,
            kind: column(b, col::KIND)?,
            entity: column(b, col::ENTITY)?,
            lat: column(b, col::LAT)?,
            lon: column(b, col::LON)?,
            value: column(b, col::VALUE)?,
            status: column(b, col::STATUS)?,
            seq: column(b, col::SEQ)?,
            quality: column(b, col::QUALITY)?,
            heading: column(b, col::HEADING)?,
            speed: column(b, col::SPEED)?,
            accuracy: column(b, col::ACCURACY)?,
            source: column(b, col::SOURCE)?,
            ttl: column(b, col::TTL_MS)?,
            actor: column(b, col::ACTOR)?,
            payload: column(b, col::PAYLOAD)?,
        })
    }
}

fn opt<T: arrow_array::ArrowPrimitiveType>(a: &PrimitiveArray<T>, i: usize) -> Option<T::Native> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn required<T>(v: Option<T>, what: &str, row: usize) -> Result<T, LogError> {
    v.ok_or_else(|| LogError::Format(format!("row {row}: {what} missing")))
}

/// Rebuilds the records of a batch, calling `f` with each in order.
pub fn for_each_record(batch: &RecordBatch, mut f: impl FnMut(Record)) -> Result<usize, LogError> {
    let c = Columns::of(batch)?;
    for i in 0..batch.num_rows() {
        f(record_at(&c, i)?);
    }
    Ok(batch.num_rows())
}

fn record_at(c: &Columns<'_>, i: usize) -> Result<Record, LogError> {
    let received_ms = required(opt(c.received, i), "received_at", i)?;
    let space = required(opt_str(c.space, i), "space", i)?.to_owned();
    let kind = required(opt_str(c.kind, i), "kind", i)?;
    let id = || required(opt_str(c.entity, i), "entity", i).map(str::to_owned);
    let ts = || required(opt(c.event_at, i), "event_at", i);
    let event = match kind {
        "sensor_obs" => Event::SensorObs(SensorObs {
            id: id()?,
            ts_ms: ts()?,
            value: required(opt(c.value, i), "value", i)?,
            lat: opt(c.lat, i),
            lon: opt(c.lon, i),
            seq: opt(c.seq, i),
            quality: opt(c.quality, i),
        }),
        "unit_pos" => Event::UnitPos(UnitPos {
            id: id()?,
            ts_ms: ts()?,
            lat: required(opt(c.lat, i), "lat", i)?,
            lon: required(opt(c.lon, i), "lon", i)?,
            heading: opt(c.heading, i),
            speed: opt(c.speed, i),
            accuracy: opt(c.accuracy, i),
            source: opt_str(c.source, i).map(str::to_owned),
            ttl_ms: opt(c.ttl, i),
        }),
        "unit_status" => Event::UnitStatus(UnitStatus {
            id: id()?,
            ts_ms: ts()?,
            status: required(opt(c.status, i), "status", i)?,
            source: opt_str(c.source, i).map(str::to_owned),
        }),
        "ack" | "remove_unit" | "remove_sensor" => {
            let payload = required(opt_str(c.payload, i), "payload", i)?;
            return Ok(Record::Op(OpRecord {
                space,
                at_ms: received_ms,
                actor: opt_str(c.actor, i).map(str::to_owned),
                op: serde_json::from_str(payload)?,
            }));
        }
        _ => {
            let payload = required(opt_str(c.payload, i), "payload", i)?;
            let event: Event = serde_json::from_str(payload)?;
            if event.kind() != kind {
                return Err(LogError::Format(format!(
                    "row {i}: kind {kind:?} but payload of kind {:?}",
                    event.kind()
                )));
            }
            event
        }
    };
    Ok(Record::Event(Envelope {
        space,
        received_ms,
        event,
    }))
}
