//! `rescuemate render`: a map image of a space from the command line.
//!
//! `--data DIR` draws it here from the event log (the picture rebuilt as
//! of `--at`, or as of now: no server needed; needs the cargo feature
//! `render`); `--server URL` asks a running server for the same image
//! (`GET /api/v1/{space}/render.png`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

/// Arguments of `rescuemate render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The space to draw.
    #[arg(long, default_value = "live")]
    space: String,
    /// Area: west,south,east,north (degrees).
    #[arg(long)]
    bbox: String,
    /// The PNG file to write.
    #[arg(long)]
    out: PathBuf,
    /// The picture as of this time (RFC 3339 or epoch ms); default now.
    #[arg(long)]
    at: Option<String>,
    /// Image width, pixels.
    #[arg(long, default_value_t = viewer::image::DEFAULT_WIDTH)]
    width: u32,
    /// Image height, pixels.
    #[arg(long, default_value_t = viewer::image::DEFAULT_HEIGHT)]
    height: u32,
    /// H3 resolution of the cells; default: from the scale.
    #[arg(long)]
    res: Option<u8>,
    /// Draw from this data folder's event log.
    #[arg(long, conflicts_with = "server")]
    data: Option<PathBuf>,
    /// Server configuration (for `--data`: the picture's rules).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ask this server (e.g. `http://127.0.0.1:8080`).
    #[arg(long)]
    server: Option<String>,
    /// Bearer token for `--server`.
    #[arg(long)]
    token: Option<String>,
}

fn parse_time(t: &str) -> anyhow::Result<i64> {
    t.parse::<i64>().or_else(|_| {
        ingest::wire::rfc3339_ms(t)
            .map_err(|e| anyhow::anyhow!("{t:?}: not RFC 3339 or epoch ms: {e}"))
    })
}

/// Runs `rescuemate render`.
pub async fn run(a: RenderArgs) -> anyhow::Result<()> {
    if !fusion::space::is_valid_space(&a.space) {
        bail!("--space {:?} is not a space name", a.space);
    }
    let png = match (&a.data, &a.server) {
        (Some(dir), None) => from_log(&a, dir).await?,
        (None, Some(url)) => from_server(&a, url)?,
        _ => bail!("say where the picture comes from: --data DIR (its event log) or --server URL"),
    };
    std::fs::write(&a.out, &png).with_context(|| format!("writing {}", a.out.display()))?;
    println!("wrote {} ({} bytes)", a.out.display(), png.len());
    Ok(())
}

fn from_server(a: &RenderArgs, url: &str) -> anyhow::Result<Vec<u8>> {
    let mut q = format!(
        "{}/api/v1/{}/render.png?bbox={}&width={}&height={}",
        url.trim_end_matches('/'),
        a.space,
        a.bbox,
        a.width,
        a.height
    );
    if let Some(at) = &a.at {
        q.push_str(&format!("&at={}", parse_time(at)?));
    }
    if let Some(r) = a.res {
        q.push_str(&format!("&res={r}"));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&q);
    if let Some(t) = &a.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().with_context(|| format!("GET {q}"))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .context("reading the image")?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

#[cfg(not(feature = "render"))]
async fn from_log(_: &RenderArgs, _: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    bail!(
        "this build draws no map images itself (cargo feature `render`); use --server URL with a server that does"
    )
}

#[cfg(feature = "render")]
async fn from_log(a: &RenderArgs, dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use crate::config::Config;

    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let bbox = viewer::viewport::parse_bbox_param(&a.bbox).map_err(anyhow::Error::msg)?;
    let frame = render::Frame::new(bbox, a.width, a.height)?;
    let res = viewer::image::resolution(&frame, a.res);
    let vp = viewer::viewport::parse_viewport(Some(frame.visible_bbox()), Some(res))
        .map_err(anyhow::Error::msg)?;
    let at = a.at.as_deref().map(parse_time).transpose()?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let at_ms = at.unwrap_or(now);
    let tick_ms = i64::try_from(config.tick().as_millis()).unwrap_or(50);
    let reply = crate::driver::history(&dir.join(&a.space), config.picture()?, tick_ms, at_ms, vp)
        .map_err(anyhow::Error::msg)?;
    let renderer = render::gpu::Renderer::start(viewer::image::basemap()?)?;
    let scene = render::Scene {
        snapshot: reply.snapshot,
        space: a.space.clone(),
        drill: fusion::space::is_drill(&a.space),
        at_ms,
        historic: at.is_some(),
    };
    let drawn = renderer.render(scene, frame).await;
    renderer.shutdown();
    let (png, timing) = drawn?;
    tracing::info!(?timing, "drawn");
    Ok(png)
}
