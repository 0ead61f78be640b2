//! OASIS CAP 1.2 alerts (the format of Germany's MoWaS/NINA and of the DWD's
//! warnings) → incidents.
//!
//! Parsing: the payload must be UTF-8 (a byte-order mark is skipped) and
//! well-formed XML; documents with a DTD are refused (roxmltree's default,
//! so no entity expansion). The root must be `<alert>` in the namespace
//! `urn:oasis:names:tc:emergency:cap:1.2`; every element used below must be
//! in that namespace too. The required elements of CAP 1.2 (`identifier`,
//! `sender`, `sent`, `status`, `msgType`, `scope`) must be present and
//! non-empty, and `status`, `msgType` and `scope` must hold one of their
//! enumerated values. Anything else is refused as malformed. Element order
//! is not checked (the XSD is stricter than this decoder), and times are
//! parsed as RFC 3339, so a `Z` offset or fractional seconds, which the CAP
//! 1.2 XSD does not allow, are accepted; `-00:00` is UTC.
//!
//! Mapping onto the native contract (DESIGN §3):
//! - `status`: `Actual` is accepted in every space; `Exercise` only in drill
//!   spaces (`drill-…`), refused in `live`
//!   ([`DecodeError::ExerciseInLive`]); `Test`, `Draft` and `System` are
//!   ignored (`cap_not_actual`). `msgType` `Ack` and `Error` are ignored
//!   (`cap_ack_or_error`).
//! - Incident id: the alert's `identifier` if it is a valid id
//!   (`[A-Za-z0-9._-]{1,64}`), else `cap-` followed by the first 24 hex
//!   digits of SHA-256(`sender` + `,` + `identifier`). Alerts named in
//!   `references` (space-separated `sender,identifier,sent` triples) get
//!   their ids the same way.
//! - `Alert`: one incident upsert. `Update`: one close per referenced alert
//!   (its own id excepted), then the upsert of this alert under its own id;
//!   an `Update` without `references` is taken as an `Alert`. `Cancel`: one
//!   close per referenced alert, nothing else; a `Cancel` without
//!   `references` is malformed. Repeated references close once. An
//!   `Alert`'s `references` only relate it to others and are not read.
//! - The upsert is built from the first `<info>` block only (DWD sends the
//!   same warning in German and English, German first); choosing an `info`
//!   by `language` would be a possible extension. An alert without `info`
//!   is malformed. Event time: `sent` (checked against the future
//!   tolerance, for every message type). Keyword: the `event`, with runs of
//!   white space collapsed to one space (refused if longer than the text
//!   limit). Severity: `Extreme` 4, `Severe` 3, `Moderate` 2, `Minor` 1,
//!   `Unknown` 1. Title: the `headline` if present and not blank, white
//!   space collapsed, control characters dropped, shortened (with `…`) to
//!   the text limit rather than refused. Expiry: the `info`'s `expires` if
//!   present; an `expires` before `sent` is malformed.
//! - Geometry: every `<area>` of that `info` contributes its shapes. Each
//!   `polygon` (`lat,lon lat,lon …`, at least four pairs, the first equal to
//!   the last, as CAP requires) becomes a ring of `[lon, lat]` positions;
//!   each `circle` (`lat,lon radius`, radius in km) a closed ring of 32
//!   vertices (33 positions, the first repeated) on the Haversine sphere,
//!   rounded to 1e-7°, a radius of 0 standing for 10 m. One ring gives a
//!   GeoJSON `Polygon`, several a `MultiPolygon` of one ring each. Shapes
//!   that cross the antimeridian or circles that reach a pole are refused,
//!   and so are more than `MAX_GEOMETRY_POSITIONS` (10 000) positions in all.
//!   Areas described only by `geocode` (e.g. DWD warn-cell ids, official
//!   municipality keys) cannot be located without a geocode table, which is
//!   not supported: an alert with no polygon or circle at all is malformed.
//!   `altitude` and `ceiling` are ignored.

use fusion::{Event, IncidentClosed, IncidentUpsert};
use geo::{Destination, Haversine, Point};
use roxmltree::{Document, Node};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::decode::{
    Ctx, MAX_GEOMETRY_POSITIONS, MAX_TEXT_BYTES, check_geometry, check_lat_lon, text,
};
use crate::error::DecodeError;
use crate::route::Format;
use crate::topic::valid_id;
use crate::wire::rfc3339_ms;

/// The CAP 1.2 XML namespace.
pub const CAP_NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// Vertices of the ring that stands for a CAP circle.
const CIRCLE_VERTICES: usize = 32;
/// Radius used for a circle of radius 0 (a point), in metres.
const MIN_CIRCLE_RADIUS_M: f64 = 10.0;
/// Hex digits of the SHA-256 in a derived incident id.
const HASH_HEX_DIGITS: usize = 24;
/// Longest excerpt of offending input quoted in an error.
const QUOTE_CHARS: usize = 60;

/// Decodes one CAP 1.2 `<alert>` into incident events (see the module
/// documentation for the rules).
pub(crate) fn decode(ctx: &Ctx<'_>, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let xml = std::str::from_utf8(payload)
        .map_err(|e| malformed(format!("payload is not UTF-8: {e}")))?;
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let doc = Document::parse(xml).map_err(|e| malformed(format!("not well-formed XML: {e}")))?;
    let alert = doc.root_element();
    check_root(alert)?;

    let identifier = required(alert, "identifier")?;
    let sender = required(alert, "sender")?;
    let sent = required(alert, "sent")?;
    let status = required(alert, "status")?;
    let msg_type = required(alert, "msgType")?;
    let scope = required(alert, "scope")?;
    if !matches!(
        status.as_str(),
        "Actual" | "Exercise" | "System" | "Test" | "Draft"
    ) {
        return Err(not_one_of("status", &status));
    }
    if !matches!(
        msg_type.as_str(),
        "Alert" | "Update" | "Cancel" | "Ack" | "Error"
    ) {
        return Err(not_one_of("msgType", &msg_type));
    }
    if !matches!(scope.as_str(), "Public" | "Restricted" | "Private") {
        return Err(not_one_of("scope", &scope));
    }
    match status.as_str() {
        "Actual" => {}
        "Exercise" if ctx.space.starts_with("drill-") => {}
        "Exercise" => return Err(DecodeError::ExerciseInLive),
        _ => return Err(DecodeError::Ignored("cap_not_actual")),
    }
    if matches!(msg_type.as_str(), "Ack" | "Error") {
        return Err(DecodeError::Ignored("cap_ack_or_error"));
    }
    let sent_ms = ctx.time(parse_time("sent", &sent)?)?;
    let own_id = incident_id(&sender, &identifier);
    let mut events = Vec::new();
    match msg_type.as_str() {
        "Cancel" => {
            let referenced = references(alert)?;
            if referenced.is_empty() {
                return Err(malformed(
                    "Cancel without <references>: no alert to cancel".into(),
                ));
            }
            events.extend(referenced.into_iter().map(closed));
        }
        "Update" => {
            let referenced = references(alert)?;
            events.extend(
                referenced
                    .into_iter()
                    .filter(|id| *id != own_id)
                    .map(closed),
            );
            events.push(upsert(alert, own_id, sent_ms)?);
        }
        // An Alert's references only relate it to others: not read.
        _ => events.push(upsert(alert, own_id, sent_ms)?),
    }
    Ok(events)
}

/// The incident id of the CAP alert `identifier` from `sender`.
pub(crate) fn incident_id(sender: &str, identifier: &str) -> String {
    if valid_id(identifier) {
        return identifier.to_owned();
    }
    let digest = Sha256::new()
        .chain_update(sender.as_bytes())
        .chain_update(b",")
        .chain_update(identifier.as_bytes())
        .finalize();
    let mut id = String::from("cap-");
    id.extend(hex::encode(digest).chars().take(HASH_HEX_DIGITS));
    id
}

fn malformed(why: String) -> DecodeError {
    DecodeError::Malformed {
        format: Format::Cap,
        why,
    }
}

fn not_one_of(field: &str, value: &str) -> DecodeError {
    malformed(format!(
        "<{field}> {:?} is not one of the CAP 1.2 values",
        quote(value)
    ))
}

/// At most [`QUOTE_CHARS`] characters of `s`, for error messages.
fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(QUOTE_CHARS).collect();
    if q.len() < s.len() {
        q.push('…');
    }
    q
}

fn check_root(alert: Node<'_, '_>) -> Result<(), DecodeError> {
    let tag = alert.tag_name();
    if tag.name() != "alert" {
        return Err(malformed(format!(
            "root element is <{}>, not a CAP <alert>",
            quote(tag.name())
        )));
    }
    match tag.namespace() {
        Some(CAP_NS) => Ok(()),
        Some(ns) => Err(malformed(format!(
            "<alert> in namespace {:?}: only CAP 1.2 ({CAP_NS}) is supported",
            quote(ns)
        ))),
        None => Err(malformed(format!(
            "<alert> without a namespace: CAP 1.2 alerts are in {CAP_NS}"
        ))),
    }
}

fn is_cap(node: &Node<'_, '_>, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node.tag_name().namespace() == Some(CAP_NS)
}

/// The first child element `name` (in the CAP namespace).
fn child<'a, 'input>(node: Node<'a, 'input>, name: &'static str) -> Option<Node<'a, 'input>> {
    node.children().find(|c| is_cap(c, name))
}

/// All child elements `name` (in the CAP namespace).
fn children<'a, 'input>(
    node: Node<'a, 'input>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(move |c| is_cap(c, name))
}

/// The text content of an element (its text and CDATA children), trimmed.
fn content(node: Node<'_, '_>) -> String {
    let all: String = node
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect();
    all.trim().to_owned()
}

/// The trimmed content of child `name`, if present and not blank.
fn optional(node: Node<'_, '_>, name: &'static str) -> Option<String> {
    child(node, name).map(content).filter(|s| !s.is_empty())
}

fn required(node: Node<'_, '_>, name: &'static str) -> Result<String, DecodeError> {
    optional(node, name).ok_or_else(|| {
        malformed(format!(
            "missing required <{name}> in <{}>",
            node.tag_name().name()
        ))
    })
}

/// A CAP dateTime (RFC 3339) in epoch milliseconds.
fn parse_time(field: &str, s: &str) -> Result<i64, DecodeError> {
    rfc3339_ms(s).map_err(|why| DecodeError::Timestamp(format!("<{field}>: {why}")))
}

/// Incident ids of the alerts named in `<references>`, in order, each once.
fn references(alert: Node<'_, '_>) -> Result<Vec<String>, DecodeError> {
    let Some(refs) = child(alert, "references") else {
        return Ok(Vec::new());
    };
    let mut ids: Vec<String> = Vec::new();
    for triple in content(refs).split_whitespace() {
        let parts: Vec<&str> = triple.split(',').collect();
        let [sender, identifier, _sent] = parts.as_slice() else {
            return Err(malformed(format!(
                "<references> entry {:?} is not sender,identifier,sent",
                quote(triple)
            )));
        };
        if sender.is_empty() || identifier.is_empty() {
            return Err(malformed(format!(
                "<references> entry {:?} lacks a sender or identifier",
                quote(triple)
            )));
        }
        let id = incident_id(sender, identifier);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn closed(id: String) -> Event {
    Event::IncidentClosed(IncidentClosed { id })
}

/// Runs of white space as one space.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A display title: white space collapsed, control characters dropped, at
/// most [`MAX_TEXT_BYTES`] bytes (cut at a character boundary, marked `…`).
fn title(s: &str) -> Option<String> {
    let mut t: String = collapse(s).chars().filter(|c| !c.is_control()).collect();
    if t.is_empty() {
        return None;
    }
    if t.len() > MAX_TEXT_BYTES {
        let ellipsis = '…';
        let mut cut = MAX_TEXT_BYTES - ellipsis.len_utf8();
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t.push(ellipsis);
    }
    Some(t)
}

fn upsert(alert: Node<'_, '_>, id: String, sent_ms: i64) -> Result<Event, DecodeError> {
    let info = child(alert, "info")
        .ok_or_else(|| malformed("no <info> block: an alert needs an event and an area".into()))?;
    let keyword = text("keyword", collapse(&required(info, "event")?))?;
    let severity = match required(info, "severity")?.as_str() {
        "Extreme" => 4,
        "Severe" => 3,
        "Moderate" => 2,
        "Minor" | "Unknown" => 1,
        other => return Err(not_one_of("severity", other)),
    };
    let title = optional(info, "headline")
        .and_then(|h| title(&h))
        .map(|t| text("title", t))
        .transpose()?;
    let expires_ms = optional(info, "expires")
        .map(|e| parse_time("expires", &e))
        .transpose()?;
    if let Some(expires) = expires_ms
        && expires < sent_ms
    {
        return Err(malformed(format!(
            "<expires> is {} s before <sent>",
            (sent_ms - expires) / 1000
        )));
    }
    let geometry = geometry(info)?;
    Ok(Event::Incident(IncidentUpsert {
        id,
        ts_ms: sent_ms,
        keyword,
        severity,
        geometry,
        title,
        expires_ms,
    }))
}

/// A ring of `[lon, lat]` positions.
type Ring = Vec<[f64; 2]>;

/// The GeoJSON geometry of all polygons and circles of `info`'s areas.
fn geometry(info: Node<'_, '_>) -> Result<Value, DecodeError> {
    let mut rings: Vec<Ring> = Vec::new();
    let mut positions = 0usize;
    let mut areas = 0usize;
    let mut budget = |n: usize| -> Result<(), DecodeError> {
        positions = positions.saturating_add(n);
        if positions > MAX_GEOMETRY_POSITIONS {
            return Err(DecodeError::Geometry(format!(
                "more than {MAX_GEOMETRY_POSITIONS} positions"
            )));
        }
        Ok(())
    };
    for (a, area) in children(info, "area").enumerate() {
        areas += 1;
        for (p, polygon) in children(area, "polygon").enumerate() {
            let s = content(polygon);
            budget(s.split_whitespace().count())?;
            let ring = parse_polygon(&s).map_err(|why| {
                DecodeError::Geometry(format!("area {} polygon {}: {why}", a + 1, p + 1))
            })?;
            rings.push(ring);
        }
        for (c, circle) in children(area, "circle").enumerate() {
            budget(CIRCLE_VERTICES + 1)?;
            let ring = parse_circle(&content(circle)).map_err(|why| {
                DecodeError::Geometry(format!("area {} circle {}: {why}", a + 1, c + 1))
            })?;
            rings.push(ring);
        }
    }
    let geometry = match rings.len() {
        0 if areas == 0 => {
            return Err(malformed(
                "no <area> in the first <info>: the alert cannot be located".into(),
            ));
        }
        0 => {
            return Err(DecodeError::Unlocated(
                "areas given by <geocode> only (e.g. warn-cell ids) are not supported: \
                 a <polygon> or <circle> is needed to locate the alert"
                    .into(),
            ));
        }
        1 => {
            let ring = rings.into_iter().map(ring_json).collect();
            object("Polygon", Value::Array(ring))
        }
        _ => {
            let polygons = rings
                .into_iter()
                .map(|r| Value::Array(vec![ring_json(r)]))
                .collect();
            object("MultiPolygon", Value::Array(polygons))
        }
    };
    check_geometry(&geometry)?;
    Ok(geometry)
}

fn object(kind: &str, coordinates: Value) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(kind));
    m.insert("coordinates".into(), coordinates);
    Value::Object(m)
}

fn ring_json(ring: Ring) -> Value {
    Value::Array(
        ring.into_iter()
            .map(|[lon, lat]| Value::Array(vec![Value::from(lon), Value::from(lat)]))
            .collect(),
    )
}

/// `lat,lon` → (lat, lon), in range.
fn parse_pair(pair: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = pair
        .split_once(',')
        .filter(|(_, lon)| !lon.contains(','))
        .ok_or_else(|| format!("{:?} is not lat,lon", quote(pair)))?;
    let number = |s: &str| {
        s.parse::<f64>()
            .map_err(|_| format!("{:?} in {:?} is not a number", quote(s), quote(pair)))
    };
    let (lat, lon) = (number(lat)?, number(lon)?);
    check_lat_lon(lat, lon).map_err(|e| e.to_string())?;
    Ok((lat, lon))
}

/// Refuses rings that jump across the antimeridian (GeoJSON would need them
/// split, RFC 7946 §3.1.9).
fn check_antimeridian(ring: &Ring) -> Result<(), String> {
    if ring.windows(2).any(|w| (w[0][0] - w[1][0]).abs() > 180.0) {
        return Err("crosses the antimeridian (180°), which is not supported".into());
    }
    Ok(())
}

/// A CAP polygon: `lat,lon` pairs separated by white space, at least four,
/// the first equal to the last.
fn parse_polygon(s: &str) -> Result<Ring, String> {
    let mut ring = Ring::new();
    for pair in s.split_whitespace() {
        let (lat, lon) = parse_pair(pair)?;
        ring.push([lon, lat]);
    }
    if ring.len() < 4 {
        return Err(format!(
            "{} coordinate pairs, at least 4 needed (first = last)",
            ring.len()
        ));
    }
    if ring.first() != ring.last() {
        return Err("not closed: the first pair must equal the last".into());
    }
    check_antimeridian(&ring)?;
    Ok(ring)
}

/// A CAP circle `lat,lon radius` (radius in km) as a closed ring.
fn parse_circle(s: &str) -> Result<Ring, String> {
    let mut parts = s.split_whitespace();
    let (Some(centre), Some(radius), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{:?} is not \"lat,lon radius\"", quote(s)));
    };
    let (lat, lon) = parse_pair(centre)?;
    let radius_km: f64 = radius
        .parse()
        .map_err(|_| format!("radius {:?} is not a number", quote(radius)))?;
    if !(radius_km.is_finite() && radius_km >= 0.0) {
        return Err(format!("radius {radius_km} km out of range"));
    }
    let radius_m = (radius_km * 1000.0).max(MIN_CIRCLE_RADIUS_M);
    if (90.0 - lat.abs()).to_radians() * Haversine.radius() <= radius_m {
        return Err(format!("radius {radius_km} km reaches a pole"));
    }
    let centre = Point::new(lon, lat);
    let round = |x: f64| (x * 1e7).round() / 1e7;
    let mut ring: Ring = (0..CIRCLE_VERTICES)
        .map(|i| {
            let bearing = 360.0 * i as f64 / CIRCLE_VERTICES as f64;
            let p = Haversine.destination(centre, bearing, radius_m);
            [round(p.x()), round(p.y())]
        })
        .collect();
    if let Some(&first) = ring.first() {
        ring.push(first);
    }
    check_antimeridian(&ring)?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoder;

    /// 2026-11-23T12:00:00Z.
    const NOW: i64 = 1_795_435_200_000;
    /// 2026-11-23T10:30:00+01:00.
    const SENT: &str = "2026-11-23T10:30:00+01:00";
    const SENT_MS: i64 = 1_795_426_200_000;

    /// St. Pauli Landungsbrücken to Finkenwerder along the Elbe, lat,lon.
    const ELBE: &str = "53.5480,9.9600 53.5480,9.9900 53.5400,9.9900 53.5360,9.9000 \
                        53.5440,9.8200 53.5520,9.8200 53.5480,9.9600";

    struct Alert<'a> {
        identifier: &'a str,
        sender: &'a str,
        sent: &'a str,
        status: &'a str,
        msg_type: &'a str,
        references: Option<&'a str>,
        info: Option<String>,
    }

    impl Default for Alert<'_> {
        fn default() -> Self {
            Alert {
                identifier: "mow.DE-HH-HH-W101-20261123-000",
                sender: "DE-HH-HH-W101",
                sent: SENT,
                status: "Actual",
                msg_type: "Alert",
                references: None,
                info: Some(info("Severe", &format!("<polygon>{ELBE}</polygon>"), "")),
            }
        }
    }

    fn info(severity: &str, area_shapes: &str, extra: &str) -> String {
        format!(
            "<info>
               <language>de-DE</language>
               <category>Met</category>
               <event>  Sturmflut
               </event>
               <urgency>Immediate</urgency>
               <severity>{severity}</severity>
               <certainty>Likely</certainty>
               <headline>Sturmflutwarnung für die Hamburger Elbe</headline>
               {extra}
               <description>Das Nachmittagshochwasser wird 2,5 m über dem mittleren Hochwasser erwartet.</description>
               <area>
                 <areaDesc>Hamburg: Elbufer St. Pauli bis Finkenwerder</areaDesc>
                 {area_shapes}
                 <geocode><valueName>ARS</valueName><value>020000000000</value></geocode>
               </area>
             </info>"
        )
    }

    impl Alert<'_> {
        fn xml(&self) -> String {
            let refs = self
                .references
                .map(|r| format!("<references>{r}</references>"))
                .unwrap_or_default();
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{}</identifier>
  <sender>{}</sender>
  <sent>{}</sent>
  <status>{}</status>
  <msgType>{}</msgType>
  <scope>Public</scope>
  {refs}
  {}
</alert>"#,
                self.identifier,
                self.sender,
                self.sent,
                self.status,
                self.msg_type,
                self.info.as_deref().unwrap_or_default()
            )
        }
    }

    fn decode_in(space: &str, xml: &str) -> Result<Vec<Event>, DecodeError> {
        let envelopes =
            Decoder::default().decode(&format!("rm/v1/{space}/cap"), xml.as_bytes(), NOW)?;
        assert!(
            envelopes
                .iter()
                .all(|e| e.space == space && e.received_ms == NOW)
        );
        Ok(envelopes.into_iter().map(|e| e.event).collect())
    }

    fn decode(xml: &str) -> Result<Vec<Event>, DecodeError> {
        decode_in("live", xml)
    }

    fn one_upsert(events: &[Event]) -> &IncidentUpsert {
        match events {
            [Event::Incident(i)] => i,
            other => panic!("expected one upsert, got {other:?}"),
        }
    }

    fn rings(g: &Value) -> Vec<Vec<[f64; 2]>> {
        let ring = |r: &Value| -> Vec<[f64; 2]> {
            r.as_array()
                .expect("ring")
                .iter()
                .map(|p| {
                    let p = p.as_array().expect("position");
                    [p[0].as_f64().expect("lon"), p[1].as_f64().expect("lat")]
                })
                .collect()
        };
        let coords = &g["coordinates"];
        match g["type"].as_str() {
            Some("Polygon") => coords.as_array().expect("rings").iter().map(ring).collect(),
            Some("MultiPolygon") => coords
                .as_array()
                .expect("polygons")
                .iter()
                .map(|p| ring(&p[0]))
                .collect(),
            other => panic!("unexpected geometry type {other:?}"),
        }
    }

    #[test]
    fn an_alert_with_a_polygon_becomes_an_incident() {
        let extra = "<expires>2026-11-23T22:00:00+01:00</expires>";
        let xml = Alert {
            info: Some(info("Severe", &format!("<polygon>{ELBE}</polygon>"), extra)),
            ..Alert::default()
        }
        .xml();
        let events = decode(&xml).expect("valid alert");
        let i = one_upsert(&events);
        assert_eq!(i.id, "mow.DE-HH-HH-W101-20261123-000");
        assert_eq!(i.ts_ms, SENT_MS);
        assert_eq!(i.keyword, "Sturmflut");
        assert_eq!(i.severity, 3);
        assert_eq!(
            i.title.as_deref(),
            Some("Sturmflutwarnung für die Hamburger Elbe")
        );
        assert_eq!(i.expires_ms, Some(SENT_MS + 11 * 3_600_000 + 1_800_000));
        assert_eq!(i.geometry["type"], "Polygon");
        let r = rings(&i.geometry);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].len(), 7);
        assert_eq!(r[0][0], [9.96, 53.548], "GeoJSON order is [lon, lat]");
    }

    #[test]
    fn severities_map_onto_levels() {
        for (cap, level) in [
            ("Extreme", 4),
            ("Severe", 3),
            ("Moderate", 2),
            ("Minor", 1),
            ("Unknown", 1),
        ] {
            let xml = Alert {
                info: Some(info(cap, &format!("<polygon>{ELBE}</polygon>"), "")),
                ..Alert::default()
            }
            .xml();
            assert_eq!(
                one_upsert(&decode(&xml).expect(cap)).severity,
                level,
                "{cap}"
            );
        }
        let xml = Alert {
            info: Some(info("Bad", &format!("<polygon>{ELBE}</polygon>"), "")),
            ..Alert::default()
        }
        .xml();
        assert_eq!(decode(&xml).expect_err("bad").reason(), "bad_cap");
    }

    #[test]
    fn an_update_closes_what_it_references_and_opens_itself() {
        let xml = Alert {
            identifier: "mow.DE-HH-HH-W101-20261123-001",
            msg_type: "Update",
            references: Some(
                "DE-HH-HH-W101,mow.DE-HH-HH-W101-20261123-000,2026-11-23T09:12:00+01:00 \
                 DE-HH-HH-W101,mow.DE-HH-HH-W101-20261123-000,2026-11-23T09:12:00+01:00",
            ),
            info: Some(info("Extreme", &format!("<polygon>{ELBE}</polygon>"), "")),
            ..Alert::default()
        }
        .xml();
        let events = decode(&xml).expect("valid update");
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[0],
            Event::IncidentClosed(IncidentClosed {
                id: "mow.DE-HH-HH-W101-20261123-000".into()
            })
        );
        let i = one_upsert(&events[1..]);
        assert_eq!(
            (i.id.as_str(), i.severity),
            ("mow.DE-HH-HH-W101-20261123-001", 4)
        );
        // An update naming itself does not close itself; no references: an alert.
        let xml = Alert {
            msg_type: "Update",
            references: Some("DE-HH-HH-W101,mow.DE-HH-HH-W101-20261123-000,x"),
            ..Alert::default()
        }
        .xml();
        one_upsert(&decode(&xml).expect("self-reference"));
        let xml = Alert {
            msg_type: "Update",
            ..Alert::default()
        }
        .xml();
        one_upsert(&decode(&xml).expect("update without references"));
        // An Alert's references are not read, so bad ones do not matter.
        let xml = Alert {
            references: Some("see-earlier-warning"),
            ..Alert::default()
        }
        .xml();
        one_upsert(&decode(&xml).expect("alert with loose references"));
        let xml = Alert {
            msg_type: "Update",
            references: Some("see-earlier-warning"),
            ..Alert::default()
        }
        .xml();
        assert_eq!(decode(&xml).expect_err("bad refs").reason(), "bad_cap");
    }

    #[test]
    fn a_cancel_closes_what_it_references() {
        // A long DWD-style identifier is not a valid id: hashed with its sender.
        let dwd = "2.49.0.0.276.0.DWD.PVW.1795424400000.5d3b8e2a-9c41-4f7e-b1a0-7e6f2c9d4a11.DEU";
        let xml = Alert {
            msg_type: "Cancel",
            identifier: "mow.DE-HH-HH-W101-20261124-002",
            references: Some(&format!(
                "DE-HH-HH-W101,mow.DE-HH-HH-W101-20261123-001,2026-11-23T13:40:00+01:00 \
                 opendata@dwd.de,{dwd},2026-11-23T10:00:00+01:00"
            )),
            info: None,
            ..Alert::default()
        }
        .xml();
        let events = decode(&xml).expect("valid cancel");
        let ids: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::IncidentClosed(c) => c.id.as_str(),
                other => panic!("only closes expected, got {other:?}"),
            })
            .collect();
        let hashed = incident_id("opendata@dwd.de", dwd);
        assert_eq!(ids, ["mow.DE-HH-HH-W101-20261123-001", hashed.as_str()]);
        assert!(hashed.starts_with("cap-") && hashed.len() == 4 + 24 && valid_id(&hashed));
        // Stable across versions: the retained picture refers to it.
        assert_eq!(
            incident_id("a", "b c"),
            format!("cap-{}", &hex::encode(Sha256::digest(b"a,b c"))[..24])
        );

        let xml = Alert {
            msg_type: "Cancel",
            info: None,
            ..Alert::default()
        }
        .xml();
        assert_eq!(decode(&xml).expect_err("no refs").reason(), "bad_cap");
        let xml = Alert {
            msg_type: "Cancel",
            references: Some("DE-HH-HH-W101;mow-1"),
            ..Alert::default()
        }
        .xml();
        assert_eq!(decode(&xml).expect_err("bad refs").reason(), "bad_cap");
    }

    #[test]
    fn a_circle_becomes_a_closed_ring_around_its_centre() {
        // Smoke from a fire in Billbrook, 2 km.
        let xml = Alert {
            info: Some(info("Moderate", "<circle>53.5330,10.0850 2.0</circle>", "")),
            ..Alert::default()
        }
        .xml();
        let i = one_upsert(&decode(&xml).expect("circle")).clone();
        assert_eq!(i.geometry["type"], "Polygon");
        let r = &rings(&i.geometry)[0];
        assert_eq!(r.len(), CIRCLE_VERTICES + 1);
        assert_eq!(r.first(), r.last());
        // North vertex 2 km north: 2 / 111.2 degrees of latitude.
        assert!(
            (r[0][1] - (53.533 + 2.0 / 111.195)).abs() < 1e-4,
            "{:?}",
            r[0]
        );
        assert!((r[0][0] - 10.085).abs() < 1e-9);
        for p in r {
            let dlat = (p[1] - 53.533) * 111_195.0;
            let dlon = (p[0] - 10.085) * 111_195.0 * 53.533_f64.to_radians().cos();
            let d = dlat.hypot(dlon);
            assert!((d - 2000.0).abs() < 10.0, "{p:?} is {d} m from the centre");
        }
        // Radius 0: a 10 m circle. A polygon and a circle: a MultiPolygon.
        let xml = Alert {
            info: Some(info(
                "Moderate",
                &format!("<polygon>{ELBE}</polygon><circle>53.5330,10.0850 0</circle>"),
                "",
            )),
            ..Alert::default()
        }
        .xml();
        let i = one_upsert(&decode(&xml).expect("two shapes")).clone();
        assert_eq!(i.geometry["type"], "MultiPolygon");
        let r = rings(&i.geometry);
        assert_eq!(r.len(), 2);
        let north = (r[1][0][1] - 53.533) * 111_195.0;
        assert!((north - 10.0).abs() < 0.5, "{north}");
        // Bad circles.
        for c in [
            "53.5,10.0",
            "53.5,10.0 -1",
            "53.5,10.0 km",
            "53.5,10.0 1 2",
            "53.5;10.0 1",
            "89.99,10.0 5",
            "0,179.99 10",
        ] {
            let xml = Alert {
                info: Some(info("Moderate", &format!("<circle>{c}</circle>"), "")),
                ..Alert::default()
            }
            .xml();
            assert_eq!(decode(&xml).expect_err(c).reason(), "bad_geometry", "{c}");
        }
    }

    #[test]
    fn exercises_only_in_drill_spaces() {
        let xml = Alert {
            status: "Exercise",
            ..Alert::default()
        }
        .xml();
        assert_eq!(decode(&xml), Err(DecodeError::ExerciseInLive));
        let events = decode_in("drill-elbe", &xml).expect("exercise in a drill");
        assert_eq!(one_upsert(&events).keyword, "Sturmflut");
        // Actual alerts are accepted in drills too.
        assert!(decode_in("drill-elbe", &Alert::default().xml()).is_ok());
    }

    #[test]
    fn tests_drafts_system_acks_and_errors_are_ignored() {
        for status in ["Test", "Draft", "System"] {
            let xml = Alert {
                status,
                ..Alert::default()
            }
            .xml();
            assert_eq!(decode(&xml), Err(DecodeError::Ignored("cap_not_actual")));
        }
        for msg_type in ["Ack", "Error"] {
            let xml = Alert {
                msg_type,
                info: None,
                ..Alert::default()
            }
            .xml();
            assert_eq!(decode(&xml), Err(DecodeError::Ignored("cap_ack_or_error")));
        }
    }

    #[test]
    fn geocode_only_areas_are_refused() {
        let xml = Alert {
            info: Some(info("Minor", "", "")),
            ..Alert::default()
        }
        .xml();
        let err = decode(&xml).expect_err("geocode only");
        assert_eq!(err.reason(), "cap_geocode_only");
        assert!(err.to_string().contains("geocode"), "{err}");
        let with_area = info("Minor", "", "");
        let (start, end) = (
            with_area.find("<area>").expect("area"),
            with_area.find("</area>").expect("area") + "</area>".len(),
        );
        let no_area = format!("{}{}", &with_area[..start], &with_area[end..]);
        let xml = Alert {
            info: Some(no_area),
            ..Alert::default()
        }
        .xml();
        assert_eq!(decode(&xml).expect_err("no area").reason(), "bad_cap");
    }

    #[test]
    fn not_cap_is_refused_with_a_reason() {
        let cases: Vec<(String, &str)> = vec![
            (
                "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>".into(),
                "not well-formed",
            ),
            ("\u{0}\u{1}binary".into(), "not well-formed"),
            (
                Alert::default().xml().replace("cap:1.2", "cap:1.1"),
                "only CAP 1.2",
            ),
            (
                Alert::default()
                    .xml()
                    .replace(" xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"", ""),
                "without a namespace",
            ),
            (
                "<event xmlns='urn:oasis:names:tc:emergency:cap:1.2'/>".into(),
                "not a CAP <alert>",
            ),
            (
                format!(
                    "<!DOCTYPE alert [<!ENTITY x 'boom'>]>{}",
                    Alert::default()
                        .xml()
                        .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
                ),
                "DTD",
            ),
            (
                Alert::default()
                    .xml()
                    .replace("<sender>DE-HH-HH-W101</sender>", ""),
                "missing required <sender>",
            ),
            (
                Alert::default()
                    .xml()
                    .replace("<scope>Public</scope>", "<scope> </scope>"),
                "missing required <scope>",
            ),
            (
                Alert::default()
                    .xml()
                    .replace("<scope>Public</scope>", "<scope>Everyone</scope>"),
                "<scope>",
            ),
            (
                Alert {
                    status: "Aktuell",
                    ..Alert::default()
                }
                .xml(),
                "<status>",
            ),
            (
                Alert {
                    msg_type: "Alarm",
                    ..Alert::default()
                }
                .xml(),
                "<msgType>",
            ),
            (
                Alert {
                    info: None,
                    ..Alert::default()
                }
                .xml(),
                "no <info>",
            ),
            (
                // Elements in another namespace do not count.
                Alert::default()
                    .xml()
                    .replace("<identifier>", "<x:identifier xmlns:x='urn:other'>")
                    .replace("</identifier>", "</x:identifier>"),
                "missing required <identifier>",
            ),
        ];
        for (xml, why) in cases {
            let err = decode(&xml).expect_err(&xml);
            assert_eq!(err.reason(), "bad_cap", "{xml}: {err}");
            assert!(err.to_string().contains(why), "{err} should say {why:?}");
        }
        let err = decode(
            &Alert::default()
                .xml()
                .replace("<event>  Sturmflut\n", "<event>"),
        )
        .expect_err("empty event");
        assert_eq!(err.reason(), "bad_cap", "{err}");
    }

    #[test]
    fn bad_polygons_are_refused() {
        for (polygon, why) in [
            ("53.5,9.9 53.6,9.9 53.6,10.0 53.5,10.1", "not closed"),
            ("53.5,9.9 53.6,9.9 53.5,9.9", "at least 4"),
            ("", "at least 4"),
            ("53.5,9.9 93.6,9.9 53.6,10.0 53.5,9.9", "lat"),
            ("53.5,9.9 53.6,189.9 53.6,10.0 53.5,9.9", "lon"),
            ("53.5,9.9 53.6,NaN 53.6,10.0 53.5,9.9", "lon"),
            ("53.5,9.9 53.6 9.9 53.6,10.0 53.5,9.9", "not lat,lon"),
            (
                "53.5,9.9,0 53.6,9.9,0 53.6,10.0,0 53.5,9.9,0",
                "not lat,lon",
            ),
            ("53.5,9.9 53.6,x 53.6,10.0 53.5,9.9", "not a number"),
            ("0,179.5 1,-179.5 1,179.5 0,179.5", "antimeridian"),
        ] {
            let xml = Alert {
                info: Some(info("Severe", &format!("<polygon>{polygon}</polygon>"), "")),
                ..Alert::default()
            }
            .xml();
            let err = decode(&xml).expect_err(polygon);
            assert_eq!(err.reason(), "bad_geometry", "{polygon}: {err}");
            assert!(err.to_string().contains(why), "{err} should say {why:?}");
            assert!(err.to_string().contains("area 1 polygon 1"), "{err}");
        }
        // Too many positions in all (each circle is 33), within the payload limit.
        let shapes = "<circle>53.5,10.0 1</circle>".repeat(MAX_GEOMETRY_POSITIONS / 33 + 1);
        let xml = Alert {
            info: Some(info("Severe", &shapes, "")),
            ..Alert::default()
        }
        .xml();
        assert!(xml.len() <= crate::wire::MAX_PAYLOAD_BYTES);
        let err = decode(&xml).expect_err("too many positions");
        assert_eq!(err.reason(), "bad_geometry");
        assert!(err.to_string().contains("positions"), "{err}");
    }

    #[test]
    fn times_are_checked() {
        let xml = Alert {
            info: Some(info(
                "Severe",
                &format!("<polygon>{ELBE}</polygon>"),
                "<expires>2026-11-23T10:29:59+01:00</expires>",
            )),
            ..Alert::default()
        }
        .xml();
        let err = decode(&xml).expect_err("expires before sent");
        assert_eq!(err.reason(), "bad_cap");
        assert!(err.to_string().contains("before <sent>"), "{err}");
        // -00:00 is UTC; Z is accepted although CAP forbids it.
        for sent in ["2026-11-23T09:30:00-00:00", "2026-11-23T09:30:00Z"] {
            let xml = Alert {
                sent,
                ..Alert::default()
            }
            .xml();
            assert_eq!(one_upsert(&decode(&xml).expect(sent)).ts_ms, SENT_MS);
        }
        for (sent, reason) in [
            ("23.11.2026 10:30", "bad_timestamp"),
            ("2026-11-23T10:30:00+0100", "bad_timestamp"),
            ("2026-11-23T14:30:00+01:00", "future_timestamp"),
        ] {
            let xml = Alert {
                sent,
                ..Alert::default()
            }
            .xml();
            assert_eq!(decode(&xml).expect_err(sent).reason(), reason, "{sent}");
            // A cancel is checked too.
            let xml = Alert {
                sent,
                msg_type: "Cancel",
                references: Some("a,b,c"),
                ..Alert::default()
            }
            .xml();
            assert_eq!(decode(&xml).expect_err(sent).reason(), reason, "{sent}");
        }
    }

    #[test]
    fn texts_are_tidied() {
        let long = "Amtliche Warnung vor schwerer Sturmflut ".repeat(10);
        let extra = "";
        let xml = Alert {
            info: Some(
                info("Severe", &format!("<polygon>{ELBE}</polygon>"), extra).replace(
                    "Sturmflutwarnung für die Hamburger Elbe",
                    &format!("\n  {long}\u{85}Ö "),
                ),
            ),
            ..Alert::default()
        }
        .xml();
        let i = one_upsert(&decode(&xml).expect("long headline")).clone();
        let t = i.title.expect("title");
        assert!(t.len() <= MAX_TEXT_BYTES && t.ends_with('…'), "{t}");
        assert!(t.starts_with("Amtliche Warnung vor schwerer Sturmflut Amtliche"));
        // Blank headline: no title.
        let xml = Alert::default()
            .xml()
            .replace("Sturmflutwarnung für die Hamburger Elbe", " ");
        assert_eq!(one_upsert(&decode(&xml).expect("blank")).title, None);
        // CDATA and a BOM.
        let xml = format!(
            "\u{feff}{}",
            Alert::default()
                .xml()
                .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
                .replace("<event>  Sturmflut", "<event><![CDATA[Sturm]]>flut")
        );
        assert_eq!(
            one_upsert(&decode(&xml).expect("cdata")).keyword,
            "Sturmflut"
        );
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let base = Alert::default().xml();
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        let mut inputs = vec![
            deep,
            base.replace("</alert>", &format!("{}</alert>", "<info/>".repeat(5000))),
            base.replace("53.5480,9.9600", "53.5480,9.9600,"),
            base.replace("<references>", ""),
            String::new(),
        ];
        // Every prefix of a valid alert.
        for cut in (0..base.len()).step_by(7) {
            if base.is_char_boundary(cut) {
                inputs.push(base[..cut].to_owned());
            }
        }
        for xml in inputs {
            let _ = decode(&xml);
        }
    }
}
