/**
 * MariaDB change stream against a private server with the row binlog: writes
 * by a plain mysql2 client and by the `mariadb` command line are seen by cached
 * reads, granularly (an unrelated cached query stays a hit); TRUNCATE, a
 * multi-statement transaction, a rolled-back one (nothing invalidated), a
 * restart that resumes from the acknowledged position, purged binlogs (one
 * reset), and one consumer among two processes with handover.
 * Skipped when mariadb-install-db is not installed.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { DataTypes, Sequelize } from 'sequelize';
import type { InvalidatedEvent } from '../../src/index';
import { dialects, makeSequelize, redisUrl, uniquePrefix } from '../helpers/env';
import { mariadbUnavailable, type MariaConnection } from '../helpers/private-mariadb';
import { startPrivateRedis } from '../helpers/private-redis';
import { useStreamDatabases } from '../helpers/stream-databases';
import { cached, checkRedisPausedMidStream, installStreamApp, isHit, msUntil, nameOf, percentile, startSecondApp, type StreamApp } from '../helpers/stream-app';
import {
  checkHandover, checkStreamCommands, checkStreamedRowsTokenize, checkStreamFigures, checkStreamRefused, makeHandoverTable, typedValues,
} from '../helpers/change-stream-suite';
import { lagOf, MARIADB_APPLIED_EVENT } from '../../src/stream/mariadb-consumer';

const unavailable = mariadbUnavailable();
const run = unavailable === undefined ? test.serial : test.serial.skip;
if (unavailable !== undefined) test('MariaDB binlog tests', (t) => { t.log(`skipped: ${unavailable}`); t.pass(); });
let writer: MariaConnection;
// Declared before the servers' hooks: serial hooks run in their order, so it ends before the server stops.
test.serial.after.always(async () => {
  await writer?.end();
});
const databases = useStreamDatabases('app', { mariadb: true });
const DB = databases.database;
test.serial.before(async () => {
  if (databases.withMariadb) writer = await databases.maria.client(DB);
});

type App = StreamApp;

let counter = 0;

function sequelizeOf(user = 'root'): Sequelize {
  return new Sequelize(DB, user, '', { host: '127.0.0.1', port: databases.maria.port, dialect: 'mysql', logging: false });
}

async function makeApp(opts: { table?: string; prefix?: string; seed?: boolean; redis?: string; stream?: Record<string, unknown> } = {}): Promise<App> {
  counter += 1;
  return installStreamApp(sequelizeOf(), {
    table: opts.table ?? `items_${counter}`, prefix: opts.prefix ?? uniquePrefix('mdbstream'),
    ...(opts.redis ? { redis: opts.redis } : {}), ...(opts.seed === false ? { seed: false } : {}),
    changeStream: { handoverMs: 200, ...opts.stream },
  });
}


/** Waits until the stream has acknowledged everything written so far (a marker row seen). */
async function settled(app: App): Promise<void> {
  const marker = `m${Date.now()}`;
  await cached(app, () => app.Item.count({ where: { name: marker } }));
  await writer.query(`INSERT INTO \`${app.table}\` (name, n) VALUES (?, 0)`, [marker]);
  if (await msUntil(() => app.Item.count({ where: { name: marker } }), 1, 3000) === Infinity) throw new Error('the stream did not settle');
  await writer.query(`DELETE FROM \`${app.table}\` WHERE name = ?`, [marker]);
  if (await msUntil(() => app.Item.count({ where: { name: marker } }), 0, 3000) === Infinity) throw new Error('the stream did not settle');
}

run('foreign INSERT, UPDATE, DELETE and TRUNCATE invalidate granularly; an unrelated cached query stays a hit', async (t) => {
  const app = await makeApp();
  try {
    t.is(app.cacheops.stats().changeStream.role, 'consumer');
    const lags: number[] = [];
    for (let i = 0; i < 30; i += 1) {
      t.is(await cached(app, () => nameOf(app, 1)), i === 0 ? 'a' : `u${i - 1}`);
      await cached(app, () => nameOf(app, 2));
      await writer.query(`UPDATE \`${app.table}\` SET name = ? WHERE id = 1`, [`u${i}`]);
      const ms = await msUntil(() => nameOf(app, 1), `u${i}`);
      lags.push(ms);
      t.true(await isHit(app, () => nameOf(app, 2)), 'row 2 stayed cached');
    }
    t.log(`mysql2 UPDATE -> seen by a cached read: p50 ${percentile(lags, 0.5)} ms, p99 ${percentile(lags, 0.99)} ms, max ${Math.max(...lags)} ms`);
    t.true(Math.max(...lags) <= 1000);
    const update = app.events.filter((e) => e.table === app.table).pop()!;
    t.deepEqual((update.values as Record<string, unknown>[]).map((r) => r['name']), ['u28', 'u29'], 'old and new row');

    // INSERT: a count by name is invalidated; a count by another name stays a hit.
    t.is(await cached(app, () => app.Item.count({ where: { name: 'new' } })), 0);
    await cached(app, () => app.Item.count({ where: { name: 'c' } }));
    execFileSync('mariadb', ['-h', '127.0.0.1', '-P', String(databases.maria.port), '-u', 'root', DB, '-e', `INSERT INTO \`${app.table}\` (name, n) VALUES ('new', 9)`]);
    const insertMs = await msUntil(() => app.Item.count({ where: { name: 'new' } }), 1);
    t.log(`mariadb command line INSERT: seen after ${insertMs} ms`);
    t.true(insertMs <= 1000);
    t.true(await isHit(app, () => app.Item.count({ where: { name: 'c' } })), 'the unrelated count stayed cached');

    // DELETE
    await cached(app, () => app.Item.count({ where: { name: 'c' } }));
    await cached(app, () => nameOf(app, 2));
    await writer.query(`DELETE FROM \`${app.table}\` WHERE id = 3`);
    t.true(await msUntil(() => app.Item.count({ where: { name: 'c' } }), 0) <= 1000);
    t.true(await isHit(app, () => nameOf(app, 2)), 'row 2 stayed cached after the delete');

    // TRUNCATE: model-wide
    t.true((await cached(app, () => app.Item.count())) as number > 0);
    await writer.query(`TRUNCATE TABLE \`${app.table}\``);
    t.true(await msUntil(() => app.Item.count(), 0) <= 1000);
    t.is(app.events.filter((e) => e.table === app.table).pop()?.values, 'all');
    await checkStreamFigures(t, app, 33, 'retained binlog bytes are reported');
  } finally {
    await app.close();
  }
});

run('a multi-statement transaction invalidates every row it changed; a rolled-back one invalidates nothing', async (t) => {
  const app = await makeApp();
  try {
    await cached(app, () => nameOf(app, 1));
    await cached(app, () => nameOf(app, 2));
    await cached(app, () => app.Item.count({ where: { name: 'z' } }));
    await writer.query('START TRANSACTION');
    await writer.query(`UPDATE \`${app.table}\` SET name = 'x1' WHERE id = 1`);
    await writer.query(`UPDATE \`${app.table}\` SET name = 'x2' WHERE id = 2`);
    await writer.query(`INSERT INTO \`${app.table}\` (name, n) VALUES ('z', 1)`);
    await writer.query('COMMIT');
    t.true(await msUntil(() => nameOf(app, 1), 'x1') <= 1000);
    t.true(await msUntil(() => nameOf(app, 2), 'x2') <= 1000);
    t.true(await msUntil(() => app.Item.count({ where: { name: 'z' } }), 1) <= 1000);

    await settled(app);
    await cached(app, () => nameOf(app, 1));
    await cached(app, () => app.Item.count());
    const before = app.events.length;
    await writer.query('START TRANSACTION');
    await writer.query(`UPDATE \`${app.table}\` SET name = 'never' WHERE id = 1`);
    await writer.query(`INSERT INTO \`${app.table}\` (name, n) VALUES ('never', 1)`);
    await writer.query('ROLLBACK');
    await settled(app);
    t.true(await isHit(app, () => nameOf(app, 1)), 'row 1 stayed cached');
    t.is(app.events.slice(before).filter((e) => Array.isArray(e.values) && (e.values as Record<string, unknown>[]).some((r) => r['name'] === 'never')).length, 0);
    t.is(await nameOf(app, 1), 'x1');
  } finally {
    await app.close();
  }
});

/** An app that cached row `id`'s name and closed (its position acknowledged), then a foreign write of `name` to the row; the table. */
async function writeWhileNoneConsumes(prefix: string, id: number, name: string): Promise<string> {
  const first = await makeApp({ prefix });
  await cached(first, () => nameOf(first, id));
  await first.cacheops.close();
  await first.sequelize.close();
  await writer.query(`UPDATE \`${first.table}\` SET name = ? WHERE id = ?`, [name, id]);
  return first.table;
}

run('restart: a write while no process consumes is invalidated when the stream resumes from the acknowledged position', async (t) => {
  const prefix = uniquePrefix('mdbresume');
  const table = await writeWhileNoneConsumes(prefix, 1, 'while-down');
  // The value cached before stays in Redis: only the replayed stream can drop it.
  const second = await makeApp({ prefix, table, seed: false });
  try {
    t.true(await msUntil(() => nameOf(second, 1), 'while-down', 3000) <= 3000);
    t.is(second.cacheops.stats().changeStream.resets, 0, 'resumed, not reset');
  } finally {
    await second.close();
  }
});

run('binlogs purged past the acknowledged position: everything is invalidated once, loudly, and the stream goes on', async (t) => {
  const prefix = uniquePrefix('mdbpurge');
  const table = await writeWhileNoneConsumes(prefix, 2, 'lost');
  await writer.query('FLUSH BINARY LOGS');
  // A file a dump thread still reads is kept: purged once the closed consumer's thread is gone.
  for (let i = 0; ; i += 1) {
    const [rows] = await writer.query('SHOW BINARY LOGS') as [Record<string, unknown>[], unknown];
    if (rows.length === 1) break;
    if (i > 100) throw new Error('the binlogs were not purged');
    await writer.query(`PURGE BINARY LOGS TO '${String(rows[rows.length - 1]!['Log_name'])}'`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const second = await makeApp({ prefix, table, seed: false });
  try {
    t.true(await msUntil(() => nameOf(second, 2), 'lost', 3000) <= 3000);
    t.is(second.cacheops.stats().changeStream.resets, 1);
    t.true(second.logs.some((l) => l.includes('no longer on the server')), second.logs.join('\n'));
    // And it streams again.
    await cached(second, () => nameOf(second, 1));
    await writer.query(`UPDATE \`${table}\` SET name = 'after' WHERE id = 1`);
    t.true(await msUntil(() => nameOf(second, 1), 'after') <= 1000);
  } finally {
    await second.close();
  }
});

run('two application processes: one consumer; when it is killed the other takes over within the lease bound and loses nothing', async (t) => {
  const table = 'items_handover';
  const prefix = uniquePrefix('mdbhandover');
  await makeHandoverTable(sequelizeOf(), table, 30);
  const { child, firstRole } = startSecondApp('mariadb-stream-app.ts', [databases.maria.port, DB, redisUrl, prefix, table]);
  t.is(await firstRole, 'consumer');
  const app = await makeApp({ table, prefix, seed: false });
  try {
    await checkHandover(t, app, child, {
      rows: 30, killAfterMs: 40,
      rename: (id) => writer.query(`UPDATE \`${table}\` SET name = 'v1' WHERE id = ?`, [id]),
      tookOver: (handoverMs) => {
        // The lease lives 3 x handoverMs (600 ms) after its last renewal; a standby tries every
        // handoverMs (200 ms), and then retries its session after 500 ms at most: 1300 ms.
        t.log(`handover after ${handoverMs} ms (lease 600 ms, handoverMs 200)`);
        t.true(handoverMs <= 1300, `${handoverMs} ms`);
      },
    });
  } finally {
    child.kill('SIGKILL');
    await app.close();
  }
});

run('the rows the binlog carries tokenize as the rows a read gives (every decoded type, random values)', async (t) => {
  const utc = (d: Date): string => d.toISOString().replace('T', ' ').replace('Z', '');
  await checkStreamedRowsTokenize(t, {
    sequelize: sequelizeOf(), columns: { d: DataTypes.DOUBLE, ch: DataTypes.CHAR(6) },
    prefix: uniquePrefix('mdbtyped'), changeStream: true,
    rows: fc.record({ ...typedValues('1971-01-01'), d: fc.double({ noNaN: true, noDefaultInfinity: true }), ch: fc.stringMatching(/^[a-zA-Z ]{0,6}$/) }),
    insert: async (r) => {
      const [result] = await writer.query(
        'INSERT INTO typed_rows (s, i, big, `dec`, b, at, day, u, `blob`, txt, e, d, ch) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)',
        [r.s, r.i, r.big.toString(), r.dec, r.b ? 1 : 0, utc(r.at), r.day, r.u, r.blob, r.txt, r.e, r.d, r.ch]) as [{ insertId: number }, unknown];
      return String(result.insertId);
    },
    // A value the stream leaves out matches everything (never wrong); every one it sends must equal the read's.
    compare: (got, want, shown) => {
      for (const [k, v] of Object.entries(got)) t.is(v, want[k], `${k} of ${shown}`);
      for (const k of ['s', 'i', 'big', 'dec', 'b', 'at', 'day', 'u', 'e', 'd', 'blob']) if (k in want) t.true(k in got, `${k} is decoded`);
    },
  });
});

run('binlog_row_image MINIMAL: a warning naming the SET GLOBAL, and updates invalidate the whole model', async (t) => {
  await writer.query("SET GLOBAL binlog_row_image = 'MINIMAL'");
  const minimal = await databases.maria.client(DB);
  const app = await makeApp();
  try {
    t.true(app.logs.some((l) => l.includes("SET GLOBAL binlog_row_image = 'FULL'")), app.logs.join('\n'));
    await cached(app, () => nameOf(app, 1));
    await cached(app, () => nameOf(app, 2));
    await minimal.query(`UPDATE \`${app.table}\` SET name = 'm' WHERE id = 1`);
    t.true(await msUntil(() => nameOf(app, 1), 'm') <= 1000);
    t.is(app.events.filter((e) => e.table === app.table).pop()?.values, 'all');
    t.false(await isHit(app, () => nameOf(app, 2)), 'row 2 went with the model');
  } finally {
    await writer.query("SET GLOBAL binlog_row_image = 'FULL'");
    await minimal.end();
    await app.close();
  }
});

run('a user without replication rights: changeStreamReady rejects naming the GRANT', async (t) => {
  await writer.query("CREATE USER IF NOT EXISTS 'plain'@'%'");
  await writer.query(`GRANT ALL ON ${DB}.* TO 'plain'@'%'`);
  await checkStreamRefused(t, sequelizeOf('plain'), 'items_rights', uniquePrefix('mdbrights'),
    /lacks REPLICATION SLAVE and REPLICATION CLIENT: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON \*\.\*/);
});

const sharedMysql = dialects().includes('mysql') ? test.serial : test.serial.skip;
sharedMysql('a server without the binlog (the shared one): changeStreamReady rejects with a plain message', async (t) => {
  await checkStreamRefused(t, await makeSequelize('mysql', __filename), 'items_plain', uniquePrefix('mdbplain'), /log_bin is OFF/);
});

run('cacheops stream status, stats and stream drop (forget the position)', async (t) => {
  const prefix = uniquePrefix('mdbcli');
  const app = await makeApp({ table: 'items_cli', prefix });
  try {
    await checkStreamCommands<{ logBin: boolean; binlogFormat: string; position: { gtid: string; file: string } | null; retainedBytes: number | null; consumer: string | null }>(t, app, 'mysql', {
      fixture: 'mariadb-stream-cli-app.ts',
      env: { STREAM_MARIADB_PORT: String(databases.maria.port), STREAM_PREFIX: prefix },
      status: (json) => {
        t.true(json.logBin);
        t.is(json.binlogFormat, 'ROW');
        t.truthy(json.position?.file);
        t.is(typeof json.position?.gtid, 'string', 'MariaDB: a GTID position');
        t.is(typeof json.retainedBytes, 'number');
        t.regex(json.consumer ?? '', /^\d+:\d+$/, 'the lease holder is found');
      },
      consumer: /^\d+:\d+$/,
      foreignWrite: async () => { await writer.query(`UPDATE \`${app.table}\` SET n = n + 1 WHERE id = 1`); },
      // Closed: the consumer lets its lease go; the position stays until `stream drop`.
      closeConsumer: async () => {
        await app.cacheops.close();
        await app.sequelize.close();
      },
      dropped: /forgot the acknowledged binlog position/,
      statusAfterDrop: /acknowledged: none/,
    });
  } finally {
    await app.close();
  }
});

run('Redis stopped mid-stream: nothing is acknowledged until it takes the invalidations; then they are replayed', async (t) => {
  const redis = await startPrivateRedis();
  const app = await makeApp({ redis: redis.url });
  try {
    await checkRedisPausedMidStream(t, app, redis, (id, name) => writer.query(`UPDATE \`${app.table}\` SET name = ? WHERE id = ?`, [name, id]));
  } finally {
    await app.close();
    await redis.stop();
  }
});

run('lag from COMMIT (the writer sees it) to the invalidation; stats().changeStream.lagMs in milliseconds, not whole seconds', async (t) => {
  const app = await makeApp();
  const reported: number[] = [];
  const onApplied = ({ lagMs }: { lagMs: number }): void => { reported.push(lagMs); };
  app.cacheops.core.events.on(MARIADB_APPLIED_EVENT, onApplied);
  try {
    const lags: number[] = [];
    for (let i = 0; i < 100; i += 1) {
      const arrived = new Promise<number>((resolve) => {
        const on = (e: InvalidatedEvent): void => { if (e.table === app.table) { app.cacheops.off('invalidated', on); resolve(Date.now()); } };
        app.cacheops.on('invalidated', on);
      });
      await writer.query(`UPDATE \`${app.table}\` SET n = ? WHERE id = 1`, [i]);
      const committed = Date.now();
      lags.push((await arrived) - committed);
    }
    t.log(`commit -> invalidation: p50 ${percentile(lags, 0.5)} ms, p99 ${percentile(lags, 0.99)} ms, max ${Math.max(...lags)} ms (100 updates, one writer)`);
    t.true(percentile(lags, 0.5) < 1000);
    // From the commit event's arrival: a consumer that keeps up reports what the writer sees, not up to a second
    // (the binlog's whole-second timestamps gave 0-999 ms at random).
    t.log(`stats().changeStream.lagMs: p50 ${percentile(reported, 0.5)} ms, p99 ${percentile(reported, 0.99)} ms over ${reported.length} batches`);
    t.true(reported.length > 0);
    t.true(percentile(reported, 0.5) <= Math.max(50, 2 * percentile(lags, 0.5)), 'lagMs tracks the measured lag');
  } finally {
    app.cacheops.core.events.off(MARIADB_APPLIED_EVENT, onApplied);
    await app.close();
  }
});

test('lagOf: from the commit event\'s arrival, or the least the whole-second binlog timestamp allows when larger', (t) => {
  const now = 1_700_000_010_500;
  t.is(lagOf({ timestamp: 1_700_000_010, receivedAt: now - 3 }, now), 3, 'keeping up: the arrival, in ms');
  t.is(lagOf({ timestamp: 1_700_000_007, receivedAt: now - 3 }, now), 2501, 'behind: committed at 7.999 s at the latest');
  t.is(lagOf({ timestamp: 1_700_000_011, receivedAt: now + 5 }, now), 0, 'never negative (clocks apart)');
});
