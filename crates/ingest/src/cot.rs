//! Cursor-on-Target XML events (as TAK clients and servers exchange them)
//! → unit descriptions and positions.
//!
//! Mapping onto the native contract (DESIGN §3):
//! - `uid` is the unit id (it must match the id syntax; map other ids with
//!   `[sources.identities]`).
//! - `type` (e.g. `a-f-G-U-C`) says what it is. Friendly atoms (`a-f-…`,
//!   and assumed friends `a-a-…`, read as `a-f-…`) are units: the longest
//!   prefix in `[formats] cot_types` gives their unit type and
//!   organisation. Everything else — hostile or unknown tracks, pings
//!   (`t-x-c-t`), chat, drawings — is not a unit of ours and is ignored.
//! - `<point>` is the position; `ce` (circular error, metres) the accuracy,
//!   `9999999` meaning unknown. `<detail><track course speed>` gives
//!   heading and speed.
//! - `time` is the event time; `stale` its time-to-live: the position is
//!   reported with it, and an event already stale on arrival is ignored.
//! - `<detail><contact callsign>` is the call sign (the uid without one).
//!
//! Each event yields the unit's description and its position, with source
//! `cot`. A description that has not changed is dropped by fusion as a
//! duplicate.

use fusion::{Event, UnitMeta, UnitPos};
use roxmltree::{Document, Node};

use crate::decode::{Ctx, check_lat_lon, text};
use crate::error::DecodeError;
use crate::route::Format;
use crate::topic::valid_id;
use crate::wire::rfc3339_ms;

/// CoT's "unknown" for `ce`, `le` and `hae`.
const UNKNOWN_ERROR: f64 = 9_999_999.0;
/// The source name positions from CoT carry.
pub const SOURCE: &str = "cot";

fn bad(why: impl Into<String>) -> DecodeError {
    DecodeError::Malformed {
        format: Format::Cot,
        why: why.into(),
    }
}

pub(crate) fn decode(ctx: &Ctx<'_>, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let xml = std::str::from_utf8(payload).map_err(|_| bad("not UTF-8"))?;
    let doc = Document::parse(xml).map_err(|e| bad(format!("not well-formed XML: {e}")))?;
    let event = doc.root_element();
    if event.tag_name().name() != "event" {
        return Err(bad(format!(
            "root element is <{}>, not <event>",
            event.tag_name().name()
        )));
    }
    let attr = |name: &'static str| {
        event
            .attribute(name)
            .ok_or_else(|| bad(format!("<event> has no {name} attribute")))
    };
    let uid = attr("uid")?;
    let cot_type = attr("type")?;
    let time_ms = ctx.time(parse_time("time", attr("time")?)?)?;
    let stale_ms = parse_time("stale", attr("stale")?)?;
    if stale_ms < time_ms {
        return Err(bad("stale is before time"));
    }
    let Some(friendly) = unit_type(cot_type) else {
        return Err(DecodeError::Ignored("cot_not_a_unit"));
    };
    if stale_ms <= ctx.received_ms {
        return Err(DecodeError::Ignored("cot_stale_on_arrival"));
    }
    if !valid_id(uid) {
        return Err(DecodeError::Id(uid.chars().take(80).collect()));
    }
    let point = child(event, "point").ok_or_else(|| bad("<event> has no <point>"))?;
    let lat = number(point, "lat")?.ok_or_else(|| bad("<point> has no lat"))?;
    let lon = number(point, "lon")?.ok_or_else(|| bad("<point> has no lon"))?;
    check_lat_lon(lat, lon)?;
    let accuracy = match number(point, "ce")? {
        Some(ce) if ce >= UNKNOWN_ERROR => None,
        Some(ce) if ce >= 0.0 => Some(ce),
        Some(ce) => return Err(bad(format!("ce {ce} is negative"))),
        None => None,
    };
    let detail = child(event, "detail");
    let track = detail.and_then(|d| child(d, "track"));
    let heading = match track.map(|t| number(t, "course")).transpose()?.flatten() {
        Some(h) if (0.0..=360.0).contains(&h) => Some(h),
        Some(h) => return Err(bad(format!("track course {h} outside 0..360"))),
        None => None,
    };
    let speed = match track.map(|t| number(t, "speed")).transpose()?.flatten() {
        Some(s) if s >= 0.0 => Some(s),
        Some(s) => return Err(bad(format!("track speed {s} is negative"))),
        None => None,
    };
    let callsign = detail
        .and_then(|d| child(d, "contact"))
        .and_then(|c| c.attribute("callsign"))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or(uid);
    let (unit_type, org) = match ctx.formats().cot_type(&friendly) {
        Some(t) => (t.unit_type.clone(), t.org.clone()),
        None => ("CoT".to_owned(), "other".to_owned()),
    };
    Ok(vec![
        Event::UnitMeta(UnitMeta {
            id: uid.to_owned(),
            callsign: text("callsign", callsign.to_owned())?,
            unit_type: text("type", unit_type)?,
            org: text("org", org)?,
            strength: None,
        }),
        Event::UnitPos(UnitPos {
            id: uid.to_owned(),
            ts_ms: time_ms,
            lat,
            lon,
            heading,
            speed,
            accuracy,
            source: Some(SOURCE.to_owned()),
            ttl_ms: Some(stale_ms - time_ms),
        }),
    ])
}

/// The type as a friendly unit's (`a-f-…`), if it is one; assumed friends
/// count as friends.
fn unit_type(cot: &str) -> Option<String> {
    let rest = cot
        .strip_prefix("a-f-")
        .or_else(|| cot.strip_prefix("a-a-"))?;
    (!rest.is_empty()).then(|| format!("a-f-{rest}"))
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn number(node: Node<'_, '_>, name: &'static str) -> Result<Option<f64>, DecodeError> {
    let Some(raw) = node.attribute(name) else {
        return Ok(None);
    };
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| bad(format!("{name}={raw:?} is not a number")))?;
    if v.is_finite() {
        Ok(Some(v))
    } else {
        Err(bad(format!("{name}={raw:?} is not finite")))
    }
}

fn parse_time(name: &str, raw: &str) -> Result<i64, DecodeError> {
    rfc3339_ms(raw).map_err(|e| DecodeError::Timestamp(format!("{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use fusion::Envelope;

    /// 2026-11-18T11:06:40Z.
    const NOW: i64 = 1_795_000_000_000;

    fn dec(payload: &str) -> Result<Vec<Envelope>, DecodeError> {
        Decoder::default()
            .decode("rm/v1/live/cot", payload.as_bytes(), NOW)
            .map(|d| d.into_vec())
    }

    fn event(uid: &str, cot_type: &str, point: &str, detail: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<event version="2.0" uid="{uid}" type="{cot_type}" how="m-g" time="2026-11-18T11:06:39.500Z" start="2026-11-18T11:06:39.500Z" stale="2026-11-18T11:08:39.500Z">
  {point}
  <detail>{detail}</detail>
</event>"#
        )
    }

    const POINT: &str =
        r#"<point lat="53.4985" lon="10.0093" hae="9999999.0" ce="12.5" le="9999999.0"/>"#;

    #[test]
    fn a_tak_position_report_becomes_description_and_position() {
        let xml = event(
            "ANDROID-6a8f21c4d0b7e513",
            "a-f-G-U-i-m-ag",
            POINT,
            r#"<contact endpoint="*:-1:stcp" callsign="RTW 3-83-1"/><__group name="Cyan" role="Team Member"/><track course="87.5" speed="11.2"/><status battery="78"/>"#,
        );
        let e = dec(&xml).expect("ok");
        let [meta, pos] = e.as_slice() else {
            panic!("two events: {e:?}")
        };
        let Event::UnitMeta(m) = &meta.event else {
            panic!("meta first")
        };
        assert_eq!(
            (
                m.id.as_str(),
                m.callsign.as_str(),
                m.unit_type.as_str(),
                m.org.as_str()
            ),
            ("ANDROID-6a8f21c4d0b7e513", "RTW 3-83-1", "RTW", "aid")
        );
        let Event::UnitPos(p) = &pos.event else {
            panic!("position second")
        };
        assert_eq!(p.ts_ms, NOW - 500);
        assert_eq!((p.lat, p.lon), (53.4985, 10.0093));
        assert_eq!(
            (p.accuracy, p.heading, p.speed),
            (Some(12.5), Some(87.5), Some(11.2))
        );
        assert_eq!(p.source.as_deref(), Some("cot"));
        assert_eq!(p.ttl_ms, Some(120_000));
    }

    #[test]
    fn unknown_accuracy_and_missing_details_are_absent_not_zero() {
        let point =
            r#"<point lat="53.5" lon="10.0" hae="9999999.0" ce="9999999.0" le="9999999.0"/>"#;
        let e = dec(&event("S-1-5-21-1234", "a-a-G-E-V-C", point, "")).expect("ok");
        let Event::UnitMeta(m) = &e[0].event else {
            panic!("meta")
        };
        assert_eq!(m.callsign, "S-1-5-21-1234", "no contact: the uid");
        assert_eq!(m.unit_type, "vehicle", "assumed friend, civilian vehicle");
        let Event::UnitPos(p) = &e[1].event else {
            panic!("pos")
        };
        assert_eq!((p.accuracy, p.heading, p.speed), (None, None, None));
    }

    #[test]
    fn what_is_not_a_unit_of_ours_is_ignored() {
        for t in ["a-h-G-U-C", "a-u-S", "t-x-c-t", "b-t-f", "a-f-"] {
            let err = dec(&event("x1", t, POINT, "")).expect_err(t);
            assert_eq!(err.reason(), "cot_not_a_unit", "{t}");
        }
        let old = event("x1", "a-f-G", POINT, "")
            .replace("2026-11-18T11:08:39.500Z", "2026-11-18T11:06:39.900Z");
        assert_eq!(
            dec(&old).expect_err("stale").reason(),
            "cot_stale_on_arrival"
        );
    }

    #[test]
    fn bad_events_are_refused_with_a_reason() {
        let ok = event("u-1", "a-f-G", POINT, "");
        let cases = [
            ("<event", "bad_cot"),
            ("<evnt/>", "bad_cot"),
            (&ok.replace(r#"uid="u-1" "#, ""), "bad_cot"),
            (&ok.replace("u-1", "u 1"), "bad_id"),
            (
                &ok.replace("u-1", "GeoChat.ANDROID-1.All Chat Rooms"),
                "bad_id",
            ),
            (
                &ok.replace(r#"lat="53.4985""#, r#"lat="93""#),
                "out_of_range",
            ),
            (&ok.replace(r#"lat="53.4985""#, r#"lat="NaN""#), "bad_cot"),
            (&ok.replace(r#"lat="53.4985""#, r#"lat="north""#), "bad_cot"),
            (&ok.replace(r#"ce="12.5""#, r#"ce="-1""#), "bad_cot"),
            (&ok.replace(POINT, ""), "bad_cot"),
            (
                &ok.replace("2026-11-18T11:06:39.500Z", "yesterday"),
                "bad_timestamp",
            ),
            (
                &ok.replace("2026-11-18T11:08:39.500Z", "2026-11-18T11:00:00Z"),
                "bad_cot",
            ),
            (
                &ok.replace("2026-11-18T11:06:39.500Z", "2026-11-18T12:00:00Z"),
                "future_timestamp",
            ),
            (
                &ok.replace(
                    "<detail></detail>",
                    r#"<detail><track course="400" speed="1"/></detail>"#,
                ),
                "bad_cot",
            ),
            ("<!DOCTYPE event [<!ENTITY x \"y\">]><event/>", "bad_cot"),
        ];
        for (payload, reason) in cases {
            let err = dec(payload).expect_err(payload);
            assert_eq!(err.reason(), reason, "{payload}: {err}");
        }
    }
}
