//! `GET /api/v1/{space}/render.png?bbox=w,s,e,n&width=W&height=H[&at=T][&res=R]`:
//! the picture as a PNG (crate `render`, built with the cargo feature
//! `render`; without it the endpoint answers 501).
//!
//! The renderer is started at the first request (one thread, maplibre-rs's
//! headless renderer on the GPU or Mesa's software Vulkan) and kept; if it
//! cannot start, every request says why (503).

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::auth::Access;
use crate::{ApiError, AppState};

/// Default image size (a situation report's attachment).
pub const DEFAULT_WIDTH: u32 = 1024;
/// Default image size.
pub const DEFAULT_HEIGHT: u32 = 768;
/// The resolutions an image may draw when `res=` is not given (the
/// picture's default ones).
pub const RESOLUTIONS: [u8; 5] = [6, 7, 8, 9, 10];
/// Cells are drawn at least this wide (pixels) when the resolution is
/// chosen for the image.
pub const MIN_CELL_PX: f64 = 8.0;

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(feature = "render"),
    expect(dead_code, reason = "read only where images are built in")
)]
pub struct RenderQuery {
    bbox: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    at: Option<String>,
    res: Option<u8>,
}

/// Without the `render` feature: 501 (after the same access check).
#[cfg(not(feature = "render"))]
pub async fn render_png(
    State(_): State<AppState>,
    Extension(access): Extension<Access>,
    Path(space): Path<String>,
    Query(_): Query<RenderQuery>,
) -> Result<Response, ApiError> {
    access.read(&space)?;
    Err(ApiError(
        StatusCode::NOT_IMPLEMENTED,
        "this server was built without map images (cargo feature `render`)".into(),
    ))
}

/// The resolution to draw: `res` if asked, else the finest of
/// [`RESOLUTIONS`] whose cells are at least [`MIN_CELL_PX`] across.
#[cfg(feature = "render")]
pub fn resolution(frame: &render::Frame, res: Option<u8>) -> u8 {
    res.unwrap_or_else(|| {
        frame
            .resolution(&RESOLUTIONS, MIN_CELL_PX)
            .unwrap_or(RESOLUTIONS[0])
    })
}

/// The web client's offline base map, for images.
#[cfg(feature = "render")]
pub fn basemap() -> Result<render::Basemap, render::RenderError> {
    Ok(crate::assets::get("basemap.geojson")
        .map(|(bytes, _)| render::Basemap::from_geojson(bytes))
        .transpose()?
        .unwrap_or_default())
}

/// The renderer, started once, or why it could not be.
#[cfg(feature = "render")]
pub type Images = std::sync::Arc<tokio::sync::OnceCell<Result<render::gpu::Renderer, String>>>;

/// Stops the renderer if it was started (before the process exits; see
/// [`render::gpu::Renderer::shutdown`]); blocks until its thread is done.
#[cfg(feature = "render")]
pub fn stop(images: &Images) {
    if let Some(Ok(r)) = images.get() {
        r.shutdown();
        tracing::info!("map images: renderer stopped");
    }
}

#[cfg(feature = "render")]
async fn renderer(s: &AppState) -> Result<render::gpu::Renderer, ApiError> {
    let started = s
        .images
        .get_or_init(|| async {
            let started =
                tokio::task::spawn_blocking(|| render::gpu::Renderer::start(basemap()?)).await;
            match started {
                Ok(Ok(r)) => {
                    tracing::info!("map images: renderer started");
                    Ok(r)
                }
                Ok(Err(e)) => {
                    tracing::error!("map images: {e}");
                    Err(e.to_string())
                }
                Err(e) => Err(format!("renderer start: {e}")),
            }
        })
        .await;
    started.clone().map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("map images are not available on this server: {e}"),
        )
    })
}

/// The picture of `space` in `bbox` as a PNG.
#[cfg(feature = "render")]
pub async fn render_png(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(space): Path<String>,
    Query(q): Query<RenderQuery>,
) -> Result<Response, ApiError> {
    use crate::viewport::parse_bbox_param;
    use axum::http::header;
    use axum::response::IntoResponse;
    use render::RenderError;

    let area = access.read(&space)?;
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, e);
    let at =
        q.at.as_deref()
            .map(crate::parse_time)
            .transpose()
            .map_err(bad)?;
    let bbox = match (q.bbox.as_deref(), area) {
        (Some(b), _) => parse_bbox_param(b).map_err(bad)?,
        (None, Some(a)) => [a.west, a.south, a.east, a.north],
        (None, None) => return Err(bad("bbox=w,s,e,n is required".into())),
    };
    let frame = render::Frame::new(
        bbox,
        q.width.unwrap_or(DEFAULT_WIDTH),
        q.height.unwrap_or(DEFAULT_HEIGHT),
    )
    .map_err(|e| bad(e.to_string()))?;
    let res = resolution(&frame, q.res);
    let vp = crate::viewport_in(Some(frame.visible_bbox()), Some(res), area)?;
    let images = renderer(&s).await?;
    let reply = crate::picture_in(&s, &space, area, at, vp).await?;
    let seq = reply.snapshot.seq;
    let now_ms = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0);
    let scene = render::Scene {
        snapshot: reply.snapshot,
        drill: fusion::space::is_drill(&space),
        space,
        at_ms: at.unwrap_or(now_ms),
        historic: at.is_some(),
    };
    let started = std::time::Instant::now();
    match images.render(scene, frame).await {
        Ok((png, timing)) => {
            metrics::counter!("rm_render_total", "outcome" => "ok").increment(1);
            metrics::histogram!("rm_render_seconds").record(started.elapsed().as_secs_f64());
            tracing::debug!(?timing, bytes = png.len(), "map image");
            Ok((
                [
                    (header::CONTENT_TYPE, "image/png".to_owned()),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                    (
                        header::HeaderName::from_static("x-rescuemate-res"),
                        res.to_string(),
                    ),
                    (
                        header::HeaderName::from_static("x-rescuemate-seq"),
                        seq.to_string(),
                    ),
                ],
                png,
            )
                .into_response())
        }
        Err(e) => {
            let (status, outcome) = match e {
                RenderError::Request(_) => (StatusCode::BAD_REQUEST, "refused"),
                RenderError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
                RenderError::Basemap(_) | RenderError::Renderer(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "failed")
                }
            };
            metrics::counter!("rm_render_total", "outcome" => outcome).increment(1);
            Err(ApiError(status, e.to_string()))
        }
    }
}
