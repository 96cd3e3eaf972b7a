/**
 * Bounded process memory: tens of thousands of distinct gets (each a
 * localGet entry and a remembered fast-path select) leave the memory
 * JavaScript holds (heap used plus buffers, after a full GC) where the bounds
 * say, in a child process run with --expose-gc (test/fixtures/memory-reader.ts).
 * The bound checked is derived from what the same run measures: the heap
 * cost per key while the structures fill up to their bounds.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { redisUrl, uniquePrefix } from '../helpers/env';

const run = promisify(execFile);

interface Report {
  keys: number;
  first: number;
  base: number;
  afterFirst: number;
  afterAll: number;
  afterExpiry: number;
  sizesFirst: { localGet: number; fastPath: number };
  sizesAll: { localGet: number; fastPath: number };
  sizesExpiry: { localGet: number; fastPath: number };
  readMs: number;
}

async function measure(env: Record<string, string>): Promise<Report> {
  const script = join(__dirname, '..', 'fixtures', 'memory-reader.ts');
  const { stdout } = await run(process.execPath, ['--expose-gc', '--import=tsx', script], {
    env: { ...process.env, REDIS_URL: redisUrl, PREFIX: uniquePrefix('memory'), ...env },
    timeout: 300_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Report;
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

test.serial('20,000 distinct gets: localGet and the fast path stay within their bounds, and so does the heap', async (t) => {
  const bound = 1000;
  const r = await measure({ KEYS: '20000', FIRST: String(bound), TIMEOUT: '3600', MEMORY: JSON.stringify({ localGet: { maxEntries: bound }, fastPath: { maxEntries: bound } }) });
  const perKey = (r.afterFirst - r.base) / r.first;
  const laterGrowth = r.afterAll - r.afterFirst;
  t.log(`heap and buffers after GC: ${mb(r.base)} before, ${mb(r.afterFirst)} after ${r.first} keys (${(perKey / 1024).toFixed(1)} KB per key), ${mb(r.afterAll)} after ${r.keys}`);
  t.log(`entries: localGet ${r.sizesAll.localGet}, fast path ${r.sizesAll.fastPath}; ${r.readMs} ms of reads`);
  t.true(perKey > 0, 'the first keys cost memory: the structures filled');
  t.true(r.sizesAll.localGet <= bound && r.sizesAll.fastPath <= bound, 'no structure past its bound');
  // Unbounded, the later keys would cost perKey each; bounded, they replace the first ones.
  const unbounded = perKey * (r.keys - r.first);
  t.true(laterGrowth < 0.1 * unbounded, `the later ${r.keys - r.first} keys grew the heap by ${mb(laterGrowth)}; unbounded they would take about ${mb(unbounded)}`);
});

test.serial('localGet entries past their timeout go (1 s timeout, default bounds)', async (t) => {
  const r = await measure({ KEYS: '5000', FIRST: '500', TIMEOUT: '1' });
  t.log(`localGet entries: ${r.sizesAll.localGet} after ${r.keys} gets, ${r.sizesExpiry.localGet} once they expired; heap and buffers ${mb(r.base)} -> ${mb(r.afterAll)} -> ${mb(r.afterExpiry)}`);
  t.true(r.sizesExpiry.localGet <= 2, `${r.sizesExpiry.localGet} left`);
});
