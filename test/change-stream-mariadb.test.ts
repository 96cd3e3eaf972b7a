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
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Sequelize, type Model, type ModelStatic } from 'sequelize';
import { installCacheops, type Cacheops, type InvalidatedEvent } from '../src/index';
import { redisUrl, uniquePrefix } from './helpers/env';
import { mariadbUnavailable, startPrivateMariadb, type MariaConnection, type PrivateMariadb } from './helpers/private-mariadb';
import { defineItem } from './helpers/stream-models';

const unavailable = mariadbUnavailable();
const run = unavailable === undefined ? test.serial : test.serial.skip;
if (unavailable !== undefined) test('MariaDB binlog tests', (t) => { t.log(`skipped: ${unavailable}`); t.pass(); });
const DB = 'app';
let server: PrivateMariadb;
let writer: MariaConnection;

test.before(async () => {
  if (unavailable !== undefined) return;
  server = await startPrivateMariadb();
  const admin = await server.client();
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  writer = await server.client(DB);
});

test.after.always(async () => {
  await writer?.end();
  await server?.stop();
});

interface App {
  readonly sequelize: Sequelize;
  readonly Item: ModelStatic<Model>;
  readonly cacheops: Cacheops;
  readonly events: InvalidatedEvent[];
  readonly logs: string[];
  readonly table: string;
  readonly prefix: string;
  close(): Promise<void>;
}

let counter = 0;

function sequelizeOf(): Sequelize {
  return new Sequelize(DB, 'root', '', { host: '127.0.0.1', port: server.port, dialect: 'mysql', logging: false });
}

async function makeApp(opts: { table?: string; prefix?: string; seed?: boolean; stream?: Record<string, unknown> } = {}): Promise<App> {
  counter += 1;
  const table = opts.table ?? `items_${counter}`;
  const prefix = opts.prefix ?? uniquePrefix('mdbstream');
  const sequelize = sequelizeOf();
  const Item = defineItem(sequelize, table);
  if (opts.seed !== false) {
    await Item.sync({ force: true });
    await Item.bulkCreate([{ name: 'a', n: 1 }, { name: 'b', n: 2 }, { name: 'c', n: 3 }]);
  }
  const logs: string[] = [];
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix, profiles: { Item: { ops: 'all' } },
    changeStream: { handoverMs: 200, ...opts.stream },
    logger: (m) => { logs.push(m); },
  });
  const events: InvalidatedEvent[] = [];
  cacheops.on('invalidated', (e) => events.push(e));
  await cacheops.changeStreamReady();
  return {
    sequelize, Item, cacheops, events, logs, table, prefix,
    async close() {
      await cacheops.invalidateAll().catch(() => undefined);
      await cacheops.close();
      await sequelize.close();
    },
  };
}

const nameOf = async (app: App, id: number): Promise<unknown> => ((await app.Item.findOne({ where: { id } })) as unknown as { name: string } | null)?.name;

async function msUntil(read: () => Promise<unknown>, expected: unknown, limitMs = 1000): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if ((await read()) === expected) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 2));
  }
  return Infinity;
}

/** Reads twice: the second must be a hit. */
async function cached(app: App, read: () => Promise<unknown>): Promise<unknown> {
  await read();
  const hits = app.cacheops.stats().hits;
  const value = await read();
  if (app.cacheops.stats().hits !== hits + 1) throw new Error('the read was not served from the cache');
  return value;
}

/** Whether a read is served from the cache (a hit). */
async function isHit(app: App, read: () => Promise<unknown>): Promise<boolean> {
  const hits = app.cacheops.stats().hits;
  await read();
  return app.cacheops.stats().hits === hits + 1;
}

const percentile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

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
    execFileSync('mariadb', ['-h', '127.0.0.1', '-P', String(server.port), '-u', 'root', DB, '-e', `INSERT INTO \`${app.table}\` (name, n) VALUES ('new', 9)`]);
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
    const stats = app.cacheops.stats().changeStream;
    t.true(stats.events >= 33);
    t.is(typeof stats.lagMs, 'number');
    await new Promise((r) => setTimeout(r, 1100));
    t.is(typeof app.cacheops.stats().changeStream.retainedBytes, 'number', 'retained binlog bytes are reported');
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

run('restart: a write while no process consumes is invalidated when the stream resumes from the acknowledged position', async (t) => {
  const prefix = uniquePrefix('mdbresume');
  const first = await makeApp({ prefix });
  const table = first.table;
  await cached(first, () => nameOf(first, 1));
  await first.cacheops.close();
  await first.sequelize.close();
  await writer.query(`UPDATE \`${table}\` SET name = 'while-down' WHERE id = 1`);
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
  const first = await makeApp({ prefix });
  const table = first.table;
  await cached(first, () => nameOf(first, 2));
  await first.cacheops.close();
  await first.sequelize.close();
  await writer.query(`UPDATE \`${table}\` SET name = 'lost' WHERE id = 2`);
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
  const setup = sequelizeOf();
  const Item = defineItem(setup, table);
  await Item.sync({ force: true });
  await Item.bulkCreate(Array.from({ length: 30 }, (_, i) => ({ name: 'v0', n: i })));
  await setup.close();
  const child = spawn(process.execPath, ['--import=tsx', join(__dirname, 'fixtures', 'mariadb-stream-app.ts'), String(server.port), DB, redisUrl, prefix, table], { stdio: ['ignore', 'pipe', 'inherit'] });
  const firstRole = new Promise<string>((resolve) => createInterface({ input: child.stdout! }).on('line', (l) => resolve(l)));
  t.is(await firstRole, 'consumer');
  const app = await makeApp({ table, prefix, seed: false });
  try {
    t.is(app.cacheops.stats().changeStream.role, 'standby');
    for (let id = 1; id <= 30; id += 1) await cached(app, () => nameOf(app, id));
    const writing = (async () => {
      for (let id = 1; id <= 30; id += 1) {
        await writer.query(`UPDATE \`${table}\` SET name = 'v1' WHERE id = ?`, [id]);
        await new Promise((r) => setTimeout(r, 4));
      }
    })();
    await new Promise((r) => setTimeout(r, 40));
    const killedAt = Date.now();
    child.kill('SIGKILL');
    await writing;
    while (app.cacheops.stats().changeStream.role !== 'consumer' && Date.now() - killedAt < 5000) await new Promise((r) => setTimeout(r, 5));
    const handoverMs = Date.now() - killedAt;
    t.is(app.cacheops.stats().changeStream.role, 'consumer');
    // The lease lives 3 x handoverMs (600 ms) after its last renewal; a standby tries every
    // handoverMs (200 ms), and then retries its session after 500 ms at most: 1300 ms.
    t.log(`handover after ${handoverMs} ms (lease 600 ms, handoverMs 200)`);
    t.true(handoverMs <= 1300, `${handoverMs} ms`);
    for (let id = 1; id <= 30; id += 1) t.true(await msUntil(() => nameOf(app, id), 'v1') <= 1000, `row ${id}`);
  } finally {
    child.kill('SIGKILL');
    await app.close();
  }
});
