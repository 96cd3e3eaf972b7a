/**
 * The parent side of the stress test: prepares the shared database, forks
 * the worker processes, starts them together, waits until every one has
 * exited, then checks every read they ran against the database.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCacheops } from '../../src/index';
import { rawRedis, redisUrl, uniquePrefix, type Dialect } from '../helpers/env';
import { defineBlog } from '../helpers/models';
import { checkReads, fixSequences, seed, type CheckResult } from './stress-catalog';
import type { ExecutionContext } from 'ava';
import type { Sequelize } from 'sequelize';
import { openShared, type SharedDatabase, type StreamWorkerConfig, type WorkerConfig, type WorkerMessage, type WorkerResult } from './stress-shared';

export interface StressOptions {
  readonly dialect: Dialect;
  readonly testFile: string;
  readonly processes: number;
  readonly seconds: number;
  readonly raceProtection: boolean;
  readonly readDelayMs?: number;
  readonly loops?: number;
  readonly readShare?: number;
  readonly sqliteTransactions?: boolean;
  readonly seed?: number;
  /** The near cache on in every worker, the sampler at rate 1 (see stress-shared.ts). */
  readonly near?: boolean;
  /** A private server instead of the test file's database on the shared one (see stress-shared.ts). */
  readonly server?: SharedDatabase['server'];
  /** `writes: 'stream'` in every worker, with this `changeStream` option. */
  readonly stream?: StreamWorkerConfig;
  /** Runs after the tables are created and seeded (PostgreSQL: REPLICA IDENTITY FULL). */
  readonly prepare?: (sequelize: Sequelize) => Promise<void>;
}

export interface StressReport {
  readonly workers: readonly WorkerResult[];
  readonly totals: { reads: number; writes: number; failedWrites: number; hits: number; misses: number; stores: number; refusedStores: number };
  /** Cached values in Redis once the workers were gone (before the check added its own). */
  readonly valueKeys: number;
  readonly check: CheckResult;
  readonly runMs: number;
  readonly checkMs: number;
}

const WORKER = join(__dirname, 'stress-worker.ts');

async function countValueKeys(prefix: string): Promise<number> {
  const redis = rawRedis();
  try {
    let cursor = '0';
    let count = 0;
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}cacheops:{*}:q:*`, 'COUNT', 1000);
      cursor = next;
      count += keys.length;
    } while (cursor !== '0');
    return count;
  } finally {
    redis.disconnect();
  }
}

/** Forks one worker; resolves with its result once it has exited cleanly. */
function startWorker(config: WorkerConfig, onReady: () => void, onDone: () => void): { child: ChildProcess; done: Promise<WorkerResult> } {
  const child = fork(WORKER, [JSON.stringify(config)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const done = new Promise<WorkerResult>((resolve, reject) => {
    let result: WorkerResult | undefined;
    let failure: string | undefined;
    child.on('message', (msg: WorkerMessage) => {
      if (msg.type === 'ready') onReady();
      else if (msg.type === 'done') onDone();
      else if (msg.type === 'result') result = msg.result;
      else if (msg.type === 'error') failure = msg.message;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0 && result) resolve(result);
      else reject(new Error(`worker ${config.id} exited with ${signal ?? code}${failure ? `:\n${failure}` : ''}`));
    });
  });
  return { child, done };
}

export async function runStress(options: StressOptions): Promise<StressReport> {
  const dir = options.dialect === 'sqlite' ? mkdtempSync(join(tmpdir(), 'cacheops-stress-')) : undefined;
  const db: SharedDatabase = {
    dialect: options.dialect, testFile: options.testFile,
    ...(dir ? { storage: join(dir, 'shared.sqlite') } : {}), ...(options.server ? { server: options.server } : {}),
  };
  const prefix = uniquePrefix('stress');
  const sequelize = await openShared(db);
  const children: ChildProcess[] = [];
  try {
    if (options.dialect === 'sqlite') await sequelize.query('PRAGMA journal_mode=WAL');
    const m = defineBlog(sequelize);
    await sequelize.sync({ force: true });
    await seed(m);
    await fixSequences(sequelize, m);
    await options.prepare?.(sequelize);
    const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix, profiles: { Category: { ops: 'all', lock: true }, '*': { ops: 'all' } } });
    try {
      let ready = 0;
      let done = 0;
      let allReady: () => void = () => undefined;
      const readyPromise = new Promise<void>((resolve) => { allReady = resolve; });
      const runs = Array.from({ length: options.processes }, (_, id) => {
        const config: WorkerConfig = {
          ...db, id, prefix, raceProtection: options.raceProtection, readDelayMs: options.readDelayMs ?? 0,
          loops: options.loops ?? 3, seed: (options.seed ?? 1) * 1000 + id, readShare: options.readShare ?? 0.6,
          sqliteTransactions: options.sqliteTransactions ?? true, near: options.near ?? false,
          ...(options.stream ? { stream: options.stream } : {}),
        };
        const run = startWorker(config, () => { ready += 1; if (ready === options.processes) allReady(); }, () => {
          // Near runs: once every worker has stopped writing, all replay their reads.
          // Stream runs: the consumer's process stays until no worker waits for it.
          done += 1;
          if (done === options.processes) for (const child of children) child.send({ type: 'verify' } satisfies WorkerMessage);
        });
        children.push(run.child);
        return run.done;
      });
      // A worker failing before `ready` must not leave the others waiting.
      await Promise.race([readyPromise, Promise.all(runs)]);
      const started = Date.now();
      for (const child of children) child.send({ type: 'go', until: started + options.seconds * 1000 } satisfies WorkerMessage);
      const workers = await Promise.all(runs);
      const runMs = Date.now() - started;

      const valueKeys = await countValueKeys(prefix);
      const checkStarted = Date.now();
      const check = await checkReads(m, cacheops, workers.flatMap((w) => w.descriptions));
      const sum = (f: (w: WorkerResult) => number): number => workers.reduce((a, w) => a + f(w), 0);
      return {
        workers,
        totals: {
          reads: sum((w) => w.reads), writes: sum((w) => w.writes),
          failedWrites: sum((w) => Object.values(w.failedWrites).reduce((a, b) => a + b, 0)),
          hits: sum((w) => w.hits), misses: sum((w) => w.misses), stores: sum((w) => w.stores), refusedStores: sum((w) => w.refusedStores),
        },
        valueKeys, check, runMs, checkMs: Date.now() - checkStarted,
      };
    } finally {
      await cacheops.invalidateAll();
      await cacheops.close();
    }
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill();
    await sequelize.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** A readable summary: per worker and in total. */
export function describe(report: StressReport): string {
  const lines = report.workers.map((w) =>
    `  worker ${w.id} (pid ${w.pid}): ${w.reads} reads (${w.hits} hits, ${w.misses} misses, ${w.stores} stores, ${w.refusedStores} refused), ` +
    `${w.writes} writes (${Object.values(w.failedWrites).reduce((a, b) => a + b, 0)} refused by the database)` +
    (w.stream ? `, stream ${w.stream.role}: ${w.stream.done} waits done, ${w.stream.timeout} timed out` : ''));
  const t = report.totals;
  lines.push(`  total: ${t.reads} reads, ${t.hits} hits, ${t.misses} misses, ${t.stores} stores, ${t.refusedStores} refused stores, ` +
    `${t.writes} writes, ${t.failedWrites} failed writes in ${report.runMs} ms`);
  lines.push(`  check: ${report.check.checked} distinct reads replayed, ${report.check.hits} hits ` +
    `(of ${report.valueKeys} cached values), ${report.check.stale} stale, in ${report.checkMs} ms`);
  const sampled = report.workers.flatMap((w) => (w.sampler ? [w.sampler] : []));
  if (sampled.length) {
    const ages = sampled.flatMap((x) => x.staleAges).sort((a, b) => a - b);
    const tiers: Record<string, number> = {};
    for (const x of sampled) for (const [k, v] of Object.entries(x.staleTiers)) tiers[k] = (tiers[k] ?? 0) + v;
    const add = (f: (x: (typeof sampled)[number]) => number): number => sampled.reduce((a, x) => a + f(x), 0);
    lines.push(`  sampler (rate 1): ${add((x) => x.checks)} checks while writing, ${ages.length} stale `
      + `(${Object.entries(tiers).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}; in-flight window: age median ${ages[ages.length >> 1] ?? 0} ms, max ${ages[ages.length - 1] ?? 0} ms); `
      + `after quiescence ${add((x) => x.quiescentChecks)} checks, ${add((x) => x.quiescentStale)} stale; ${add((x) => x.nearHits)} near hits`);
  }
  const failures = new Map<string, number>();
  for (const w of report.workers) for (const [k, v] of Object.entries(w.failedWrites)) failures.set(k, (failures.get(k) ?? 0) + v);
  if (failures.size) lines.push(`  failed writes: ${[...failures].map(([k, v]) => `${k} x${v}`).join('; ')}`);
  return lines.join('\n');
}

/**
 * Runs the stress test (`once(seed)`, seed 1 first) and logs its report under `label`. A run without
 * the race protection, whose stale values are likely but not certain, is run again with the next
 * seed while it shows none, `attempts` runs at the most. Answers the last report.
 */
export async function stressAttempts(
  t: ExecutionContext, label: string, raceProtection: boolean, attempts: number, once: (seed: number) => Promise<StressReport>,
): Promise<StressReport> {
  let report = await once(1);
  t.log(`${label}:\n${describe(report)}`);
  for (let attempt = 2; !raceProtection && report.check.stale === 0 && attempt <= attempts; attempt += 1) {
    report = await once(attempt);
    t.log(`attempt ${attempt}:\n${describe(report)}`);
  }
  return report;
}

/**
 * The verdict on a stress run: the workers read and wrote and the check compared cached values;
 * with the race protection no stale value and some stores refused, without it stale values.
 */
export function assertStressReport(t: ExecutionContext, report: StressReport, raceProtection: boolean): void {
  t.true(report.totals.reads > 0 && report.totals.writes > 0, 'the workers read and wrote');
  t.true(report.check.hits > 0, 'the check compared cached values (else it proves nothing)');
  if (raceProtection) {
    t.is(report.check.stale, 0, report.check.details.join('\n'));
    t.true(report.totals.refusedStores > 0, 'some stores raced an invalidation and were refused');
  } else {
    t.true(report.check.stale > 0, 'without the protection, stores that raced an invalidation leave stale values');
  }
}
