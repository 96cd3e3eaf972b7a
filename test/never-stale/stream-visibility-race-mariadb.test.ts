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
 */
import test from 'ava';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
import { installCacheops } from '../../src/index';
import { MARIADB_APPLIED_EVENT, MARIADB_DECODED_EVENT, visibilityTesting } from '../../src/stream/mariadb-consumer';
import { redisUrl, uniquePrefix } from '../helpers/env';
import { mariadbUnavailable, startPrivateMariadb, type PrivateMariadb } from '../helpers/private-mariadb';
import { defineItem } from '../helpers/stream-models';

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

const once = (emitter: { once(e: string, f: () => void): unknown }, event: string): Promise<void> => new Promise((r) => emitter.once(event, () => r()));

async function scenario(protection: boolean, label: string): Promise<{ read: unknown; hit: boolean; decodedBeforeVisible: boolean; heldMs: number }> {
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
  const name = async (): Promise<unknown> => ((await Item.findOne({ where: { id: 1 } })) as unknown as { name: string }).name;
  visibilityTesting.skipWait = !protection;
  try {
    await cacheops.changeStreamReady();
    await observer.query("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'");
    await observer.query(`SET GLOBAL rpl_semi_sync_master_timeout = ${HOLD_MS}`);
    await observer.query('SET GLOBAL rpl_semi_sync_master_enabled = ON');
    const decoded = once(cacheops.core.events, MARIADB_DECODED_EVENT);
    const invalidated = protection ? undefined : once(cacheops.core.events, 'invalidated');
    const started = Date.now();
    // 1. In the binlog, waiting for a replica's acknowledgement: decodable, not visible.
    const writing = writer.query(`UPDATE \`${table}\` SET name = 'new' WHERE id = 1`);
    await decoded;
    await invalidated;
    const [rows] = await observer.query(`SELECT name FROM \`${table}\` WHERE id = 1`) as [Record<string, unknown>[], unknown];
    // 2. A reader: misses, reads the old row, stores it.
    await name();
    // 3. The wait times out: the UPDATE commits and is visible; the stream settles.
    const applied = once(cacheops.core.events, MARIADB_APPLIED_EVENT);
    await writing;
    const heldMs = Date.now() - started;
    if (protection) await applied;
    else await new Promise((r) => setTimeout(r, 200));
    const hits = cacheops.stats().hits;
    const read = await name();
    return { read, hit: cacheops.stats().hits === hits + 1, decodedBeforeVisible: rows[0]!['name'] === 'old', heldMs };
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
  t.true(r.decodedBeforeVisible, 'the stream decoded the UPDATE while other sessions still saw the old row');
  t.is(r.read, 'old', 'stale');
  t.true(r.hit, 'served from the cache');
});

run('with the visibility wait (a shared lock on the changed row), the old row stored meanwhile is invalidated once the UPDATE is visible', async (t) => {
  const r = await scenario(true, 'on');
  t.true(r.decodedBeforeVisible);
  t.is(r.read, 'new');
});
