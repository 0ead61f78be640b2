// RESCUE MATE web client: one page, plain ES modules, everything served by
// the viewer itself (no CDN, no bundler).
//
// Page parameters (query string):
//   space=<name>        picture to show (default `live`; `drill-*` = exercise)
//   mode=wall|tablet    layout: wall = large type for control-room screens
//                       (default), tablet = compact, touch-sized controls
//   style=<url>         MapLibre style URL to use instead of the built-in
//                       offline base map (e.g. a city extract served by a
//                       tile server the browser can reach); the picture's
//                       own layers are drawn on top of it. The style must not
//                       rely on this page for glyphs: all labels here are HTML.
//                       Its sources may be `pmtiles://<url>` (a PMTiles file on
//                       any server that answers HTTP range requests).
//   center=<lon>,<lat>  start position (default Hamburg: 9.99,53.55)
//   zoom=<z>            start zoom (default 11)
//   token=<token>       passed on to the websocket (`/ws?token=`) and to REST
//                       calls (`Authorization: Bearer`) where the server
//                       requires one
//   sector=<w>,<s>,<e>,<n>  start on this box (a field commander's sector);
//                       the subscription follows the viewport from there
//   fit=0               wall: do not re-frame the map on the activity
//   sound=1             a short tone for each new alert of level 2 and up
//                       (browsers allow sound only after a first click or
//                       tap on the page; the status bar's bell toggles it)
//   hours=<h>           alert history shown (default 6 hours)
//
// Websocket protocol (DESIGN §5; summarised in README.md): after connecting the page
// sends `subscribe` with its viewport; the server answers with a `snapshot`
// and then pushes `delta`s with consecutive `seq` numbers. A gap in `seq`
// makes the page ask for a fresh snapshot.
//
// Time slider: where the server keeps an event log (`/api/v1/{space}/history`
// answers), a range control goes back over it. A picture of the past is
// fetched over REST (`snapshot?at=T`) and shown instead of the live one;
// deltas arriving meanwhile are dropped, and going back to live asks the
// socket for a fresh snapshot.
//
// Test hooks: `document.documentElement.dataset.state` is `live` while the
// socket is open and a current snapshot is held, `reconnecting` otherwise,
// `past` while a picture of the past is shown and `loading` while the first
// one is being fetched; `window.rmStats()` returns counts of what the page
// holds, `mode` (`live` or `past`), `at` (epoch ms of the past picture
// shown, else null) and `log` (mission-log entries held);
// `dataset.map` becomes `loaded` once the map style has loaded, and
// `dataset.mapIdle` holds the time (ms) of the map's latest idle event.

import * as maplibregl from './maplibre-gl.mjs';
import { cellToBoundary } from './h3-js.mjs';
import { drawUnitSymbol, orgClass, unitSymbolId } from './symbols.js';

// ---------------------------------------------------------------------------
// Settings

const params = new URLSearchParams(window.location.search);
const SPACE = params.get('space') || 'live';
const MODE = params.get('mode') === 'tablet' ? 'tablet' : 'wall';
const STYLE_URL = params.get('style');
const TOKEN = params.get('token');
const FIT = MODE === 'wall' && params.get('fit') !== '0';
const ALERT_HISTORY_H = (() => {
  const h = Number(params.get('hours'));
  return params.has('hours') && Number.isFinite(h) && h > 0 ? h : 6;
})();

const HAMBURG = [9.99, 53.55];

/** `center=<lon>,<lat>` from the page URL, or Hamburg. */
function startCenter() {
  const parts = (params.get('center') || '').split(',').map(Number);
  const [lon, lat] = parts;
  const ok =
    parts.length === 2 &&
    Math.abs(lon) <= 180 &&
    Math.abs(lat) <= 85 &&
    parts.every(Number.isFinite);
  return ok ? [lon, lat] : HAMBURG;
}

/** `sector=<w>,<s>,<e>,<n>` from the page URL, or null. */
function startSector() {
  const b = (params.get('sector') || '').split(',').map(Number);
  const ok =
    b.length === 4 &&
    b.every(Number.isFinite) &&
    b[0] < b[2] &&
    b[1] < b[3] &&
    Math.abs(b[0]) <= 180 &&
    Math.abs(b[2]) <= 180 &&
    Math.abs(b[1]) <= 85 &&
    Math.abs(b[3]) <= 85;
  return ok ? b : null;
}

/** `zoom=<z>` from the page URL, or 11. */
function startZoom() {
  const z = Number(params.get('zoom'));
  return params.has('zoom') && Number.isFinite(z) && z >= 0 && z <= 22 ? z : 11;
}
// A tablet on a weak link waits a little longer before asking again.
const SUBSCRIBE_DEBOUNCE_MS = MODE === 'tablet' ? 400 : 200;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 5000;
const ACK_PENDING_MS = 10000;
const MAX_ALERTS_SHOWN = 200;
const SENSOR_LABEL_MIN_ZOOM = 10.5;
const HISTORY_REFRESH_MS = 10000;
const PAST_FETCH_DEBOUNCE_MS = 250;
// A slider this close to its right end (now) means live.
const LIVE_SNAP_MS = 3000;
const STEP_MS = 60000;
const MISSION_LOG_LIMIT = 100;
const MISSION_LOG_REFRESH_MS = 5000;
const MISSION_LOG_SOON_MS = 1000;
const UNIT_LABEL_MIN_ZOOM = 12.5;
// Call signs are HTML labels: only drawn while few units are in view.
const UNIT_LABEL_MAX = 250;
// An alert counts as new (flashes) this long after it first arrived.
const NEW_ALERT_MS = 20000;
// Cells fade with the age of their newest report (ms): aging, stale, old.
const CELL_AGE_STEPS_MS = [5 * 60000, 15 * 60000, 60 * 60000];
const CELL_AGE_SWEEP_MS = 15000;
// Wall: re-frame on the activity this often, unless someone touched the map
// within FIT_IDLE_MS.
const FIT_INTERVAL_MS = 60000;
const FIT_IDLE_MS = 120000;
// Where the wall looks for activity (the base map's box).
const FIT_AREA = [5, 50, 16, 57];
const FIT_MAX_ZOOM = 13.5;
// Symbol size per layout (the wall is read from across the room).
const UNIT_ICON_SCALE = MODE === 'wall' ? 1.15 : 0.85;

// Hazard / level colours 0..4 (kept in step with style.css).
const LEVEL_COLORS = ['#8ea3b8', '#f2d024', '#f28c28', '#e0302a', '#9b1fb0'];

/**
 * H3 resolution to ask for at a given map zoom. A tablet asks for one step
 * coarser: a seventh of the cells over a weak mobile link.
 */
function resForZoom(zoom) {
  let res = 10;
  if (zoom < 9.5) res = 6;
  else if (zoom < 10.5) res = 7;
  else if (zoom < 11.5) res = 8;
  else if (zoom < 13) res = 9;
  return MODE === 'tablet' ? Math.max(6, res - 1) : res;
}

// ---------------------------------------------------------------------------
// What the page holds

const state = {
  seq: null,
  drill: false,
  res: null,
  units: new Map(), // id -> UNIT
  sensors: new Map(), // id -> SENSOR
  incidents: new Map(), // id -> INCIDENT
  alerts: new Map(), // id -> ALERT
};

// When each alert was first seen on this page (ms; 0: it came with the first
// picture, so it is not news).
const alertSeen = new Map();
let firstPicture = true;

const conn = {
  ws: null,
  open: false,
  haveSnapshot: false, // a snapshot arrived on this connection and no gap since
  retryMs: RECONNECT_MIN_MS,
  retryTimer: null,
  lastMessageAt: null,
  pictureAt: null, // when the picture held was last current
  snapshots: 0, // live snapshots received (a resync counts one more)
};

const pendingAcks = new Map(); // alert id -> time the ack was sent

// Live or past, and how far back the event log reaches. Times are the
// server's clock: `serverNow()` extrapolates its last `/history` answer.
const timeline = {
  mode: 'live', // 'live' | 'past'
  want: null, // ms asked for while past
  at: null, // ms of the past picture shown (null until one arrived)
  from: null, // history range, ms
  to: null,
  toAt: 0, // Date.now() when `to` was read
  available: false, // the server keeps a log for this space
  loading: false,
  error: null,
  request: 0, // id of the newest past fetch; older answers are dropped
  timer: null,
  dragging: false,
};

const missionLog = {
  entries: [], // oldest first, as the server sends them
  key: null, // what was rendered last
  inflight: false,
  again: false,
  soonTimer: null,
};

const root = document.documentElement;
root.dataset.state = 'reconnecting';
document.body.classList.add(`mode-${MODE}`);
document.body.classList.remove(MODE === 'wall' ? 'mode-tablet' : 'mode-wall');
if (MODE === 'tablet') document.body.classList.add('alerts-closed');

window.rmStats = () => ({
  seq: state.seq,
  cells: cellSource.size,
  units: state.units.size,
  sensors: state.sensors.size,
  alerts: state.alerts.size,
  mode: timeline.mode,
  at: timeline.mode === 'past' ? timeline.at : null,
  log: missionLog.entries.length,
  res: state.res,
  snapshots: conn.snapshots,
  offline: document.body.classList.contains('offline'),
  feed: feed.up === null ? null : feed.up ? 'up' : 'down',
  cell_updates: { ...cellSource.counts },
  unit_updates: { ...unitSource.counts },
  fit: fitInfo,
});

// Test hooks for the unit symbols: the units the symbol layer drew, with
// the image each one got, and a pixel of such an image.
window.rmUnitSymbols = () =>
  map
    .queryRenderedFeatures({ layers: ['units-symbol'] })
    .map((f) => ({ id: f.properties.id, icon: f.properties.icon, has: map.hasImage(f.properties.icon) }));
window.rmMapBounds = () => map.getBounds().toArray().flat();
window.rmZoom = () => map.getZoom();
window.rmIconScale = () => map.getLayoutProperty('units-symbol', 'icon-size').at(-1);
window.rmSymbolPixel = (icon, x, y) => {
  const img = map.getImage(icon);
  if (!img) return null;
  const { width, data } = img.data;
  const r = img.pixelRatio || 1;
  const i = (Math.round(y * r) * width + Math.round(x * r)) * 4;
  return [data[i], data[i + 1], data[i + 2], data[i + 3]];
};

// ---------------------------------------------------------------------------
// Map

/** The built-in offline style: sea, land and borders of northern Germany. */
function offlineStyle() {
  return {
    version: 8,
    name: 'rescuemate-offline',
    sources: {
      basemap: {
        type: 'geojson',
        data: new URL('./basemap.geojson', window.location.href).href,
        attribution: 'Natural Earth',
      },
    },
    layers: [
      { id: 'background', type: 'background', paint: { 'background-color': '#0f2c47' } },
      {
        id: 'land',
        type: 'fill',
        source: 'basemap',
        filter: ['==', ['get', 'layer'], 'land'],
        paint: { 'fill-color': '#2f3945', 'fill-outline-color': '#3d6a8c' },
      },
      {
        id: 'coast',
        type: 'line',
        source: 'basemap',
        filter: ['==', ['get', 'layer'], 'land'],
        paint: { 'line-color': '#3d6a8c', 'line-width': 1.2 },
      },
      {
        id: 'border',
        type: 'line',
        source: 'basemap',
        filter: ['==', ['get', 'layer'], 'border'],
        paint: { 'line-color': '#8b7fa3', 'line-width': 1.5, 'line-dasharray': [3, 2] },
      },
    ],
  };
}

// `pmtiles://<url>` sources in a style (`style=`) read a PMTiles archive
// straight from any HTTP server that answers range requests.
if (window.pmtiles) {
  const protocol = new window.pmtiles.Protocol();
  maplibregl.addProtocol('pmtiles', protocol.tile);
}

const map = new maplibregl.Map({
  container: 'map',
  style: STYLE_URL || offlineStyle(),
  center: startCenter(),
  zoom: startZoom(),
  dragRotate: false,
  pitchWithRotate: false,
  maxPitch: 0,
  fadeDuration: 0,
});
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
map.touchZoomRotate.disableRotation();
if (startSector()) map.fitBounds(startSector(), { padding: 20, animate: false });

let mapReady = false;

const EMPTY = { type: 'FeatureCollection', features: [] };

/**
 * A cell's value as drawn: its feature state where a delta set one (see
 * LiveSource), else the property it was handed over with.
 */
function cellValue(prop) {
  return ['coalesce', ['feature-state', prop], ['get', prop]];
}

function levelColor(prop, value = ['get', prop]) {
  return [
    'match',
    value,
    1,
    LEVEL_COLORS[1],
    2,
    LEVEL_COLORS[2],
    3,
    LEVEL_COLORS[3],
    4,
    LEVEL_COLORS[4],
    LEVEL_COLORS[0],
  ];
}

/** Adds the picture's own sources and layers on top of whatever style. */
function addOverlay() {
  map.addSource('incidents', { type: 'geojson', data: EMPTY });
  // Cells and units are keyed by their id, so a delta changes only the
  // features it names (`updateData`) instead of replacing the whole set.
  map.addSource('cells', { type: 'geojson', data: EMPTY, promoteId: 'h3' });
  map.addSource('units', { type: 'geojson', data: EMPTY, promoteId: 'id' });
  map.addLayer({
    id: 'incidents-fill',
    type: 'fill',
    source: 'incidents',
    filter: ['in', ['geometry-type'], ['literal', ['Polygon', 'MultiPolygon']]],
    paint: { 'fill-color': levelColor('severity'), 'fill-opacity': 0.16 },
  });
  // Cells fade with the age of their newest report (`age` 0–3).
  const fade = ['at', cellValue('age'), ['literal', [1, 0.7, 0.4, 0.2]]];
  const hazard = cellValue('hazard');
  const units = cellValue('units');
  map.addLayer({
    id: 'cells-fill',
    type: 'fill',
    source: 'cells',
    paint: {
      'fill-color': levelColor('hazard', hazard),
      'fill-opacity': [
        '*',
        fade,
        ['case', ['>', hazard, 0], 0.45, ['>', units, 0], 0.22, 0.1],
      ],
    },
  });
  map.addLayer({
    id: 'cells-line',
    type: 'line',
    source: 'cells',
    paint: {
      'line-color': levelColor('hazard', hazard),
      'line-width': ['case', ['>', hazard, 0], 1.4, 0.8],
      'line-opacity': [
        '*',
        fade,
        ['case', ['>', hazard, 0], 0.95, ['>', units, 0], 0.65, 0.3],
      ],
    },
  });
  // Stale and old cells get a dashed grey outline on top: not current.
  map.addLayer({
    id: 'cells-stale',
    type: 'line',
    source: 'cells',
    paint: {
      'line-color': '#c9d1da',
      'line-width': 1,
      'line-dasharray': [2, 2],
      'line-opacity': ['case', ['>=', cellValue('age'), 2], 1, 0],
    },
  });
  map.addLayer({
    id: 'incidents-line',
    type: 'line',
    source: 'incidents',
    paint: {
      'line-color': levelColor('severity'),
      'line-width': 3,
      'line-dasharray': [2, 1.5],
    },
  });
  map.addLayer({
    id: 'incidents-point',
    type: 'circle',
    source: 'incidents',
    filter: ['==', ['geometry-type'], 'Point'],
    paint: {
      'circle-radius': 9,
      'circle-color': levelColor('severity'),
      'circle-opacity': 0.6,
      'circle-stroke-color': '#fff',
      'circle-stroke-width': 2,
    },
  });
  // Units: tactical symbols drawn into images (symbols.js), silent and
  // on-mission units on top.
  map.addLayer({
    id: 'units-symbol',
    type: 'symbol',
    source: 'units',
    layout: {
      'icon-image': ['get', 'icon'],
      'icon-size': [
        'interpolate',
        ['linear'],
        ['zoom'],
        8,
        0.45 * UNIT_ICON_SCALE,
        11,
        0.75 * UNIT_ICON_SCALE,
        14,
        UNIT_ICON_SCALE,
      ],
      'icon-allow-overlap': true,
      'icon-ignore-placement': true,
      'symbol-sort-key': ['get', 'rank'],
    },
  });
  for (const layer of ['units-symbol']) {
    map.on('click', layer, (ev) => showUnitPopup(ev));
    map.on('mouseenter', layer, () => {
      map.getCanvas().style.cursor = 'pointer';
    });
    map.on('mouseleave', layer, () => {
      map.getCanvas().style.cursor = '';
    });
  }
}

/** Adds the image of a unit symbol unless the map has it already. */
function ensureSymbol(icon) {
  if (map.hasImage(icon)) return;
  const img = drawUnitSymbol(icon, SYMBOL_RATIO);
  if (img) map.addImage(icon, img, { pixelRatio: SYMBOL_RATIO });
}
const SYMBOL_RATIO = Math.max(2, Math.ceil(window.devicePixelRatio || 1));

const popup = new maplibregl.Popup({ closeButton: true, maxWidth: '24em' });

function showUnitPopup(ev) {
  const f = ev.features && ev.features[0];
  const u = f && state.units.get(f.properties.id);
  if (!u) return;
  const el = document.createElement('div');
  el.className = 'unit-popup';
  el.textContent = unitDescription(u);
  popup.setLngLat(f.geometry.coordinates).setDOMContent(el).addTo(map);
}

map.on('load', () => {
  addOverlay();
  mapReady = true;
  root.dataset.map = 'loaded';
  cellSource.all = true;
  unitSource.all = true;
  dirty.incidents = true;
  scheduleFlush();
  fitToActivity(true);
});
// A style set later (the fallback base map) drops the picture's layers.
map.on('style.load', () => {
  if (!mapReady || map.getSource('cells')) return;
  addOverlay();
  cellSource.all = true;
  unitSource.all = true;
  dirty.incidents = true;
  scheduleFlush();
});
map.on('idle', () => {
  root.dataset.mapIdle = String(Date.now());
});
let fellBack = false;
map.on('error', (ev) => {
  // Without a listener MapLibre reports these itself; a missing tile or a
  // bad style URL must not look like a crash of the page.
  console.warn('map:', ev && ev.error ? ev.error.message || ev.error : ev);
  if (STYLE_URL && !mapReady && !fellBack && !map.isStyleLoaded()) {
    // The given style did not load: show the picture on the built-in map.
    fellBack = true;
    console.warn(`map: style ${STYLE_URL} failed, using the built-in base map`);
    map.setStyle(offlineStyle());
  }
});

function updateZoomClass() {
  const zoom = map.getZoom();
  map.getContainer().classList.toggle('zoom-low', zoom < SENSOR_LABEL_MIN_ZOOM);
  map.getContainer().classList.toggle('zoom-far', zoom < UNIT_LABEL_MIN_ZOOM);
}
map.on('zoom', updateZoomClass);
updateZoomClass();
map.on('moveend', () => {
  dirty.labels = true;
  scheduleFlush();
});

// ---------------------------------------------------------------------------
// Wall: the map frames the activity by itself

let lastInteraction = 0;
let fitInfo = null; // what the last framing covered, for tests
for (const ev of ['dragstart', 'zoomstart', 'wheel', 'touchstart', 'mousedown']) {
  map.on(ev, (e) => {
    if (e.originalEvent) lastInteraction = Date.now();
  });
}

/**
 * Extends `box` ([w, s, e, n]) by the coordinates of a GeoJSON geometry;
 * returns how many points it took.
 */
function extendBox(box, coords) {
  if (!Array.isArray(coords)) return 0;
  if (typeof coords[0] === 'number') {
    if (!Number.isFinite(coords[0]) || !Number.isFinite(coords[1])) return 0;
    box[0] = Math.min(box[0], coords[0]);
    box[1] = Math.min(box[1], coords[1]);
    box[2] = Math.max(box[2], coords[0]);
    box[3] = Math.max(box[3], coords[1]);
    return 1;
  }
  let n = 0;
  for (const c of coords) n += extendBox(box, c);
  return n;
}

/**
 * What is going on in a whole picture: incidents, sensors above level 0 and
 * units on a mission (or, when nothing is, every unit and sensor), as a box.
 */
function activityBox(picture) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  let n = 0;
  const add = (coords) => {
    if (extendBox(box, coords) > 0) n += 1;
  };
  for (const inc of picture.incidents || []) {
    if (inc.geometry?.type === 'GeometryCollection') {
      for (const g of inc.geometry.geometries || []) add(g.coordinates);
    } else add(inc.geometry?.coordinates);
  }
  for (const x of picture.sensors || []) if ((x.level ?? 0) > 0) add([x.lon, x.lat]);
  for (const u of picture.units || []) if (u.status_class === 'on_mission') add([u.lon, u.lat]);
  if (n === 0) {
    for (const x of [...(picture.sensors || []), ...(picture.units || [])]) add([x.lon, x.lat]);
  }
  if (!Number.isFinite(box[0])) return null;
  // A single place still needs a few hundred metres around it.
  const pad = 0.004;
  return { box: [box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad], items: n };
}

async function fitToActivity(first = false) {
  if (!FIT || timeline.mode === 'past' || startSector()) return;
  if (Date.now() - lastInteraction < FIT_IDLE_MS) return;
  let body;
  try {
    const res = await fetch(
      apiUrl('snapshot', { res: 6, bbox: FIT_AREA.join(',') }),
      apiInit(),
    );
    body = res.ok ? await readJson(res) : null;
  } catch {
    return; // offline: keep the view
  }
  const found = body && activityBox(body);
  if (!found || Date.now() - lastInteraction < FIT_IDLE_MS || timeline.mode === 'past') return;
  map.fitBounds(found.box, {
    padding: 60,
    maxZoom: FIT_MAX_ZOOM,
    duration: first ? 0 : 1500,
  });
  fitInfo = { box: found.box, items: found.items, at: Date.now() };
  root.dataset.fit = String(fitInfo.at);
}
if (FIT) setInterval(fitToActivity, FIT_INTERVAL_MS);

let subscribeTimer = null;
map.on('moveend', () => {
  clearTimeout(subscribeTimer);
  // In the past the new viewport is fetched over REST; the socket is asked
  // again on the way back to live.
  subscribeTimer = setTimeout(
    () => (timeline.mode === 'past' ? fetchPast() : sendSubscribe()),
    SUBSCRIBE_DEBOUNCE_MS,
  );
});

// ---------------------------------------------------------------------------
// Rendering, coalesced to at most once per animation frame

/**
 * A GeoJSON source kept in step with a map of features by id: after a full
 * load everything is handed over once (`setData`); after that only the
 * features changed or removed since the last frame (`updateData`), so the
 * map updates in place instead of redrawing everything per delta.
 * `prepare(feature)` runs before a feature is handed over (unit symbols
 * make their image there).
 *
 * With `state(feature)`, a feature the map already holds whose geometry
 * cannot change (a hexagon) is updated through its feature state instead:
 * no re-index in MapLibre's worker at all, only its paint values. The
 * layers read `feature-state` first, then the properties (`cellValue`).
 *
 * One hand-over at a time: while MapLibre's worker is still indexing the
 * previous one, changes gather here and go together once it is done. A big
 * picture updated faster than the worker can index it thus costs one
 * re-index per worker round instead of a growing queue of them.
 */
class LiveSource {
  constructor(id, { prepare = () => {}, state = null } = {}) {
    this.id = id;
    this.prepare = prepare;
    this.state = state;
    this.features = new Map();
    this.changed = new Map(); // id -> feature, or null when removed
    this.inMap = new Set(); // ids handed over to the map
    this.all = true;
    this.busy = false;
    this.counts = { full: 0, diff: 0, state: 0, features: 0 };
  }

  /** Hands `work` to the map, and flushes again once the worker is done. */
  handOver(work) {
    this.busy = true;
    const done = () => {
      this.busy = false;
      if (this.all || this.changed.size) scheduleFlush();
    };
    Promise.resolve(work).then(done, (err) => {
      console.warn(`map source ${this.id}:`, err);
      done();
    });
  }

  get size() {
    return this.features.size;
  }

  set(id, feature) {
    this.features.set(id, feature);
    if (!this.all) this.changed.set(id, feature);
  }

  delete(id) {
    if (this.features.delete(id) && !this.all) this.changed.set(id, null);
  }

  clear() {
    this.features.clear();
    this.changed.clear();
    this.all = true;
  }

  flush() {
    const source = map.getSource(this.id);
    if (!source || this.busy) return;
    if (this.all) {
      const features = [...this.features.values()];
      for (const f of features) this.prepare(f);
      if (this.state) {
        // States of the picture before would override the new properties.
        map.removeFeatureState({ source: this.id });
        this.inMap = new Set(this.features.keys());
      }
      this.handOver(source.setData({ type: 'FeatureCollection', features }));
      this.all = false;
      this.changed.clear();
      this.counts.full += 1;
      this.counts.features += features.length;
      return;
    }
    if (this.changed.size === 0) return;
    const add = [];
    const remove = [];
    let states = 0;
    for (const [id, f] of this.changed) {
      if (f && this.state && this.inMap.has(id)) {
        map.setFeatureState({ source: this.id, id }, this.state(f));
        states += 1;
      } else if (f) {
        this.prepare(f);
        add.push(f);
        if (this.state) this.inMap.add(id);
      } else {
        remove.push(id);
        if (this.state && this.inMap.delete(id)) map.removeFeatureState({ source: this.id, id });
      }
    }
    this.changed.clear();
    this.counts.features += add.length + remove.length + states;
    if (states) this.counts.state += 1;
    if (add.length === 0 && remove.length === 0) return;
    this.handOver(source.updateData({ add, remove }));
    this.counts.diff += 1;
  }
}

const cellSource = new LiveSource('cells', {
  state: ({ properties: p }) => ({ hazard: p.hazard, units: p.units, age: p.age }),
});
const unitSource = new LiveSource('units', { prepare: (f) => ensureSymbol(f.properties.icon) });

const dirty = {
  incidents: false,
  alerts: false,
  allSensors: false,
  labels: false,
  sensors: new Set(),
};
let flushPending = false;

function scheduleFlush() {
  if (flushPending) return;
  flushPending = true;
  window.requestAnimationFrame(flush);
}

function flush() {
  flushPending = false;
  if (mapReady) {
    cellSource.flush();
    unitSource.flush();
    if (dirty.labels) {
      syncUnitLabels();
      dirty.labels = false;
    }
    if (dirty.incidents) {
      map.getSource('incidents')?.setData({
        type: 'FeatureCollection',
        features: [...state.incidents.values()].map(incidentFeature).filter(Boolean),
      });
      incidentLabels.sync(state.incidents, null, true);
      dirty.incidents = false;
    }
  }
  sensorMarkers.sync(state.sensors, dirty.sensors, dirty.allSensors);
  dirty.sensors.clear();
  dirty.allSensors = false;
  if (dirty.alerts) {
    renderAlerts();
    dirty.alerts = false;
  }
  renderStatus();
}

/**
 * HTML markers keyed by entity id. `create(item)` builds the element,
 * `render(el, item)` fills it, `key(item)` says when a re-render is due and
 * `lngLat(item)` where it goes (null: not shown).
 */
class MarkerSet {
  constructor({ create, render, key, lngLat, anchor = 'center' }) {
    Object.assign(this, { create, render, key, lngLat, anchor });
    this.entries = new Map(); // id -> { marker, el, key, pos }
  }

  sync(items, ids, all) {
    if (all) {
      for (const id of [...this.entries.keys()]) if (!items.has(id)) this.remove(id);
      for (const [id, item] of items) this.upsert(id, item);
      return;
    }
    for (const id of ids) {
      const item = items.get(id);
      if (item) this.upsert(id, item);
      else this.remove(id);
    }
  }

  upsert(id, item) {
    const pos = this.lngLat(item);
    if (!pos) {
      this.remove(id);
      return;
    }
    let entry = this.entries.get(id);
    if (!entry) {
      // MapLibre owns the classes of the element it positions: draw into a
      // child so that re-rendering never clobbers them.
      const el = this.create(item);
      el.dataset.id = String(id);
      const holder = document.createElement('div');
      holder.append(el);
      const marker = new maplibregl.Marker({ element: holder, anchor: this.anchor });
      marker.setLngLat(pos).addTo(map);
      entry = { marker, el, key: null, pos };
      this.entries.set(id, entry);
    } else if (entry.pos[0] !== pos[0] || entry.pos[1] !== pos[1]) {
      entry.marker.setLngLat(pos);
      entry.pos = pos;
    }
    const key = this.key(item);
    if (key !== entry.key) {
      this.render(entry.el, item);
      entry.key = key;
    }
  }

  remove(id) {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.marker.remove();
    this.entries.delete(id);
  }
}

function validLngLat(lon, lat) {
  return Number.isFinite(lon) && Number.isFinite(lat) ? [lon, lat] : null;
}

/** A unit's tooltip and popup text. */
function unitDescription(u) {
  return [
    `${u.callsign || u.id} (${u.type || '?'}, ${u.org || '?'})`,
    `status ${u.status ?? '–'}${u.status_text ? ` ${u.status_text}` : ''} (${u.status_class || '?'})`,
    `${u.freshness || ''}, ${ageText(u.ts_ms)} ago${u.source ? `, via ${u.source}` : ''}`,
    ...(u.silent ? ['SILENT: no report for too long in this status'] : []),
    ...(u.sources || []).map(
      (s) =>
        `  ${s.source || 'unnamed'}: ±${Math.round(s.accuracy)} m, ` +
        `${Math.round(s.weight * 100)} %${s.jump ? ', jumped' : ''}`,
    ),
    ...(u.conflict ? ['sources disagree on the position'] : []),
  ].join('\n');
}

// Drawing order: silent units on top, then units on a mission.
const STATUS_RANK = { on_mission: 2, available: 1 };

/** The symbol layer's feature of a unit, or null when it has no position. */
function unitFeature(u) {
  const pos = validLngLat(u.lon, u.lat);
  if (!pos) return null;
  return {
    type: 'Feature',
    geometry: { type: 'Point', coordinates: pos },
    properties: {
      id: u.id,
      icon: unitSymbolId(u),
      rank: (u.silent ? 10 : 0) + (STATUS_RANK[u.status_class] || 0),
    },
  };
}

function setUnit(u) {
  const f = unitFeature(u);
  if (f) unitSource.set(u.id, f);
  else unitSource.delete(u.id);
}

/** Call signs under the symbols, while few enough units are in view. */
const unitLabels = new MarkerSet({
  anchor: 'top',
  create() {
    return document.createElement('div');
  },
  render(el, u) {
    el.className = `unit-label org-${orgClass(u.org)}${u.silent ? ' silent' : ''}`;
    el.textContent = u.callsign || u.id;
  },
  key: (u) => [u.callsign, u.org, u.silent].join('|'),
  lngLat: (u) => validLngLat(u.lon, u.lat),
});

function syncUnitLabels() {
  const shown = new Map();
  if (map.getZoom() >= UNIT_LABEL_MIN_ZOOM) {
    const b = map.getBounds();
    for (const [id, u] of state.units) {
      if (Number.isFinite(u.lon) && Number.isFinite(u.lat) && b.contains([u.lon, u.lat])) {
        shown.set(id, u);
        if (shown.size > UNIT_LABEL_MAX) break;
      }
    }
  }
  unitLabels.sync(shown.size > UNIT_LABEL_MAX ? new Map() : shown, null, true);
}

function span(className) {
  const s = document.createElement('span');
  s.className = className;
  return s;
}

function formatValue(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a < 10) return v.toFixed(2);
  if (a < 100) return v.toFixed(1);
  return v.toFixed(0);
}

/**
 * Trend arrow of a sensor from its change per hour: flat within 2 % of its
 * value (or 0.02 for values near 0) per hour, steep beyond ten times that.
 */
function trendArrow(s) {
  const t = s.trend_per_h;
  if (typeof t !== 'number' || !Number.isFinite(t)) return { arrow: '', dir: 'none' };
  const flat = Math.max(0.02, Math.abs(s.value || 0) * 0.02);
  if (Math.abs(t) < flat) return { arrow: '→', dir: 'flat' };
  if (t > 0) return t > 10 * flat ? { arrow: '↑', dir: 'up' } : { arrow: '↗', dir: 'up' };
  return t < -10 * flat ? { arrow: '↓', dir: 'down' } : { arrow: '↘', dir: 'down' };
}

const sensorMarkers = new MarkerSet({
  anchor: 'left',
  create() {
    const el = document.createElement('div');
    el.append(span('dot'), span('val'), span('trend'), span('lost'));
    return el;
  },
  render(el, s) {
    el.className = `sensor lvl-${s.level ?? 0} fr-${s.freshness || 'fresh'} q-${s.quality || 'ok'}`;
    const text = `${formatValue(s.value)}${s.unit ? ` ${s.unit}` : ''}`;
    el.children[1].textContent = text;
    const trend = trendArrow(s);
    el.children[2].textContent = trend.arrow;
    el.children[2].dataset.dir = trend.dir;
    el.children[3].textContent = s.freshness === 'lost' ? 'LOST' : '';
    const quality =
      s.quality && s.quality !== 'ok' ? `, ${s.quality} (${s.quality_reason || '?'})` : '';
    const perH =
      typeof s.trend_per_h === 'number' ? `, ${s.trend_per_h > 0 ? '+' : ''}${formatValue(s.trend_per_h)} ${s.unit || ''}/h` : '';
    el.title = `${s.name || s.id} (${s.kind}): ${text}${perH}, level ${s.level ?? 0}, ${s.freshness || ''}${quality}`;
  },
  key: (s) =>
    [
      s.value,
      s.unit,
      s.level,
      s.freshness,
      s.name,
      s.kind,
      s.quality,
      s.quality_reason,
      trendArrow(s).arrow,
    ].join('|'),
  lngLat: (s) => validLngLat(s.lon, s.lat),
});

/**
 * Where an incident's label goes: the middle of the top edge of its extent,
 * so that the label (anchored at its bottom) sits above the area instead of
 * covering the units inside it.
 */
function labelPoint(geometry) {
  let w = Infinity;
  let s = Infinity;
  let e = -Infinity;
  let n = -Infinity;
  const visit = (c) => {
    if (!Array.isArray(c)) return;
    if (typeof c[0] === 'number') {
      if (Number.isFinite(c[0]) && Number.isFinite(c[1])) {
        w = Math.min(w, c[0]);
        e = Math.max(e, c[0]);
        s = Math.min(s, c[1]);
        n = Math.max(n, c[1]);
      }
      return;
    }
    for (const inner of c) visit(inner);
  };
  if (geometry && geometry.type === 'GeometryCollection') {
    for (const g of geometry.geometries || []) visit(g.coordinates);
  } else if (geometry) {
    visit(geometry.coordinates);
  }
  if (!Number.isFinite(w)) return null;
  return [(w + e) / 2, n];
}

function incidentFeature(inc) {
  if (!inc.geometry || typeof inc.geometry !== 'object') return null;
  return {
    type: 'Feature',
    geometry: inc.geometry,
    properties: { id: inc.id, severity: inc.severity ?? 0, keyword: inc.keyword },
  };
}

const incidentLabels = new MarkerSet({
  anchor: 'bottom',
  create() {
    return document.createElement('div');
  },
  render(el, inc) {
    el.className = `incident-label sev-${inc.severity ?? 0}`;
    el.textContent = inc.title ? `${inc.keyword} · ${inc.title}` : inc.keyword || inc.id;
  },
  key: (inc) => [inc.keyword, inc.title, inc.severity].join('|'),
  lngLat: (inc) => labelPoint(inc.geometry),
});

// ---------------------------------------------------------------------------
// Status bar and alert panel

const $ = (id) => document.getElementById(id);

function ageText(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '–';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function renderStatus() {
  const live = conn.open && conn.haveSnapshot;
  const connEl = $('st-conn');
  let label = 'RECONNECTING';
  let cls = 'conn-reconnecting';
  if (timeline.mode === 'past') {
    label = `PAST ${clockText(timeline.at ?? timeline.want)}`;
    cls = 'conn-past';
  } else if (live) {
    label = 'LIVE';
    cls = 'conn-live';
  } else if (conn.open) {
    label = state.seq === null ? 'CONNECTING' : 'RESYNC';
    cls = 'conn-resync';
  }
  if (connEl.textContent !== label) connEl.textContent = label;
  connEl.className = `conn ${cls}`;
  $('st-space').textContent = SPACE;
  $('st-seq').textContent = state.seq === null ? '–' : String(state.seq);
  $('st-age').textContent = ageText(conn.lastMessageAt);
  const late = conn.lastMessageAt !== null && Date.now() - conn.lastMessageAt > 30000;
  $('st-age').parentElement.classList.toggle('late', late);
  $('st-units').textContent = String(state.units.size);
  $('st-sensors').textContent = String(state.sensors.size);
  $('st-cells').textContent = String(cellSource.size);
  $('st-res').textContent = state.res === null ? '' : `r${state.res}`;
  $('st-clock').textContent = new Date().toLocaleTimeString('de-DE', { hour12: false });

  // Offline (or resyncing) with a picture held: it stays, marked as old.
  const offline = timeline.mode === 'live' && !live && conn.pictureAt !== null;
  document.body.classList.toggle('offline', offline);
  $('offline-banner').hidden = !offline;
  if (offline) {
    const why = conn.open ? 'RESYNC' : 'OFFLINE';
    const text = `${why} — last picture as at ${clockText(conn.pictureAt)} (${ageText(conn.pictureAt)} old) · reconnecting…`;
    if ($('offline-text').textContent !== text) $('offline-text').textContent = text;
  }
  const lost =
    [...state.units.values()].filter((u) => u.freshness === 'lost').length +
    [...state.sensors.values()].filter((x) => x.freshness === 'lost').length;
  $('st-lost').textContent = String(lost);
  $('st-lost').parentElement.classList.toggle('late', lost > 0);

  const drill = state.drill || SPACE.startsWith('drill-');
  $('exercise').hidden = !drill;
  document.body.classList.toggle('drill', drill);
  $('drill-reset').hidden = !drill;
  renderTimebar();
}

/** Open alerts first, then the history of the last hours; newest first. */
function alertsShown(now) {
  const since = now - ALERT_HISTORY_H * 3600000;
  const newestFirst = (a, b) =>
    (b.ts_ms ?? 0) - (a.ts_ms ?? 0) || String(b.id).localeCompare(String(a.id));
  const all = [...state.alerts.values()];
  const open = all.filter((a) => !a.acked).sort(newestFirst);
  const history = all.filter((a) => a.acked && (a.ts_ms ?? 0) >= since).sort(newestFirst);
  return { open, history };
}

// The panel's items by alert id, each with what it was drawn from: an item
// is only rebuilt when its alert changed, so a button being pressed is not
// swapped away under the finger by an update of some other alert.
const alertItems = new Map(); // id -> { li, key }

function alertItem(a, now) {
  const seen = alertSeen.get(a.id) || 0;
  const isNew = !a.acked && seen > 0 && now - seen < NEW_ALERT_MS;
  const sentAt = pendingAcks.get(a.id);
  const pending = sentAt !== undefined && now - sentAt < ACK_PENDING_MS;
  const key = [a.level, a.acked, a.message, a.kind, a.entity, a.ts_ms, isNew, pending, timeline.mode].join('|');
  const held = alertItems.get(a.id);
  if (held && held.key === key) return held.li;
  const li = document.createElement('li');
  alertItems.set(a.id, { li, key });
  li.className = `alert lvl-${a.level ?? 0} ${a.acked ? 'acked' : 'open'}${isNew ? ' new' : ''}`;
  li.dataset.id = a.id;
  const msg = span('msg');
  msg.textContent = a.message || a.kind;
  const meta = span('meta');
  const time = typeof a.ts_ms === 'number' ? clockText(a.ts_ms) : '';
  meta.textContent = `${time} · ${a.kind}${a.entity ? ` · ${a.entity}` : ''}`;
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'ack';
  btn.textContent = a.acked ? 'acked' : pending ? '…' : 'Ack';
  // A picture of the past is not the place to acknowledge anything.
  btn.disabled = Boolean(a.acked) || pending || timeline.mode === 'past';
  btn.addEventListener('click', () => ackAlert(a.id));
  li.append(msg, meta, btn);
  return li;
}

const alertSep = document.createElement('li');
alertSep.className = 'alert-sep';
alertSep.textContent = `History · last ${ALERT_HISTORY_H} h`;

function renderAlerts() {
  const now = Date.now();
  const { open, history } = alertsShown(now);
  const anyNew = open.some((a) => (alertSeen.get(a.id) || 0) > now - NEW_ALERT_MS);
  $('alerts-open').textContent = String(open.length);
  $('alerts-toggle').classList.toggle('has-open', open.length > 0);
  $('alerts-toggle').classList.toggle('has-new', anyNew);
  $('alerts').classList.toggle('has-new', anyNew);
  $('alerts-summary').textContent =
    open.length + history.length ? `${open.length} open · ${history.length} acked in ${ALERT_HISTORY_H} h` : '';
  $('alerts-empty').hidden = open.length + history.length > 0;
  const items = open.slice(0, MAX_ALERTS_SHOWN).map((a) => alertItem(a, now));
  if (history.length) {
    items.push(alertSep, ...history.slice(0, MAX_ALERTS_SHOWN).map((a) => alertItem(a, now)));
  }
  for (const id of [...alertItems.keys()]) if (!state.alerts.has(id)) alertItems.delete(id);
  // Only touch the list when its order or items changed.
  const list = $('alert-list');
  const current = list.children;
  const same = current.length === items.length && items.every((li, i) => current[i] === li);
  if (!same) list.replaceChildren(...items);
}

// New alerts: flash for a while (the panel is redrawn when that ends), and
// a tone where sound is on.
const sound = { on: params.get('sound') === '1', ctx: null };

function beep(level) {
  if (!sound.on) return;
  try {
    sound.ctx = sound.ctx || new AudioContext();
    const t = sound.ctx.currentTime;
    const osc = sound.ctx.createOscillator();
    const gain = sound.ctx.createGain();
    osc.frequency.value = level >= 3 ? 880 : 660;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.3, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.5);
    osc.connect(gain).connect(sound.ctx.destination);
    osc.start(t);
    osc.stop(t + 0.55);
  } catch (err) {
    console.warn('sound:', err);
  }
}

function announceAlerts(alerts) {
  const top = Math.max(...alerts.map((a) => a.level ?? 0));
  if (top >= 2) beep(top);
  // Make sure the panel is seen: a tablet folds it away.
  if (top >= 3 && MODE === 'tablet') document.body.classList.remove('alerts-closed');
  setTimeout(() => {
    dirty.alerts = true;
    scheduleFlush();
  }, NEW_ALERT_MS + 50);
}

function renderSound() {
  const btn = $('sound-toggle');
  btn.textContent = sound.on ? 'sound on' : 'sound off';
  btn.setAttribute('aria-pressed', String(sound.on));
}

$('sound-toggle').addEventListener('click', () => {
  sound.on = !sound.on;
  if (sound.on) {
    // Created by a click, so the browser lets it play.
    sound.ctx = sound.ctx || new AudioContext();
    sound.ctx.resume?.();
  }
  renderSound();
});
renderSound();

function showAlertError(text) {
  const el = $('alerts-error');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(showAlertError.timer);
  showAlertError.timer = setTimeout(() => {
    el.hidden = true;
  }, 10000);
}

function ackAlert(id) {
  if (!send({ type: 'ack', alert: id })) return;
  pendingAcks.set(id, Date.now());
  dirty.alerts = true;
  scheduleFlush();
  // Give the button back if the server never confirms.
  setTimeout(() => {
    dirty.alerts = true;
    scheduleFlush();
  }, ACK_PENDING_MS + 50);
}

$('alerts-toggle').addEventListener('click', () => {
  document.body.classList.toggle('alerts-closed');
  map.resize();
});

setInterval(renderStatus, 500);

// Degraded mode: the server answers /healthz with 503 while it cannot
// reach its broker. The picture stays (its freshness ages on the server's
// clock); a banner says why nothing new arrives.
const feed = { up: null };
async function checkFeed() {
  try {
    const r = await fetch('/healthz', { cache: 'no-store' });
    feed.up = r.ok;
  } catch {
    feed.up = null; // the server itself is away: the offline banner says so
  }
  $('feed-banner').hidden = feed.up !== false;
}
checkFeed();
setInterval(checkFeed, 5000);

// ---------------------------------------------------------------------------
// Applying server messages

/** Age step 0–3 of a cell's newest report (see CELL_AGE_STEPS_MS). */
function cellAge(newestMs, now) {
  if (typeof newestMs !== 'number' || !Number.isFinite(newestMs)) return 0;
  const age = now - newestMs;
  let step = 0;
  while (step < CELL_AGE_STEPS_MS.length && age >= CELL_AGE_STEPS_MS[step]) step += 1;
  return step;
}

/** The hexagon of an H3 index as a closed GeoJSON ring, or null. */
function cellRing(h3) {
  let ring;
  try {
    ring = cellToBoundary(h3, true);
  } catch {
    return null;
  }
  if (!ring || ring.length < 3) return null;
  const first = ring[0];
  const last = ring[ring.length - 1];
  if (first[0] !== last[0] || first[1] !== last[1]) ring.push(first);
  return ring;
}

/**
 * The map feature of a cell. A cell already held keeps its geometry (a
 * hexagon never changes shape), so an update costs no boundary again.
 */
function cellFeature(c, now) {
  const held = cellSource.features.get(c.h3);
  let geometry = held ? held.geometry : null;
  if (!geometry) {
    const ring = cellRing(c.h3);
    if (!ring) return null;
    geometry = { type: 'Polygon', coordinates: [ring] };
  }
  const units =
    (c.units_available || 0) +
    (c.units_on_mission || 0) +
    (c.units_unavailable || 0) +
    (c.units_unknown || 0);
  return {
    type: 'Feature',
    geometry,
    properties: {
      h3: c.h3,
      hazard: c.hazard ?? 0,
      units,
      sensors: c.sensors ?? 0,
      max_level: c.max_level ?? 0,
      newest_ms: c.newest_ms ?? null,
      age: cellAge(c.newest_ms, now),
    },
  };
}

function upsertCells(cells) {
  const now = Date.now();
  for (const c of cells || []) {
    if (!c || typeof c.h3 !== 'string') continue;
    // Only the subscribed resolution is drawn: hexagons of several
    // resolutions on top of each other would count everything twice.
    if (state.res !== null && typeof c.res === 'number' && c.res !== state.res) continue;
    const f = cellFeature(c, now);
    if (f) cellSource.set(c.h3, f);
  }
}

/** Moves cells whose newest report crossed an age step into the next one. */
function sweepCellAges() {
  if (timeline.mode === 'past') return; // the past is shown as it was
  const now = Date.now();
  let changed = 0;
  for (const [h3, f] of cellSource.features) {
    const age = cellAge(f.properties.newest_ms, now);
    if (age !== f.properties.age) {
      cellSource.set(h3, { ...f, properties: { ...f.properties, age } });
      changed += 1;
    }
  }
  if (changed) scheduleFlush();
}
setInterval(sweepCellAges, CELL_AGE_SWEEP_MS);

function upsertById(target, items, dirtySet) {
  for (const item of items || []) {
    if (!item || item.id === undefined || item.id === null) continue;
    target.set(item.id, item);
    if (dirtySet) dirtySet.add(item.id);
  }
}

function removeIds(target, ids, dirtySet) {
  for (const id of ids || []) {
    target.delete(id);
    if (dirtySet) dirtySet.add(id);
  }
}

function upsertUnits(units) {
  for (const u of units || []) {
    if (!u || u.id === undefined || u.id === null) continue;
    state.units.set(u.id, u);
    setUnit(u);
  }
  dirty.labels = true;
}

function removeUnits(ids) {
  for (const id of ids || []) {
    state.units.delete(id);
    unitSource.delete(id);
  }
  dirty.labels = true;
}

/** Notes when alerts were first seen; those not in the first picture are news. */
function noteAlerts(alerts) {
  const now = Date.now();
  const fresh = [];
  for (const a of alerts || []) {
    if (!a || alertSeen.has(a.id)) continue;
    alertSeen.set(a.id, firstPicture ? 0 : now);
    if (!firstPicture && !a.acked) fresh.push(a);
  }
  if (fresh.length) announceAlerts(fresh);
}

/** Replaces everything held with the picture `msg` (live or past). */
function loadPicture(msg) {
  state.seq = msg.seq ?? null;
  state.drill = Boolean(msg.drill);
  state.res = msg.res ?? null;
  cellSource.clear();
  unitSource.clear();
  state.units.clear();
  state.sensors.clear();
  state.incidents.clear();
  state.alerts.clear();
  upsertCells(msg.cells);
  upsertUnits(msg.units);
  upsertById(state.sensors, msg.sensors);
  upsertById(state.incidents, msg.incidents);
  upsertById(state.alerts, msg.alerts);
  for (const [id, a] of state.alerts) if (a.acked) pendingAcks.delete(id);
  Object.assign(dirty, {
    incidents: true,
    alerts: true,
    allSensors: true,
  });
}

function applySnapshot(msg) {
  loadPicture(msg);
  noteAlerts(msg.alerts);
  firstPicture = false;
  conn.haveSnapshot = true;
  conn.snapshots += 1;
  conn.pictureAt = Date.now();
  conn.retryMs = RECONNECT_MIN_MS;
  updateState();
}

function applyDelta(msg) {
  state.seq = msg.seq;
  conn.pictureAt = Date.now();
  upsertCells(msg.cells);
  for (const h of msg.cells_removed || []) cellSource.delete(h);
  if (msg.units?.length || msg.units_removed?.length) {
    upsertUnits(msg.units);
    removeUnits(msg.units_removed);
  }
  upsertById(state.sensors, msg.sensors, dirty.sensors);
  removeIds(state.sensors, msg.sensors_removed, dirty.sensors);
  if (msg.incidents?.length || msg.incidents_removed?.length) {
    upsertById(state.incidents, msg.incidents);
    removeIds(state.incidents, msg.incidents_removed);
    dirty.incidents = true;
  }
  if (msg.alerts?.length) {
    upsertById(state.alerts, msg.alerts);
    noteAlerts(msg.alerts);
    for (const a of msg.alerts) if (a && a.acked) pendingAcks.delete(a.id);
    dirty.alerts = true;
    missionLogSoon();
    // Alerts must not wait for the map: a busy map delays animation frames.
    alertsSoon();
  }
}

let alertsTimer = null;
function alertsSoon() {
  if (alertsTimer !== null) return;
  alertsTimer = setTimeout(() => {
    alertsTimer = null;
    if (!dirty.alerts) return;
    renderAlerts();
    dirty.alerts = false;
  }, 0);
}

function handleMessage(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    console.warn('ws: ignoring a message that is not JSON');
    return;
  }
  if (!msg || typeof msg !== 'object') return;
  conn.lastMessageAt = Date.now();
  // While the past is shown the live picture is not touched; going back to
  // live asks for a fresh snapshot.
  if (timeline.mode === 'past' && (msg.type === 'snapshot' || msg.type === 'delta')) return;
  switch (msg.type) {
    case 'snapshot':
      applySnapshot(msg);
      break;
    case 'delta':
      if (!conn.haveSnapshot || typeof msg.seq !== 'number') break; // waiting for a snapshot
      if (msg.seq <= state.seq) break; // already part of the snapshot held
      if (msg.seq !== state.seq + 1) {
        // Missed something: ask for a fresh snapshot, drop deltas until then.
        console.warn(`ws: seq gap (${state.seq} -> ${msg.seq}), resyncing`);
        conn.haveSnapshot = false;
        updateState();
        sendSubscribe();
        break;
      }
      applyDelta(msg);
      break;
    case 'acked':
      missionLogSoon();
      break;
    case 'error': {
      const why = msg.message || msg.error || JSON.stringify(msg);
      console.warn('server:', why);
      // An acknowledgement refused (role, past picture, …): say so.
      if (pendingAcks.size) {
        pendingAcks.clear();
        showAlertError(`Not acknowledged: ${why}`);
        dirty.alerts = true;
      }
      break;
    }
    default:
      break;
  }
  scheduleFlush();
}

// ---------------------------------------------------------------------------
// Websocket with reconnect

function wsUrl() {
  const url = new URL('/ws', window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.searchParams.set('space', SPACE);
  if (TOKEN) url.searchParams.set('token', TOKEN);
  return url.href;
}

function updateState() {
  let st;
  if (timeline.mode === 'past') st = timeline.at === null ? 'loading' : 'past';
  else st = conn.open && conn.haveSnapshot ? 'live' : 'reconnecting';
  root.dataset.state = st;
  document.body.classList.toggle('past', timeline.mode === 'past');
  renderStatus();
}

function send(obj) {
  if (!conn.ws || conn.ws.readyState !== WebSocket.OPEN) return false;
  conn.ws.send(JSON.stringify(obj));
  return true;
}

function subscription() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const down = (v) => Math.floor(v * 1e5) / 1e5;
  const up = (v) => Math.ceil(v * 1e5) / 1e5;
  return {
    type: 'subscribe',
    bbox: [
      down(clamp(b.getWest(), -180, 180)),
      down(clamp(b.getSouth(), -85.06, 85.06)),
      up(clamp(b.getEast(), -180, 180)),
      up(clamp(b.getNorth(), -85.06, 85.06)),
    ],
    res: resForZoom(map.getZoom()),
  };
}

function sendSubscribe() {
  clearTimeout(subscribeTimer);
  send(subscription());
}

function connect() {
  conn.retryTimer = null;
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (err) {
    console.warn('ws:', err);
    scheduleReconnect();
    return;
  }
  conn.ws = ws;
  ws.addEventListener('open', () => {
    if (conn.ws !== ws) return;
    conn.open = true;
    conn.haveSnapshot = false;
    updateState();
    sendSubscribe();
  });
  ws.addEventListener('message', (ev) => {
    if (conn.ws !== ws) return;
    if (typeof ev.data === 'string') handleMessage(ev.data);
  });
  const lost = () => {
    if (conn.ws !== ws) return;
    conn.ws = null;
    conn.open = false;
    conn.haveSnapshot = false;
    updateState();
    try {
      ws.close();
    } catch {
      // already closed
    }
    scheduleReconnect();
  };
  ws.addEventListener('close', lost);
  ws.addEventListener('error', lost);
}

function scheduleReconnect() {
  if (conn.retryTimer !== null) return;
  const delay = conn.retryMs;
  conn.retryMs = Math.min(RECONNECT_MAX_MS, conn.retryMs * 2);
  conn.retryTimer = setTimeout(connect, delay);
}

// ---------------------------------------------------------------------------
// REST

/** `/api/v1/<space>/<path>?<query>` of this page's space. */
function apiUrl(path, query = {}) {
  const url = new URL(`/api/v1/${encodeURIComponent(SPACE)}/${path}`, window.location.href);
  url.search = '';
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v));
  return url.href;
}

function apiInit(init = {}) {
  return TOKEN ? { ...init, headers: { Authorization: `Bearer ${TOKEN}` } } : init;
}

/** The JSON body of a response, or null. */
async function readJson(res) {
  try {
    return await res.json();
  } catch {
    return null;
  }
}

/** Why the server refused: its error text, else the status. */
function refusal(res, body) {
  return (body && body.error) || `HTTP ${res.status}`;
}

const TIME_FORMAT = new Intl.DateTimeFormat('de-DE', {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});
const DAY_FORMAT = new Intl.DateTimeFormat('de-DE', { day: '2-digit', month: '2-digit' });

/** Local time of day (with the date when not today), or –. */
function clockText(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '–';
  const d = new Date(ms);
  const time = TIME_FORMAT.format(d);
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${DAY_FORMAT.format(d)} ${time}`;
}

// ---------------------------------------------------------------------------
// Time slider: live ↔ past

function serverNow() {
  return timeline.to === null ? Date.now() : timeline.to + (Date.now() - timeline.toAt);
}

async function refreshHistory() {
  let res;
  try {
    res = await fetch(apiUrl('history'), apiInit());
  } catch {
    return; // the server is away: keep what is known, the socket says the rest
  }
  const body = await readJson(res);
  if (res.ok && body && Number.isFinite(body.from_ms) && Number.isFinite(body.to_ms)) {
    timeline.from = body.from_ms;
    timeline.to = body.to_ms;
    timeline.toAt = Date.now();
    timeline.available = body.to_ms > body.from_ms;
  } else if (res.status === 400 || res.status === 404) {
    // No event log (or none yet for this space): nothing to go back to.
    timeline.available = false;
  }
  renderTimebar();
}

function renderTimebar() {
  const bar = $('timebar');
  const past = timeline.mode === 'past';
  const shown = timeline.available || past;
  $('timebar-toggle').hidden = !shown || MODE !== 'wall';
  // On the wall the bar folds away until asked for, or while past.
  const open =
    shown && (MODE !== 'wall' || past || document.body.classList.contains('timebar-open'));
  if (bar.hidden === open) {
    bar.hidden = !open;
    map.resize();
  }
  const banner = $('past-banner');
  banner.hidden = !past; // over the map: showing it moves nothing
  if (past) {
    const shownAt = timeline.at ?? timeline.want;
    let text = `PAST — picture as at ${clockText(shownAt)} (${ageText(shownAt)} ago)`;
    if (timeline.loading) {
      text += timeline.at === null ? ' (loading…)' : ` · loading ${clockText(timeline.want)}…`;
    }
    if (timeline.error) text += ` · ${timeline.error}`;
    const el = $('past-text');
    if (el.textContent !== text) el.textContent = text;
  }
  if (!open) return;
  const range = $('tb-range');
  const now = serverNow();
  const min = String(Math.floor((timeline.from ?? now) / 1000));
  const max = String(Math.floor(now / 1000));
  if (range.min !== min) range.min = min;
  if (range.max !== max) range.max = max;
  if (!timeline.dragging) {
    const v = past ? String(Math.round(timeline.want / 1000)) : max;
    if (range.value !== v) range.value = v;
  }
  range.disabled = !timeline.available;
  const mode = $('tb-mode');
  if (!timeline.dragging) {
    const label = past ? `PAST ${clockText(timeline.want)}` : 'LIVE';
    if (mode.textContent !== label) {
      mode.textContent = label;
      range.setAttribute('aria-valuetext', label);
    }
  }
  mode.className = `tb-mode ${past ? 'tb-past' : 'tb-live'}`;
  const fromText = clockText(timeline.from);
  if ($('tb-from').textContent !== fromText) $('tb-from').textContent = fromText;
  $('tb-live').disabled = !past;
  $('tb-fwd').disabled = !past;
  $('tb-back').disabled = !timeline.available;
}

/** Shows the picture as it was at `ms` (server time); near now means live. */
function goPast(ms) {
  if (!Number.isFinite(ms) || ms >= serverNow() - LIVE_SNAP_MS) {
    goLive();
    return;
  }
  timeline.want = Math.max(Math.round(ms), timeline.from ?? ms);
  timeline.mode = 'past';
  clearTimeout(timeline.timer);
  fetchPast();
  updateState();
  dirty.alerts = true; // ack buttons off
  scheduleFlush();
}

async function fetchPast() {
  if (timeline.mode !== 'past') return;
  timeline.request += 1;
  const id = timeline.request;
  const at = timeline.want;
  const sub = subscription();
  timeline.loading = true;
  renderTimebar();
  let error = null;
  try {
    const res = await fetch(
      apiUrl('snapshot', { res: sub.res, bbox: sub.bbox.join(','), at }),
      apiInit(),
    );
    const body = await readJson(res);
    if (id !== timeline.request || timeline.mode !== 'past') return; // superseded
    if (!res.ok || !body || !Array.isArray(body.cells)) {
      error = refusal(res, body);
    } else {
      loadPicture(body);
      timeline.at = typeof body.at === 'number' ? body.at : at;
    }
  } catch (err) {
    error = String((err && err.message) || err);
  }
  if (id !== timeline.request) return;
  timeline.loading = false;
  timeline.error = error;
  if (error) console.warn(`history: picture at ${at}: ${error}`);
  updateState();
  renderMissionLog();
  scheduleFlush();
}

function goLive() {
  clearTimeout(timeline.timer);
  if (timeline.mode === 'live') {
    renderTimebar();
    return;
  }
  timeline.mode = 'live';
  timeline.want = null;
  timeline.at = null;
  timeline.request += 1; // answers still on their way are dropped
  timeline.loading = false;
  timeline.error = null;
  // Nothing from the past stays: wait for a fresh snapshot of now.
  conn.haveSnapshot = false;
  updateState();
  sendSubscribe();
  refreshHistory();
  renderMissionLog();
  dirty.alerts = true;
  scheduleFlush();
}

{
  const range = $('tb-range');
  const target = () => Number(range.value) * 1000;
  range.addEventListener('input', () => {
    const ms = target();
    $('tb-mode').textContent = ms >= serverNow() - LIVE_SNAP_MS ? 'LIVE' : `PAST ${clockText(ms)}`;
    clearTimeout(timeline.timer);
    timeline.timer = setTimeout(() => goPast(target()), PAST_FETCH_DEBOUNCE_MS);
  });
  range.addEventListener('change', () => {
    clearTimeout(timeline.timer);
    goPast(target());
  });
  const hold = (on) => () => {
    timeline.dragging = on;
  };
  range.addEventListener('pointerdown', hold(true));
  range.addEventListener('pointerup', hold(false));
  range.addEventListener('pointercancel', hold(false));
  range.addEventListener('blur', hold(false));
  $('tb-live').addEventListener('click', goLive);
  $('past-live').addEventListener('click', goLive);
  $('tb-back').addEventListener('click', () =>
    goPast((timeline.mode === 'past' ? timeline.want : serverNow()) - STEP_MS),
  );
  $('tb-fwd').addEventListener('click', () => {
    if (timeline.mode === 'past') goPast(timeline.want + STEP_MS);
  });
  $('timebar-toggle').addEventListener('click', () => {
    document.body.classList.toggle('timebar-open');
    renderTimebar();
  });
}

// ---------------------------------------------------------------------------
// Mission log (Einsatztagebuch)

const LOG_KINDS = {
  alert_raised: 'alert',
  alert_acked: 'ack',
  incident_opened: 'incident',
  incident_changed: 'changed',
  incident_closed: 'closed',
  removed: 'removed',
  drill_opened: 'drill',
  drill_reset: 'reset',
};

async function refreshMissionLog() {
  if (missionLog.inflight) {
    missionLog.again = true;
    return;
  }
  missionLog.inflight = true;
  try {
    const res = await fetch(apiUrl('mission-log', { limit: MISSION_LOG_LIMIT }), apiInit());
    const body = await readJson(res);
    if (res.ok && body && Array.isArray(body.entries)) takeMissionLog(body.entries);
    else console.warn(`mission log: ${refusal(res, body)}`);
  } catch {
    // the server is away; the next round tries again
  } finally {
    missionLog.inflight = false;
  }
  if (missionLog.again) {
    missionLog.again = false;
    refreshMissionLog();
  }
}

/** Refreshes the mission log shortly (coalesces bursts of alert changes). */
function missionLogSoon() {
  if (missionLog.soonTimer !== null) return;
  missionLog.soonTimer = setTimeout(() => {
    missionLog.soonTimer = null;
    refreshMissionLog();
  }, MISSION_LOG_SOON_MS);
}

function takeMissionLog(entries) {
  // (A reset drill needs nothing here: the server hands every client the
  // empty picture as a fresh snapshot.)
  missionLog.entries = entries.filter((e) => e && typeof e.at_ms === 'number');
  renderMissionLog();
}

function renderMissionLog() {
  const entries = missionLog.entries;
  const last = entries[entries.length - 1];
  const at = timeline.mode === 'past' ? timeline.at : null;
  const key = [entries.length, last?.at_ms, last?.kind, last?.about, at, timeline.available].join(
    '|',
  );
  if (key === missionLog.key) return;
  missionLog.key = key;
  $('mlog-empty').hidden = entries.length > 0;
  const items = [];
  for (let i = entries.length - 1; i >= 0; i -= 1) {
    const e = entries[i];
    const li = document.createElement('li');
    li.className = `mlog-entry k-${e.kind}${at !== null && e.at_ms > at ? ' later' : ''}`;
    li.dataset.kind = e.kind;
    li.dataset.at = String(e.at_ms);
    if (e.about) li.dataset.about = e.about;
    const time = document.createElement('button');
    time.type = 'button';
    time.className = 'ml-time';
    time.textContent = clockText(e.at_ms);
    time.title = 'show the picture at this time';
    time.disabled = !timeline.available;
    time.addEventListener('click', () => goPast(e.at_ms));
    const badge = span('ml-kind');
    badge.textContent = LOG_KINDS[e.kind] || e.kind;
    const text = span('ml-text');
    text.textContent = e.actor ? `${e.text} (${e.actor})` : e.text;
    li.append(time, badge, text);
    items.push(li);
  }
  $('mlog-list').replaceChildren(...items);
}

$('mlog-csv').href = apiUrl('mission-log', { format: 'csv' });
$('mlog-csv').setAttribute('download', `mission-log-${SPACE}.csv`);
// A link cannot send a bearer token: with one, fetch the file and save it.
$('mlog-csv').addEventListener('click', async (ev) => {
  if (!TOKEN) return;
  ev.preventDefault();
  try {
    const res = await fetch(apiUrl('mission-log', { format: 'csv' }), apiInit());
    if (!res.ok) throw new Error(refusal(res, await readJson(res)));
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = `mission-log-${SPACE}.csv`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    console.warn('mission log CSV:', err);
  }
});

// ---------------------------------------------------------------------------
// Drill reset (drill spaces only), with a confirm step

function closeResetDialog() {
  $('reset-dialog').hidden = true;
  $('reset-error').hidden = true;
}

$('drill-reset').addEventListener('click', () => {
  $('reset-space').textContent = SPACE;
  $('reset-error').hidden = true;
  $('reset-yes').disabled = false;
  $('reset-dialog').hidden = false;
  $('reset-no').focus();
});
$('reset-no').addEventListener('click', closeResetDialog);
$('reset-yes').addEventListener('click', async () => {
  $('reset-yes').disabled = true;
  let error = null;
  try {
    const res = await fetch(apiUrl('reset'), apiInit({ method: 'POST' }));
    if (!res.ok) error = refusal(res, await readJson(res));
  } catch (err) {
    error = String((err && err.message) || err);
  }
  if (error) {
    $('reset-error').textContent = `Reset refused: ${error}`;
    $('reset-error').hidden = false;
    $('reset-yes').disabled = false;
    return;
  }
  closeResetDialog();
  // The server sends no removals for a reset: start over from a snapshot.
  if (timeline.mode === 'past') goLive();
  conn.haveSnapshot = false;
  updateState();
  sendSubscribe();
  refreshMissionLog();
  refreshHistory();
});

setInterval(refreshHistory, HISTORY_REFRESH_MS);
setInterval(refreshMissionLog, MISSION_LOG_REFRESH_MS);
refreshHistory();
refreshMissionLog();

updateState();
connect();
