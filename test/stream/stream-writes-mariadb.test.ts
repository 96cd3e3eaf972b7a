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
import { Sequelize } from 'sequelize';
import { installCacheops } from '../../src/index';
import { STREAM_WAITED_EVENT, type WaitOutcome } from '../../src/write/stream-wait';
import { rawRedis, redisUrl, uniquePrefix } from '../helpers/env';
import { mariadbUnavailable } from '../helpers/private-mariadb';
import { startSecondApp } from '../helpers/stream-app';
import { useStreamDatabases } from '../helpers/stream-databases';
import { defineItem } from '../helpers/stream-models';
import {
  everyWriteKind, installWritesApp, logWaits, nameOf, neverStale, transactionsResolveAtCommit, type WritesApp,
} from '../helpers/stream-writes-suite';

const unavailable = mariadbUnavailable();
const run = unavailable === undefined ? test.serial : test.serial.skip;
if (unavailable !== undefined) test('MariaDB stream write tests', (t) => { t.log(`skipped: ${unavailable}`); t.pass(); });
const databases = useStreamDatabases('app', { mariadb: true });
const DB = databases.database;

const sequelizeOf = (logging: false | ((sql: string) => void) = false): Sequelize =>
  new Sequelize(DB, 'root', '', { host: '127.0.0.1', port: databases.maria.port, dialect: 'mysql', logging });

let counter = 0;

async function makeApp(opts: { table?: string; prefix?: string } = {}): Promise<WritesApp> {
  counter += 1;
  return installWritesApp({
    connect: sequelizeOf, table: opts.table ?? `sw_${counter}`, prefix: opts.prefix ?? uniquePrefix(`swm${counter}`),
    changeStream: { handoverMs: 200, writeWaitMs: 3000 },
    ready: async (sequelize) => {
      await sequelize.databaseVersion(); // the writer learns the server is MariaDB
      await new Promise((r) => setTimeout(r, 50));
    },
  });
}

run('every write kind is Sequelize\'s one statement, resolved by the binlog consumer, and reads its own write', async (t) => {
  const app = await makeApp();
  try {
    t.is(app.cacheops.stats().changeStream.role, 'consumer');
    await everyWriteKind(t, app);
    logWaits(t, app);
    // A write of no row: nothing in the binlog, nothing to wait for.
    app.waits.length = 0;
    const [affected] = await app.Item.update({ name: 'none' }, { where: { id: 99999 } });
    t.is(affected, 0);
    t.is(app.waits.length, 0);
  } finally {
    await app.close();
  }
});

run('consumer in another process: writes and commits resolve through Redis and read their own write', async (t) => {
  const table = `sw_other_${process.pid}`;
  const prefix = uniquePrefix('swmother');
  const setup = sequelizeOf();
  await defineItem(setup, table).sync({ force: true });
  await setup.close();
  const { child, firstRole } = startSecondApp('mariadb-stream-app.ts', [databases.maria.port, DB, redisUrl, prefix, table, 'stream']);
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
  try {
    await transactionsResolveAtCommit(t, app);
  } finally {
    await app.close();
  }
});

run('never stale: concurrent cached readers, every read after a resolved write sees it', async (t) => {
  const app = await makeApp();
  try {
    await neverStale(t, app, { rounds: 150, write: (i) => ({ update: i % 2 === 0, n: i % 3 === 0 ? 1 : 0 }) });
  } finally {
    await app.close();
  }
});

run('invalidateAll keeps the consumer\'s lease and position: a standby\'s write right after it resolves through the stream', async (t) => {
  const consumer = await makeApp();
  const sequelize = sequelizeOf();
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
