/**
 * The application side of the change-stream tests, for any stream database
 * (test/stream/change-stream-pg*.test.ts, change-stream-mariadb.test.ts, and the
 * processes they start):
 *
 * - installStreamApp: a table of Items (rows 1..3 named a, b, c), cacheops on
 *   it with the stream on, ready (changeStreamReady), its invalidations and log
 *   lines collected;
 * - nameOf, msUntil, cached, isHit, percentile: the reads and figures the
 *   tests assert on;
 * - checkRedisPausedMidStream: a foreign write while Redis is out, replayed once it is back;
 * - printStreamRoles: the body of a second application process
 *   (test/fixtures/stream-app.ts, mariadb-stream-app.ts), and startSecondApp,
 *   which starts one and reads the first role it prints.
 */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import { installCacheops, type Cacheops, type ChangeStreamOptions, type InvalidatedEvent, type WriteMode } from '../../src/index';
import { redisUrl } from './env';
import type { PrivateRedis } from './private-redis';
import { defineItem } from './stream-models';

export interface StreamApp {
  readonly sequelize: Sequelize;
  readonly Item: ModelStatic<Model>;
  readonly cacheops: Cacheops;
  /** Every invalidation cacheops announced. */
  readonly events: InvalidatedEvent[];
  /** Every line cacheops logged. */
  readonly logs: string[];
  readonly table: string;
  readonly prefix: string;
  /** Drops what the app cached, closes cacheops and the Sequelize. */
  close(): Promise<void>;
}

export interface StreamAppOptions {
  readonly table: string;
  readonly prefix: string;
  /** The changeStream option. */
  readonly changeStream: ChangeStreamOptions;
  /** Default: the test Redis. */
  readonly redis?: string;
  /** Whether to make the table anew with rows 1..3 (default true); false: an earlier app's table, as it is. */
  readonly seed?: boolean;
  /** Runs after the table is made, before the rows go in (PostgreSQL: REPLICA IDENTITY FULL). */
  readonly prepare?: (sequelize: Sequelize, table: string) => Promise<void>;
}

/** Cacheops with the stream on `sequelize`, resolved once the stream is ready (see the file comment). */
export async function installStreamApp(sequelize: Sequelize, options: StreamAppOptions): Promise<StreamApp> {
  const { table, prefix } = options;
  const Item = defineItem(sequelize, table);
  if (options.seed !== false) {
    await Item.sync({ force: true });
    await options.prepare?.(sequelize, table);
    await Item.bulkCreate([{ name: 'a', n: 1 }, { name: 'b', n: 2 }, { name: 'c', n: 3 }]);
  }
  const logs: string[] = [];
  const events: InvalidatedEvent[] = [];
  const cacheops = installCacheops(sequelize, {
    redis: options.redis ?? redisUrl, prefix, profiles: { Item: { ops: 'all' } },
    changeStream: options.changeStream,
    logger: (m) => { logs.push(m); },
  });
  cacheops.on('invalidated', (e) => events.push(e));
  await cacheops.changeStreamReady();
  return {
    sequelize, Item, cacheops, events, logs, table, prefix,
    async close() {
      await cacheops.invalidateAll().catch(() => undefined);
      await cacheops.close();
      await sequelize.close();
    },
  };
}

/** Row `id`'s name, read through the cache (undefined: no such row). */
export const nameOf = async (app: Pick<StreamApp, 'Item'>, id: number): Promise<unknown> =>
  ((await app.Item.findOne({ where: { id } })) as unknown as { name: string } | null)?.name;

/** Reads until `expected`; milliseconds it took (Infinity past the limit). */
export async function msUntil(read: () => Promise<unknown>, expected: unknown, limitMs = 1000): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if ((await read()) === expected) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 2));
  }
  return Infinity;
}

/** Reads twice: the second must be a hit (the value is cached). */
export async function cached(app: Pick<StreamApp, 'cacheops'>, read: () => Promise<unknown>): Promise<unknown> {
  await read();
  const hits = app.cacheops.stats().hits;
  const value = await read();
  if (app.cacheops.stats().hits !== hits + 1) throw new Error('the read was not served from the cache');
  return value;
}

/** Whether a read is served from the cache (a hit). */
export async function isHit(app: Pick<StreamApp, 'cacheops'>, read: () => Promise<unknown>): Promise<boolean> {
  const hits = app.cacheops.stats().hits;
  await read();
  return app.cacheops.stats().hits === hits + 1;
}

/** The p-th (0..1) percentile of xs. */
export const percentile = (xs: readonly number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

/** A second application process: what printStreamRoles starts. */
export interface RolePrinterOptions {
  readonly table: string;
  readonly redis: string;
  readonly prefix: string;
  /** The changeStream option (the tests give handoverMs: 200, and on PostgreSQL the slot). */
  readonly changeStream: ChangeStreamOptions;
  /** The write mode (default 'sync'; 'stream': this process announces the transactions it invalidates). */
  readonly writes?: WriteMode;
}

/**
 * Cacheops with the stream on, its role ("consumer" / "standby") printed on a
 * line of its own once ready and again whenever it changes, so the test reads
 * the handover from the process's output. Runs until the process is killed.
 */

export async function printStreamRoles(sequelize: Sequelize, options: RolePrinterOptions): Promise<void> {
  defineItem(sequelize, options.table);
  const cacheops = installCacheops(sequelize, {
    redis: options.redis, prefix: options.prefix, profiles: { '*': { ops: 'all' } }, changeStream: options.changeStream,
    writes: options.writes ?? 'sync', logger: () => undefined,
  });
  await cacheops.changeStreamReady();
  let role = '';
  setInterval(() => {
    const now = cacheops.stats().changeStream.role;
    if (now !== role) process.stdout.write(`${(role = now)}\n`);
  }, 20);
}

/**
 * Starts a second application process, test/fixtures/`fixture` (one that runs printStreamRoles),
 * with `args`; `firstRole` is the first role it prints. The caller kills `child`.
 */
export function startSecondApp(fixture: string, args: readonly (string | number)[]): { readonly child: ChildProcess; readonly firstRole: Promise<string> } {
  const child = spawn(process.execPath, ['--import=tsx', join(__dirname, '..', 'fixtures', fixture), ...args.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const firstRole = new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve));
  return { child, firstRole };
}

/**
 * Redis paused while a foreign writer changes rows 1-3 (`rename(id, 'during')`): nothing is
 * acknowledged while Redis is out; once it answers again the batch is replayed and the cached
 * names are the new ones. `app` uses the paused Redis.
 */
export async function checkRedisPausedMidStream(
  t: ExecutionContext,
  app: Pick<StreamApp, 'cacheops' | 'Item'>,
  redis: Pick<PrivateRedis, 'pause' | 'resume'>,
  rename: (id: number, name: string) => Promise<unknown>,
): Promise<void> {
  for (const id of [1, 2, 3]) await cached(app, () => nameOf(app, id));
  const eventsBefore = app.cacheops.stats().changeStream.events;
  redis.pause();
  try {
    for (const id of [1, 2, 3]) await rename(id, 'during');
    await new Promise((r) => setTimeout(r, 1500));
    t.is(app.cacheops.stats().changeStream.events, eventsBefore, 'nothing acknowledged while Redis is out');
  } finally {
    redis.resume();
  }
  const resumedAt = Date.now();
  // The breaker's probe finds Redis back (its back-off reaches 5 s), then the stream replays the batch.
  while (app.cacheops.stats().changeStream.events < eventsBefore + 3 && Date.now() - resumedAt < 10_000) await new Promise((r) => setTimeout(r, 10));
  t.log(`replayed ${app.cacheops.stats().changeStream.events - eventsBefore} changes ${Date.now() - resumedAt} ms after Redis was back`);
  t.true(app.cacheops.stats().changeStream.events >= eventsBefore + 3, 'replayed');
  for (const id of [1, 2, 3]) t.is(await cached(app, () => nameOf(app, id)), 'during');
}
