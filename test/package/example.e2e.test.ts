/**
 * End to end: the example blog in a real headless Chromium. A page loaded
 * twice runs no SQL the second time (the panel says so, in correct plurals,
 * its reads listed open), an edit made through the form shows at once on the
 * cached pages, and the panel and the live page list what the edit's
 * invalidation dropped: the post's page, the home page's list and count, the
 * sidebar fragment. The page is styled by its stylesheet.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startExample, type RunningExample } from '../../templates-example/server';
import { redisUrl, uniquePrefix } from '../helpers/env';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);

async function stat(page: Page, name: 'hits' | 'misses' | 'sql' | 'invalidations'): Promise<number> {
  const text = await page.locator(`#cacheops-panel [data-stat="${name}"]`).textContent();
  if (text === null) throw new Error(`the panel has no ${name} figure`);
  return Number.parseInt(text, 10);
}

const reads = (page: Page): Promise<string[]> => page.locator('#cacheops-reads li').allTextContents();
/** The panel's first line, spaces collapsed. */
const summary = async (page: Page): Promise<string> => ((await page.locator('#cacheops-panel .summary').textContent()) ?? '').replace(/\s+/g, ' ').trim();

async function withBrowser(run: (page: Page, app: RunningExample, browser: Browser) => Promise<void>): Promise<void> {
  const app = await startExample(0, { redisUrl, prefix: uniquePrefix('e2e') });
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage();
    await run(page, app, browser);
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
    await withBrowser(async (page, app, browser) => {
      // The home page: automatic query caching plus a cached_as fragment.
      await page.goto(`${app.url}/`);
      t.true(await stat(page, 'sql') > 0, 'the first load queries the database');
      t.true(await stat(page, 'misses') > 0);
      t.deepEqual(await reads(page), ['Post list: miss', 'Post count: miss', 'Category list: miss', 'fragment "sidebar": miss']);
      await page.reload();
      t.is(await stat(page, 'sql'), 0, 'the second load of / runs no SQL');
      t.is(await stat(page, 'hits'), 3, 'the list, the count and the sidebar fragment (its query is not run)');
      t.not(await page.locator('#cacheops-reads').getAttribute('open'), null, 'the reads are listed open');
      t.is(await summary(page), 'This request, GET /: 3 cache hits 0 misses 0 SQL queries 0 invalidations live invalidations');
      // Styled as a blog: the stylesheet is served and applied.
      t.is(await page.locator('.site-header').evaluate((e) => (globalThis as unknown as { getComputedStyle(el: unknown): { borderBottomStyle: string } }).getComputedStyle(e).borderBottomStyle), 'solid', 'blog.css is applied');

      // The post page: a cached view.
      await page.goto(`${app.url}/posts/1`);
      const before = await page.locator('#post-title').textContent();
      t.is(before, 'Caching without stale reads');
      t.true(await stat(page, 'sql') > 0);
      t.true((await reads(page)).includes('page /posts/1 (cached view): miss, rendered'), 'the view miss is listed');
      t.true(await stat(page, 'misses') >= 1);
      t.is(await stat(page, 'invalidations'), 0, 'a read invalidates nothing');
      await page.reload();
      t.is(await stat(page, 'sql'), 0, 'the second load of /posts/1 runs no SQL');
      t.is(await stat(page, 'hits'), 1, 'the view itself was the one hit');
      t.deepEqual(await reads(page), ['page /posts/1 (cached view): hit']);
      t.is(await summary(page), 'This request, GET /posts/1: 1 cache hit 0 misses 0 SQL queries 0 invalidations live invalidations', 'singular for one');

      // The live page, open in another tab before the write.
      const live = await browser.newPage();
      await live.goto(`${app.url}/invalidations`);
      await live.locator('#live-status', { hasText: 'live' }).waitFor();
      t.is(await live.locator('#live-invalidations li.entry').count(), 0, 'nothing invalidated yet');

      // Edit through the form: POST, then the redirect shows the new title.
      const title = `Edited ${Date.now()}`;
      await page.click('text=Edit');
      await page.waitForURL(`${app.url}/posts/1/edit`);
      await page.fill('input[name="title"]', title);
      await Promise.all([page.waitForURL(`${app.url}/posts/1`), page.click('button[type="submit"]')]);
      t.is(await page.locator('#post-title').textContent(), title, 'the cached page shows the edit at once');
      t.true(await stat(page, 'sql') > 0, 'it was rendered again');
      // The write's invalidation, carried over the redirect: the old and the new state of post 1, and what it dropped.
      t.is(await page.locator('#cacheops-previous summary').textContent(),
        'Invalidated by the previous request, POST /posts/1/edit: 1 invalidation, 7 cached values dropped');
      t.not(await page.locator('#cacheops-previous').getAttribute('open'), null);
      t.deepEqual((await page.locator('#cacheops-previous li[data-dropped]').allTextContents()).sort(), [
        'Category list, read by /', 'Post by key, read by /posts/1', 'Post by key, read by /posts/1/edit', 'Post count, read by /',
        'Post list, read by /', 'fragment "sidebar", read by /', 'page /posts/1',
      ], 'the post page and its query, the home list, count and sidebar (fragment and query), the edit form\'s read');
      const written = await page.locator('#cacheops-previous li[data-model="Post"]').allTextContents();
      t.is(written.length, 2, 'old and new row state');
      t.true(written.some((w) => w.includes('id=1 & title="Caching without stale reads"')), written.join(' | '));
      t.true(written.some((w) => w.includes(`id=1 & title="${title}"`)), written.join(' | '));
      t.is(await stat(page, 'invalidations'), 0, 'the page itself invalidated nothing (the previous request\'s are counted in their own line)');
      t.is(await page.locator('#cacheops-invalidations').count(), 0);

      // The live page got it without a reload.
      const entry = live.locator('#live-invalidations li.entry').first();
      await entry.locator('.request', { hasText: 'POST /posts/1/edit' }).waitFor({ timeout: 5000 });
      const liveRows = await entry.locator('li[data-model="Post"]').allTextContents();
      t.true(liveRows.some((w) => w.includes(`title="${title}"`)), liveRows.join(' | '));
      t.true(liveRows.every((w) => w.startsWith('Post id=1 & ')), liveRows.join(' | '));
      t.true((await entry.locator('li[data-dropped]').allTextContents()).includes('page /posts/1'), 'the live page lists what was dropped');
      await live.reload();
      t.true(await live.locator('#live-invalidations li.entry .request', { hasText: 'POST /posts/1/edit' }).count() >= 1, 'and it stays listed');
      await live.close();
      await page.reload();
      t.is(await page.locator('#post-title').textContent(), title);
      t.is(await stat(page, 'sql'), 0, 'and cached again');
      t.is(await page.locator('#cacheops-previous').count(), 0, 'the previous request\'s invalidations are shown once');

      // The list was invalidated by the same write.
      await page.goto(`${app.url}/`);
      t.is(await page.locator(`a[href="/posts/1"]`).first().textContent(), title);
    });
  });
}
