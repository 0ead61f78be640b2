//! RESCUE MATE viewer: the HTTP and websocket server and the web map client
//! it serves.
//!
//! It owns the websocket protocol and the REST API (DESIGN §5, §9) and the
//! embedded web client ([`assets`]). It never owns or changes a picture: it
//! reads deltas from the [`hub::Hub`] and asks the owner task for snapshots,
//! so nothing a slow client does can slow the fusion core.

pub mod assets;
pub mod hub;
pub mod message;
pub mod viewport;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

use crate::hub::{Hub, HubError};
use crate::message::SnapshotMsg;
use crate::viewport::{parse_bbox_param, parse_viewport};

/// Readiness probe: true once MQTT ingest is connected and subscribed.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The pictures.
    pub hub: Arc<Hub>,
    /// Renders `/metrics`; None when no recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// Readiness for `/healthz`.
    pub ready: Readiness,
}

/// The HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/spaces", get(spaces))
        .route("/api/v1/{space}/snapshot", get(snapshot))
        .route("/api/v1/{space}/mission-log", get(mission_log))
        .route("/api/v1/{space}/history", get(history_range))
        .route("/api/v1/{space}/reset", post(reset))
        .route("/api/v1/{space}/units/{id}", delete(remove_unit))
        .route("/api/v1/{space}/sensors/{id}", delete(remove_sensor))
        .route("/ws", get(websocket))
        .route("/", get(|| asset(Path(String::new()))))
        .route("/{file}", get(asset))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error answered as `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        let status = match e {
            HubError::InvalidSpace(_) | HubError::Refused(_) => StatusCode::BAD_REQUEST,
            HubError::UnknownSpace(_) => StatusCode::NOT_FOUND,
            HubError::Closed | HubError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    if (s.ready)() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: MQTT not connected\n",
        )
            .into_response()
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    match &s.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}

async fn spaces(State(s): State<AppState>) -> Response {
    axum::Json(s.hub.list()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotQuery {
    res: Option<u8>,
    bbox: Option<String>,
    at: Option<String>,
}

async fn snapshot(
    State(s): State<AppState>,
    Path(space): Path<String>,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, e);
    let at = q.at.as_deref().map(parse_time).transpose().map_err(bad)?;
    let bbox = q
        .bbox
        .as_deref()
        .map(parse_bbox_param)
        .transpose()
        .map_err(bad)?;
    let vp = parse_viewport(bbox, q.res).map_err(bad)?;
    let reply = match at {
        Some(t) => s.hub.history(&space, t, vp).await?,
        None => s.hub.snapshot(&space, vp).await?,
    };
    let body = SnapshotMsg {
        kind: "snapshot",
        space: &space,
        drill: fusion::space::is_drill(&space),
        snapshot: &reply.snapshot,
        digest: &reply.digest,
        at,
    };
    Ok(axum::Json(body).into_response())
}

/// `at=`: epoch milliseconds or RFC 3339 (`2026-12-01T21:00:00Z`).
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("at={s:?}: not epoch milliseconds or RFC 3339 ({e})"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("at={s:?}: out of range"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MissionLogQuery {
    limit: Option<usize>,
    format: Option<String>,
}

/// Most mission-log entries one request returns.
const MISSION_LOG_MAX: usize = 10_000;

/// The mission log, newest `limit` entries (default 500) oldest first, as
/// JSON or (`format=csv`) as a CSV file for the after-action report.
async fn mission_log(
    State(s): State<AppState>,
    Path(space): Path<String>,
    Query(q): Query<MissionLogQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(500).min(MISSION_LOG_MAX);
    let entries = s.hub.mission_log(&space, limit).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(axum::Json(serde_json::json!({
            "space": space,
            "drill": fusion::space::is_drill(&space),
            "entries": entries,
        }))
        .into_response()),
        Some("csv") => {
            let mut out = String::from("at,space,kind,about,actor,text\r\n");
            for e in &entries {
                let at = time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(e.at_ms) * 1_000_000,
                )
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| e.at_ms.to_string());
                let fields = [
                    at.as_str(),
                    space.as_str(),
                    e.kind.as_str(),
                    e.about.as_deref().unwrap_or(""),
                    e.actor.as_deref().unwrap_or(""),
                    e.text.as_str(),
                ];
                let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                out.push_str(&row.join(","));
                out.push_str("\r\n");
            }
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"mission-log-{space}.csv\""),
                    ),
                ],
                out,
            )
                .into_response())
        }
        Some(f) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("format={f:?}: json or csv"),
        )),
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

/// How far back the space's event log reaches, for the time slider.
async fn history_range(
    State(s): State<AppState>,
    Path(space): Path<String>,
) -> Result<Response, ApiError> {
    let (from_ms, to_ms) = s.hub.history_range(&space).await?;
    Ok(axum::Json(serde_json::json!({ "from_ms": from_ms, "to_ms": to_ms })).into_response())
}

/// Resets a drill space: an empty picture, its log kept aside.
async fn reset(State(s): State<AppState>, Path(space): Path<String>) -> Result<Response, ApiError> {
    s.hub.reset(&space).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_unit(
    State(s): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    remove(&s, &space, fusion::EntityKind::Unit, &id).await
}

async fn remove_sensor(
    State(s): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    remove(&s, &space, fusion::EntityKind::Sensor, &id).await
}

/// An operator removes a unit or sensor (e.g. a lost source that is no
/// longer information). Answers 204, or 404 for an unknown id.
async fn remove(
    s: &AppState,
    space: &str,
    kind: fusion::EntityKind,
    id: &str,
) -> Result<Response, ApiError> {
    if !fusion::space::is_valid_space(space) {
        return Err(HubError::InvalidSpace(space.chars().take(40).collect()).into());
    }
    match s.hub.remove(space, kind, id).await {
        Ok(()) => {
            tracing::info!(%space, ?kind, %id, "entity removed by operator");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(HubError::Refused(e)) => Err(ApiError(StatusCode::NOT_FOUND, e)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    space: Option<String>,
}

async fn websocket(
    State(s): State<AppState>,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let name = q.space.unwrap_or_else(|| fusion::space::LIVE.to_owned());
    let space = s.hub.open(&name).await?;
    let hub = s.hub.clone();
    Ok(upgrade
        .max_message_size(ws::MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| ws::serve(socket, hub, space)))
}

async fn asset(Path(file): Path<String>) -> Response {
    match assets::get(&file) {
        Some((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
