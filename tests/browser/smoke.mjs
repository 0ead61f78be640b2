// Headless browser smoke test of the RESCUE MATE web client.
//
//   node smoke.mjs <url> <screenshot.png>
//
// Opens the page in Debian's Chromium (through playwright-core), waits until
// the page reports `data-state="live"` with cells in the picture, waits for
// at least one further delta (seq advances), lets the map settle, saves a
// screenshot and prints a one-line JSON summary. Exits 1 with the reason on
// any failure, including uncaught errors in the page.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fail, runBrowserTest, waitUntil } from './lib.mjs';

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

await runBrowserTest('browser smoke test', async (browser) => {
  const page = await browser.open(url);
  await waitUntil(
    page,
    () => document.documentElement.dataset.state === 'live',
    null,
    LIVE_TIMEOUT_MS,
    'page not live',
  );
  browser.checkErrors();

  const first = await page.evaluate(() => window.rmStats());
  if (!first || !(first.cells > 0)) fail(`live but no cells: ${JSON.stringify(first)}`);

  await waitUntil(
    page,
    (seq) => window.rmStats().seq > seq,
    first.seq,
    SEQ_TIMEOUT_MS,
    `seq did not advance past ${first.seq}`,
  );
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
  browser.checkErrors();

  mkdirSync(dirname(shotPath), { recursive: true });
  await page.screenshot({ path: shotPath });

  return {
    url,
    screenshot: shotPath,
    first_seq: first.seq,
    seq: last.seq,
    cells: last.cells,
    units: last.units,
    sensors: last.sensors,
    alerts: last.alerts,
    map_idle: mapIdle,
  };
});
