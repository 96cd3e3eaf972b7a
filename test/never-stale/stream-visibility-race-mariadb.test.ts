/**
 * Commit visibility on MariaDB, forced: the binlog is written before the
 * InnoDB commit. Semi-synchronous replication with the AFTER_SYNC wait point
 * holds a commit between the two (the server waits for a replica's
 * acknowledgement that never comes, until rpl_semi_sync_master_timeout): the
 * transaction is in the binlog, sent to the stream, and still invisible, its
 * row locks held.
 *
 *   1. the writer's UPDATE is decoded by the stream (and still invisible);
 *   2. a reader misses, reads the old row from the database, and stores it;
 *   3. the timeout passes: the UPDATE commits in InnoDB and becomes visible.
 *
 * Without the protection (switched off here through visibilityTesting) the
 * invalidation runs at 1, before the read of 2, whose store is then allowed:
 * the old row stays cached after the change (asserted stale). With it, the
 * stream's shared lock on the changed row is granted only at 3, so the
 * invalidation comes after the store and the next read is fresh.
 * The steps and assertions: helpers/stream-race.ts.
 */
import test from 'ava';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
import { installCacheops } from '../../src/index';
import { MARIADB_APPLIED_EVENT, MARIADB_DECODED_EVENT, visibilityTesting } from '../../src/stream/mariadb-consumer';
import { redisUrl, uniquePrefix } from '../helpers/env';
import { mariadbUnavailable, startPrivateMariadb, type PrivateMariadb } from '../helpers/private-mariadb';
import { defineItem } from '../helpers/stream-models';
import { assertRace, holdReadAssert, type RaceResult } from '../helpers/stream-race';

const unavailable = mariadbUnavailable();
const run = unavailable === undefined ? test.serial : test.serial.skip;
if (unavailable !== undefined) test('MariaDB visibility race', (t) => { t.log(`skipped: ${unavailable}`); t.pass(); });
const HOLD_MS = 1500;
let server: PrivateMariadb;

test.before(async () => {
  if (unavailable !== undefined) return;
  server = await startPrivateMariadb();
  const admin = await server.client();
  await admin.query('CREATE DATABASE race');
  await admin.end();
});

test.after.always(async () => {
  visibilityTesting.skipWait = false;
  await server?.stop();
});

async function scenario(protection: boolean, label: string): Promise<RaceResult> {
  const table = `race_${label}`;
  const sequelize = new Sequelize('race', 'root', '', { host: '127.0.0.1', port: server.port, dialect: 'mysql', logging: false });
  const Item: ModelStatic<Model> = defineItem(sequelize, table);
  await Item.sync({ force: true });
  await Item.create({ name: 'old', n: 1 });
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: uniquePrefix(`mvis${label}`), profiles: { Item: { ops: 'all' } },
    changeStream: true, logger: () => undefined,
  });
  const writer = await server.client('race');
  const observer = await server.client('race');
  visibilityTesting.skipWait = !protection;
  try {
    await cacheops.changeStreamReady();
    // In the binlog, then waiting for a replica's acknowledgement until the timeout: decodable, not visible.
    await observer.query("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'");
    await observer.query(`SET GLOBAL rpl_semi_sync_master_timeout = ${HOLD_MS}`);
    await observer.query('SET GLOBAL rpl_semi_sync_master_enabled = ON');
    return await holdReadAssert(cacheops, Item, protection, {
      decodedEvent: MARIADB_DECODED_EVENT,
      appliedEvent: MARIADB_APPLIED_EVENT,
      write: () => writer.query(`UPDATE \`${table}\` SET name = 'new' WHERE id = 1`),
      observe: async () => {
        const [rows] = await observer.query(`SELECT name FROM \`${table}\` WHERE id = 1`) as [Record<string, unknown>[], unknown];
        return rows[0]!['name'];
      },
    });
  } finally {
    visibilityTesting.skipWait = false;
    await observer.query('SET GLOBAL rpl_semi_sync_master_enabled = OFF');
    await writer.end();
    await observer.end();
    await cacheops.invalidateAll();
    await cacheops.close();
    await sequelize.close();
  }
}

run('without the visibility wait, a reader stores the old row after the stream invalidated it (the race exists)', async (t) => {
  const r = await scenario(false, 'off');
  t.true(r.heldMs >= HOLD_MS - 100, `the commit was held ${r.heldMs} ms`);
  assertRace(t, r, false);
});

run('with the visibility wait (a shared lock on the changed row), the old row stored meanwhile is invalidated once the UPDATE is visible', async (t) => {
  assertRace(t, await scenario(true, 'on'), true);
});
