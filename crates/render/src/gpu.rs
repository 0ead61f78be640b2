//! The drawing: maplibre-rs's headless renderer (wgpu; on a machine
//! without a GPU, Mesa's software Vulkan driver) on a thread of its own.
//!
//! maplibre-rs's map and renderer are not `Send` and its headless mode
//! writes frames to files in the working directory; so one thread owns
//! them, takes jobs from a bounded queue, and a plugin of ours copies each
//! frame out of the GPU buffer into memory instead.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use maplibre::context::MapContext;
use maplibre::headless::environment::HeadlessEnvironment;
use maplibre::headless::{create_headless_renderer, map::HeadlessMap};
use maplibre::kernel::Kernel;
use maplibre::plugin::Plugin;
use maplibre::render::graph::{Node, NodeRunError, RenderContext, RenderGraph, RenderGraphContext};
use maplibre::render::resource::Head;
use maplibre::render::tile_view_pattern::ViewTileSources;
use maplibre::render::{RenderPlugin, RenderResources, RenderStageLabel};
use maplibre::schedule::Schedule;
use maplibre::style::Style;
use maplibre::style::layer::{FillPaint, LayerPaint, StyleLayer};
use maplibre::tcs::system::{System, SystemContainer};
use maplibre::tcs::world::World;
use maplibre::vector::{DefaultVectorTransferables, VectorPlugin};
use tokio::sync::oneshot;

use crate::style::Layer;
use crate::{Basemap, Frame, Plan, RenderError, Scene, finish};
#[cfg(test)]
use geo::Polygon;

/// Jobs waiting for the renderer at most; more are refused ([`RenderError::Busy`]).
pub const QUEUE: usize = 4;

/// What one image took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Encoding the vector tile.
    pub plan: Duration,
    /// maplibre-rs: tessellation, drawing, reading the frame back.
    pub draw: Duration,
    /// Cutting, text, PNG.
    pub finish: Duration,
    /// Whether a renderer had to be made for this size first.
    pub new_renderer: bool,
}

/// A PNG and what it took, or why not.
type Answer = Result<(Vec<u8>, Timing), RenderError>;

struct Job {
    scene: Scene,
    frame: Frame,
    reply: oneshot::Sender<Answer>,
}

/// What the render thread is asked.
enum Msg {
    Draw(Box<Job>),
    /// Finish what is queued before this and end.
    Stop,
}

/// A handle to the render thread; cheap to clone.
#[derive(Clone)]
pub struct Renderer {
    jobs: mpsc::SyncSender<Msg>,
    thread: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Renderer {
    /// Starts the render thread and draws one small image to be sure the
    /// GPU (or software driver) works; the error says why not.
    pub fn start(basemap: Basemap) -> Result<Renderer, RenderError> {
        let (jobs, inbox) = mpsc::sync_channel::<Msg>(QUEUE);
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("render".into())
            .spawn(move || {
                let mut thread = match RenderThread::new(basemap) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let probe = thread.probe();
                let ok = probe.is_ok();
                let _ = ready_tx.send(probe);
                if ok {
                    while let Ok(Msg::Draw(job)) = inbox.recv() {
                        // A panic anywhere in one image answers that image
                        // with an error; the thread and its queue go on.
                        let answer = guarded("drawing", || thread.draw(&job.scene, job.frame))
                            .and_then(|a| a);
                        if answer.is_err() {
                            thread.map = None;
                        }
                        let _ = job.reply.send(answer);
                    }
                }
            })
            .map_err(|e| RenderError::Renderer(format!("cannot start its thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| RenderError::Renderer("its thread ended at start".into()))??;
        Ok(Renderer {
            jobs,
            thread: std::sync::Arc::new(std::sync::Mutex::new(Some(handle))),
        })
    }

    fn submit(&self, scene: Scene, frame: Frame) -> Result<oneshot::Receiver<Answer>, RenderError> {
        let (reply, rx) = oneshot::channel();
        match self.jobs.try_send(Msg::Draw(Box::new(Job {
            scene,
            frame,
            reply,
        }))) {
            Ok(()) => Ok(rx),
            Err(mpsc::TrySendError::Full(_)) => Err(RenderError::Busy(QUEUE)),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(RenderError::Renderer(
                "the render thread has stopped".into(),
            )),
        }
    }

    /// Draws `scene` into `frame` as a PNG.
    pub async fn render(
        &self,
        scene: Scene,
        frame: Frame,
    ) -> Result<(Vec<u8>, Timing), RenderError> {
        self.submit(scene, frame)?
            .await
            .map_err(|_| RenderError::Renderer("the render thread has stopped".into()))?
    }

    /// Stops the render thread, from any handle: it finishes the images
    /// queued before, then releases the GPU device on its own thread, and
    /// this waits for it (blocking: call it outside async code or in
    /// `spawn_blocking`); later requests are refused. A process should do
    /// this before it exits: the Vulkan driver tearing down while the
    /// thread still held its device corrupted the heap at exit (seen with
    /// Mesa's lavapipe).
    pub fn shutdown(&self) {
        // Waits for room in the queue; fails only when the thread is gone.
        let _ = self.jobs.send(Msg::Stop);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// [`Renderer::render`] for a caller outside an async runtime.
    pub fn render_blocking(
        &self,
        scene: Scene,
        frame: Frame,
    ) -> Result<(Vec<u8>, Timing), RenderError> {
        self.submit(scene, frame)?
            .blocking_recv()
            .map_err(|_| RenderError::Renderer("the render thread has stopped".into()))?
    }
}

/// The last frame read back from the GPU, RGBA rows without padding.
type Capture = Rc<RefCell<Option<Vec<u8>>>>;

struct RenderThread {
    runtime: tokio::runtime::Runtime,
    basemap: Basemap,
    /// The map for the last size drawn (a renderer's surface has one size).
    map: Option<(u32, HeadlessMap, Capture)>,
}

/// maplibre-rs answers many failures with a panic: one turned into an error
/// here loses the map (it is made again for the next image), not the thread.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, RenderError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into());
        RenderError::Renderer(format!("{what}: {why}"))
    })
}

impl RenderThread {
    fn new(basemap: Basemap) -> Result<RenderThread, RenderError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RenderError::Renderer(format!("runtime: {e}")))?;
        Ok(RenderThread {
            runtime,
            basemap,
            map: None,
        })
    }

    fn probe(&mut self) -> Result<(), RenderError> {
        let frame = Frame::new([9.9, 53.5, 10.1, 53.6], 64, 64)?;
        self.draw(&Scene::empty("probe", false), frame).map(|_| ())
    }

    fn map_for(&mut self, size: u32) -> Result<bool, RenderError> {
        if matches!(&self.map, Some((s, _, _)) if *s == size) {
            return Ok(false);
        }
        self.map = None;
        let capture: Capture = Rc::default();
        let plugin_capture = capture.clone();
        let runtime = &self.runtime;
        let map = guarded("cannot start maplibre-rs's headless renderer", || {
            // wgpu picks its backend (`WGPU_BACKEND` may name one); no
            // adapter at all is a panic in maplibre-rs, caught here.
            let (kernel, renderer) = runtime.block_on(create_headless_renderer(size, None));
            let plugins: Vec<Box<dyn Plugin<HeadlessEnvironment>>> = vec![
                Box::new(RenderPlugin),
                Box::new(VectorPlugin::<DefaultVectorTransferables>::default()),
                Box::new(CapturePlugin {
                    capture: plugin_capture,
                }),
            ];
            HeadlessMap::new(style(), renderer, kernel, plugins)
                .map_err(|e| RenderError::Renderer(format!("map: {e:?}")))
        })??;
        self.map = Some((size, map, capture));
        Ok(true)
    }

    fn draw(&mut self, scene: &Scene, frame: Frame) -> Result<(Vec<u8>, Timing), RenderError> {
        let t0 = Instant::now();
        let mut plan = Plan::new(scene, frame, &self.basemap);
        let t1 = Instant::now();
        let new_renderer = self.map_for(frame.size)?;
        let Some((_, map, capture)) = self.map.as_mut() else {
            return Err(RenderError::Renderer("no map".into()));
        };
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        let tile = std::mem::take(&mut plan.tile).into_boxed_slice();
        let runtime = &self.runtime;
        let drawn = guarded("drawing", || {
            let layers = runtime.block_on(map.process_tile(tile, &names));
            map.render_tile(layers);
            capture.borrow_mut().take()
        });
        let rgba = match drawn {
            Ok(Some(rgba)) => rgba,
            Ok(None) => {
                self.map = None;
                return Err(RenderError::Renderer(
                    "no frame came back from the GPU".into(),
                ));
            }
            Err(e) => {
                self.map = None;
                return Err(e);
            }
        };
        let t2 = Instant::now();
        let png = finish(&plan, scene, &rgba)?;
        Ok((
            png,
            Timing {
                plan: t1 - t0,
                draw: t2 - t1,
                finish: t2.elapsed(),
                new_renderer,
            },
        ))
    }
}

/// One style layer per colour, in drawing order. maplibre-rs draws a
/// layer's z from its index, and index 0 lands outside the depth range.
fn style() -> Style {
    let layers = Layer::ALL
        .iter()
        .zip(1u32..)
        .map(|(layer, index)| StyleLayer {
            index,
            id: layer.name().to_owned(),
            paint: Some(LayerPaint::Fill(FillPaint {
                fill_color: layer.css().parse().ok(),
            })),
            source_layer: Some(layer.name().to_owned()),
            ..StyleLayer::default()
        })
        .collect();
    Style {
        layers,
        ..Style::default()
    }
}

/// Copies each drawn frame out of the GPU: a render-graph node after the
/// main pass (texture → buffer), then a system that maps the buffer and
/// keeps the rows.
struct CapturePlugin {
    capture: Capture,
}

impl Plugin<HeadlessEnvironment> for CapturePlugin {
    fn build(
        &self,
        schedule: &mut Schedule,
        _kernel: Rc<Kernel<HeadlessEnvironment>>,
        world: &mut World,
        graph: &mut RenderGraph,
    ) {
        if let Some(draw) = graph.get_sub_graph_mut("draw") {
            draw.add_node("rescuemate_copy", CopyNode);
            let _ = draw.add_node_edge("main_pass", "rescuemate_copy");
        }
        schedule.add_system_to_stage(
            RenderStageLabel::Cleanup,
            SystemContainer::new(ReadBack {
                capture: self.capture.clone(),
            }),
        );
        // As maplibre-rs's own headless plugin: tiles are put in by hand,
        // nothing is fetched or extracted from a view.
        schedule.remove_stage(RenderStageLabel::Extract);
        if let Some(sources) = world.resources.get_mut::<ViewTileSources>() {
            sources.clear();
        }
    }
}

struct CopyNode;

impl Node for CopyNode {
    fn run(
        &self,
        _graph: &mut RenderGraphContext,
        RenderContext {
            command_encoder, ..
        }: &mut RenderContext,
        state: &RenderResources,
        _world: &World,
    ) -> Result<(), NodeRunError> {
        let surface = state.surface();
        if let Head::Headless(texture) = surface.head() {
            let size = surface.size();
            command_encoder.copy_texture_to_buffer(
                texture.copy_texture(),
                wgpu::ImageCopyBuffer {
                    buffer: texture.buffer(),
                    layout: wgpu::ImageDataLayout {
                        offset: 0,
                        bytes_per_row: Some(texture.bytes_per_row()),
                        rows_per_image: None,
                    },
                },
                wgpu::Extent3d {
                    width: size.width(),
                    height: size.height(),
                    depth_or_array_layers: 1,
                },
            );
        }
        Ok(())
    }
}

struct ReadBack {
    capture: Capture,
}

impl System for ReadBack {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "rescuemate_read_back".into()
    }

    fn run(&mut self, context: &mut MapContext) {
        let renderer = &context.renderer;
        let surface = renderer.resources.surface();
        let Head::Headless(texture) = surface.head() else {
            return;
        };
        let size = surface.size();
        let row = (size.width() * 4) as usize;
        let padded = texture.bytes_per_row().get() as usize;
        let slice = texture.map_async(&renderer.device);
        let mapped = slice.get_mapped_range();
        let mut rgba = Vec::with_capacity(row * size.height() as usize);
        for chunk in mapped.chunks(padded).take(size.height() as usize) {
            rgba.extend_from_slice(&chunk[..row]);
        }
        drop(mapped);
        texture.unmap();
        *self.capture.borrow_mut() = Some(rgba);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_scene(drill: bool) -> Scene {
        Scene::empty("live", drill)
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .expect("header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("frame");
        (info.width, info.height, buf)
    }

    /// Land and sea of the base map where they are, the header band, and
    /// a second size on the same thread.
    #[test]
    fn draws_the_base_map_and_the_header_at_any_size() {
        // A square of land in the middle of the sea.
        let land = Polygon::new(
            geo::LineString::from(vec![
                (9.0, 54.0),
                (10.0, 54.0),
                (10.0, 55.0),
                (9.0, 55.0),
                (9.0, 54.0),
            ]),
            vec![],
        );
        let basemap = Basemap {
            land: vec![land],
            borders: Vec::new(),
        };
        let r = Renderer::start(basemap).expect("a Vulkan driver (mesa-vulkan-drivers)");
        for (w, h) in [(400, 300), (256, 512)] {
            let frame = Frame::new([8.0, 53.5, 11.0, 55.5], w, h).expect("frame");
            let (png, timing) = r.render_blocking(empty_scene(true), frame).expect("image");
            assert!(timing.new_renderer);
            let (iw, ih, rgba) = decode(&png);
            assert_eq!((iw, ih), (w, h));
            let at = |lat: f64, lon: f64| {
                let (x, y) = frame.to_pixel(lat, lon);
                let i = ((y as u32 * w + x as u32) * 4) as usize;
                [rgba[i], rgba[i + 1], rgba[i + 2]]
            };
            assert_eq!(at(54.5, 9.5), Layer::Land.color(), "{w}×{h}");
            assert_eq!(at(53.8, 10.7), Layer::Water.color(), "{w}×{h}");
            let band = ((10 * w + w - 2) * 4) as usize;
            assert_eq!(rgba[band..band + 3], Layer::Exercise.color());
        }
        r.shutdown();
    }
}
