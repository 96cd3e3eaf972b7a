/**
 * `writes: 'stream'` on a private PostgreSQL with wal_level=logical: each
 * write sends one statement (Sequelize's own, with the transaction id in its
 * RETURNING) and resolves once the change stream invalidated its transaction,
 * with the consumer in this process and in another one; a stream that does not
 * come (no consumer anywhere) makes the write invalidate model-wide within the
 * bound; writes of no row wait for nothing; transactions resolve at their
 * commit, savepoints rolled back included; under concurrent cached readers no
 * read after a resolved write is stale. The configuration's checks run on any
 * dialect.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
import { CacheopsConfigError, installCacheops, type Cacheops } from '../../src/index';
import { STREAM_WAITED_EVENT, type WaitOutcome } from '../../src/write/stream-wait';
import { dialects, redisUrl, uniquePrefix } from '../helpers/env';
import { useStreamDatabases } from '../helpers/stream-databases';
import { defineItem } from '../helpers/stream-models';

const run = dialects().includes('postgres') ? test.serial : test.serial.skip;
const databases = useStreamDatabases('app', { postgres: dialects().includes('postgres') });
const DB = databases.database;

test('config: writes is sync or stream, and stream needs the change stream', (t) => {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const bad = (config: Record<string, unknown>, key: string): void => {
    const error = t.throws(() => installCacheops(sequelize, { redis: redisUrl, ...config } as never), { instanceOf: CacheopsConfigError });
    t.true(error!.message.includes(key), error!.message);
  };
  bad({ writes: 'async' }, 'writes');
  bad({ writes: 'stream' }, 'writes');
  bad({ writes: 'stream', changeStream: false }, 'writes');
  bad({ writes: 'stream', changeStream: { writeWaitMs: -1 } }, 'changeStream.writeWaitMs');
});

test('SQLite: writes stream falls back to the synchronous path, said once', async (t) => {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const Item = defineItem(sequelize, 'items');
  await Item.sync();
  await Item.create({ name: 'a', n: 1 });
  const logs: string[] = [];
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: uniquePrefix('swsqlite'), profiles: { Item: { ops: 'all' } }, changeStream: true, writes: 'stream', logger: (m) => { logs.push(m); },
  });
  try {
    t.is(logs.filter((m) => m.includes("writes: 'stream'")).length, 1);
    t.is(((await Item.findByPk(1)) as unknown as { name: string }).name, 'a');
    await Item.update({ name: 'b' }, { where: { id: 1 } });
    t.is(((await Item.findByPk(1)) as unknown as { name: string }).name, 'b');
  } finally {
    await cacheops.close();
    await sequelize.close();
  }
});

interface App {
  readonly sequelize: Sequelize;
  readonly Item: ModelStatic<Model>;
  readonly cacheops: Cacheops;
  readonly statements: string[];
  readonly waits: { ms: number; outcome: WaitOutcome }[];
  close(): Promise<void>;
}

let counter = 0;

async function makeApp(opts: { table: string; slot: string; prefix: string; seed?: boolean; waitMs?: number }): Promise<App> {
  const statements: string[] = [];
  const sequelize = new Sequelize(DB, 'postgres', '', {
    host: '127.0.0.1', port: databases.pg.port, dialect: 'postgres', logging: (sql: string) => { statements.push(sql); },
  });
  const Item = defineItem(sequelize, opts.table);
  if (opts.seed !== false) {
    await Item.sync({ force: true });
    await sequelize.query(`ALTER TABLE "${opts.table}" REPLICA IDENTITY FULL`);
    await Item.bulkCreate(Array.from({ length: 30 }, (_, i) => ({ name: `r${i + 1}`, n: i < 20 ? 1 : 2 })));
  }
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: opts.prefix, profiles: { Item: { ops: 'all' } }, writes: 'stream',
    changeStream: { slot: opts.slot, handoverMs: 200, writeWaitMs: opts.waitMs ?? 2000 }, logger: () => undefined,
  });
  const waits: { ms: number; outcome: WaitOutcome }[] = [];
  cacheops.core.events.on(STREAM_WAITED_EVENT, (w: { ms: number; outcome: WaitOutcome }) => waits.push(w));
  await cacheops.changeStreamReady();
  return {
    sequelize, Item, cacheops, statements, waits,
    async close() {
      await cacheops.invalidateAll().catch(() => undefined);
      await cacheops.close();
      await sequelize.close();
    },
  };
}

function names(): { table: string; slot: string; prefix: string } {
  counter += 1;
  return { table: `sw_${counter}`, slot: `sw_${counter}_${process.pid}`, prefix: uniquePrefix(`sw${counter}`) };
}

const nameOf = async (Item: ModelStatic<Model>, id: number, cacheops = true): Promise<unknown> =>
  ((await Item.findOne({ where: { id }, cacheops } as never)) as unknown as { name: string } | null)?.name ?? null;

/** Every write kind: each a cached read first, the write, then the read right after it resolved. */
async function everyWriteKind(t: { is(a: unknown, b: unknown, m?: string): void; true(v: boolean, m?: string): void }, app: App): Promise<void> {
  const { Item, statements } = app;
  const count = async (where: Record<string, unknown>): Promise<number> => Item.count({ where } as never) as unknown as Promise<number>;
  const one = async (label: string, write: () => Promise<unknown>, check: () => Promise<void>): Promise<void> => {
    statements.length = 0;
    const before = app.waits.length;
    await write();
    const sent = statements.length;
    await check();
    t.is(sent, 1, `${label}: one statement (${statements.join(' | ')})`);
    t.true(statements[0]!.includes('txid_current()'), `${label}: ${statements[0]}`);
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

run('consumer in this process: every write kind is one statement and reads its own write', async (t) => {
  const n = names();
  const app = await makeApp(n);
  try {
    t.is(app.cacheops.stats().changeStream.role, 'consumer');
    await everyWriteKind(t, app);
    const ms = app.waits.map((w) => w.ms).sort((a, b) => a - b);
    t.log(`waits for the stream: median ${ms[Math.floor(ms.length / 2)]!.toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms`);
  } finally {
    await app.close();
    await databases.dropSlot(n.slot);
  }
});

run('consumer in another process: writes resolve through Redis and read their own write', async (t) => {
  const n = names();
  const setup = await makeApp(n);
  await setup.close();
  await new Promise((r) => setTimeout(r, 100));
  const child = spawn(process.execPath, ['--import=tsx', join(__dirname, '..', 'fixtures', 'stream-app.ts'), String(databases.pg.port), DB, redisUrl, n.prefix, n.slot, n.table, 'stream'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const roles = createInterface({ input: child.stdout! });
  const firstRole = new Promise<string>((resolve) => roles.once('line', resolve));
  try {
    t.is(await firstRole, 'consumer');
    const app = await makeApp({ ...n, seed: false });
    try {
      t.is(app.cacheops.stats().changeStream.role, 'standby');
      await app.Item.destroy({ where: {} });
      await app.Item.bulkCreate(Array.from({ length: 30 }, (_, i) => ({ id: i + 1, name: `r${i + 1}`, n: i < 20 ? 1 : 2 })));
      app.waits.length = 0;
      await everyWriteKind(t, app);
    } finally {
      await app.close();
    }
  } finally {
    child.kill('SIGKILL');
    await databases.dropSlot(n.slot);
  }
});

run('no consumer anywhere: the write invalidates model-wide within the bound; writes of no row wait for nothing', async (t) => {
  const n = names();
  const setup = await makeApp(n);
  await setup.close();
  // Another holder of the consumer lease that never consumes: this process stands by, nothing streams.
  const holderDb = new (await import('../helpers/private-postgres')).Client({ host: '127.0.0.1', port: databases.pg.port, user: 'postgres', database: DB });
  await holderDb.connect();
  await holderDb.query(`SELECT pg_advisory_lock(hashtextextended('cacheops-stream:' || $1, 0))`, [n.slot]);
  const app = await makeApp({ ...n, seed: false, waitMs: 300 });
  try {
    t.is(app.cacheops.stats().changeStream.role, 'standby');
    await nameOf(app.Item, 1);
    const modelWide = app.cacheops.stats().modelInvalidations;
    const started = Date.now();
    await app.Item.update({ name: 'late' }, { where: { id: 1 } });
    const took = Date.now() - started;
    t.is(await nameOf(app.Item, 1), 'late');
    t.deepEqual(app.waits.map((w) => w.outcome), ['timeout']);
    t.true(took >= 300 && took < 300 + 1000, `resolved after ${took} ms (bound 300 ms)`);
    t.true(app.cacheops.stats().modelInvalidations > modelWide, 'invalidated model-wide');
    // Late: the next write takes the synchronous path at once (granular, no wait).
    const next = Date.now();
    await app.Item.update({ name: 'sync' }, { where: { id: 1 } });
    t.true(Date.now() - next < 300, 'no second wait');
    t.is(await nameOf(app.Item, 1), 'sync');
    // A write of no row: nothing in the stream, nothing to wait for.
    await new Promise((r) => setTimeout(r, 350)); // a probe is due: the write takes the stream path
    app.waits.length = 0;
    app.statements.length = 0;
    const [affected] = await app.Item.update({ name: 'none' }, { where: { id: 99999 } });
    t.is(affected, 0);
    t.true(app.statements[0]!.includes('txid_current()'), app.statements[0]);
    t.is(app.waits.length, 0);
  } finally {
    await app.close();
    await holderDb.end();
    await databases.dropSlot(n.slot);
  }
});

run('transactions resolve at their commit; savepoints rolled back need nothing', async (t) => {
  const n = names();
  const app = await makeApp(n);
  const { Item, sequelize } = app;
  try {
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
    t.true(Date.now() - started < 1000);
    t.is(await nameOf(Item, 3), 'r3');
    // A rolled back transaction: nothing.
    await t.throwsAsync(sequelize.transaction(async (tx) => {
      await Item.update({ name: 'never' }, { where: { id: 3 }, transaction: tx });
      throw new Error('rollback');
    }));
    t.is(app.waits.length, 0);
    t.is(await nameOf(Item, 3), 'r3');
  } finally {
    await app.close();
    await databases.dropSlot(n.slot);
  }
});

run('never stale: concurrent cached readers, every read after a resolved write sees it', async (t) => {
  const n = names();
  const app = await makeApp(n);
  const { Item } = app;
  const ROUNDS = Number(process.env['STREAM_WRITES_ROUNDS'] ?? 200);
  let stale = 0;
  let stop = false;
  const readers = Array.from({ length: 3 }, async () => {
    while (!stop) {
      const id = 1 + Math.floor(Math.random() * 5);
      await nameOf(Item, id);
      await Item.count({ where: { n: 1 } } as never);
    }
  });
  try {
    for (let i = 0; i < ROUNDS; i += 1) {
      const id = 1 + (i % 5);
      const value = `v${i}`;
      if (i % 3 === 0) await Item.update({ name: value, n: i % 2 }, { where: { id } });
      else {
        const row = (await Item.findByPk(id, { cacheops: false } as never))!;
        row.set({ name: value, n: i % 2 });
        await row.save();
      }
      if ((await nameOf(Item, id)) !== value) stale += 1;
      if ((await Item.count({ where: { n: 1 } } as never)) !== (await Item.count({ where: { n: 1 }, cacheops: false } as never))) stale += 1;
    }
  } finally {
    stop = true;
    await Promise.all(readers);
  }
  try {
    const outcomes = app.waits.map((w) => w.outcome);
    t.log(`${ROUNDS} writes, ${outcomes.filter((o) => o === 'done').length} resolved by the stream, ${app.cacheops.stats().hits} hits`);
    t.is(stale, 0);
    t.true(app.cacheops.stats().hits > ROUNDS, 'the readers hit the cache');
    t.true(outcomes.filter((o) => o === 'done').length > ROUNDS / 2);
  } finally {
    await app.close();
    await databases.dropSlot(n.slot);
  }
});
