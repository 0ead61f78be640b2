//! RESCUE MATE viewer: the HTTP and websocket server and the web map client
//! it serves.
//!
//! It owns the websocket protocol and the REST API (DESIGN §5, §9) and the
//! embedded web client ([`assets`]). It never owns or changes a picture: it
//! reads deltas from the [`hub::Hub`] and asks the owner task for snapshots,
//! so nothing a slow client does can slow the fusion core.

pub mod assets;
pub mod auth;
pub mod hub;
pub mod image;
pub mod limits;
pub mod message;
pub mod viewport;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Extension, Path, Query, Request, State, WebSocketUpgrade,
};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::sync::watch;

use crate::auth::{Access, Auth, Denied};
use crate::hub::{Hub, HubError};
use crate::limits::{Gate, LimitsConfig};
use crate::message::SnapshotMsg;
use crate::viewport::{parse_bbox_param, parse_viewport, within_area};

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
    /// Tokens and what is public.
    pub auth: Arc<Auth>,
    /// Connection and message limits.
    pub gate: Arc<Gate>,
    /// Turns true when the server stops: websockets are closed with
    /// "going away" (1001) so clients reconnect elsewhere or later.
    pub closing: watch::Receiver<bool>,
    /// The map-image renderer, started at the first image request.
    #[cfg(feature = "render")]
    pub images: image::Images,
}

impl AppState {
    /// Open access (no tokens), default limits, never closing.
    pub fn new(hub: Arc<Hub>, metrics: Option<PrometheusHandle>, ready: Readiness) -> AppState {
        AppState {
            hub,
            metrics,
            ready,
            auth: Arc::new(Auth::default()),
            gate: Gate::new(LimitsConfig::default()),
            closing: watch::channel(false).1,
            #[cfg(feature = "render")]
            images: image::Images::default(),
        }
    }
}

/// The HTTP application.
pub fn app(state: AppState) -> Router {
    let body_limit = state.gate.limits().rest_body_bytes;
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/api/v1/spaces", get(spaces))
        .route("/api/v1/{space}/snapshot", get(snapshot))
        .route("/api/v1/{space}/render.png", get(image::render_png))
        .route("/api/v1/{space}/mission-log", get(mission_log))
        .route("/api/v1/{space}/history", get(history_range))
        .route("/api/v1/{space}/reset", post(reset))
        .route("/api/v1/{space}/alerts/{id}/ack", post(ack_alert))
        .route("/api/v1/{space}/incidents", post(report_incident))
        .route("/api/v1/{space}/incidents/{id}", delete(close_incident))
        .route("/api/v1/{space}/units/{id}", delete(remove_unit))
        .route("/api/v1/{space}/sensors/{id}", delete(remove_sensor))
        .route("/ws", get(websocket))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // Neither a picture nor a secret: no token needed.
        .route("/healthz", get(healthz))
        .route("/", get(|| asset(Path(String::new()))))
        .route("/{file}", get(asset))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Finds the request's token (`Authorization: Bearer`, or `?token=`, which
/// is then taken out of the query so that no handler sees or logs it) and
/// attaches what it grants; an unknown token is refused here.
async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let from_header = bearer(req.headers());
    let from_query = req
        .uri()
        .query()
        .filter(|q| q.split('&').any(|p| p.starts_with("token=")))
        .and_then(|_| Query::<TokenQuery>::try_from_uri(req.uri()).ok())
        .and_then(|q| q.0.token);
    if from_query.is_some()
        && let Some(uri) = without_token(req.uri())
    {
        *req.uri_mut() = uri;
    }
    let token = from_header.or(from_query);
    match s.auth.identify(token.as_deref()) {
        Ok(access) => {
            req.extensions_mut().insert(access);
            next.run(req).await
        }
        Err(denied) => ApiError::from(denied).into_response(),
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `uri` without its `token=` query parameters.
fn without_token(uri: &Uri) -> Option<Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("token=") && !p.is_empty())
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).ok()
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        metrics::counter!("rm_auth_refused_total", "reason" => d.reason()).increment(1);
        let status = match d {
            Denied::NoToken | Denied::BadToken => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        ApiError(status, d.to_string())
    }
}

/// An error answered as `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.1 }));
        if self.0 == StatusCode::UNAUTHORIZED {
            return (
                self.0,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"rescuemate\"")],
                body,
            )
                .into_response();
        }
        (self.0, body).into_response()
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

async fn metrics_text(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
) -> Result<Response, ApiError> {
    access.metrics()?;
    Ok(match &s.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    })
}

/// The spaces this request may read.
async fn spaces(State(s): State<AppState>, Extension(access): Extension<Access>) -> Response {
    let mut list = s.hub.list();
    list.retain(|sp| access.read(&sp.name).is_ok());
    axum::Json(list).into_response()
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
    Extension(access): Extension<Access>,
    Path(space): Path<String>,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let area = access.read(&space)?;
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, e);
    let at = q.at.as_deref().map(parse_time).transpose().map_err(bad)?;
    let bbox = q
        .bbox
        .as_deref()
        .map(parse_bbox_param)
        .transpose()
        .map_err(bad)?;
    let vp = viewport_in(bbox, q.res, area)?;
    let reply = picture_in(&s, &space, area, at, vp).await?;
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

/// The viewport asked for (`bbox`, `res`), cut to the token's area.
pub(crate) fn viewport_in(
    bbox: Option<[f64; 4]>,
    res: Option<u8>,
    area: Option<fusion::Bbox>,
) -> Result<fusion::Viewport, ApiError> {
    let vp = parse_viewport(bbox, res).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    within_area(vp, area).map_err(|e| ApiError::from(Denied::Forbidden(e)))
}

/// The picture of `space` in `vp`, now or (`at`) rebuilt from the log,
/// with nothing outside the token's `area`.
pub(crate) async fn picture_in(
    s: &AppState,
    space: &str,
    area: Option<fusion::Bbox>,
    at: Option<i64>,
    vp: fusion::Viewport,
) -> Result<hub::SnapshotReply, ApiError> {
    let mut reply = match at {
        Some(t) => s.hub.history(space, t, vp).await?,
        None => s.hub.snapshot(space, vp).await?,
    };
    fusion::ViewFilter::new(vp)
        .limited_to(area)
        .restrict_snapshot(&mut reply.snapshot);
    Ok(reply)
}

/// `at=`: epoch milliseconds or RFC 3339 (`2026-12-01T21:00:00Z`).
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
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
    Extension(access): Extension<Access>,
    Path(space): Path<String>,
    Query(q): Query<MissionLogQuery>,
) -> Result<Response, ApiError> {
    access.read_all(&space)?;
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
    Extension(access): Extension<Access>,
    Path(space): Path<String>,
) -> Result<Response, ApiError> {
    access.read(&space)?;
    let (from_ms, to_ms) = s.hub.history_range(&space).await?;
    Ok(axum::Json(serde_json::json!({ "from_ms": from_ms, "to_ms": to_ms })).into_response())
}

/// Resets a drill space: an empty picture, its log kept aside.
async fn reset(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(space): Path<String>,
) -> Result<Response, ApiError> {
    access.act(&space)?;
    s.hub.reset(&space, access.actor()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Acknowledges an alert (DESIGN §9); the token's name is the actor.
async fn ack_alert(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path((space, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access.act(&space)?;
    match s.hub.ack(&space, &id, access.actor()).await {
        Ok(()) => {
            tracing::info!(%space, alert = %id, actor = access.actor(), "alert acknowledged");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(HubError::Refused(e)) => Err(ApiError(StatusCode::NOT_FOUND, e)),
        Err(e) => Err(e.into()),
    }
}

/// An operator reports (or updates) an incident: the body is the MQTT
/// incident payload plus its `id`; `ts` defaults to now. It goes through
/// the same decoder, event log and picture as one from the broker.
async fn report_incident(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(space): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    access.act(&space)?;
    let bad = |e: String| {
        metrics::counter!("rm_rest_refused_total", "reason" => "bad_body").increment(1);
        ApiError(StatusCode::BAD_REQUEST, e)
    };
    let mut doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid incident JSON: {e}")))?;
    let id = match doc.remove("id") {
        Some(serde_json::Value::String(id)) if is_entity_id(&id) => id,
        _ => {
            return Err(bad(
                "an incident needs an \"id\": 1-64 characters of [A-Za-z0-9._-]".into(),
            ));
        }
    };
    doc.entry("ts")
        .or_insert_with(|| serde_json::Value::from(now_ms()));
    let payload = serde_json::to_vec(&doc).map_err(|e| bad(e.to_string()))?;
    submit_incident(&s, &access, &space, &id, payload).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": id })),
    )
        .into_response())
}

/// Closes an incident (the empty payload of the MQTT contract).
async fn close_incident(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path((space, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access.act(&space)?;
    if !is_entity_id(&id) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "incident ids are 1-64 characters of [A-Za-z0-9._-]".into(),
        ));
    }
    submit_incident(&s, &access, &space, &id, Vec::new()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn submit_incident(
    s: &AppState,
    access: &Access,
    space: &str,
    id: &str,
    payload: Vec<u8>,
) -> Result<(), ApiError> {
    let topic = format!("rm/v1/{space}/incident/{id}");
    match s.hub.submit(space, topic, payload, access.actor()).await {
        Ok(()) => {
            tracing::info!(%space, incident = %id, actor = access.actor(), "incident reported by an operator");
            Ok(())
        }
        Err(HubError::Refused(e)) => {
            metrics::counter!("rm_rest_refused_total", "reason" => "refused").increment(1);
            Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))
        }
        Err(e) => Err(e.into()),
    }
}

/// An id usable as an MQTT topic level and a file-safe name.
fn is_entity_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn remove_unit(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path((space, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    remove(&s, &access, &space, fusion::EntityKind::Unit, &id).await
}

async fn remove_sensor(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path((space, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    remove(&s, &access, &space, fusion::EntityKind::Sensor, &id).await
}

/// An operator removes a unit or sensor (e.g. a lost source that is no
/// longer information). Answers 204, or 404 for an unknown id.
async fn remove(
    s: &AppState,
    access: &Access,
    space: &str,
    kind: fusion::EntityKind,
    id: &str,
) -> Result<Response, ApiError> {
    if !fusion::space::is_valid_space(space) {
        return Err(HubError::InvalidSpace(space.chars().take(40).collect()).into());
    }
    access.act(space)?;
    match s.hub.remove(space, kind, id, access.actor()).await {
        Ok(()) => {
            tracing::info!(%space, ?kind, %id, actor = access.actor(), "entity removed by operator");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(HubError::Refused(e)) => Err(ApiError(StatusCode::NOT_FOUND, e)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WsQuery {
    space: Option<String>,
}

async fn websocket(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // A browser always says where the page came from; a page from a
    // foreign site must not ride on the user's network position.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let allowed = origin
            .to_str()
            .is_ok_and(|o| s.auth.origin_allowed(o, host));
        if !allowed {
            metrics::counter!("rm_auth_refused_total", "reason" => "origin").increment(1);
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "websocket origin {:?} is not allowed (auth.allowed_origins)",
                    origin.to_str().unwrap_or("?")
                ),
            ));
        }
    }
    let name = q.space.unwrap_or_else(|| fusion::space::LIVE.to_owned());
    let area = access.read(&name)?;
    let ticket = s
        .gate
        .admit(peer.ip())
        .map_err(|e| ApiError(StatusCode::TOO_MANY_REQUESTS, e))?;
    let space = s.hub.open(&name).await?;
    let client = ws::Session {
        hub: s.hub.clone(),
        space,
        access,
        area,
        limits: s.gate.limits().clone(),
        closing: s.closing.clone(),
        ticket,
    };
    Ok(upgrade
        // Clients send a few small messages; the websocket library zeroes
        // its whole read buffer on every read (128 KiB by default), which
        // with a thousand clients each woken 20 times a second was the
        // server's largest single cost.
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(s.gate.limits().ws_message_bytes)
        .max_frame_size(s.gate.limits().ws_message_bytes)
        .on_upgrade(move |socket| ws::serve(socket, client)))
}

/// The websocket read buffer per connection, bytes.
const WS_READ_BUFFER: usize = 4 * 1024;

async fn asset(Path(file): Path<String>) -> Response {
    match assets::get(&file) {
        Some((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
