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
//   center=<lon>,<lat>  start position (default Hamburg: 9.99,53.55)
//   zoom=<z>            start zoom (default 11)
//   token=<token>       passed on to the websocket (`/ws?token=`) where the
//                       server requires one
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

// ---------------------------------------------------------------------------
// Settings

const params = new URLSearchParams(window.location.search);
const SPACE = params.get('space') || 'live';
const MODE = params.get('mode') === 'tablet' ? 'tablet' : 'wall';
const STYLE_URL = params.get('style');
const TOKEN = params.get('token');

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

/** `zoom=<z>` from the page URL, or 11. */
function startZoom() {
  const z = Number(params.get('zoom'));
  return params.has('zoom') && Number.isFinite(z) && z >= 0 && z <= 22 ? z : 11;
}
const SUBSCRIBE_DEBOUNCE_MS = 200;
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
const UNIT_LABEL_MIN_ZOOM = 9;

// Hazard / level colours 0..4 (kept in step with style.css).
const LEVEL_COLORS = ['#8ea3b8', '#f2d024', '#f28c28', '#e0302a', '#9b1fb0'];

/** H3 resolution to ask for at a given map zoom. */
function resForZoom(zoom) {
  if (zoom < 9.5) return 6;
  if (zoom < 10.5) return 7;
  if (zoom < 11.5) return 8;
  if (zoom < 13) return 9;
  return 10;
}

// ---------------------------------------------------------------------------
// What the page holds

const state = {
  seq: null,
  drill: false,
  res: null,
  cells: new Map(), // h3 -> GeoJSON feature
  units: new Map(), // id -> UNIT
  sensors: new Map(), // id -> SENSOR
  incidents: new Map(), // id -> INCIDENT
  alerts: new Map(), // id -> ALERT
};

const conn = {
  ws: null,
  open: false,
  haveSnapshot: false, // a snapshot arrived on this connection and no gap since
  retryMs: RECONNECT_MIN_MS,
  retryTimer: null,
  lastMessageAt: null,
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
  cells: state.cells.size,
  units: state.units.size,
  sensors: state.sensors.size,
  alerts: state.alerts.size,
  mode: timeline.mode,
  at: timeline.mode === 'past' ? timeline.at : null,
  log: missionLog.entries.length,
});

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

let mapReady = false;

const EMPTY = { type: 'FeatureCollection', features: [] };

function levelColor(prop) {
  return [
    'match',
    ['get', prop],
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
  map.addSource('cells', { type: 'geojson', data: EMPTY });
  map.addLayer({
    id: 'incidents-fill',
    type: 'fill',
    source: 'incidents',
    filter: ['in', ['geometry-type'], ['literal', ['Polygon', 'MultiPolygon']]],
    paint: { 'fill-color': levelColor('severity'), 'fill-opacity': 0.16 },
  });
  map.addLayer({
    id: 'cells-fill',
    type: 'fill',
    source: 'cells',
    paint: {
      'fill-color': levelColor('hazard'),
      'fill-opacity': [
        'case',
        ['>', ['get', 'hazard'], 0],
        0.45,
        ['>', ['get', 'units'], 0],
        0.22,
        0.1,
      ],
    },
  });
  map.addLayer({
    id: 'cells-line',
    type: 'line',
    source: 'cells',
    paint: {
      'line-color': levelColor('hazard'),
      'line-width': ['case', ['>', ['get', 'hazard'], 0], 1.4, 0.8],
      'line-opacity': [
        'case',
        ['>', ['get', 'hazard'], 0],
        0.95,
        ['>', ['get', 'units'], 0],
        0.65,
        0.3,
      ],
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
}

map.on('load', () => {
  addOverlay();
  mapReady = true;
  root.dataset.map = 'loaded';
  dirty.cells = true;
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

const dirty = {
  cells: false,
  incidents: false,
  alerts: false,
  allUnits: false,
  allSensors: false,
  units: new Set(),
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
    if (dirty.cells) {
      map.getSource('cells')?.setData({
        type: 'FeatureCollection',
        features: [...state.cells.values()],
      });
      dirty.cells = false;
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
  unitMarkers.sync(state.units, dirty.units, dirty.allUnits);
  dirty.units.clear();
  dirty.allUnits = false;
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

/** CSS class for an organisation name: fire, thw, police, aid, command, other. */
function orgClass(org) {
  const o = String(org || '').toLowerCase();
  if (/fire|feuerwehr|^fw$/.test(o)) return 'fire';
  if (o.includes('thw')) return 'thw';
  if (/police|polizei/.test(o)) return 'police';
  // Rescue service and the aid organisations (incl. water rescue) share white.
  if (/rescue|ambulance|aid|ems|medic|rettung|drk|asb|juh|mhd|samarit|dlrg|wasserwacht/.test(o)) {
    return 'aid';
  }
  if (/command|lead|staff|stab|führung|fuehrung/.test(o)) return 'command';
  return 'other';
}

function span(className) {
  const s = document.createElement('span');
  s.className = className;
  return s;
}

const unitMarkers = new MarkerSet({
  create() {
    const el = document.createElement('div');
    el.append(span('cs'), span('st'));
    return el;
  },
  render(el, u) {
    el.className = [
      'unit',
      `org-${orgClass(u.org)}`,
      `sc-${u.status_class || 'unknown'}`,
      `fr-${u.freshness || 'fresh'}`,
      u.conflict ? 'conflict' : '',
    ].join(' ');
    el.children[0].textContent = u.callsign || u.id;
    el.children[1].textContent = Number.isInteger(u.status) ? String(u.status) : '–';
    el.title = [
      `${u.callsign || u.id} (${u.type || '?'}, ${u.org || '?'})`,
      `status ${u.status ?? '–'} ${u.status_class || ''}`,
      `${u.freshness || ''}, ${ageText(u.ts_ms)} ago${u.source ? `, via ${u.source}` : ''}`,
      ...(u.sources || []).map(
        (s) =>
          `  ${s.source || 'unnamed'}: ±${Math.round(s.accuracy)} m, ` +
          `${Math.round(s.weight * 100)} %${s.jump ? ', jumped' : ''}`,
      ),
      ...(u.conflict ? ['sources disagree on the position'] : []),
    ].join('\n');
  },
  key: (u) =>
    [
      u.callsign,
      u.type,
      u.org,
      u.status,
      u.status_class,
      u.freshness,
      u.source,
      u.conflict,
      (u.sources || []).map((s) => `${s.source}:${Math.round(s.weight * 100)}`).join(','),
    ].join('|'),
  lngLat: (u) => validLngLat(u.lon, u.lat),
});

function formatValue(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a < 10) return v.toFixed(2);
  if (a < 100) return v.toFixed(1);
  return v.toFixed(0);
}

const sensorMarkers = new MarkerSet({
  anchor: 'left',
  create() {
    const el = document.createElement('div');
    el.append(span('dot'), span('val'));
    return el;
  },
  render(el, s) {
    el.className = `sensor lvl-${s.level ?? 0} fr-${s.freshness || 'fresh'} q-${s.quality || 'ok'}`;
    const text = `${formatValue(s.value)}${s.unit ? ` ${s.unit}` : ''}`;
    el.children[1].textContent = text;
    const quality =
      s.quality && s.quality !== 'ok' ? `, ${s.quality} (${s.quality_reason || '?'})` : '';
    el.title = `${s.name || s.id} (${s.kind}): ${text}, level ${s.level ?? 0}, ${s.freshness || ''}${quality}`;
  },
  key: (s) =>
    [s.value, s.unit, s.level, s.freshness, s.name, s.kind, s.quality, s.quality_reason].join('|'),
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
  $('st-cells').textContent = String(state.cells.size);
  $('st-res').textContent = state.res === null ? '' : `r${state.res}`;
  $('st-clock').textContent = new Date().toLocaleTimeString('de-DE', { hour12: false });

  const drill = state.drill || SPACE.startsWith('drill-');
  $('exercise').hidden = !drill;
  document.body.classList.toggle('drill', drill);
  $('drill-reset').hidden = !drill;
  renderTimebar();
}

function renderAlerts() {
  const list = $('alert-list');
  const all = [...state.alerts.values()].sort(
    (a, b) => (b.ts_ms ?? 0) - (a.ts_ms ?? 0) || String(b.id).localeCompare(String(a.id)),
  );
  const open = all.filter((a) => !a.acked).length;
  $('alerts-open').textContent = String(open);
  $('alerts-toggle').classList.toggle('has-open', open > 0);
  $('alerts-summary').textContent = all.length ? `${open} open / ${all.length}` : '';
  $('alerts-empty').hidden = all.length > 0;

  const now = Date.now();
  const items = all.slice(0, MAX_ALERTS_SHOWN).map((a) => {
    const li = document.createElement('li');
    li.className = `alert lvl-${a.level ?? 0} ${a.acked ? 'acked' : 'open'}`;
    li.dataset.id = a.id;
    const msg = span('msg');
    msg.textContent = a.message || a.kind;
    const meta = span('meta');
    const time = typeof a.ts_ms === 'number' ? new Date(a.ts_ms).toLocaleTimeString('de-DE') : '';
    meta.textContent = `${time} · ${a.kind}${a.entity ? ` · ${a.entity}` : ''}`;
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'ack';
    const sentAt = pendingAcks.get(a.id);
    const pending = sentAt !== undefined && now - sentAt < ACK_PENDING_MS;
    btn.textContent = a.acked ? 'acked' : pending ? '…' : 'Ack';
    // A picture of the past is not the place to acknowledge anything.
    btn.disabled = Boolean(a.acked) || pending || timeline.mode === 'past';
    btn.addEventListener('click', () => ackAlert(a.id));
    li.append(msg, meta, btn);
    return li;
  });
  list.replaceChildren(...items);
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

// ---------------------------------------------------------------------------
// Applying server messages

function cellFeature(c) {
  let ring;
  try {
    ring = cellToBoundary(c.h3, true);
  } catch {
    return null;
  }
  if (!ring || ring.length < 3) return null;
  const first = ring[0];
  const last = ring[ring.length - 1];
  if (first[0] !== last[0] || first[1] !== last[1]) ring.push(first);
  const units =
    (c.units_available || 0) +
    (c.units_on_mission || 0) +
    (c.units_unavailable || 0) +
    (c.units_unknown || 0);
  return {
    type: 'Feature',
    geometry: { type: 'Polygon', coordinates: [ring] },
    properties: {
      h3: c.h3,
      hazard: c.hazard ?? 0,
      units,
      sensors: c.sensors ?? 0,
      max_level: c.max_level ?? 0,
    },
  };
}

function upsertCells(cells) {
  for (const c of cells || []) {
    if (!c || typeof c.h3 !== 'string') continue;
    // Only the subscribed resolution is drawn: hexagons of several
    // resolutions on top of each other would count everything twice.
    if (state.res !== null && typeof c.res === 'number' && c.res !== state.res) continue;
    const f = cellFeature(c);
    if (f) state.cells.set(c.h3, f);
  }
}

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

/** Replaces everything held with the picture `msg` (live or past). */
function loadPicture(msg) {
  state.seq = msg.seq ?? null;
  state.drill = Boolean(msg.drill);
  state.res = msg.res ?? null;
  state.cells.clear();
  state.units.clear();
  state.sensors.clear();
  state.incidents.clear();
  state.alerts.clear();
  upsertCells(msg.cells);
  upsertById(state.units, msg.units);
  upsertById(state.sensors, msg.sensors);
  upsertById(state.incidents, msg.incidents);
  upsertById(state.alerts, msg.alerts);
  for (const [id, a] of state.alerts) if (a.acked) pendingAcks.delete(id);
  Object.assign(dirty, {
    cells: true,
    incidents: true,
    alerts: true,
    allUnits: true,
    allSensors: true,
  });
}

function applySnapshot(msg) {
  loadPicture(msg);
  conn.haveSnapshot = true;
  conn.retryMs = RECONNECT_MIN_MS;
  updateState();
}

function applyDelta(msg) {
  state.seq = msg.seq;
  if (msg.cells?.length || msg.cells_removed?.length) {
    upsertCells(msg.cells);
    for (const h of msg.cells_removed || []) state.cells.delete(h);
    dirty.cells = true;
  }
  upsertById(state.units, msg.units, dirty.units);
  removeIds(state.units, msg.units_removed, dirty.units);
  upsertById(state.sensors, msg.sensors, dirty.sensors);
  removeIds(state.sensors, msg.sensors_removed, dirty.sensors);
  if (msg.incidents?.length || msg.incidents_removed?.length) {
    upsertById(state.incidents, msg.incidents);
    removeIds(state.incidents, msg.incidents_removed);
    dirty.incidents = true;
  }
  if (msg.alerts?.length) {
    upsertById(state.alerts, msg.alerts);
    for (const a of msg.alerts) if (a && a.acked) pendingAcks.delete(a.id);
    dirty.alerts = true;
    missionLogSoon();
  }
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
    case 'error':
      console.warn('server:', msg.message || msg.error || msg);
      break;
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
