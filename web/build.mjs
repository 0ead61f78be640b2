// Builds web/dist/: everything the browser page needs, flat in one folder,
// so the viewer binary can embed it and serve each file at `/<name>`.
//
//   node build.mjs
//
// Inputs: index.html, app.js, style.css (this folder) and the npm packages
// maplibre-gl, h3-js, pmtiles, world-atlas and topojson-client (run `npm ci`
// first).
// Output files are only rewritten when their content changes, so that the
// Rust build (crates/viewer/build.rs) does not recompile without need.

import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { feature, mesh } from 'topojson-client';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, 'node_modules');
const dist = join(here, 'dist');

// The base map covers this box (west, south, east, north) around northern
// Germany; everything outside is cut away to keep the file small.
const BASEMAP_BOX = [5, 50, 16, 57];
// Decimal places kept in base map coordinates (1e-4 degree is about 10 m).
const COORD_DIGITS = 4;

/** Reads a file as UTF-8 text, failing with a hint when it is missing. */
function readText(path) {
  if (!existsSync(path)) {
    throw new Error(`missing ${path} (did you run "npm ci" in web/?)`);
  }
  return readFileSync(path, 'utf8');
}

/** Drops a trailing `//# sourceMappingURL=` comment: the maps are not shipped. */
function stripSourceMap(code) {
  return code.replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, '\n');
}

// ---------------------------------------------------------------------------
// Clipping of base map geometry to the box.

/** Clips one closed ring against one half-plane (Sutherland-Hodgman step). */
function clipRingEdge(ring, inside, cross) {
  const out = [];
  for (let i = 0; i < ring.length; i += 1) {
    const cur = ring[i];
    const prev = ring[(i + ring.length - 1) % ring.length];
    const curIn = inside(cur);
    const prevIn = inside(prev);
    if (curIn) {
      if (!prevIn) out.push(cross(prev, cur));
      out.push(cur);
    } else if (prevIn) {
      out.push(cross(prev, cur));
    }
  }
  return out;
}

/** Point on segment a-b where coordinate `axis` equals `value`. */
function crossAt(a, b, axis, value) {
  const t = (value - a[axis]) / (b[axis] - a[axis]);
  const p = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
  p[axis] = value;
  return p;
}

/**
 * Clips a polygon ring to the box. The result may run along the box edges,
 * which is harmless for a fill. Returns null when nothing is left.
 */
function clipRing(ring, [w, s, e, n]) {
  // GeoJSON rings repeat the first point at the end; work on the open ring.
  let pts = ring.slice(0, -1);
  const edges = [
    [(p) => p[0] >= w, (a, b) => crossAt(a, b, 0, w)],
    [(p) => p[0] <= e, (a, b) => crossAt(a, b, 0, e)],
    [(p) => p[1] >= s, (a, b) => crossAt(a, b, 1, s)],
    [(p) => p[1] <= n, (a, b) => crossAt(a, b, 1, n)],
  ];
  for (const [inside, cross] of edges) {
    if (pts.length === 0) break;
    pts = clipRingEdge(pts, inside, cross);
  }
  pts = dedupe(pts.map(roundPoint));
  if (pts.length < 3) return null;
  pts.push(pts[0]);
  return pts;
}

/** Liang-Barsky: the part of segment a-b inside the box, or null. */
function clipSegment(a, b, [w, s, e, n]) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  let t0 = 0;
  let t1 = 1;
  const checks = [
    [-dx, a[0] - w],
    [dx, e - a[0]],
    [-dy, a[1] - s],
    [dy, n - a[1]],
  ];
  for (const [p, q] of checks) {
    if (p === 0) {
      if (q < 0) return null;
    } else {
      const r = q / p;
      if (p < 0) {
        if (r > t1) return null;
        if (r > t0) t0 = r;
      } else {
        if (r < t0) return null;
        if (r < t1) t1 = r;
      }
    }
  }
  return [
    [a[0] + t0 * dx, a[1] + t0 * dy],
    [a[0] + t1 * dx, a[1] + t1 * dy],
  ];
}

/** Clips a line string to the box; it may fall apart into several pieces. */
function clipLine(line, box) {
  const pieces = [];
  let current = null;
  for (let i = 1; i < line.length; i += 1) {
    const seg = clipSegment(line[i - 1], line[i], box);
    if (!seg) {
      current = null;
      continue;
    }
    const [a, b] = seg.map(roundPoint);
    if (current && samePoint(current[current.length - 1], a)) {
      current.push(b);
    } else {
      current = [a, b];
      pieces.push(current);
    }
  }
  return pieces.map(dedupe).filter((piece) => piece.length >= 2);
}

function roundPoint([x, y]) {
  const f = 10 ** COORD_DIGITS;
  return [Math.round(x * f) / f, Math.round(y * f) / f];
}

function samePoint(a, b) {
  return a[0] === b[0] && a[1] === b[1];
}

/** Removes consecutive duplicate points. */
function dedupe(points) {
  const out = [];
  for (const p of points) {
    if (out.length === 0 || !samePoint(out[out.length - 1], p)) out.push(p);
  }
  return out;
}

/** Polygon and MultiPolygon geometries as a list of polygons (ring lists). */
function polygonsOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === 'Polygon') return [geometry.coordinates];
  if (geometry.type === 'MultiPolygon') return geometry.coordinates;
  return [];
}

/** LineString and MultiLineString geometries as a list of lines. */
function linesOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === 'LineString') return [geometry.coordinates];
  if (geometry.type === 'MultiLineString') return geometry.coordinates;
  return [];
}

/** Land polygons and country borders inside the box, as a FeatureCollection. */
function buildBasemap() {
  const atlas = join(modules, 'world-atlas');
  const land = JSON.parse(readText(join(atlas, 'land-10m.json')));
  const countries = JSON.parse(readText(join(atlas, 'countries-10m.json')));

  const landPolygons = [];
  const landGeo = feature(land, land.objects.land);
  const landFeatures = landGeo.type === 'FeatureCollection' ? landGeo.features : [landGeo];
  for (const f of landFeatures) {
    for (const polygon of polygonsOf(f.geometry)) {
      const outer = clipRing(polygon[0], BASEMAP_BOX);
      if (!outer) continue;
      const holes = polygon
        .slice(1)
        .map((ring) => clipRing(ring, BASEMAP_BOX))
        .filter(Boolean);
      landPolygons.push([outer, ...holes]);
    }
  }

  // Borders between two countries only (coastlines come from the land fill).
  const borderGeo = mesh(countries, countries.objects.countries, (a, b) => a !== b);
  const borderLines = [];
  for (const line of linesOf(borderGeo)) {
    borderLines.push(...clipLine(line, BASEMAP_BOX));
  }

  return {
    type: 'FeatureCollection',
    features: [
      {
        type: 'Feature',
        properties: { layer: 'land' },
        geometry: { type: 'MultiPolygon', coordinates: landPolygons },
      },
      {
        type: 'Feature',
        properties: { layer: 'border' },
        geometry: { type: 'MultiLineString', coordinates: borderLines },
      },
    ],
  };
}

// ---------------------------------------------------------------------------
// Output.

// Marks files being written; they never end up in the embedded table.
const TMP_MARK = '.tmp-';

/**
 * Writes a file unless it already holds exactly this content. Writes go to
 * a temporary name first and are renamed into place, so a build running at
 * the same time never reads half a file.
 */
function writeIfChanged(name, content) {
  const path = join(dist, name);
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  if (existsSync(path) && readFileSync(path).equals(bytes)) return;
  const tmp = `${path}${TMP_MARK}${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

function main() {
  mkdirSync(dist, { recursive: true });

  const maplibre = join(modules, 'maplibre-gl', 'dist');
  const h3 = join(modules, 'h3-js', 'dist', 'browser');

  const files = new Map();
  // MapLibre looks for its worker next to itself (`./maplibre-gl-worker.mjs`).
  files.set('maplibre-gl.mjs', stripSourceMap(readText(join(maplibre, 'maplibre-gl.mjs'))));
  files.set(
    'maplibre-gl-worker.mjs',
    stripSourceMap(readText(join(maplibre, 'maplibre-gl-worker.mjs'))),
  );
  files.set('maplibre-gl.css', readText(join(maplibre, 'maplibre-gl.css')));
  // h3-js ships a self-contained ES module built for the browser (the
  // package's "browser" field maps its ES entry to it): no imports, no Node.
  files.set('h3-js.mjs', stripSourceMap(readText(join(h3, 'h3-js.es.js'))));
  // PMTiles (one-file tile archives read with HTTP range requests): the
  // package's self-contained browser build, which defines `pmtiles`.
  files.set(
    'pmtiles.js',
    stripSourceMap(readText(join(modules, 'pmtiles', 'dist', 'pmtiles.js'))),
  );
  files.set('basemap.geojson', JSON.stringify(buildBasemap()));
  for (const own of ['index.html', 'app.js', 'symbols.js', 'style.css']) {
    files.set(own, readText(join(here, own)));
  }

  for (const [name, content] of files) writeIfChanged(name, content);
  // Leftovers of earlier builds would otherwise be embedded and served.
  for (const name of readdirSync(dist)) {
    if (!files.has(name) && !name.includes(TMP_MARK)) {
      rmSync(join(dist, name), { recursive: true, force: true });
    }
  }

  const sizes = [...files.keys()]
    .map((name) => `${name} ${readFileSync(join(dist, name)).length}`)
    .join(', ');
  console.log(`web/dist: ${sizes}`);
}

try {
  main();
} catch (err) {
  console.error(`build.mjs: ${err.message}`);
  process.exit(1);
}
