/**
 * Commit visibility, forced: PostgreSQL decodes a transaction once its commit
 * record is flushed, before other sessions can see it. The private server
 * names a synchronous standby that never comes, and the writer alone asks to
 * wait for it (synchronous_commit = on): its UPDATE is then flushed and
 * decoded but invisible until its wait is cancelled.
 *
 *   1. the writer's UPDATE is decoded by the stream (and still invisible);
 *   2. a reader misses and reads the old row from the database, and stores it;
 *   3. the writer's wait is cancelled: the UPDATE becomes visible.
 *
 * Without the protection (awaitVisibility: false) the invalidation runs at 1,
 * before the read of 2, whose store is then allowed: the old row stays cached
 * after the change (asserted stale). With it the stream waits for 3 before
 * invalidating, so the stored old row is dropped and the next read is fresh.
 */
import test from 'ava';
import type { Model, ModelStatic } from 'sequelize';
import { installCacheops } from '../../src/index';
import { APPLIED_EVENT, DECODED_EVENT } from '../../src/stream/pg-consumer';
import { dialects, redisUrl, uniquePrefix } from '../helpers/env';
import { Client, startPrivatePostgres, type PgClient, type PrivatePostgres } from '../helpers/private-postgres';
import { defineItem, privateSequelize } from '../helpers/stream-models';

const run = dialects().includes('postgres') ? test.serial : test.serial.skip;
let server: PrivatePostgres;

test.before(async () => {
  if (!dialects().includes('postgres')) return;
  server = await startPrivatePostgres();
  const admin = await server.client();
  await admin.query('CREATE DATABASE race');
  await admin.end();
});

test.after.always(async () => {
  await server?.stop();
});

const once = (emitter: { once(e: string, f: () => void): unknown }, event: string): Promise<void> => new Promise((r) => emitter.once(event, () => r()));

async function scenario(awaitVisibility: boolean, label: string): Promise<{ read: unknown; hit: boolean; decodedBeforeVisible: boolean }> {
  const table = `race_${label}`;
  const sequelize = privateSequelize(server.port, 'race');
  const Item: ModelStatic<Model> = defineItem(sequelize, table);
  await Item.sync({ force: true });
  await sequelize.query(`ALTER TABLE "${table}" REPLICA IDENTITY FULL`);
  await Item.create({ name: 'old', n: 1 });
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: uniquePrefix(`vis${label}`), profiles: { Item: { ops: 'all' } },
    changeStream: { slot: `race_${label}`, pollIntervalMs: 10, awaitVisibility }, logger: () => undefined,
  });
  const writer: PgClient = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'race' });
  const observer: PgClient = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'race' });
  const name = async (): Promise<unknown> => ((await Item.findOne({ where: { id: 1 } })) as unknown as { name: string }).name;
  try {
    await cacheops.changeStreamReady();
    await writer.connect();
    await observer.connect();
    const pid = (await writer.query('SELECT pg_backend_pid() AS pid')).rows[0]!['pid'];
    await writer.query('SET synchronous_commit = on');
    const decoded = once(cacheops.core.events, DECODED_EVENT);
    const invalidated = awaitVisibility ? undefined : once(cacheops.core.events, 'invalidated');
    // 1. Committed locally, waiting for the standby: decodable, not visible.
    const writing = writer.query(`UPDATE "${table}" SET name = 'new' WHERE id = 1`);
    await decoded;
    await invalidated;
    const seen = (await observer.query(`SELECT name FROM "${table}" WHERE id = 1`)).rows[0]!['name'];
    // 2. A reader: misses, reads the old row, stores it.
    await name();
    // 3. The UPDATE becomes visible; the stream settles.
    const applied = once(cacheops.core.events, APPLIED_EVENT);
    await observer.query('SELECT pg_cancel_backend($1)', [pid]);
    await writing;
    if (awaitVisibility) await applied;
    else await new Promise((r) => setTimeout(r, 200));
    const hits = cacheops.stats().hits;
    const read = await name();
    return { read, hit: cacheops.stats().hits === hits + 1, decodedBeforeVisible: seen === 'old' };
  } finally {
    await writer.end();
    await observer.end();
    await cacheops.invalidateAll();
    await cacheops.close();
    await sequelize.close();
  }
}

run('without the visibility wait, a reader stores the old row after the stream invalidated it (the race exists)', async (t) => {
  const r = await scenario(false, 'off');
  t.true(r.decodedBeforeVisible, 'the stream decoded the UPDATE while other sessions still saw the old row');
  t.is(r.read, 'old', 'stale');
  t.true(r.hit, 'served from the cache');
});

run('with the visibility wait (the default), the old row stored meanwhile is invalidated once the UPDATE is visible', async (t) => {
  const r = await scenario(true, 'on');
  t.true(r.decodedBeforeVisible);
  t.is(r.read, 'new');
});
