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
import { Sequelize } from 'sequelize';
import { CacheopsConfigError, installCacheops } from '../../src/index';
import { dialects, redisUrl, uniquePrefix } from '../helpers/env';
import { startSecondApp } from '../helpers/stream-app';
import { useStreamDatabases } from '../helpers/stream-databases';
import { defineItem } from '../helpers/stream-models';
import {
  everyWriteKind, installWritesApp, logWaits, nameOf, neverStale, seedRows, transactionsResolveAtCommit, type WritesApp,
} from '../helpers/stream-writes-suite';

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

interface Names {
  readonly table: string;
  readonly slot: string;
  readonly prefix: string;
}

let counter = 0;

function names(): Names {
  counter += 1;
  return { table: `sw_${counter}`, slot: `sw_${counter}_${process.pid}`, prefix: uniquePrefix(`sw${counter}`) };
}

/** Each statement sent carries its transaction id in its RETURNING. */
const TXID = { statementMark: 'txid_current()' };

function makeApp(opts: Names & { seed?: boolean; waitMs?: number }): Promise<WritesApp> {
  return installWritesApp({
    connect: (log) => new Sequelize(DB, 'postgres', '', { host: '127.0.0.1', port: databases.pg.port, dialect: 'postgres', logging: log }),
    table: opts.table, prefix: opts.prefix, ...(opts.seed === false ? { seed: false } : {}),
    prepare: async (sequelize, table) => { await sequelize.query(`ALTER TABLE "${table}" REPLICA IDENTITY FULL`); },
    changeStream: { slot: opts.slot, handoverMs: 200, writeWaitMs: opts.waitMs ?? 2000 },
  });
}

/** A seeded app on names of its own, closed and its slot dropped after `body`. */
async function withApp(body: (app: WritesApp) => Promise<void>): Promise<void> {
  const n = names();
  const app = await makeApp(n);
  try {
    await body(app);
  } finally {
    await app.close();
    await databases.dropSlot(n.slot);
  }
}

run('consumer in this process: every write kind is one statement and reads its own write', (t) => withApp(async (app) => {
  t.is(app.cacheops.stats().changeStream.role, 'consumer');
  await everyWriteKind(t, app, TXID);
  logWaits(t, app);
}));

run('consumer in another process: writes resolve through Redis and read their own write', async (t) => {
  const n = names();
  const setup = await makeApp(n);
  await setup.close();
  await new Promise((r) => setTimeout(r, 100));
  const { child, firstRole } = startSecondApp('stream-app.ts', [databases.pg.port, DB, redisUrl, n.prefix, n.slot, n.table, 'stream']);
  try {
    t.is(await firstRole, 'consumer');
    const app = await makeApp({ ...n, seed: false });
    try {
      t.is(app.cacheops.stats().changeStream.role, 'standby');
      await app.Item.destroy({ where: {} });
      await app.Item.bulkCreate(seedRows(true));
      app.waits.length = 0;
      await everyWriteKind(t, app, TXID);
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

run('transactions resolve at their commit; savepoints rolled back need nothing', (t) => withApp(async (app) => {
  await transactionsResolveAtCommit(t, app);
}));

run('never stale: concurrent cached readers, every read after a resolved write sees it', (t) => withApp(async (app) => {
  await neverStale(t, app, { rounds: 200, write: (i) => ({ update: i % 3 === 0, n: i % 2 }) });
}));
