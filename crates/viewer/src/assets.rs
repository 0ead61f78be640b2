//! The web client, embedded in the binary.
//!
//! `build.rs` builds `web/` into `web/dist/` (npm + node) and generates a
//! table of every file there; this module looks files up by request path.
//! All files sit at the root of `dist`, so a request path is a plain file
//! name such as `app.js` or `maplibre-gl.mjs`; the empty path is the page.

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Content and content type of the embedded file at `path`.
///
/// `path` is the request path without its leading slash (one is tolerated);
/// `""` means `index.html`. Returns `None` for anything not embedded,
/// including paths with folders or `..` in them.
pub fn get(path: &str) -> Option<(&'static [u8], &'static str)> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS
        .binary_search_by(|(name, _, _)| (*name).cmp(path))
        .ok()
        .and_then(|i| ASSETS.get(i))
        .map(|&(_, bytes, mime)| (bytes, mime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(ASSETS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn empty_path_is_the_page() {
        let Some((bytes, mime)) = get("") else {
            panic!("no index.html embedded");
        };
        assert_eq!(mime, "text/html; charset=utf-8");
        assert!(String::from_utf8_lossy(bytes).contains("./app.js"));
        assert_eq!(get("/").map(|(_, m)| m), Some(mime));
        assert_eq!(get("index.html").map(|(b, _)| b.len()), Some(bytes.len()));
    }

    #[test]
    fn content_types() {
        for (path, mime) in [
            ("app.js", "text/javascript"),
            ("symbols.js", "text/javascript"),
            ("maplibre-gl.mjs", "text/javascript"),
            ("maplibre-gl-worker.mjs", "text/javascript"),
            ("h3-js.mjs", "text/javascript"),
            ("maplibre-gl.css", "text/css"),
            ("style.css", "text/css"),
            ("basemap.geojson", "application/geo+json"),
        ] {
            let found = get(path);
            assert_eq!(found.map(|(_, m)| m), Some(mime), "{path}");
            assert!(found.is_some_and(|(b, _)| !b.is_empty()), "{path} is empty");
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "nope.js",
            "../Cargo.toml",
            "dist/app.js",
            "APP.JS",
            "app.js/",
        ] {
            assert!(get(path).is_none(), "{path}");
        }
    }
}
