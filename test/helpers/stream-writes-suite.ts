/**
 * The scenarios of `writes: 'stream'` that hold on every stream database
 * (test/stream/stream-writes-pg.test.ts, stream-writes-mariadb.test.ts), each
 * run on an application a test file makes with installWritesApp:
 *
 * - installWritesApp: a table of Items (rows 1..30, named r1..r30; n = 1 for the
 *   first 20, 2 for the rest), cacheops on it with `writes: 'stream'`, every
 *   statement Sequelize sends and every wait for the stream collected;
 * - everyWriteKind: each write kind is one statement and, resolved by the
 *   stream, reads its own write;
 * - transactionsResolveAtCommit: a transaction resolves at its commit; writes
 *   rolled back (to a savepoint or whole) wait for nothing;
 * - neverStale: under concurrent cached readers no read after a resolved write
 *   is stale.
 *
 * What differs between the databases is given by the test file: how to
 * connect, what to do to the table before its rows go in, what to do once the
 * stream is ready, and how a write marks its statement.
 */
import type { ExecutionContext } from 'ava';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import { installCacheops, type Cacheops, type ChangeStreamOptions } from '../../src/index';
import { STREAM_WAITED_EVENT, type WaitOutcome } from '../../src/write/stream-wait';
import { redisUrl } from './env';
import { defineItem } from './stream-models';

export interface StreamWait {
  readonly ms: number;
  readonly outcome: WaitOutcome;
}

export interface WritesApp {
  readonly sequelize: Sequelize;
  readonly Item: ModelStatic<Model>;
  readonly cacheops: Cacheops;
  /** Every statement Sequelize sent (the tests empty it to count a write's own). */
  readonly statements: string[];
  /** Every wait of a write for the stream, in order. */
  readonly waits: StreamWait[];
  /** Drops what the app cached, closes cacheops and the Sequelize. */
  close(): Promise<void>;
}

export interface WritesAppOptions {
  /** A Sequelize on the stream database that passes each statement it sends to `log`. */
  readonly connect: (log: (sql: string) => void) => Sequelize;
  readonly table: string;
  readonly prefix: string;
  /** The changeStream option. */
  readonly changeStream: ChangeStreamOptions;
  /** Whether to make the table anew with its 30 rows (default true); false: an earlier app's table, as it is. */
  readonly seed?: boolean;
  /** Runs after the table is made, before the rows go in (PostgreSQL: REPLICA IDENTITY FULL). */
  readonly prepare?: (sequelize: Sequelize, table: string) => Promise<void>;
  /** Runs once the stream is ready (MariaDB: the writer learns the server's version). */
  readonly ready?: (sequelize: Sequelize) => Promise<void>;
}

/** The table's 30 rows: named r1..r30, n = 1 for the first 20 and 2 for the rest; with their ids when `ids`. */
export const seedRows = (ids = false): Record<string, unknown>[] =>
  Array.from({ length: 30 }, (_, i) => ({ ...(ids ? { id: i + 1 } : {}), name: `r${i + 1}`, n: i < 20 ? 1 : 2 }));

/** Cacheops with `writes: 'stream'` (see the file comment), resolved once the stream is ready. */
export async function installWritesApp(options: WritesAppOptions): Promise<WritesApp> {
  const statements: string[] = [];
  const sequelize = options.connect((sql) => { statements.push(sql); });
  const Item = defineItem(sequelize, options.table);
  if (options.seed !== false) {
    await Item.sync({ force: true });
    await options.prepare?.(sequelize, options.table);
    await Item.bulkCreate(seedRows());
  }
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: options.prefix, profiles: { Item: { ops: 'all' } }, writes: 'stream',
    changeStream: options.changeStream, logger: () => undefined,
  });
  const waits: StreamWait[] = [];
  cacheops.core.events.on(STREAM_WAITED_EVENT, (w: StreamWait) => waits.push(w));
  await cacheops.changeStreamReady();
  await options.ready?.(sequelize);
  return {
    sequelize, Item, cacheops, statements, waits,
    async close() {
      await cacheops.invalidateAll().catch(() => undefined);
      await cacheops.close();
      await sequelize.close();
    },
  };
}

/** Row `id`'s name, read through the cache unless `cacheops` is false (null: no such row). */
export const nameOf = async (Item: ModelStatic<Model>, id: number, cacheops = true): Promise<unknown> =>
  ((await Item.findOne({ where: { id }, cacheops } as never)) as unknown as { name: string } | null)?.name ?? null;

/** How a database's stream write marks the statement it sends. */
export interface WriteKindOptions {
  /** A text every write's one statement holds (PostgreSQL: `txid_current()` in its RETURNING); none: not checked. */
  readonly statementMark?: string;
}

/**
 * Every write kind on the seeded rows: each a cached read first, the write, then the read right after
 * it resolved; each write one statement, resolved by the stream ('done').
 */
export async function everyWriteKind(t: ExecutionContext, app: WritesApp, options: WriteKindOptions = {}): Promise<void> {
  const { Item, statements } = app;
  const count = async (where: Record<string, unknown>): Promise<number> => Item.count({ where } as never) as unknown as Promise<number>;
  const one = async (label: string, write: () => Promise<unknown>, check: () => Promise<unknown>): Promise<void> => {
    statements.length = 0;
    const before = app.waits.length;
    await write();
    const sent = statements.length;
    await check();
    t.is(sent, 1, `${label}: one statement (${statements.join(' | ')})`);
    if (options.statementMark !== undefined) t.true(statements[0]!.includes(options.statementMark), `${label}: ${statements[0]}`);
    t.is(app.waits.slice(before).map((w) => w.outcome).join(), 'done', `${label}: resolved by the stream`);
  };
  await nameOf(Item, 1);
  const row = (await Item.findByPk(1))!;
  await nameOf(Item, 1);
  await one('save', async () => { row.set('name', 'saved'); await row.save(); }, async () => t.is(await nameOf(Item, 1), 'saved', 'save'));
  await nameOf(Item, 2);
  await one('update by pk', () => Item.update({ name: 'upd' }, { where: { id: 2 } }), async () => t.is(await nameOf(Item, 2), 'upd', 'update'));
  t.is(await count({ n: 1 }), 20);
  await one('mass update', () => Item.update({ n: 3 }, { where: { n: 1 } }), async () => t.is(await count({ n: 3 }), 20, 'mass update'));
  await nameOf(Item, 3);
  const third = (await Item.findByPk(3))!;
  await one('destroy', () => third.destroy(), async () => t.is(await nameOf(Item, 3), null, 'destroy'));
  t.is(await count({ name: 'new' }), 0);
  await one('create', () => Item.create({ name: 'new', n: 9 }), async () => t.is(await count({ name: 'new' }), 1, 'create'));
  t.is(await count({ n: 2 }), 10);
  await one('bulk create', () => Item.bulkCreate([{ name: 'x', n: 2 }, { name: 'y', n: 2 }]), async () => t.is(await count({ n: 2 }), 12, 'bulk create'));
}

/** Logs the median and the longest of the app's waits for the stream. */
export function logWaits(t: ExecutionContext, app: WritesApp): void {
  const ms = app.waits.map((w) => w.ms).sort((a, b) => a - b);
  t.log(`waits for the stream: median ${ms[Math.floor(ms.length / 2)]!.toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms`);
}

/**
 * On the seeded rows: a transaction resolves at its commit, not before, with a savepoint rolled back in
 * it; one whose every write was rolled back to a savepoint, and one rolled back whole, wait for nothing.
 */
export async function transactionsResolveAtCommit(t: ExecutionContext, app: WritesApp): Promise<void> {
  const { Item, sequelize } = app;
  for (const id of [1, 2, 3]) await nameOf(Item, id);
  await sequelize.transaction(async (tx) => {
    await Item.update({ name: 'kept' }, { where: { id: 1 }, transaction: tx });
    const sp = await sequelize.transaction({ transaction: tx });
    await Item.update({ name: 'undone' }, { where: { id: 2 }, transaction: sp });
    await sp.rollback();
    t.is(app.waits.length, 0, 'nothing waited before the commit');
  });
  t.deepEqual(app.waits.map((w) => w.outcome), ['done']);
  t.is(await nameOf(Item, 1), 'kept');
  t.is(await nameOf(Item, 2), 'r2');
  // Every write of the transaction rolled back to a savepoint: its commit changes nothing and waits for nothing.
  app.waits.length = 0;
  const started = Date.now();
  await sequelize.transaction(async (tx) => {
    const sp = await sequelize.transaction({ transaction: tx });
    await Item.update({ name: 'undone' }, { where: { id: 3 }, transaction: sp });
    await sp.rollback();
  });
  t.is(app.waits.length, 0);
  // Nothing waited: not even one bound of a write's wait went by.
  const bound = app.cacheops.core.config.changeStream?.writeWaitMs ?? 1000;
  t.true(Date.now() - started < bound, `took ${Date.now() - started} ms, a wait's bound is ${bound} ms`);
  t.is(await nameOf(Item, 3), 'r3');
  // A rolled back transaction: nothing.
  await t.throwsAsync(sequelize.transaction(async (tx) => {
    await Item.update({ name: 'never' }, { where: { id: 3 }, transaction: tx });
    throw new Error('rollback');
  }));
  t.is(app.waits.length, 0);
  t.is(await nameOf(Item, 3), 'r3');
}

export interface NeverStaleOptions {
  /** How many writes (STREAM_WRITES_ROUNDS overrides it). */
  readonly rounds: number;
  /** Round i's write to row 1 + i % 5: an update (else a save of the row read past the cache), and the n it sets. */
  readonly write: (i: number) => { readonly update: boolean; readonly n: number };
}

/**
 * Three cached readers of rows 1..5 and of the count of n = 1 run while rows 1..5 are written in turn;
 * after each write resolved, its row's cached name and the cached count must be the database's.
 */
export async function neverStale(t: ExecutionContext, app: WritesApp, options: NeverStaleOptions): Promise<void> {
  const { Item } = app;
  const ROUNDS = Number(process.env['STREAM_WRITES_ROUNDS'] ?? options.rounds);
  let stale = 0;
  let stop = false;
  const readers = Array.from({ length: 3 }, async () => {
    while (!stop) {
      await nameOf(Item, 1 + Math.floor(Math.random() * 5));
      await Item.count({ where: { n: 1 } } as never);
    }
  });
  try {
    for (let i = 0; i < ROUNDS; i += 1) {
      const id = 1 + (i % 5);
      const value = `v${i}`;
      const { update, n } = options.write(i);
      if (update) await Item.update({ name: value, n }, { where: { id } });
      else {
        const row = (await Item.findByPk(id, { cacheops: false } as never))!;
        row.set({ name: value, n });
        await row.save();
      }
      if ((await nameOf(Item, id)) !== value) stale += 1;
      if ((await Item.count({ where: { n: 1 } } as never)) !== (await Item.count({ where: { n: 1 }, cacheops: false } as never))) stale += 1;
    }
  } finally {
    stop = true;
    await Promise.all(readers);
  }
  const done = app.waits.filter((w) => w.outcome === 'done').length;
  t.log(`${ROUNDS} writes, ${done} resolved by the stream, ${app.cacheops.stats().hits} hits`);
  t.is(stale, 0);
  t.true(app.cacheops.stats().hits > ROUNDS, 'the readers hit the cache');
  t.true(done > ROUNDS / 2);
}
