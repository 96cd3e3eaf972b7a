/**
 * SQLite change detection (changeStream): a commit by another connection or
 * process to the same file is invalidated within the poll interval, and the
 * application's own writes outside transactions cause no extra invalidation.
 */
import test from 'ava';
import { checkStreamDialect } from '../../src/core/stream-options';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataTypes, Sequelize } from 'sequelize';
import sqlite3 from 'sqlite3';
import { installCacheops } from '../../src/index';
import { redisUrl, uniquePrefix } from '../helpers/env';
import { shellWrite } from '../helpers/sqlite-shell';

const POLL_MS = 100;

async function setup(changeStream: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-sqlite-stream-'));
  const file = join(dir, 'db.sqlite');
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: file, logging: false });
  const Item = sequelize.define('Item', { name: DataTypes.STRING, n: DataTypes.INTEGER }, { timestamps: false });
  await sequelize.sync({ force: true });
  await Item.create({ name: 'a', n: 1 });
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: uniquePrefix('sqlstream'), profiles: { Item: { ops: 'all' } },
    changeStream: changeStream ? { pollIntervalMs: POLL_MS } : false,
  });
  return {
    file, sequelize, Item, cacheops,
    async close() {
      await cacheops.invalidateAll();
      await cacheops.close();
      await sequelize.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs one statement on a connection of its own (the sqlite3 package), then closes it. */
async function foreignWrite(file: string, sql: string): Promise<void> {
  const db = new sqlite3.Database(file);
  db.configure('busyTimeout', 5000);
  await new Promise<void>((resolve, reject) => db.run(sql, (e) => (e ? reject(e) : resolve())));
  await new Promise<void>((resolve) => db.close(() => resolve()));
}

/** Reads until the name is seen; milliseconds it took (Infinity past the limit). */
async function msUntil(read: () => Promise<unknown>, expected: unknown, limitMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if ((await read()) === expected) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 5));
  }
  return Infinity;
}

test.serial('a write by another connection is seen by cached reads within the poll interval', async (t) => {
  const s = await setup(true);
  try {
    const read = async () => ((await s.Item.findOne({ where: { id: 1 } })) as unknown as { name: string } | null)?.name;
    // The start-up invalidation first (a read before it may not store): wait for two cached hits.
    await new Promise((r) => setTimeout(r, POLL_MS * 2));
    t.is(await read(), 'a');
    const hitsBefore = s.cacheops.stats().hits;
    t.is(await read(), 'a');
    t.is(s.cacheops.stats().hits, hitsBefore + 1, 'served from the cache');

    // Measured: one invalidation round trip, the stated bound's second term.
    const t0 = Date.now();
    await s.cacheops.invalidateModel(s.Item);
    const invalidationMs = Date.now() - t0;
    t.is(await read(), 'a');

    const lags: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      await foreignWrite(s.file, `UPDATE Items SET name = 'conn${i}' WHERE id = 1`);
      const ms = await msUntil(read, `conn${i}`, 1000);
      lags.push(ms);
    }
    t.log(`foreign connection: seen after ${lags.join(', ')} ms (poll ${POLL_MS} ms, one invalidation ${invalidationMs} ms)`);
    for (const ms of lags) t.true(ms <= 1000, `seen within 1 s (${ms} ms)`);
    t.true(s.cacheops.stats().changeStream.events >= 5);
    t.is(s.cacheops.stats().changeStream.role, 'consumer');
  } finally {
    await s.close();
  }
});

test.serial('a write by another process (the sqlite3 command line) is seen within 1 s', async (t) => {
  const s = await setup(true);
  try {
    const count = async () => s.Item.count();
    await new Promise((r) => setTimeout(r, POLL_MS * 2));
    t.is(await count(), 1);
    t.is(await count(), 1);
    // A busy timeout, as any writer sharing the file needs (readers hold the lock for moments);
    // SQLite answers "locked" without waiting when waiting could deadlock: tried again then.
    shellWrite(s.file, "INSERT INTO Items (name, n) VALUES ('cli', 2)");
    const ms = await msUntil(count, 2, 1000);
    t.log(`sqlite3 process: seen after ${ms} ms`);
    t.true(ms <= 1000);
  } finally {
    await s.close();
  }
});

test.serial('writes of the application outside transactions add no invalidation of their own', async (t) => {
  const s = await setup(true);
  try {
    await new Promise((r) => setTimeout(r, POLL_MS * 2));
    const before = s.cacheops.stats();
    for (let i = 0; i < 5; i += 1) await s.Item.update({ n: i }, { where: { id: 1 } });
    await new Promise((r) => setTimeout(r, POLL_MS * 3));
    const after = s.cacheops.stats();
    t.is(after.changeStream.events, before.changeStream.events, 'the stream saw no foreign commit');
    t.is(after.modelInvalidations, before.modelInvalidations);
  } finally {
    await s.close();
  }
});

test.serial('without changeStream the foreign write stays unseen (the test can fail)', async (t) => {
  const s = await setup(false);
  try {
    const read = async () => ((await s.Item.findOne({ where: { id: 1 } })) as unknown as { name: string } | null)?.name;
    t.is(await read(), 'a');
    await foreignWrite(s.file, "UPDATE Items SET name = 'z' WHERE id = 1");
    t.is(await msUntil(read, 'z', POLL_MS * 5), Infinity);
    t.is(s.cacheops.stats().changeStream.role, 'off');
  } finally {
    await s.close();
  }
});

test.serial('changeStream options are checked', (t) => {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  t.throws(() => installCacheops(sequelize, { redis: redisUrl, changeStream: { pollIntervalMs: -1 } }), { message: /changeStream.pollIntervalMs/ });
  t.throws(() => installCacheops(sequelize, { redis: redisUrl, changeStream: { slots: 'x' } as never }), { message: /changeStream.slots: unknown option/ });
  t.throws(() => installCacheops(sequelize, { redis: redisUrl, changeStream: { serverId: 0 } }), { message: /changeStream.serverId/ });
  t.throws(() => checkStreamDialect('mssql', {}), { message: /changeStream: not available on mssql/ });
  t.notThrows(() => checkStreamDialect('mysql', {}));
});
