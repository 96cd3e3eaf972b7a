/**
 * `writes: 'stream'` on a private MariaDB with the row binlog: each write sends
 * Sequelize's statement unchanged (the GTID comes with its OK packet, or with
 * the COMMIT's, through session tracking of `last_gtid`) and resolves once the
 * binlog consumer invalidated its transaction; writes of no row wait for
 * nothing; transactions resolve at their commit, savepoints rolled back
 * included; under concurrent cached readers no read after a resolved write is
 * stale.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
import { installCacheops, type Cacheops } from '../../src/index';
import { STREAM_WAITED_EVENT, type WaitOutcome } from '../../src/write/stream-wait';
import { rawRedis, redisUrl, uniquePrefix } from '../helpers/env';
import { mariadbUnavailable } from '../helpers/private-mariadb';
import { useStreamDatabases } from '../helpers/stream-databases';
import { defineItem } from '../helpers/stream-models';

const unavailable = mariadbUnavailable();
const run = unavailable === undefined ? test.serial : test.serial.skip;
if (unavailable !== undefined) test('MariaDB stream write tests', (t) => { t.log(`skipped: ${unavailable}`); t.pass(); });
const databases = useStreamDatabases('app', { mariadb: true });
const DB = databases.database;

interface App {
  readonly sequelize: Sequelize;
  readonly Item: ModelStatic<Model>;
  readonly cacheops: Cacheops;
  readonly statements: string[];
  readonly waits: { ms: number; outcome: WaitOutcome }[];
  close(): Promise<void>;
}

let counter = 0;

async function makeApp(opts: { table?: string; prefix?: string } = {}): Promise<App> {
  counter += 1;
  const table = opts.table ?? `sw_${counter}`;
  const statements: string[] = [];
  const sequelize = new Sequelize(DB, 'root', '', { host: '127.0.0.1', port: databases.maria.port, dialect: 'mysql', logging: (sql: string) => { statements.push(sql); } });
  const Item = defineItem(sequelize, table);
  await Item.sync({ force: true });
  await Item.bulkCreate(Array.from({ length: 30 }, (_, i) => ({ name: `r${i + 1}`, n: i < 20 ? 1 : 2 })));
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: opts.prefix ?? uniquePrefix(`swm${counter}`), profiles: { Item: { ops: 'all' } }, writes: 'stream',
    changeStream: { handoverMs: 200, writeWaitMs: 3000 }, logger: () => undefined,
  });
  const waits: { ms: number; outcome: WaitOutcome }[] = [];
  cacheops.core.events.on(STREAM_WAITED_EVENT, (w: { ms: number; outcome: WaitOutcome }) => waits.push(w));
  await cacheops.changeStreamReady();
  await sequelize.databaseVersion(); // the writer learns the server is MariaDB
  await new Promise((r) => setTimeout(r, 50));
  return {
    sequelize, Item, cacheops, statements, waits,
    async close() {
      await cacheops.invalidateAll().catch(() => undefined);
      await cacheops.close();
      await sequelize.close();
    },
  };
}

const nameOf = async (Item: ModelStatic<Model>, id: number): Promise<unknown> =>
  ((await Item.findOne({ where: { id } } as never)) as unknown as { name: string } | null)?.name ?? null;

run('every write kind is Sequelize\'s one statement, resolved by the binlog consumer, and reads its own write', async (t) => {
  const app = await makeApp();
  const { Item, statements } = app;
  const count = async (where: Record<string, unknown>): Promise<number> => Item.count({ where } as never) as unknown as Promise<number>;
  const one = async (label: string, write: () => Promise<unknown>, check: () => Promise<unknown>): Promise<void> => {
    statements.length = 0;
    const before = app.waits.length;
    await write();
    const sent = statements.length;
    await check();
    t.is(sent, 1, `${label}: one statement (${statements.join(' | ')})`);
    t.is(app.waits.slice(before).map((w) => w.outcome).join(), 'done', `${label}: resolved by the stream`);
  };
  try {
    t.is(app.cacheops.stats().changeStream.role, 'consumer');
    await nameOf(Item, 1);
    const row = (await Item.findByPk(1))!;
    await one('save', async () => { row.set('name', 'saved'); await row.save(); }, async () => t.is(await nameOf(Item, 1), 'saved'));
    await nameOf(Item, 2);
    await one('update by pk', () => Item.update({ name: 'upd' }, { where: { id: 2 } }), async () => t.is(await nameOf(Item, 2), 'upd'));
    t.is(await count({ n: 1 }), 20);
    await one('mass update', () => Item.update({ n: 3 }, { where: { n: 1 } }), async () => t.is(await count({ n: 3 }), 20));
    await nameOf(Item, 3);
    const third = (await Item.findByPk(3))!;
    await one('destroy', () => third.destroy(), async () => t.is(await nameOf(Item, 3), null));
    t.is(await count({ name: 'new' }), 0);
    await one('create', () => Item.create({ name: 'new', n: 9 }), async () => t.is(await count({ name: 'new' }), 1));
    const ms = app.waits.map((w) => w.ms).sort((a, b) => a - b);
    t.log(`waits for the stream: median ${ms[Math.floor(ms.length / 2)]!.toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms`);
    // A write of no row: nothing in the binlog, nothing to wait for.
    app.waits.length = 0;
    const [affected] = await Item.update({ name: 'none' }, { where: { id: 99999 } });
    t.is(affected, 0);
    t.is(app.waits.length, 0);
  } finally {
    await app.close();
  }
});

run('consumer in another process: writes and commits resolve through Redis and read their own write', async (t) => {
  const table = `sw_other_${process.pid}`;
  const prefix = uniquePrefix('swmother');
  const setup = new Sequelize(DB, 'root', '', { host: '127.0.0.1', port: databases.maria.port, dialect: 'mysql', logging: false });
  await defineItem(setup, table).sync({ force: true });
  await setup.close();
  const child = spawn(process.execPath, ['--import=tsx', join(__dirname, '..', 'fixtures', 'mariadb-stream-app.ts'), String(databases.maria.port), DB, redisUrl, prefix, table, 'stream'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const firstRole = new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve));
  try {
    t.is(await firstRole, 'consumer');
    const app = await makeApp({ table, prefix });
    try {
      t.is(app.cacheops.stats().changeStream.role, 'standby');
      app.waits.length = 0;
      for (const id of [1, 2, 3]) await nameOf(app.Item, id);
      await app.Item.update({ name: 'other' }, { where: { id: 1 } });
      t.is(await nameOf(app.Item, 1), 'other');
      const row = (await app.Item.findByPk(2))!;
      row.set('name', 'saved');
      await row.save();
      t.is(await nameOf(app.Item, 2), 'saved');
      await app.sequelize.transaction(async (tx) => {
        await app.Item.update({ name: 'in tx' }, { where: { id: 3 }, transaction: tx });
      });
      t.is(await nameOf(app.Item, 3), 'in tx');
      t.deepEqual(app.waits.map((w) => w.outcome), ['done', 'done', 'done']);
    } finally {
      await app.close();
    }
  } finally {
    child.kill('SIGKILL');
  }
});

run('transactions resolve at their commit (its GTID); savepoints rolled back need nothing', async (t) => {
  const app = await makeApp();
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
    app.waits.length = 0;
    await sequelize.transaction(async (tx) => {
      const sp = await sequelize.transaction({ transaction: tx });
      await Item.update({ name: 'undone' }, { where: { id: 3 }, transaction: sp });
      await sp.rollback();
    });
    t.is(app.waits.length, 0);
    t.is(await nameOf(Item, 3), 'r3');
  } finally {
    await app.close();
  }
});

run('never stale: concurrent cached readers, every read after a resolved write sees it', async (t) => {
  const app = await makeApp();
  const { Item } = app;
  const ROUNDS = Number(process.env['STREAM_WRITES_ROUNDS'] ?? 150);
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
      if (i % 2 === 0) await Item.update({ name: value, n: i % 3 === 0 ? 1 : 0 }, { where: { id } });
      else {
        const row = (await Item.findByPk(id, { cacheops: false } as never))!;
        row.set({ name: value, n: i % 3 === 0 ? 1 : 0 });
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
    const done = app.waits.filter((w) => w.outcome === 'done').length;
    t.log(`${ROUNDS} writes, ${done} resolved by the stream, ${app.cacheops.stats().hits} hits`);
    t.is(stale, 0);
    t.true(done > ROUNDS / 2);
  } finally {
    await app.close();
  }
});

run('invalidateAll keeps the consumer\'s lease and position: a standby\'s write right after it resolves through the stream', async (t) => {
  const consumer = await makeApp();
  const sequelize = new Sequelize(DB, 'root', '', { host: '127.0.0.1', port: databases.maria.port, dialect: 'mysql', logging: false });
  const Item = defineItem(sequelize, consumer.Item.getTableName() as string);
  const standby = installCacheops(sequelize, {
    redis: redisUrl, prefix: consumer.cacheops.core.prefixFor([]), profiles: { Item: { ops: 'all' } }, writes: 'stream',
    changeStream: { handoverMs: 200, writeWaitMs: 3000 }, logger: () => undefined,
  });
  const waits: WaitOutcome[] = [];
  standby.core.events.on(STREAM_WAITED_EVENT, (w: { outcome: WaitOutcome }) => waits.push(w.outcome));
  const redis = rawRedis();
  try {
    await standby.changeStreamReady();
    await sequelize.databaseVersion();
    t.is(consumer.cacheops.stats().changeStream.role, 'consumer');
    t.is(standby.stats().changeStream.role, 'standby');
    await Item.update({ name: 'before' }, { where: { id: 1 } });
    const ns = `${consumer.cacheops.core.prefixFor([])}cacheops:{0}:`;
    const state = async (): Promise<(string | null)[]> => redis.mget(`${ns}stream:lease:${DB}`, `${ns}stream:pos:${DB}`);
    const before = await state();
    t.true(before.every((v) => v !== null), `the lease and the position are in Redis: ${JSON.stringify(before)}`);
    t.is(await nameOf(Item, 1), 'before');
    await standby.invalidateAll();
    // Deleted, the lease would be lost: the consumer restarts at the binlog's end, and this write's GTID
    // (before that end) is announced by no one: it would wait out its bound.
    t.is((await state())[0], before[0], 'the lease is kept');
    t.not((await state())[1], null, 'the position is kept');
    await Item.update({ name: 'after' }, { where: { id: 1 } });
    t.is(await nameOf(Item, 1), 'after');
    t.deepEqual(waits, ['done', 'done']);
    t.is(consumer.cacheops.stats().changeStream.role, 'consumer');
  } finally {
    redis.disconnect();
    await standby.close();
    await sequelize.close();
    await consumer.close();
  }
});
