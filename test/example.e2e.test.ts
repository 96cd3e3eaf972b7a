/**
 * End to end: the example blog in a real headless Chromium. A page loaded
 * twice runs no SQL the second time (the panel says so), and an edit made
 * through the form shows at once on the cached pages.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startExample, type RunningExample } from '../templates-example/server';
import { redisUrl, uniquePrefix } from './helpers/env';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);

async function stat(page: Page, name: 'hits' | 'misses' | 'sql'): Promise<number> {
  const text = await page.locator(`#cacheops-panel [data-stat="${name}"]`).textContent();
  if (text === null) throw new Error(`the panel has no ${name} figure`);
  return Number.parseInt(text, 10);
}

async function withBrowser(run: (page: Page, app: RunningExample) => Promise<void>): Promise<void> {
  const app = await startExample(0, { redisUrl, prefix: uniquePrefix('e2e') });
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage();
    await run(page, app);
  } finally {
    await browser?.close();
    await app.example.cacheops.invalidateAll();
    await app.close();
  }
}

if (!hasChromium) {
  test.skip(`example e2e: SKIPPED, no Chromium at ${CHROMIUM} (install chromium or set CHROMIUM_PATH)`, () => {});
} else {
  test.serial('example: a second load runs no SQL; an edit through the form shows at once', async (t) => {
    await withBrowser(async (page, app) => {
      // The home page: automatic query caching plus a cached_as fragment.
      await page.goto(`${app.url}/`);
      t.true(await stat(page, 'sql') > 0, 'the first load queries the database');
      t.true(await stat(page, 'misses') > 0);
      await page.reload();
      t.is(await stat(page, 'sql'), 0, 'the second load of / runs no SQL');
      t.true(await stat(page, 'hits') > 0);

      // The post page: a cached view.
      await page.goto(`${app.url}/posts/1`);
      const before = await page.locator('#post-title').textContent();
      t.is(before, 'Caching without stale reads');
      t.true(await stat(page, 'sql') > 0);
      await page.reload();
      t.is(await stat(page, 'sql'), 0, 'the second load of /posts/1 runs no SQL');
      t.is(await stat(page, 'hits'), 1, 'the view itself was the one hit');

      // Edit through the form: POST, then the redirect shows the new title.
      const title = `Edited ${Date.now()}`;
      await page.click('text=Edit');
      await page.waitForURL(`${app.url}/posts/1/edit`);
      await page.fill('input[name="title"]', title);
      await Promise.all([page.waitForURL(`${app.url}/posts/1`), page.click('button[type="submit"]')]);
      t.is(await page.locator('#post-title').textContent(), title, 'the cached page shows the edit at once');
      t.true(await stat(page, 'sql') > 0, 'it was rendered again');
      await page.reload();
      t.is(await page.locator('#post-title').textContent(), title);
      t.is(await stat(page, 'sql'), 0, 'and cached again');

      // The list was invalidated by the same write.
      await page.goto(`${app.url}/`);
      t.is(await page.locator(`a[href="/posts/1"]`).first().textContent(), title);
    });
  });
}
