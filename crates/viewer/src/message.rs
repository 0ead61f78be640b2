//! Server → client messages (DESIGN §5), shared by the websocket and REST.

use fusion::{Delta, Snapshot};
use serde::Serialize;

/// `{"type":"snapshot",…}`.
#[derive(Debug, Serialize)]
pub struct SnapshotMsg<'a> {
    /// Always `snapshot`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The space.
    pub space: &'a str,
    /// Whether the space is a drill (EXERCISE).
    pub drill: bool,
    /// The picture.
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
    /// Hex SHA-256 of the picture's canonical content.
    pub digest: &'a str,
    /// For a picture of the past (`at=`): the time it shows, epoch ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

/// The first member of a delta message, as [`DeltaMsg`] writes it: the
/// websocket writes deltas from each item's shared JSON
/// ([`fusion::Cut::to_json`]) with this head.
pub const DELTA_HEAD: &str = r#""type":"delta""#;

/// `{"type":"delta",…}`.
#[derive(Debug, Serialize)]
pub struct DeltaMsg<'a> {
    /// Always `delta`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The changes.
    #[serde(flatten)]
    pub delta: &'a Delta,
}

/// `{"type":"error",…}`: the client's message was refused; the connection stays.
#[derive(Debug, Serialize)]
pub struct ErrorMsg<'a> {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What was wrong.
    pub error: &'a str,
}

/// `{"type":"acked",…}`: an acknowledgement went through.
#[derive(Debug, Serialize)]
pub struct AckedMsg<'a> {
    /// Always `acked`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The alert.
    pub alert: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusion::{Envelope, Event, Picture, PictureConfig, Resolution, ViewFilter, Viewport};

    #[test]
    fn a_delta_spliced_from_shared_json_is_the_delta_message() {
        let t0 = 1_790_000_000_000;
        let mut p = Picture::new(PictureConfig::default());
        let events: [Event; 2] = [
            serde_json::from_value(serde_json::json!({
                "event": "unit_pos", "id": "HH-1", "ts_ms": t0, "lat": 53.5458, "lon": 9.97
            }))
            .expect("event"),
            serde_json::from_value(serde_json::json!({
                "event": "sensor_meta", "id": "g\"1", "kind": "water_level",
                "unit": "m NHN", "lat": 53.546, "lon": 9.971
            }))
            .expect("event"),
        ];
        for event in events {
            let e = Envelope {
                space: "live".into(),
                received_ms: t0,
                event,
            };
            p.apply(&e, t0).expect("applied");
        }
        let delta = p.flush(t0).expect("changed");
        let mut f = ViewFilter::new(Viewport {
            bbox: None,
            res: Resolution::Ten,
        });
        let cut = f.cut(&delta);
        let mine = cut.to_delta(&delta);
        assert!(!mine.cells.is_empty() && mine.units.len() == 1 && mine.sensors.len() == 1);
        let want = serde_json::to_string(&DeltaMsg {
            kind: "delta",
            delta: &mine,
        })
        .expect("json");
        assert_eq!(cut.to_json(&delta, DELTA_HEAD), want);
    }
}
