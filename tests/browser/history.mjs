// Browser test of the time slider, the mission log and the drill reset.
//
//   node history.mjs <url> <screenshot-dir> <drill-space>
//
// Needs a demo whose live space has a few seconds of event log behind it,
// and a drill space with data in it and nobody publishing into it any more.
//
// 1. Tablet layout, touch: a tap on the slider's track goes back in time:
//    data-state becomes `past`, rmStats() says mode `past` and the time, the
//    sensor values shown are those the REST `snapshot?at=` answers for the
//    same viewport and time (and differ from now), and live deltas do not
//    touch them (screenshot `browser-past.png`). The Live button brings
//    `live` back with seq moving on.
// 2. Wall layout: the slider folds away; the mission log lists the alerts
//    the scenario raised; acknowledging one adds an `alert_acked` entry; the
//    CSV link downloads the log (screenshot of the panel:
//    `browser-mission-log.png`).
// 3. The drill space: Reset drill asks first (Cancel keeps everything), then
//    empties the picture, which stays empty, and the log says so; the
//    drill's past now begins at the reset, so the slider stays, its range
//    starting then (`browser-drill-reset.png`). A second viewer of the drill
//    empties too.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fail, runBrowserTest, waitUntil } from './lib.mjs';

const LIVE_TIMEOUT_MS = 30000;
const STEP_TIMEOUT_MS = 20000;
const TABLET = { width: 1280, height: 800 };
const WALL = { width: 1920, height: 1080 };

const [baseArg, dirArg, drill] = process.argv.slice(2);
if (!baseArg || !dirArg || !drill) {
  console.error('usage: node history.mjs <url> <screenshot-dir> <drill-space>');
  process.exit(2);
}
const base = new URL(baseArg);
const shots = resolve(dirArg);
mkdirSync(shots, { recursive: true });

function pageUrl(query) {
  const u = new URL('/', base);
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
  return u.href;
}

async function getJson(url) {
  const res = await fetch(url);
  if (!res.ok) fail(`GET ${url} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

/** What the page's sensor markers show, by id. */
function shownSensors(page) {
  return page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll('.sensor[data-id]')].map((el) => [
        el.dataset.id,
        el.querySelector('.val').textContent,
      ]),
    ),
  );
}

/** The text a sensor marker shows (as the page formats it). */
function sensorText(s) {
  const v = s.value;
  let text = '–';
  if (typeof v === 'number' && Number.isFinite(v)) {
    const a = Math.abs(v);
    if (Number.isInteger(v)) text = String(v);
    else if (a < 10) text = v.toFixed(2);
    else if (a < 100) text = v.toFixed(1);
    else text = v.toFixed(0);
  }
  return `${text}${s.unit ? ` ${s.unit}` : ''}`;
}

function expectedSensors(snapshot) {
  return Object.fromEntries(
    snapshot.sensors
      .filter((s) => Number.isFinite(s.lon) && Number.isFinite(s.lat))
      .map((s) => [s.id, sensorText(s)]),
  );
}

function waitShown(page, selector, why) {
  return waitUntil(
    page,
    (sel) => document.querySelector(sel) !== null,
    selector,
    STEP_TIMEOUT_MS,
    why,
  );
}

function waitLive(page, why) {
  return waitUntil(
    page,
    () => document.documentElement.dataset.state === 'live' && window.rmStats().mode === 'live',
    null,
    LIVE_TIMEOUT_MS,
    why,
  );
}

async function timeSlider(browser) {
  const page = await browser.open(pageUrl({ mode: 'tablet' }), {
    viewport: TABLET,
    hasTouch: true,
  });
  await waitLive(page, 'tablet page not live');
  await waitUntil(
    page,
    () => !document.getElementById('timebar').hidden,
    null,
    STEP_TIMEOUT_MS,
    'time slider not shown',
  );
  const range = page.locator('#tb-range');
  const box = await range.boundingBox();
  if (!box) fail('time slider has no box');

  // The page's requests for pictures of the past; the last one is shown.
  const asked = [];
  let answered = 0;
  const isPast = (r) => /\/snapshot\?.*\bat=/.test(r.url());
  page.on('request', (r) => isPast(r) && asked.push(r.url()));
  page.on('requestfinished', (r) => isPast(r) && (answered += 1));
  page.on('requestfailed', (r) => isPast(r) && (answered += 1));

  // A tap at 40 % of the track: some way back, well away from now.
  await page.touchscreen.tap(box.x + box.width * 0.4, box.y + box.height / 2);
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let quiet = 0;
  while (quiet < 1000) {
    if (Date.now() > deadline) fail(`past pictures asked ${asked.length}, answered ${answered}`);
    const n = asked.length;
    await page.waitForTimeout(250);
    quiet = asked.length > 0 && asked.length === n && answered === n ? quiet + 250 : 0;
  }
  const request = { url: () => asked[asked.length - 1] };
  const at = Number(new URL(request.url()).searchParams.get('at'));
  const sliderAt = Number(await range.inputValue()) * 1000;
  if (at !== sliderAt) fail(`fetched at=${at} but the slider says ${sliderAt}`);
  await waitUntil(
    page,
    (t) => document.documentElement.dataset.state === 'past' && window.rmStats().at === t,
    at,
    STEP_TIMEOUT_MS,
    `page not showing the past at ${at}`,
  );
  const stats = await page.evaluate(() => window.rmStats());
  if (stats.mode !== 'past') fail(`rmStats().mode=${stats.mode} in the past`);
  const banner = await page.locator('#past-banner').innerText();
  if (!(await page.locator('#past-banner').isVisible()) || !banner.includes('PAST')) {
    fail(`no PAST banner: ${JSON.stringify(banner)}`);
  }
  const conn = await page.locator('#st-conn').innerText();
  if (!conn.startsWith('PAST')) fail(`status bar says ${conn} in the past`);

  // What the page shows is the server's picture at that time, not now's.
  const past = await getJson(request.url());
  const live = await getJson(request.url().replace(/&at=\d+/, ''));
  const want = expectedSensors(past);
  const now = expectedSensors(live);
  const shown = await shownSensors(page);
  if (Object.keys(want).length === 0) fail(`no sensors in the picture at ${at}`);
  if (
    JSON.stringify(shown, Object.keys(shown).sort()) !==
    JSON.stringify(want, Object.keys(want).sort())
  ) {
    fail(`sensors shown ${JSON.stringify(shown)} are not those at ${at}: ${JSON.stringify(want)}`);
  }
  const differing = Object.keys(want).filter((id) => now[id] !== want[id]);
  if (differing.length === 0)
    fail(`the picture at ${at} equals the live one: the test proves nothing`);
  const cellsAt = past.cells.filter((c) => c.res === past.res).length;
  if (stats.cells !== cellsAt || stats.units !== past.units.length) {
    fail(
      `page holds ${JSON.stringify(stats)}; the picture at ${at} has ${cellsAt} cells, ${past.units.length} units`,
    );
  }

  // Live deltas go on arriving but do not touch the past picture.
  await page.waitForTimeout(2000);
  const later = await page.evaluate(() => window.rmStats());
  if (later.seq !== stats.seq || later.mode !== 'past' || later.at !== at) {
    fail(
      `the past picture changed on its own: ${JSON.stringify(stats)} -> ${JSON.stringify(later)}`,
    );
  }
  if (JSON.stringify(await shownSensors(page)) !== JSON.stringify(shown))
    fail('sensor values changed while in the past');
  const ackDisabled = await page.evaluate(() =>
    [...document.querySelectorAll('.alert .ack')].every((b) => b.disabled),
  );
  if (!ackDisabled) fail('alerts can be acknowledged in a picture of the past');
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(shots, 'browser-past.png') });

  // Back to live: a fresh snapshot, then deltas again.
  await page.locator('#tb-live').tap();
  await waitLive(page, 'not live again after the Live button');
  const back = await page.evaluate(() => window.rmStats());
  if (back.at !== null) fail(`rmStats().at=${back.at} while live`);
  if (await page.locator('#past-banner').isVisible()) fail('PAST banner still shown while live');
  await waitUntil(
    page,
    (s) => window.rmStats().seq > s,
    back.seq,
    STEP_TIMEOUT_MS,
    'seq not moving after going live',
  );
  const moved = await page.evaluate(() => window.rmStats().seq);
  await page.close();
  return {
    at,
    past_seq: stats.seq,
    live_seq: moved,
    sensors_compared: Object.keys(want).length,
    sensors_differing_from_now: differing.length,
  };
}

async function missionLog(browser) {
  const page = await browser.open(pageUrl({}), { viewport: WALL });
  await waitLive(page, 'wall page not live');
  // On the wall the slider stays out of the way until asked for.
  if (await page.locator('#timebar').isVisible()) fail('time slider open on the wall display');
  await waitUntil(
    page,
    () => !document.getElementById('timebar-toggle').hidden,
    null,
    STEP_TIMEOUT_MS,
    'no history button on the wall',
  );
  await waitShown(
    page,
    '#mlog-list li[data-kind="alert_raised"]',
    'mission log lists no raised alert',
  );
  const id = await page
    .locator('.alert.open .ack:not([disabled])')
    .first()
    .evaluate((b) => b.closest('.alert').dataset.id)
    .catch(() => fail('no open alert to acknowledge'));
  // By its id: the list is redrawn as alerts come, so "the first" moves.
  await page.locator(`.alert[data-id="${id}"] .ack`).click();
  await waitUntil(
    page,
    (a) =>
      document.querySelector(`#mlog-list li[data-kind="alert_acked"][data-about="${a}"]`) !== null,
    id,
    STEP_TIMEOUT_MS,
    `mission log lists no acknowledgement of ${id}`,
  );
  const entries = await page.locator('#mlog-list li').count();
  const times = await page.evaluate(() =>
    [...document.querySelectorAll('#mlog-list li')].map((li) => Number(li.dataset.at)),
  );
  if (times.some((t, k) => k > 0 && t > times[k - 1])) fail('mission log is not newest first');
  const csv = await page.evaluate(async () => {
    const href = document.getElementById('mlog-csv').href;
    const res = await fetch(href);
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
  });
  if (
    csv.status !== 200 ||
    !/text\/csv/.test(csv.type || '') ||
    !csv.text.startsWith('at,space,kind')
  ) {
    fail(`CSV link: ${csv.status} ${csv.type} ${csv.text.slice(0, 80)}`);
  }
  if (!csv.text.includes(`alert_acked,${id},`)) fail(`CSV has no acknowledgement of ${id}`);
  await page.locator('#mlog').screenshot({ path: join(shots, 'browser-mission-log.png') });
  await page.close();
  return { acked: id, log_entries_shown: entries };
}

async function drillReset(browser) {
  const page = await browser.open(pageUrl({ space: drill, mode: 'tablet' }), {
    viewport: TABLET,
    hasTouch: true,
  });
  await waitLive(page, 'drill page not live');
  await waitUntil(
    page,
    () => window.rmStats().units + window.rmStats().sensors > 0,
    null,
    STEP_TIMEOUT_MS,
    'drill space empty before the reset',
  );
  if (!(await page.locator('#exercise').isVisible())) fail('no EXERCISE banner in a drill space');
  // A second viewer of the same drill, which learns of the reset on its own.
  const other = await browser.open(pageUrl({ space: drill }), { viewport: WALL });
  await waitLive(other, 'second drill page not live');
  await waitUntil(
    page,
    () => !document.getElementById('timebar').hidden,
    null,
    STEP_TIMEOUT_MS,
    'no time slider in a drill with a log',
  );
  const before = await page.evaluate(() => window.rmStats());

  // The confirm step: Cancel keeps everything.
  await page.locator('#drill-reset').tap();
  if (!(await page.locator('#reset-dialog').isVisible())) fail('Reset drill asked nothing');
  await page.locator('#reset-no').tap();
  if (await page.locator('#reset-dialog').isVisible()) fail('Cancel left the dialog open');
  await page.waitForTimeout(1000);
  const kept = await page.evaluate(() => window.rmStats());
  if (kept.units !== before.units || kept.sensors !== before.sensors)
    fail(`Cancel changed the picture: ${JSON.stringify(kept)}`);

  await page.locator('#drill-reset').tap();
  await page.locator('#reset-yes').tap();
  await waitUntil(
    page,
    () => {
      const s = window.rmStats();
      return (
        document.documentElement.dataset.state === 'live' &&
        s.cells + s.units + s.sensors + s.alerts === 0
      );
    },
    null,
    STEP_TIMEOUT_MS,
    'drill picture not empty after the reset',
  );
  await waitShown(
    page,
    '#mlog-list li[data-kind="drill_reset"]',
    'mission log does not list the reset',
  );
  // A reset drill's past begins at the reset: the slider stays, and the
  // range the server gives starts at the reset, not before it.
  const journal = await getJson(new URL(`/api/v1/${drill}/mission-log`, base).href);
  const resetAt = journal.entries.find((e) => e.kind === 'drill_reset')?.at_ms;
  if (resetAt === undefined) fail('no drill_reset entry in the mission log');
  const range = await getJson(new URL(`/api/v1/${drill}/history`, base).href);
  if (Math.abs(range.from_ms - resetAt) > 1000)
    fail(`history of the reset drill starts at ${range.from_ms}, the reset was at ${resetAt}`);
  await waitUntil(
    page,
    () => !document.getElementById('timebar').hidden,
    null,
    STEP_TIMEOUT_MS,
    'time slider gone for a drill whose past begins at its reset',
  );
  await page.waitForTimeout(1500);
  const after = await page.evaluate(() => window.rmStats());
  if (after.cells + after.units + after.sensors + after.alerts !== 0)
    fail(`drill filled again: ${JSON.stringify(after)}`);
  if (after.seq < before.seq) fail(`seq went back from ${before.seq} to ${after.seq}`);
  const rest = await getJson(new URL(`/api/v1/${drill}/snapshot?res=8`, base).href);
  if (rest.units.length + rest.sensors.length + rest.cells.length !== 0)
    fail('server still holds drill data after the reset');
  await page.screenshot({ path: join(shots, 'browser-drill-reset.png') });
  await page.close();
  await waitUntil(
    other,
    () => {
      const s = window.rmStats();
      return document.documentElement.dataset.state === 'live' && s.units + s.sensors === 0;
    },
    null,
    STEP_TIMEOUT_MS,
    'the other viewer still shows the drill as it was before the reset',
  );
  await other.close();
  return { before, after };
}

await runBrowserTest('browser history test', async (browser) => {
  const slider = await timeSlider(browser);
  browser.checkErrors();
  const log = await missionLog(browser);
  browser.checkErrors();
  const reset = await drillReset(browser);
  return { slider, mission_log: log, drill_reset: reset, screenshots: shots };
});
