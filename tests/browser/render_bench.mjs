// Rendering benchmark of the web client in headless Chromium (software
// WebGL, SwiftShader): frame times while a picture of 50,000 cells and
// 2,000 units is updated at 10 Hz.
//
//   node tests/browser/render_bench.mjs <url> [--cells N] [--units N]
//        [--hz N] [--changed F] [--seconds S] [--zoom Z] [--screenshot FILE]
//        [--viewport WxH] [--profile]   (the page's busiest functions, by self time)
//
// <url> is a running RESCUE MATE server (`rescuemate demo` or `serve`): it
// serves the page, the map and the REST calls. The page's websocket is
// answered by this script instead (playwright's routeWebSocket), so the
// very code that applies server messages and draws them is fed a synthetic
// picture: a snapshot of N res-10 cells around Hamburg (a hexagonal disk,
// all in view) and N units of all organisations, then a delta every 1/hz
// s that changes a fraction F of the cells (hazard, age) and moves a tenth
// of the units. Frame times are the intervals between the page's
// requestAnimationFrame callbacks over S seconds once the first picture is
// drawn; the script prints p50 / p95 / max and the deltas applied, without
// asserting anything about them.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fail, runBrowserTest, waitUntil } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const h3 = createRequire(join(here, '..', '..', 'web', 'package.json'))('h3-js');

const args = process.argv.slice(2);
const url = args.find((a) => !a.startsWith('--'));
function opt(name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : fallback;
}
if (!url) {
  console.error('usage: node render_bench.mjs <url> [--cells N] [--units N] [--hz N] [--changed F] [--seconds S]');
  process.exit(2);
}
const CELLS = opt('cells', 50000);
const UNITS = opt('units', 2000);
const HZ = opt('hz', 10);
const CHANGED = opt('changed', 0.1);
const SECONDS = opt('seconds', 10);
const ZOOM = opt('zoom', 11);
const PROFILE = args.includes('--profile');
const SHOT = args.includes('--screenshot') ? args[args.indexOf('--screenshot') + 1] : null;
const CENTER = [53.55, 9.99];
const [viewW, viewH] = (args.includes('--viewport') ? args[args.indexOf('--viewport') + 1] : '1920x1080')
  .split('x')
  .map(Number);
const VIEW = { width: viewW, height: viewH };

const cellIds = (() => {
  // A disk of radius k holds 3k(k+1)+1 cells.
  const k = Math.ceil((-3 + Math.sqrt(9 + 12 * (CELLS - 1))) / 6);
  return h3.gridDisk(h3.latLngToCell(CENTER[0], CENTER[1], 10), k).slice(0, CELLS);
})();

/**
 * Runs in the page before its own code: a stand-in for `WebSocket` that
 * plays the server. It answers a subscription with the synthetic snapshot
 * and then sends deltas at `hz`, as JSON text through the page's own
 * message handler, so parsing, applying and drawing are all the page's.
 * (Generated in the page: pushing 10 MB/s through the test's own channel
 * to the browser would measure that channel instead.)
 */
function syntheticServer({ cellIds, units, hz, changed, center }) {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const ORGS = [
    ['fire', ['HLF', 'LF', 'DLK', 'ELW']],
    ['thw', ['GKW', 'MTW']],
    ['rescue', ['RTW', 'NEF', 'KTW']],
    ['police', ['FuStW']],
    ['command', ['ELW 2', 'KdoW']],
    ['dlrg', ['MRB']],
  ];
  const fleet = [];
  for (let i = 0; i < units; i += 1) {
    const [org, types] = ORGS[i % ORGS.length];
    fleet.push({
      id: `bench-${i}`,
      callsign: `B ${i}`,
      type: types[i % types.length],
      org,
      lat: center[0] + (rand() - 0.5) * 0.2,
      lon: center[1] + (rand() - 0.5) * 0.35,
      status: 1 + (i % 4),
      status_class: ['available', 'available', 'on_mission', 'on_mission'][i % 4],
      freshness: 'fresh',
    });
  }
  const cell = (h, now) => {
    const r = rand();
    const level = r < 0.3 ? Math.floor(rand() * 5) : 0;
    return {
      h3: h,
      res: 10,
      units_available: 0,
      units_on_mission: r < 0.05 ? 1 : 0,
      units_unavailable: 0,
      units_unknown: 0,
      unit_types: {},
      sensors: r < 0.2 ? 1 : 0,
      kinds: {},
      incidents: 0,
      max_level: level,
      hazard: level,
      // Some cells are old, so the fading has work too.
      newest_ms: now - (r < 0.1 ? 40 * 60000 : Math.floor(rand() * 60000)),
    };
  };
  const unitView = (u, now) => ({ ...u, ts_ms: now, status_ts_ms: now });
  const stats = { sent: 0, bytes: 0 };
  window.rmBenchFeed = stats;

  class SyntheticSocket extends EventTarget {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url) {
      super();
      this.url = url;
      this.readyState = 0;
      this.seq = 1;
      this.timer = null;
      setTimeout(() => {
        this.readyState = 1;
        this.dispatchEvent(new Event('open'));
      }, 0);
    }

    emit(obj) {
      const data = JSON.stringify(obj);
      stats.sent += 1;
      stats.bytes += data.length;
      this.dispatchEvent(new MessageEvent('message', { data }));
    }

    send(text) {
      const msg = JSON.parse(text);
      if (msg.type !== 'subscribe') return;
      const now = Date.now();
      this.emit({
        type: 'snapshot',
        seq: this.seq,
        space: 'bench',
        drill: false,
        res: 10,
        cells: cellIds.map((h) => cell(h, now)),
        units: fleet.map((u) => unitView(u, now)),
        sensors: [],
        incidents: [],
        alerts: [],
      });
      clearInterval(this.timer);
      this.timer = setInterval(() => this.tick(), 1000 / hz);
    }

    tick() {
      const now = Date.now();
      const n = Math.round(cellIds.length * changed);
      const first = Math.floor(rand() * cellIds.length);
      const cells = [];
      for (let i = 0; i < n; i += 1) cells.push(cell(cellIds[(first + i) % cellIds.length], now));
      const moved = [];
      for (let i = 0; i < Math.ceil(fleet.length / 10); i += 1) {
        const u = fleet[Math.floor(rand() * fleet.length)];
        u.lat += (rand() - 0.5) * 0.001;
        u.lon += (rand() - 0.5) * 0.0015;
        if (rand() < 0.1) u.status = 1 + Math.floor(rand() * 8);
        moved.push(unitView(u, now));
      }
      this.seq += 1;
      this.emit({ type: 'delta', seq: this.seq, cells, units: moved });
    }

    close() {
      clearInterval(this.timer);
      this.readyState = 3;
    }
  }
  window.WebSocket = SyntheticSocket;
}

/** Self time (ms) per function of a CPU profile, the 15 largest. */
function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const ms = new Map();
  for (let i = 0; i < profile.samples.length; i += 1) {
    const node = byId.get(profile.samples[i]);
    const f = node.callFrame;
    const name = `${f.functionName || '(anon)'} ${f.url.split('/').pop()}:${f.lineNumber}`;
    ms.set(name, (ms.get(name) || 0) + (profile.timeDeltas[i] || 0) / 1000);
  }
  return Object.fromEntries(
    [...ms]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([k, v]) => [k, Math.round(v)]),
  );
}

await runBrowserTest('render benchmark', async (browser) => {
  const page = await browser.open(
    new URL(`/?mode=wall&fit=0&space=bench&center=9.99,53.55&zoom=${ZOOM}`, url).href,
    {
      viewport: VIEW,
      before: (p) =>
        p.addInitScript(syntheticServer, {
          cellIds,
          units: UNITS,
          hz: HZ,
          changed: CHANGED,
          center: CENTER,
        }),
    },
  );
  await waitUntil(
    page,
    (n) => {
      const s = window.rmStats();
      return (
        document.documentElement.dataset.state === 'live' &&
        s.cells >= n &&
        s.cell_updates.full > 0 &&
        s.unit_updates.full > 0
      );
    },
    cellIds.length,
    180000,
    'synthetic picture not on the map',
  );
  // Warm up: the first full picture is indexed and drawn, shaders compiled.
  await page.waitForTimeout(5000);
  const before = await page.evaluate(() => ({ ...window.rmStats(), feed: { ...window.rmBenchFeed } }));
  let cdp = null;
  if (PROFILE) {
    cdp = await page.context().newCDPSession(page);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.start');
  }
  const frames = await page.evaluate(
    (ms) =>
      new Promise((done) => {
        const times = [];
        let last = null;
        const end = performance.now() + ms;
        function tick(t) {
          if (last !== null) times.push(t - last);
          last = t;
          if (t < end) requestAnimationFrame(tick);
          else done(times);
        }
        requestAnimationFrame(tick);
      }),
    SECONDS * 1000,
  );
  const after = await page.evaluate(() => ({ ...window.rmStats(), feed: { ...window.rmBenchFeed } }));
  let busiest;
  if (cdp) {
    const { profile } = await cdp.send('Profiler.stop');
    busiest = selfTimes(profile);
  }
  const drawn = await page.evaluate(() => window.rmUnitSymbols().length);
  if (SHOT) await page.screenshot({ path: SHOT, timeout: 120000 });
  if (frames.length < 2) fail('no frames measured');
  const sorted = [...frames].sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  const round = (v) => Math.round(v * 10) / 10;
  return {
    cells: after.cells,
    units: after.units,
    units_drawn: drawn,
    viewport: `${VIEW.width}x${VIEW.height}`,
    hz: HZ,
    cells_changed_per_delta: Math.round(cellIds.length * CHANGED),
    seconds: SECONDS,
    deltas_sent: after.feed.sent - before.feed.sent,
    deltas_applied: after.seq - before.seq,
    feed_mb_per_s: round((after.feed.bytes - before.feed.bytes) / 1e6 / SECONDS),
    // Hand-overs to the map: feature-state rounds and updateData diffs.
    map_updates: {
      cell_states: after.cell_updates.state - before.cell_updates.state,
      cell_diffs: after.cell_updates.diff - before.cell_updates.diff,
      unit_diffs: after.unit_updates.diff - before.unit_updates.diff,
    },
    frames: frames.length,
    frame_ms_p50: round(q(0.5)),
    frame_ms_p95: round(q(0.95)),
    frame_ms_max: round(sorted[sorted.length - 1]),
    fps: round(frames.length / SECONDS),
    ...(busiest ? { busiest_ms: busiest } : {}),
  };
});
