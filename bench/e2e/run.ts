/**
 * The end-to-end benchmark: `npm run bench:e2e`. A RealWorld-shaped Express
 * app (app.ts) served three ways at once, each in a process of its own:
 * without the cache, with it, and with it and `near: true`; an HTTP load
 * generator (load.ts, 16 keep-alive connections) drives each page for a fixed
 * time, the three servers alternating within every round (the starting one
 * rotates), so load on the machine hits them alike.
 *
 *   BENCH_E2E_DIALECT=postgres    sqlite | postgres | mariadb (SQLite: a file the servers share)
 *   BENCH_E2E_SECONDS=3           seconds per page, server and round
 *   BENCH_E2E_ROUNDS=3            rounds
 *   BENCH_E2E_CONNECTIONS=16      connections
 *
 * Prints requests per second, p50 and p99 per page and server, the ratios to
 * the uncached server, and the targets: the list and the mixed load (5%
 * writes) at 5x and 4x the uncached throughput with `near`, p99 no worse than
 * uncached anywhere.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ASSOC_SIZES, defineAssocModels, dropAssoc, seedAssoc } from '../assoc-models';
import { openSequelize, serverReachable, type BenchDialect } from '../models';
import { percentile, ratio, table, verdict } from '../measure';
import { load, type LoadResult, type Req } from './load';

const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const DIALECT = (process.env['BENCH_E2E_DIALECT'] ?? 'postgres') as BenchDialect;
const SECONDS = env('BENCH_E2E_SECONDS', 3);
const ROUNDS = env('BENCH_E2E_ROUNDS', 3);
const CONNECTIONS = env('BENCH_E2E_CONNECTIONS', 16);
const MODES = ['off', 'on', 'near'] as const;
type Mode = typeof MODES[number];

const slug = (i: number): string => `article-${(i % ASSOC_SIZES.articles) + 1}`;
const get = (path: string): Req => ({ method: 'GET', path });
const PAGES: Record<string, (i: number) => Req> = {
  'list (20 articles)': (i) => get(`/api/articles?limit=20&offset=${(i % 5) * 20}`),
  article: (i) => get(`/api/articles/${slug(i * 7)}`),
  comments: (i) => get(`/api/articles/${slug(i * 11)}/comments`),
  tags: () => get('/api/tags'),
  profile: (i) => get(`/api/profiles/user${(i % ASSOC_SIZES.users) + 1}`),
  'mixed (5% writes)': (i) => {
    const k = (i * 37) % 100;
    if (k < 3) return { method: 'POST', path: `/api/articles/${slug(i)}/favorite` };
    if (k < 5) return { method: 'POST', path: `/api/articles/${slug(i)}/comments` };
    if (k < 35) return PAGES['list (20 articles)']!(i);
    if (k < 60) return PAGES['article']!(i);
    if (k < 75) return PAGES['comments']!(i);
    if (k < 90) return PAGES['profile']!(i);
    return get('/api/tags');
  },
};

function start(mode: Mode, tables: string, storage: string | undefined): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(join(__dirname, 'server.ts'), [mode, tables, DIALECT], {
    execArgv: ['--import', 'tsx'], env: { ...process.env, ...(storage ? { BENCH_SQLITE_STORAGE: storage } : {}) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, port: (m as { port: number }).port }));
    child.once('exit', (code) => reject(new Error(`the ${mode} server exited (${code})`)));
  });
}

async function main(): Promise<void> {
  const problem = await serverReachable(DIALECT);
  if (problem) throw new Error(`${DIALECT} not reachable: ${problem}`);
  const dir = DIALECT === 'sqlite' ? mkdtempSync(join(tmpdir(), 'cacheops-e2e-')) : undefined;
  const storage = dir ? join(dir, 'e2e.sqlite') : undefined;
  const tables = `bench_e${randomBytes(3).toString('hex')}_`;
  const admin = openSequelize(DIALECT, storage);
  const models = defineAssocModels(admin, tables);
  const servers = new Map<Mode, { child: ChildProcess; port: number }>();
  try {
    await seedAssoc(models);
    for (const mode of MODES) servers.set(mode, await start(mode, tables, storage));
    console.log(`end to end, ${DIALECT}: ${CONNECTIONS} connections, ${SECONDS} s per page, server and round, ${ROUNDS} rounds`);
    const results = new Map<string, LoadResult[]>();
    const add = (page: string, mode: Mode, r: LoadResult): void => {
      const key = `${page}|${mode}`;
      results.set(key, [...(results.get(key) ?? []), r]);
    };
    // Warm-up: every page on every server (fills the caches, lets V8 optimize).
    for (const [, next] of Object.entries(PAGES)) for (const mode of MODES) await load(servers.get(mode)!.port, next, CONNECTIONS, 1000);
    for (let round = 0; round < ROUNDS; round += 1) {
      for (const [p, [page, next]] of Object.entries(PAGES).entries()) {
        for (let k = 0; k < MODES.length; k += 1) {
          const mode = MODES[(round + p + k) % MODES.length]!;
          add(page, mode, await load(servers.get(mode)!.port, next, CONNECTIONS, SECONDS * 1000));
        }
      }
      console.log(`  round ${round + 1} of ${ROUNDS} done`);
    }
    const sum = (page: string, mode: Mode) => {
      const runs = results.get(`${page}|${mode}`) ?? [];
      const all = runs.flatMap((r) => r.latencies);
      const requests = runs.reduce((s, r) => s + r.requests, 0);
      const seconds = runs.reduce((s, r) => s + r.seconds, 0);
      return { rps: requests / seconds, p50: percentile(all, 50) / 1000, p99: percentile(all, 99) / 1000, errors: runs.reduce((s, r) => s + r.errors, 0) };
    };
    const rows = Object.keys(PAGES).map((page) => {
      const [off, on, near] = MODES.map((m) => sum(page, m)) as [ReturnType<typeof sum>, ReturnType<typeof sum>, ReturnType<typeof sum>];
      const target = page.startsWith('list') ? 5 : page.startsWith('mixed') ? 4 : undefined;
      const marks = [
        ...(target ? [`near≥${target}x ${verdict(near.rps / off.rps >= target)}`] : []),
        `p99≤uncached ${verdict(on.p99 <= off.p99 && near.p99 <= off.p99)}`,
        ...(off.errors + on.errors + near.errors > 0 ? [`errors ${off.errors}/${on.errors}/${near.errors}`] : []),
      ];
      return [page, off.rps.toFixed(0), on.rps.toFixed(0), near.rps.toFixed(0), ratio(on.rps / off.rps), ratio(near.rps / off.rps),
        `${off.p50.toFixed(1)} / ${on.p50.toFixed(1)} / ${near.p50.toFixed(1)}`, `${off.p99.toFixed(1)} / ${on.p99.toFixed(1)} / ${near.p99.toFixed(1)}`, marks.join(', ')];
    });
    for (const [key, runs] of results) {
      const first = runs.find((r) => r.firstError !== undefined)?.firstError;
      if (first !== undefined) console.log(`  ${key.replace('|', ', ')}: first failed request: ${first}`);
    }
    console.log(table(['page', 'uncached req/s', 'cache req/s', 'near req/s', 'cache/uncached', 'near/uncached', 'p50 ms (uncached / cache / near)', 'p99 ms', 'targets'], rows));
  } finally {
    for (const { child } of servers.values()) {
      child.send('close');
      await new Promise((r) => { child.once('exit', r); setTimeout(r, 5000); });
    }
    if (DIALECT !== 'sqlite') await dropAssoc(models).catch((e: unknown) => console.error('dropping the bench tables failed:', e));
    await admin.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
