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
 * The steps and assertions: helpers/stream-race.ts.
 */
import test from 'ava';
import type { Model, ModelStatic } from 'sequelize';
import { installCacheops } from '../../src/index';
import { APPLIED_EVENT, DECODED_EVENT } from '../../src/stream/pg-consumer';
import { dialects, redisUrl, uniquePrefix } from '../helpers/env';
import { Client, startPrivatePostgres, type PgClient, type PrivatePostgres } from '../helpers/private-postgres';
import { defineItem, privateSequelize } from '../helpers/stream-models';
import { assertRace, holdReadAssert, type RaceResult } from '../helpers/stream-race';

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

async function scenario(awaitVisibility: boolean, label: string): Promise<RaceResult> {
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
  try {
    await cacheops.changeStreamReady();
    await writer.connect();
    await observer.connect();
    const pid = (await writer.query('SELECT pg_backend_pid() AS pid')).rows[0]!['pid'];
    // Committed locally, then waiting for the standby: decodable, not visible until the wait is cancelled.
    await writer.query('SET synchronous_commit = on');
    return await holdReadAssert(cacheops, Item, awaitVisibility, {
      decodedEvent: DECODED_EVENT,
      appliedEvent: APPLIED_EVENT,
      write: () => writer.query(`UPDATE "${table}" SET name = 'new' WHERE id = 1`),
      observe: async () => (await observer.query(`SELECT name FROM "${table}" WHERE id = 1`)).rows[0]!['name'],
      release: async () => { await observer.query('SELECT pg_cancel_backend($1)', [pid]); },
    });
  } finally {
    await writer.end();
    await observer.end();
    await cacheops.invalidateAll();
    await cacheops.close();
    await sequelize.close();
  }
}

run('without the visibility wait, a reader stores the old row after the stream invalidated it (the race exists)', async (t) => {
  assertRace(t, await scenario(false, 'off'), false);
});

run('with the visibility wait (the default), the old row stored meanwhile is invalidated once the UPDATE is visible', async (t) => {
  assertRace(t, await scenario(true, 'on'), true);
});
