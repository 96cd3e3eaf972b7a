/**
 * The PostgreSQL change stream's replication protocol, on a private server
 * whose walsender gives up on a silent client after wal_sender_timeout = 1 s:
 * keepalives are answered over idle periods longer than that; the slot's
 * confirmed position never passes a change Redis did not take (Redis killed
 * mid-stream, then restarted; a consumer closed meanwhile leaves the change to
 * the next one); a 100k-row transaction does not hold a later small one back
 * longer than its own delivery.
 */
import test from 'ava';
import { installCacheops, type InvalidatedEvent } from '../../src/index';
import { dialects, redisUrl, uniquePrefix } from '../helpers/env';
import { Client, startPrivatePostgres, type PgClient, type PrivatePostgres, dropSlot } from '../helpers/private-postgres';
import { startPrivateRedis } from '../helpers/private-redis';
import { defineItem, privateSequelize } from '../helpers/stream-models';
import { installStreamApp, type StreamApp } from '../helpers/stream-app';

const run = dialects().includes('postgres') ? test.serial : test.serial.skip;
const DB = 'proto';
const SENDER_TIMEOUT_MS = 1000;
let server: PrivatePostgres;
let admin: PgClient;

test.before(async () => {
  if (!dialects().includes('postgres')) return;
  server = await startPrivatePostgres(['-c', `wal_sender_timeout=${SENDER_TIMEOUT_MS}`]);
  admin = await server.client();
  await admin.query(`CREATE DATABASE ${DB}`);
});

test.after.always(async () => {
  await admin?.end();
  await server?.stop();
});

type App = StreamApp;

async function makeApp(table: string, slot: string, redis: string, prefix: string, seed: boolean): Promise<App> {
  return installStreamApp(privateSequelize(server.port, DB), {
    table, prefix, redis, seed, changeStream: { slot },
    prepare: async (sequelize, t) => { await sequelize.query(`ALTER TABLE "${t}" REPLICA IDENTITY FULL`); },
  });
}

async function writer(): Promise<PgClient> {
  const c = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: DB });
  await c.connect();
  return c;
}

async function slotRow(slot: string): Promise<{ pid: number | null; confirmed: string }> {
  const { rows } = await admin.query('SELECT active_pid, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  return { pid: rows[0]!['active_pid'] as number | null, confirmed: String(rows[0]!['confirmed']) };
}

/** Bytes from a to b (positive: b is later). */
async function lsnDiff(b: string, a: string): Promise<number> {
  return Number((await admin.query('SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8 AS d', [b, a])).rows[0]!['d']);
}

async function currentLsn(): Promise<string> {
  return String((await admin.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!['l']);
}

const nameOf = async (app: App, id: number): Promise<unknown> => ((await app.Item.findOne({ where: { id } })) as unknown as { name: string } | null)?.name;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => Promise<boolean> | boolean, limitMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if (await check()) return Date.now() - start;
    await sleep(2);
  }
  return Infinity;
}

const mentions = (events: readonly InvalidatedEvent[], name: string): boolean =>
  events.some((e) => e.values !== 'all' && e.values.some((row) => row['name'] === name));

run('idle for several wal_sender_timeouts: keepalives are answered, the walsender stays, and a write after is seen at once', async (t) => {
  const slot = 'keepalive';
  const app = await makeApp('items_idle', slot, redisUrl, uniquePrefix('pgidle'), true);
  const w = await writer();
  try {
    const before = await slotRow(slot);
    t.is(typeof before.pid, 'number');
    const idleMs = 4 * SENDER_TIMEOUT_MS;
    await sleep(idleMs);
    const after = await slotRow(slot);
    t.is(after.pid, before.pid, `the same walsender after ${idleMs} ms idle (a silent client is dropped after ${SENDER_TIMEOUT_MS} ms)`);
    const { rows } = await admin.query("SELECT EXTRACT(EPOCH FROM now() - reply_time) * 1000 AS age FROM pg_stat_replication WHERE pid = $1", [after.pid]);
    t.true(Number(rows[0]!['age']) < SENDER_TIMEOUT_MS, `last status update ${Number(rows[0]!['age']).toFixed(0)} ms ago`);
    t.false(app.logs.some((l) => l.includes('connection failed')), app.logs.join('\n'));
    t.is(app.cacheops.stats().changeStream.role, 'consumer');
    await nameOf(app, 1);
    await w.query(`UPDATE items_idle SET name = 'after-idle' WHERE id = 1`);
    const ms = await until(async () => (await nameOf(app, 1)) === 'after-idle', 1000);
    t.log(`idle ${idleMs} ms (wal_sender_timeout ${SENDER_TIMEOUT_MS} ms): same walsender; a write after it seen in ${ms} ms`);
    t.true(ms <= 1000);
    // WAL of another database only: the keepalives acknowledged while nothing waits move the slot on.
    await admin.query('CREATE TABLE IF NOT EXISTS elsewhere (x int); INSERT INTO elsewhere SELECT generate_series(1, 1000)');
    const elsewhere = await currentLsn();
    const movedMs = await until(async () => (await lsnDiff((await slotRow(slot)).confirmed, elsewhere)) >= 0, 5000);
    t.log(`the slot confirmed past WAL of another database ${movedMs} ms after it was written`);
    t.true(movedMs < 5000, 'the slot does not keep WAL it has nothing to say about');
  } finally {
    await w.end();
    await app.cacheops.close();
    await app.sequelize.close();
    await dropSlot(admin, slot);
  }
});

run('Redis killed mid-stream: the slot is confirmed past a change only once Redis took it; a consumer closed meanwhile leaves it to the next', async (t) => {
  const slot = 'redis_kill';
  const prefix = uniquePrefix('pgkill');
  const redis = await startPrivateRedis();
  let app = await makeApp('items_kill', slot, redis.url, prefix, true);
  const w = await writer();
  try {
    // 1. Killed and started again while the consumer runs: the change is retried until Redis takes it.
    await nameOf(app, 1);
    await redis.stop();
    const before1 = await currentLsn();
    await w.query(`UPDATE items_kill SET name = 'while-down-1' WHERE id = 1`);
    const written1 = await currentLsn();
    const pid = (await slotRow(slot)).pid;
    await sleep(3 * SENDER_TIMEOUT_MS); // status updates asked for and sent meanwhile
    t.true(await lsnDiff((await slotRow(slot)).confirmed, before1) <= 0, 'not confirmed past the change while Redis is down');
    t.is((await slotRow(slot)).pid, pid, 'the stream stayed up (keepalives answered while the batch waits)');
    const restartedAt = Date.now();
    await redis.start();
    const replayMs = await until(async () => (await lsnDiff((await slotRow(slot)).confirmed, written1)) >= 0, 15_000);
    t.log(`Redis back: the change invalidated and confirmed ${Date.now() - restartedAt} ms after its restart`);
    t.true(replayMs < 15_000, 'confirmed once Redis took it');
    t.true(mentions(app.events, 'while-down-1'));

    // 2. Killed; the consumer is closed before Redis is back: the next consumer replays the change.
    await redis.stop();
    const before2 = await currentLsn();
    await w.query(`UPDATE items_kill SET name = 'while-down-2' WHERE id = 2`);
    const written2 = await currentLsn();
    await sleep(2 * SENDER_TIMEOUT_MS);
    await app.cacheops.close();
    await app.sequelize.close();
    t.true(await lsnDiff((await slotRow(slot)).confirmed, before2) <= 0, 'the closed consumer did not confirm it');
    await redis.start();
    app = await makeApp('items_kill', slot, redis.url, prefix, false);
    t.true(await until(() => mentions(app.events, 'while-down-2'), 5000) < 5000, 'the next consumer invalidated it');
    t.true(await until(async () => (await lsnDiff((await slotRow(slot)).confirmed, written2)) >= 0, 5000) < 5000, 'and confirmed it');
  } finally {
    await w.end();
    await app.cacheops.close();
    await app.sequelize.close();
    await redis.stop();
    await dropSlot(admin, slot);
  }
});

run('a 100k-row transaction holds a small one committed after it back no longer than its own delivery', async (t) => {
  const slot = 'big';
  const app = await makeApp('items_big', slot, redisUrl, uniquePrefix('pgbig'), true);
  const big = await writer();
  const small = await writer();
  try {
    // The stream's lag alone: small UPDATEs one by one.
    const idle: number[] = [];
    for (let i = 0; i < 10; i += 1) {
      await nameOf(app, 1);
      await small.query(`UPDATE items_big SET name = $1 WHERE id = 1`, [`idle${i}`]);
      idle.push(await until(async () => (await nameOf(app, 1)) === `idle${i}`, 1000));
    }
    const idleMax = Math.max(...idle);
    await nameOf(app, 2);
    app.events.length = 0;
    let bigSeenAt = Infinity;
    app.cacheops.on('invalidated', (e) => { if (e.values === 'all' && bigSeenAt === Infinity) bigSeenAt = Date.now(); });
    await big.query(`INSERT INTO items_big (name, n) SELECT 'bulk', g FROM generate_series(1, 100000) g`);
    const bigCommitted = Date.now();
    await small.query(`UPDATE items_big SET name = 'after-big' WHERE id = 2`);
    const smallCommitted = Date.now();
    const smallMs = await until(async () => (await nameOf(app, 2)) === 'after-big', 60_000);
    const bigMs = bigSeenAt - bigCommitted;
    const behind = smallCommitted + smallMs - bigSeenAt;
    t.log(`100k-row INSERT invalidated ${bigMs} ms after its COMMIT (model-wide); the one-row UPDATE committed after it seen ` +
      `${smallMs} ms after its COMMIT, ${behind} ms after the big one's invalidation (alone: max ${idleMax} ms of ${idle.join(', ')})`);
    t.true(bigMs < 60_000);
    t.true(app.events.filter((e) => e.table === 'items_big').every((e) => e.values === 'all' || e.values.length <= 1000), 'model-wide past maxRowsForGranularWrite');
    // Behind the big one by at most what one small transaction takes alone, a few times over.
    t.true(behind <= 4 * idleMax + 20, `seen ${behind} ms after the big one (bound ${4 * idleMax + 20} ms)`);
  } finally {
    await big.end();
    await small.end();
    await app.cacheops.close();
    await app.sequelize.close();
    await dropSlot(admin, slot);
  }
});

run('a role without REPLICATION: changeStreamReady rejects saying what the role needs', async (t) => {
  await admin.query("DROP ROLE IF EXISTS plain_reader; CREATE ROLE plain_reader LOGIN");
  await admin.query("SELECT pg_create_logical_replication_slot('norights', 'pgoutput')");
  const p = await writer();
  await p.query('CREATE PUBLICATION cacheops FOR ALL TABLES').catch(() => undefined);
  await p.end();
  const sequelize = privateSequelize(server.port, DB);
  defineItem(sequelize, 'items_norights');
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: uniquePrefix('pgnorights'), profiles: { Item: { ops: 'all' } }, logger: () => undefined,
    changeStream: { slot: 'norights', connection: { user: 'plain_reader' } },
  });
  try {
    const error = await t.throwsAsync(cacheops.changeStreamReady());
    t.regex(error!.message, /refuses the replication connection .*REPLICATION/);
    t.is(cacheops.stats().changeStream.role, 'off');
  } finally {
    await cacheops.close();
    await sequelize.close();
    await dropSlot(admin, 'norights');
  }
});

run("the consumer's plain connection ended by the server: the session starts again from the slot and loses nothing", async (t) => {
  const slot = 'control_lost';
  const app = await makeApp('items_control', slot, redisUrl, uniquePrefix('pgcontrol'), true);
  const w = await writer();
  try {
    await nameOf(app, 1);
    const { rows } = await admin.query(
      "SELECT pid FROM pg_stat_activity WHERE application_name = 'cacheops-stream' AND backend_type = 'client backend' AND datname = $1", [DB]);
    t.is(rows.length, 1, 'one plain connection (the lease holder)');
    const walsender = (await slotRow(slot)).pid;
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!['pid']]);
    await w.query(`UPDATE items_control SET name = 'after-loss' WHERE id = 1`);
    const ms = await until(async () => (await nameOf(app, 1)) === 'after-loss', 5000);
    t.log(`plain connection ended: the write after it seen in ${ms} ms; walsender ${walsender} -> ${(await slotRow(slot)).pid}`);
    t.true(ms < 5000);
    t.true(await until(() => app.cacheops.stats().changeStream.role === 'consumer', 5000) < 5000);
  } finally {
    await w.end();
    await app.cacheops.close();
    await app.sequelize.close();
    await dropSlot(admin, slot);
  }
});
