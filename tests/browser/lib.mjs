// What the browser tests share: Debian's Chromium through playwright-core
// with the flags that work headless in a container, a fresh profile per run,
// error collection and the exit protocol (a one-line JSON summary on
// success; exit 1 with the reason on failure).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.RM_CHROMIUM || '/usr/bin/chromium';

const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A failure of what is tested (reported without a stack). */
export function fail(why) {
  const err = new Error(why);
  err.smoke = true;
  throw err;
}

/**
 * Runs `main(browser)` where `browser.open(url, { viewport, hasTouch,
 * before })` opens a page (after `await before(page)`, when given) and
 * collects its uncaught errors; prints what `main` returns
 * as JSON, or the failure, and exits. All pages share one browser profile
 * (a fresh `--user-data-dir`), so `hasTouch` is taken from the first open.
 */
export async function runBrowserTest(name, main) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'rm-browser-'));
  const consoleErrors = [];
  const pageErrors = [];
  let context = null;
  const started = Date.now();
  const browser = {
    consoleErrors,
    pageErrors,
    async open(url, { viewport = { width: 1600, height: 1000 }, hasTouch = false, before } = {}) {
      if (!context) {
        context = await chromium.launchPersistentContext(userDataDir, {
          executablePath: CHROMIUM,
          headless: true,
          viewport,
          hasTouch,
          // A document fulfilled by the test (RM_WEB_DIR) counts as public
          // to Chromium, which then refuses its socket to the loopback server.
          args: process.env.RM_WEB_DIR
            ? [...FLAGS, '--disable-features=LocalNetworkAccessChecks']
            : FLAGS,
        });
      }
      const page =
        context.pages().find((p) => p.url() === 'about:blank') ?? (await context.newPage());
      await page.setViewportSize(viewport);
      page.on('console', (msg) => {
        if (msg.type() === 'error') consoleErrors.push(msg.text());
      });
      page.on('pageerror', (err) => {
        pageErrors.push(String(err && err.stack ? err.stack : err));
      });
      await serveLocalWeb(page);
      // Routes a test sets up before the page loads (e.g. a synthetic socket).
      if (before) await before(page);
      const response = await page.goto(url, { waitUntil: 'load', timeout: 30000 });
      if (!response || !response.ok()) {
        fail(`GET ${url} answered ${response ? response.status() : 'nothing'}`);
      }
      return page;
    },
    checkErrors() {
      if (pageErrors.length) fail(`uncaught page error: ${pageErrors[0]}`);
    },
  };
  let code = 0;
  try {
    const summary = await main(browser);
    browser.checkErrors();
    console.log(
      JSON.stringify({
        ok: true,
        ...summary,
        console_errors: consoleErrors.length,
        first_console_error: consoleErrors[0] ?? null,
        elapsed_ms: Date.now() - started,
      }),
    );
  } catch (err) {
    code = 1;
    const why = err && err.smoke ? err.message : String(err && err.stack ? err.stack : err);
    console.error(`${name} FAILED: ${why}`);
    for (const e of pageErrors) console.error(`  page error: ${e}`);
    for (const e of consoleErrors.slice(0, 20)) console.error(`  console error: ${e}`);
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
  process.exit(code);
}

/**
 * For work on the client: with `RM_WEB_DIR=web` the page's own files come
 * from that folder instead of the server, so a change needs no rebuild.
 */
async function serveLocalWeb(page) {
  const dir = process.env.RM_WEB_DIR;
  if (!dir) return;
  const types = {
    'index.html': 'text/html',
    'app.js': 'text/javascript',
    'symbols.js': 'text/javascript',
    'style.css': 'text/css',
  };
  await page.route(
    (u) => u.pathname === '/' || Object.hasOwn(types, u.pathname.slice(1)),
    (route) => {
      const name = new URL(route.request().url()).pathname.slice(1) || 'index.html';
      route.fulfill({ path: join(dir, name), contentType: types[name] });
    },
  );
}

/** Waits until `fn(arg)` is truthy in the page, failing with `why` after `ms`. */
export async function waitUntil(page, fn, arg, ms, why) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  } catch {
    const st = await page
      .evaluate(() => ({
        state: document.documentElement.dataset.state,
        stats: window.rmStats?.(),
      }))
      .catch(() => '?');
    fail(
      `${typeof why === 'function' ? why() : why} within ${ms} ms (page: ${JSON.stringify(st)})`,
    );
  }
  return null;
}
