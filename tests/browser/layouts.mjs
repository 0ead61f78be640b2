// Browser test of the wall and tablet layouts, the unit symbols, alerts and
// reconnecting, against a `rescuemate serve` this script starts itself (it
// has to kill and restart it).
//
//   node layouts.mjs <rescuemate binary> <artifact dir>
//
// 1. `serve` with its embedded broker and an event log; the storm surge
//    plays into `live` (`rescuemate sim`), and this script publishes a few
//    units of its own over MQTT (npm `mqtt`): one per organisation, and one
//    in status 3 that reported 11 minutes ago (silent, stale).
// 2. Wall (1920×1080): live; large type (status bar and alerts ≥ 22 px);
//    the view framed on the activity; every unit of ours drawn by the
//    symbol layer with an image whose id spells its organisation, shape,
//    type and radio status, in the organisation's colour, the silent one
//    flagged; cells updated in place (diffs, no full reload per delta).
// 3. A gauge of ours crosses a threshold: the alert is in the panel, marked
//    new, within a second of the publish; the gauge shows value, unit,
//    level colour and a rising trend arrow; the alert is acknowledged.
// 4. Tablet (1280×800, touch, a sector): live, coarser cells than the wall.
//    Screenshots `wall.png` and `tablet.png`.
// 5. The server is killed: both pages turn `reconnecting`, keep their
//    picture and mark it old (`tablet-offline.png`); restarted, both are
//    live again with a fresh snapshot.
// 6. A drill space shows the EXERCISE banner.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { fail, runBrowserTest, waitUntil } from './lib.mjs';

const STEP_TIMEOUT_MS = 20000;
const LIVE_TIMEOUT_MS = 40000;
const ALERT_BUDGET_MS = 1000;
const WALL = { width: 1920, height: 1080 };
const TABLET = { width: 1280, height: 800 };
// St. Pauli and its surroundings: where the storm surge happens.
const SECTOR = [9.93, 53.53, 10.01, 53.56];
const DRILL = 'drill-layouts';

const [binArg, dirArg] = process.argv.slice(2);
if (!binArg || !dirArg) {
  console.error('usage: node layouts.mjs <rescuemate binary> <artifact dir>');
  process.exit(2);
}
const bin = resolve(binArg);
const shots = resolve(dirArg);
mkdirSync(shots, { recursive: true });

function freePort() {
  return new Promise((ok, bad) => {
    const srv = createServer();
    srv.on('error', bad);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const httpPort = await freePort();
const mqttPort = await freePort();
const base = `http://127.0.0.1:${httpPort}/`;
const data = mkdtempSync(join(tmpdir(), 'rm-layouts-'));
const children = new Set();
const serverLog = [];

function start(args, log) {
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.stderr.on('data', (b) => {
    if (!log) return;
    log.push(...String(b).split('\n').filter(Boolean));
    if (log.length > 200) log.splice(0, log.length - 200);
  });
  child.on('exit', () => children.delete(child));
  return child;
}

async function startServer() {
  const child = start(
    [
      'serve',
      '--embedded-broker',
      `127.0.0.1:${mqttPort}`,
      '--http',
      `127.0.0.1:${httpPort}`,
      '--data',
      data,
    ],
    serverLog,
  );
  const deadline = Date.now() + LIVE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) fail(`serve exited (${child.exitCode}): ${serverLog.slice(-20).join('\n')}`);
    try {
      const res = await fetch(new URL('/healthz', base));
      if (res.ok) return child;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  fail(`serve not healthy: ${serverLog.slice(-20).join('\n')}`);
  return child;
}

function killAll() {
  for (const c of children) c.kill('SIGKILL');
}
process.on('exit', () => {
  killAll();
  rmSync(data, { recursive: true, force: true });
});

async function connectMqtt() {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
    clientId: `layouts-${process.pid}`,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  return client;
}

async function publish(client, topic, payload, retain = false) {
  await client.publishAsync(topic, JSON.stringify(payload), { qos: 1, retain });
}

// Our units: [id, callsign, type, org, status, lon, lat, minutes ago, what the
// symbol must say: org class, shape, glyph].
const UNITS = [
  ['t-fire', 'T-HLF 1', 'HLF', 'fire', 3, 9.962, 53.546, 0, 'fire', 'vehicle', 'HLF'],
  ['t-thw', 'T-GKW 1', 'GKW', 'thw', 2, 9.972, 53.543, 0, 'thw', 'vehicle', 'GKW'],
  ['t-aid', 'T-RTW 1', 'RTW', 'rescue', 4, 9.952, 53.549, 0, 'aid', 'vehicle', 'RTW'],
  ['t-police', 'T-Peter 1', 'FuStW', 'police', 1, 9.982, 53.548, 0, 'police', 'vehicle', 'FuStW'],
  ['t-command', 'T-ELW 2', 'ELW 2', 'command', 4, 9.967, 53.552, 0, 'command', 'command', 'ELW2'],
  ['t-boat', 'T-MRB 1', 'MRB', 'dlrg', 2, 9.958, 53.541, 0, 'aid', 'boat', 'MRB'],
  ['t-silent', 'T-LF 9', 'LF', 'fire', 3, 9.977, 53.553, 11, 'fire', 'vehicle', 'LF'],
];

async function publishUnits(client) {
  const now = Date.now();
  for (const [id, callsign, type, org, status, lon, lat, ago] of UNITS) {
    const ts = now - ago * 60000;
    await publish(client, `rm/v1/live/unit/${id}/meta`, { callsign, type, org }, true);
    await publish(client, `rm/v1/live/unit/${id}/pos`, { ts, lat, lon });
    await publish(client, `rm/v1/live/unit/${id}/status`, { ts, status });
  }
}

function waitLive(page, why, ms = LIVE_TIMEOUT_MS) {
  return waitUntil(
    page,
    () => document.documentElement.dataset.state === 'live',
    null,
    ms,
    why,
  );
}

/** Checks that each of our units is drawn with the right symbol image. */
async function checkSymbols(page) {
  const found = await waitUntil(
    page,
    (ids) => {
      const drawn = window.rmUnitSymbols();
      const mine = drawn.filter((d) => ids.includes(d.id));
      return new Set(mine.map((d) => d.id)).size === ids.length ? mine : null;
    },
    UNITS.map((u) => u[0]),
    STEP_TIMEOUT_MS,
    () => 'not all test units drawn by the symbol layer',
  );
  const drawn = await found.jsonValue();
  const byId = new Map(drawn.map((d) => [d.id, d]));
  const checked = {};
  for (const [id, , , , status, , , ago, org, shape, glyph] of UNITS) {
    const d = byId.get(id);
    if (!d.has) fail(`symbol image ${d.icon} of ${id} not in the map`);
    const [kind, o, sh, gl, st, look] = d.icon.split(':');
    if (kind !== 'unit' || o !== org || sh !== shape || gl !== glyph || st !== String(status)) {
      fail(`${id} drawn as ${d.icon}, wanted ${org}/${shape}/${glyph}/status ${status}`);
    }
    const silent = look.includes('+silent');
    if (silent !== (ago > 10)) fail(`${id}: silent flag ${silent} in ${d.icon}`);
    if (ago > 10 && !/^(stale|lost)/.test(look)) fail(`${id} reported ${ago} min ago but looks ${look}`);
    // The frame is filled with the organisation's colour.
    const px = await page.evaluate(
      ([icon, org]) => {
        const sample = { x: 10, y: 16 };
        return { px: window.rmSymbolPixel(icon, sample.x, sample.y), org };
      },
      [d.icon, org],
    );
    const want = {
      fire: [0xd4, 0x2a, 0x1f],
      thw: [0x1d, 0x4f, 0xb3],
      police: [0x1f, 0x8a, 0x3b],
      aid: [0xf7, 0xf7, 0xf2],
      command: [0xf3, 0xc3, 0x16],
    }[org];
    const alpha = look.startsWith('fresh') ? 255 : null;
    const rgb = px.px;
    if (!rgb || (alpha !== null && rgb[3] < 250) || want.some((v, i) => Math.abs(rgb[i] - v) > 6)) {
      fail(`${id} (${d.icon}) frame pixel ${JSON.stringify(rgb)}, wanted ${JSON.stringify(want)}`);
    }
    checked[id] = d.icon;
  }
  return checked;
}

async function fontPx(page, selector) {
  return page.evaluate(
    (sel) => {
      const el = document.querySelector(sel);
      return el ? parseFloat(getComputedStyle(el).fontSize) : 0;
    },
    selector,
  );
}

await runBrowserTest('browser layouts test', async (browser) => {
  let server = await startServer();
  // The storm surge, for a busy picture to look at.
  const sim = start(
    ['sim', '--mqtt', `mqtt://127.0.0.1:${mqttPort}`, '--scenario', 'storm-surge', '--speed', '60'],
    null,
  );
  let client = await connectMqtt();
  await publishUnits(client);
  // Our rain gauge, at level 0 for now (levels from 10 / 25 / 40 mm/h; a
  // kind without a spike check, so that a sudden jump counts).
  const gauge = 't-rain';
  await publish(
    client,
    `rm/v1/live/sensor/${gauge}/meta`,
    { kind: 'rain_rate', unit: 'mm/h', lat: 53.5445, lon: 9.9655, name: 'Test rain gauge' },
    true,
  );
  // Rising over the last ten minutes (a trend needs three readings over five).
  for (const [ago, value] of [
    [9, 2.0],
    [6, 4.0],
    [2, 6.0],
  ]) {
    await publish(client, `rm/v1/live/sensor/${gauge}/obs`, { ts: Date.now() - ago * 60000, value });
  }

  // --- wall
  const wall = await browser.open(new URL('/?mode=wall', base).href, { viewport: WALL });
  await waitLive(wall, 'wall page not live');
  const wallFonts = {
    statusbar: await fontPx(wall, '#statusbar'),
    alerts: await fontPx(wall, '#alerts'),
  };
  if (wallFonts.statusbar < 22 || wallFonts.alerts < 22) {
    fail(`wall type too small to read at 3 m: ${JSON.stringify(wallFonts)}`);
  }
  await waitUntil(wall, () => window.rmStats().fit !== null, null, STEP_TIMEOUT_MS, 'wall never framed the activity');
  const fit = await wall.evaluate(() => {
    const f = window.rmStats().fit;
    const b = window.rmMapBounds();
    return { fit: f, bounds: b };
  });
  const [fw, fs, fe, fn] = fit.fit.box;
  const [bw, bs, be, bn] = fit.bounds;
  const slack = 0.01;
  if (!(bw <= fw + slack && bs <= fs + slack && be >= fe - slack && bn >= fn - slack)) {
    fail(`wall view ${JSON.stringify(fit.bounds)} does not hold the activity ${JSON.stringify(fit.fit)}`);
  }
  const symbols = await checkSymbols(wall);
  const wallIcon = await wall.evaluate(() => window.rmIconScale());

  // In place: deltas change features, they do not reload the source.
  const before = await wall.evaluate(() => window.rmStats());
  await waitUntil(
    wall,
    (s) => window.rmStats().seq > s + 5 && window.rmStats().cell_updates.state + window.rmStats().cell_updates.diff > 0,
    before.seq,
    STEP_TIMEOUT_MS,
    'no in-place cell updates while deltas arrive',
  );
  const after = await wall.evaluate(() => window.rmStats());
  const reloads = after.cell_updates.full - before.cell_updates.full;
  const snapshots = after.snapshots - before.snapshots;
  if (reloads > snapshots + 1) {
    fail(`cells reloaded ${reloads} times for ${snapshots} snapshots over ${after.seq - before.seq} deltas`);
  }

  // --- an alert within a second of the threshold crossing, acknowledged.
  // The page notes the moment an alert about the gauge enters the panel.
  // On a machine shared with other work one software-rendered frame of the
  // map can take most of a second, so up to three crossings (levels 2, 3,
  // 4) are timed: each must reach the panel, the fastest within a second.
  const crossings = [];
  let alert = null;
  for (const [value, level] of [
    [30, 2],
    [45, 3],
    [85, 4],
  ]) {
    await wall.evaluate((g) => {
      const known = new Set([...document.querySelectorAll('#alert-list .alert')].map((li) => li.dataset.id));
      window.gaugeAlert = null;
      const list = document.getElementById('alert-list');
      const seen = () => {
        if (window.gaugeAlert !== null) return;
        for (const li of list.querySelectorAll('.alert.open')) {
          if (!known.has(li.dataset.id) && li.querySelector('.meta')?.textContent.includes(g)) {
            window.gaugeAlert = { id: li.dataset.id, isNew: li.classList.contains('new'), at: Date.now() };
          }
        }
      };
      new MutationObserver(seen).observe(list, { childList: true, subtree: true });
    }, gauge);
    const sent = Date.now();
    await publish(client, `rm/v1/live/sensor/${gauge}/obs`, { ts: Date.now(), value });
    const found = await waitUntil(
      wall,
      () => window.gaugeAlert,
      null,
      5000,
      `no level-${level} alert for the gauge in the panel`,
    );
    alert = { ...(await found.jsonValue()), value, level };
    alert.ms_after_publish = alert.at - sent;
    if (!alert.isNew) fail('the new alert does not stand out (no .new)');
    crossings.push(alert.ms_after_publish);
    if (alert.ms_after_publish <= ALERT_BUDGET_MS) break;
  }
  if (Math.min(...crossings) > ALERT_BUDGET_MS) {
    fail(`alerts in the panel ${crossings.join(', ')} ms after the publish (> ${ALERT_BUDGET_MS})`);
  }
  // The gauge itself: value, unit, level colour and trend.
  await waitUntil(
    wall,
    ({ g, a }) => {
      const el = document.querySelector(`.sensor[data-id="${g}"]`);
      const trend = el?.querySelector('.trend');
      return (
        el &&
        el.classList.contains(`lvl-${a.level}`) &&
        el.querySelector('.val').textContent === `${a.value} mm/h` &&
        trend.dataset.dir === 'up' &&
        /[↑↗]/.test(trend.textContent)
      );
    },
    { g: gauge, a: alert },
    STEP_TIMEOUT_MS,
    `the gauge does not show ${alert.value} mm/h at level ${alert.level} with a rising trend arrow`,
  );
  await wall.locator(`.alert[data-id="${alert.id}"] .ack`).click();
  await waitUntil(
    wall,
    (id) => document.querySelector(`.alert[data-id="${id}"]`)?.classList.contains('acked'),
    alert.id,
    STEP_TIMEOUT_MS,
    `alert ${alert.id} not acknowledged`,
  );
  await wall.waitForTimeout(1500);
  await wall.screenshot({ path: join(shots, 'wall.png') });

  // --- tablet, on a sector
  const tablet = await browser.open(
    new URL(`/?mode=tablet&sector=${SECTOR.join(',')}`, base).href,
    { viewport: TABLET, hasTouch: true },
  );
  await waitLive(tablet, 'tablet page not live');
  await checkSymbols(tablet);
  // Over a weak link the tablet asks for one resolution coarser than the
  // wall would at the same zoom.
  const tabletRes = await waitUntil(
    tablet,
    () => {
      const z = window.rmZoom();
      let wallRes = 10;
      if (z < 9.5) wallRes = 6;
      else if (z < 10.5) wallRes = 7;
      else if (z < 11.5) wallRes = 8;
      else if (z < 13) wallRes = 9;
      const res = window.rmStats().res;
      return res === Math.max(6, wallRes - 1) ? { res, zoom: z } : null;
    },
    null,
    STEP_TIMEOUT_MS,
    'tablet cells not one resolution coarser than the wall at its zoom',
  ).then((h) => h.jsonValue());
  const tabletIcon = await tablet.evaluate(() => window.rmIconScale());
  if (!(wallIcon > tabletIcon)) fail(`wall symbols (${wallIcon}) not larger than tablet ones (${tabletIcon})`);
  await tablet.waitForTimeout(1500);
  await tablet.screenshot({ path: join(shots, 'tablet.png') });

  // --- the server goes away
  const held = await tablet.evaluate(() => window.rmStats());
  await client.endAsync(true).catch(() => {});
  sim.kill('SIGKILL');
  server.kill('SIGKILL');
  for (const [name, page] of [
    ['tablet', tablet],
    ['wall', wall],
  ]) {
    await waitUntil(
      page,
      () => document.documentElement.dataset.state === 'reconnecting' && window.rmStats().offline,
      null,
      STEP_TIMEOUT_MS,
      `${name} not reconnecting and marked offline after the server was killed`,
    );
  }
  const offline = await tablet.evaluate(() => ({
    stats: window.rmStats(),
    banner: document.getElementById('offline-banner').hidden
      ? null
      : document.getElementById('offline-text').textContent,
  }));
  if (!offline.banner || !offline.banner.includes('as at')) fail(`no old-picture marker: ${JSON.stringify(offline)}`);
  if (offline.stats.units !== held.units || offline.stats.cells !== held.cells) {
    fail(`the last picture was not kept offline: ${JSON.stringify(held)} -> ${JSON.stringify(offline.stats)}`);
  }
  await tablet.waitForTimeout(1200);
  await tablet.screenshot({ path: join(shots, 'tablet-offline.png') });

  // --- and comes back: live again, with a fresh snapshot
  server = await startServer();
  for (const [name, page, had] of [
    ['tablet', tablet, offline.stats.snapshots],
    ['wall', wall, after.snapshots],
  ]) {
    await waitUntil(
      page,
      (n) =>
        document.documentElement.dataset.state === 'live' &&
        window.rmStats().snapshots > n &&
        !window.rmStats().offline,
      had,
      LIVE_TIMEOUT_MS,
      `${name} not live with a fresh snapshot after the restart`,
    );
  }
  const back = await tablet.evaluate(() => window.rmStats());
  if (back.units === 0) fail('the picture after the restart is empty (not recovered)');

  // --- a drill space is an EXERCISE
  client = await connectMqtt();
  await publish(
    client,
    `rm/v1/${DRILL}/sensor/d-gauge/meta`,
    { kind: 'water_level', unit: 'm NHN', lat: 53.5445, lon: 9.9655 },
    true,
  );
  await publish(client, `rm/v1/${DRILL}/sensor/d-gauge/obs`, { ts: Date.now(), value: 2.5 });
  await client.endAsync().catch(() => {});
  const drill = await browser.open(new URL(`/?space=${DRILL}&mode=wall`, base).href, {
    viewport: WALL,
  });
  await waitLive(drill, 'drill page not live');
  const banner = (await drill.locator('#exercise').isVisible())
    ? await drill.locator('#exercise').innerText()
    : '';
  if (!banner.includes('EXERCISE')) fail(`no EXERCISE banner in ${DRILL}: ${JSON.stringify(banner)}`);
  await drill.close();

  server.kill('SIGKILL');
  return {
    base,
    wall_fonts_px: wallFonts,
    wall_fit: fit.fit,
    symbols,
    icon_scale: { wall: wallIcon, tablet: tabletIcon },
    tablet: tabletRes,
    cell_updates: after.cell_updates,
    alert: { id: alert.id, crossings_ms: crossings },
    offline_banner: offline.banner,
    snapshots_after_restart: back.snapshots,
    screenshots: shots,
  };
});
