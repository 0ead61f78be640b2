// Headless browser smoke test of the RESCUE MATE web client.
//
//   node smoke.mjs <url> <screenshot.png>
//
// Opens the page in Debian's Chromium (through playwright-core), waits until
// the page reports `data-state="live"` with cells in the picture, waits for
// at least one further delta (seq advances), lets the map settle, saves a
// screenshot and prints a one-line JSON summary. Exits 1 with the reason on
// any failure, including uncaught errors in the page.

import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.RM_CHROMIUM || '/usr/bin/chromium';
const LIVE_TIMEOUT_MS = 30000;
const SEQ_TIMEOUT_MS = 20000;
const IDLE_TIMEOUT_MS = 10000;
const SETTLE_MS = 1000;

const [url, shotArg] = process.argv.slice(2);
if (!url || !shotArg) {
  console.error('usage: node smoke.mjs <url> <screenshot.png>');
  process.exit(2);
}
const shotPath = resolve(shotArg);

const started = Date.now();
const consoleErrors = [];
const pageErrors = [];
const userDataDir = mkdtempSync(join(tmpdir(), 'rm-smoke-'));
let context = null;

function fail(why) {
  const err = new Error(why);
  err.smoke = true;
  throw err;
}

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => {
    pageErrors.push(String(err && err.stack ? err.stack : err));
  });

  const response = await page.goto(url, { waitUntil: 'load', timeout: LIVE_TIMEOUT_MS });
  if (!response || !response.ok()) {
    fail(`GET ${url} answered ${response ? response.status() : 'nothing'}`);
  }

  try {
    await page.waitForFunction(() => document.documentElement.dataset.state === 'live', null, {
      timeout: LIVE_TIMEOUT_MS,
      polling: 100,
    });
  } catch {
    const st = await page.evaluate(() => document.documentElement.dataset.state).catch(() => '?');
    fail(`page not live within ${LIVE_TIMEOUT_MS} ms (data-state=${st})`);
  }
  if (pageErrors.length) fail(`uncaught page error: ${pageErrors[0]}`);

  const first = await page.evaluate(() => window.rmStats());
  if (!first || !(first.cells > 0)) fail(`live but no cells: ${JSON.stringify(first)}`);

  try {
    await page.waitForFunction((seq) => window.rmStats().seq > seq, first.seq, {
      timeout: SEQ_TIMEOUT_MS,
      polling: 100,
    });
  } catch {
    fail(`seq did not advance past ${first.seq} within ${SEQ_TIMEOUT_MS} ms`);
  }
  const advancedAt = Date.now();

  // Let the map load its style and draw: wait for an idle event after the
  // seq advanced (a busy picture may never go idle; then just wait a bit).
  let mapIdle = true;
  try {
    await page.waitForFunction(
      (since) =>
        document.documentElement.dataset.map === 'loaded' &&
        Number(document.documentElement.dataset.mapIdle || 0) >= since,
      advancedAt,
      { timeout: IDLE_TIMEOUT_MS, polling: 100 },
    );
  } catch {
    mapIdle = false;
  }
  await page.waitForTimeout(SETTLE_MS);

  const state = await page.evaluate(() => document.documentElement.dataset.state);
  if (state !== 'live') fail(`page left live state (data-state=${state})`);
  const mapLoaded = await page.evaluate(() => document.documentElement.dataset.map === 'loaded');
  if (!mapLoaded) fail('map style never loaded');
  const last = await page.evaluate(() => window.rmStats());
  if (pageErrors.length) fail(`uncaught page error: ${pageErrors[0]}`);

  mkdirSync(dirname(shotPath), { recursive: true });
  await page.screenshot({ path: shotPath });

  console.log(
    JSON.stringify({
      ok: true,
      url,
      screenshot: shotPath,
      first_seq: first.seq,
      seq: last.seq,
      cells: last.cells,
      units: last.units,
      sensors: last.sensors,
      alerts: last.alerts,
      map_idle: mapIdle,
      console_errors: consoleErrors.length,
      first_console_error: consoleErrors[0] ?? null,
      elapsed_ms: Date.now() - started,
    }),
  );
}

let code = 0;
try {
  await main();
} catch (err) {
  code = 1;
  const why = err && err.smoke ? err.message : String(err && err.stack ? err.stack : err);
  console.error(`browser smoke test FAILED: ${why}`);
  for (const e of pageErrors) console.error(`  page error: ${e}`);
  for (const e of consoleErrors.slice(0, 20)) console.error(`  console error: ${e}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(code);
