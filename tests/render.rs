//! Map images (cargo feature `render`): the storm-surge scenario's picture
//! drawn by the real server (`GET /api/v1/{space}/render.png`, maplibre-rs
//! headless on Mesa's software Vulkan) and by `rescuemate render --data`,
//! checked pixel by pixel against the picture's own cells.
//!
//! `cargo test --features render --test render`. Without the feature only
//! the refusal (501) is tested.

mod common;

use common::*;

const SPACE: &str = "drill-sturmflut";

#[cfg(not(feature = "render"))]
#[test]
fn without_the_feature_images_are_refused_with_a_reason() {
    let (_server, addr, _) = start_server(&[]);
    let (status, body) = http_get(
        addr,
        &format!("/api/v1/{SPACE}/render.png?bbox=9.9,53.5,10.0,53.6"),
    );
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("feature"), "{body}");
}

#[cfg(feature = "render")]
mod with_renderer {
    use super::*;
    use serde_json::Value;
    use std::net::SocketAddr;
    use std::process::Command;
    use std::time::Duration;

    /// St. Pauli, the harbour, HafenCity and Wilhelmsburg.
    const BBOX: [f64; 4] = [9.90, 53.48, 10.08, 53.57];

    fn get_bytes(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut r = agent
            .get(&format!("http://{addr}{path}"))
            .call()
            .expect("GET");
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .expect("body");
        (r.status().as_u16(), headers, body)
    }

    /// An RGBA image.
    struct Image {
        width: u32,
        height: u32,
        rgba: Vec<u8>,
    }

    impl Image {
        fn decode(png_bytes: &[u8]) -> Image {
            assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
            let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
                .read_info()
                .expect("PNG header");
            let mut rgba = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut rgba).expect("PNG data");
            assert_eq!(info.color_type, png::ColorType::Rgba);
            Image {
                width: info.width,
                height: info.height,
                rgba,
            }
        }

        fn at(&self, x: f64, y: f64) -> Option<[u8; 3]> {
            if x < 0.0 || y < 0.0 || x >= f64::from(self.width) || y >= f64::from(self.height) {
                return None;
            }
            let i = ((y as u32 * self.width + x as u32) * 4) as usize;
            Some([self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]])
        }

        fn pixels(&self) -> impl Iterator<Item = (u32, u32, [u8; 3])> + '_ {
            self.rgba
                .chunks_exact(4)
                .zip(0u32..)
                .map(|(p, i)| (i % self.width, i / self.width, [p[0], p[1], p[2]]))
        }
    }

    fn close(a: [u8; 3], b: [u8; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 2)
    }

    /// A cell of the picture as it lands in the image.
    struct HotCell {
        level: u8,
        centre: (f64, f64),
        radius: f64,
        vertices: Vec<(f64, f64)>,
    }

    fn hot_cells(snap: &Value, frame: &render::Frame, min_level: u64) -> Vec<HotCell> {
        snap["cells"]
            .as_array()
            .expect("cells")
            .iter()
            .filter(|c| c["hazard"].as_u64().unwrap_or(0) >= min_level)
            .map(|c| {
                let cell: h3o::CellIndex = c["h3"].as_str().expect("h3").parse().expect("cell");
                let ll = h3o::LatLng::from(cell);
                let centre = frame.to_pixel(ll.lat(), ll.lng());
                let vertices: Vec<(f64, f64)> = cell
                    .boundary()
                    .iter()
                    .map(|v| frame.to_pixel(v.lat(), v.lng()))
                    .collect();
                let radius = vertices
                    .iter()
                    .map(|(x, y)| (x - centre.0).hypot(y - centre.1))
                    .fold(0.0, f64::max);
                HotCell {
                    level: c["hazard"].as_u64().unwrap_or(0) as u8,
                    centre,
                    radius,
                    vertices,
                }
            })
            .collect()
    }

    /// Plays five scenario hours of the storm surge (×600 for 30 s).
    fn play_storm_surge(mqtt_port: u16) {
        let out = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args([
                "sim",
                "--mqtt",
                &format!("mqtt://127.0.0.1:{mqtt_port}"),
                "--space",
                SPACE,
                "--scenario",
                "storm-surge",
                "--speed",
                "600",
                "--duration",
                "30s",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .expect("run rescuemate sim");
        assert!(
            out.status.success(),
            "sim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Where the markers are (pixels): a sample near one may show it.
    fn markers(snap: &Value, frame: &render::Frame) -> Vec<(f64, f64)> {
        ["units", "sensors"]
            .iter()
            .flat_map(|k| snap[*k].as_array().cloned().unwrap_or_default())
            .filter_map(|e| Some(frame.to_pixel(e["lat"].as_f64()?, e["lon"].as_f64()?)))
            .collect()
    }

    /// The checks of one image against the snapshot it was drawn from.
    fn check_image(img: &Image, snap: &Value, frame: &render::Frame) {
        let hazard = render::style::HAZARD;
        let hot = hot_cells(snap, frame, 3);
        assert!(
            hot.len() >= 5,
            "the storm surge leaves hot cells in view: {}",
            hot.len()
        );
        let marks = markers(snap, frame);
        let legend = render::Layout::new(img.width, img.height).legend;
        let in_legend = |x: f64, y: f64| {
            legend.is_some_and(|[lx, ly, lw, lh]| {
                x >= f64::from(lx)
                    && x < f64::from(lx + lw)
                    && y >= f64::from(ly)
                    && y < f64::from(ly + lh)
            })
        };

        // 1. Inside every hot cell its level's colour: samples at the
        // centre and halfway to each corner, away from markers, lines and
        // the legend.
        let (mut checked, mut matched) = (0, 0);
        for c in &hot {
            let samples = std::iter::once(c.centre).chain(
                c.vertices
                    .iter()
                    .map(|(x, y)| ((x + c.centre.0) / 2.0, (y + c.centre.1) / 2.0)),
            );
            for (x, y) in samples {
                let near_marker = marks.iter().any(|(mx, my)| (mx - x).hypot(my - y) < 10.0);
                if near_marker || in_legend(x, y) || y < 24.0 {
                    continue;
                }
                let Some(px) = img.at(x, y) else { continue };
                checked += 1;
                if close(px, hazard[usize::from(c.level)]) {
                    matched += 1;
                }
            }
        }
        assert!(checked >= 20, "only {checked} samples could be checked");
        assert!(
            f64::from(matched) >= 0.8 * f64::from(checked),
            "{matched} of {checked} samples in hot cells show their level's colour"
        );

        // 2. The hot colours appear only where the hot cells are (or in the
        // legend's swatches).
        let mut stray = 0;
        let mut hot_pixels = 0;
        for (x, y, px) in img.pixels() {
            let Some(level) = (3..=4).find(|&l| close(px, hazard[l])) else {
                continue;
            };
            hot_pixels += 1;
            let (x, y) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
            if in_legend(x, y) {
                continue;
            }
            let near = hot.iter().any(|c| {
                usize::from(c.level) == level
                    && (c.centre.0 - x).hypot(c.centre.1 - y) <= c.radius + 2.0
            });
            if !near {
                stray += 1;
            }
        }
        assert!(hot_pixels > 500, "{hot_pixels} hot pixels");
        assert_eq!(stray, 0, "{stray} hot-coloured pixels outside hot cells");

        // 3. A drill is marked: the header band is the EXERCISE red.
        let band = img.at(f64::from(img.width) - 2.0, 20.0).expect("header");
        assert!(
            close(band, render::style::Layer::Exercise.color()),
            "{band:?}"
        );
    }

    #[test]
    fn storm_surge_images_show_hazard_colours_where_the_hot_cells_are() {
        let data = std::env::temp_dir().join(format!("rm-render-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let data_arg = data.to_string_lossy().into_owned();
        let (mut server, addr, mqtt_port) = start_server(&["--data", &data_arg]);
        play_storm_surge(mqtt_port);

        let bbox = BBOX.map(|v| v.to_string()).join(",");
        let (w, h) = (1024, 768);
        let path = format!("/api/v1/{SPACE}/render.png?bbox={bbox}&width={w}&height={h}");
        let started = std::time::Instant::now();
        let (status, headers, body) = get_bytes(addr, &path);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        println!(
            "first image (renderer start included): {:?}",
            started.elapsed()
        );
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(header("content-type"), "image/png");
        let res: u8 = header("x-rescuemate-res").parse().expect("res header");
        let img = Image::decode(&body);
        assert_eq!((img.width, img.height), (w, h));

        // The snapshot of what the image shows, at the image's resolution.
        let frame = render::Frame::new(BBOX, w, h).expect("frame");
        let vb = frame.visible_bbox().map(|v| v.to_string()).join(",");
        let (status, text) = http_get(
            addr,
            &format!("/api/v1/{SPACE}/snapshot?res={res}&bbox={vb}"),
        );
        assert_eq!(status, 200, "{text}");
        let snap: Value = serde_json::from_str(&text).expect("snapshot");
        check_image(&img, &snap, &frame);
        std::fs::create_dir_all("target/render-artifacts").expect("artifact folder");
        std::fs::write("target/render-artifacts/storm-surge.png", &body).expect("artifact");

        // A second image reuses the renderer.
        let started = std::time::Instant::now();
        let (status, _, _) = get_bytes(addr, &path);
        assert_eq!(status, 200);
        println!("second image: {:?}", started.elapsed());

        // Bad requests are refused with a reason, and counted.
        for (q, want) in [
            ("width=800".to_owned(), 400),
            (format!("bbox={bbox}&width=5000"), 400),
            ("bbox=10.1,53.5,9.9,53.6&width=800".to_owned(), 400),
            (format!("bbox={bbox}&colour=red"), 400),
            (format!("bbox={bbox}&at=yesterday"), 400),
        ] {
            let (status, body) = http_get(addr, &format!("/api/v1/{SPACE}/render.png?{q}"));
            assert_eq!(status, want, "{q}: {body}");
            assert!(body.contains("error") || !body.is_empty(), "{q}: {body}");
        }
        assert!(metric(addr, "rm_render_total", &["outcome=\"ok\""]).unwrap_or(0.0) >= 2.0);

        // The same from the command line, from the event log (no server
        // asked), at a smaller size.
        let out_png = data.join("cli.png");
        let out = Command::new(env!("CARGO_BIN_EXE_rescuemate"))
            .args([
                "render",
                "--data",
                &data_arg,
                "--space",
                SPACE,
                "--bbox",
                &bbox,
                "--width",
                "640",
                "--height",
                "480",
                "--out",
                &out_png.to_string_lossy(),
            ])
            .env("RUST_LOG", "warn")
            .output()
            .expect("rescuemate render");
        assert!(
            out.status.success(),
            "render: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli_img = Image::decode(&std::fs::read(&out_png).expect("cli png"));
        assert_eq!((cli_img.width, cli_img.height), (640, 480));
        let cli_frame = render::Frame::new(BBOX, 640, 480).expect("frame");
        let res = cli_frame
            .resolution(&viewer::image::RESOLUTIONS, viewer::image::MIN_CELL_PX)
            .expect("res");
        let vb = cli_frame.visible_bbox().map(|v| v.to_string()).join(",");
        let (_, text) = http_get(
            addr,
            &format!("/api/v1/{SPACE}/snapshot?res={res}&bbox={vb}"),
        );
        let snap: Value = serde_json::from_str(&text).expect("snapshot");
        check_image(&cli_img, &snap, &cli_frame);

        // A server that drew images stops cleanly: its render thread lets
        // go of the GPU device before the process exits.
        server.signal("TERM");
        let status = server.wait_exit(15);
        assert!(status.success(), "{status:?}");
        let _ = std::fs::remove_dir_all(&data);
    }
}
