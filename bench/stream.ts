/**
 * The change stream (BENCH_SECTIONS=stream): lag from a foreign writer's
 * COMMIT to the invalidation, p50/p99 at 1 and 8 concurrent writers, on a
 * private PostgreSQL with wal_level=logical (and SQLite's data_version poll);
 * the changes per second sustained; and what a running stream costs an
 * in-app write and a hit (phases with and without it, alternated).
 */
import { performance } from 'node:perf_hooks';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';
import sqlite3 from 'sqlite3';
import { installCacheops, type Cacheops } from 'sequelize-cacheops';
import { Client, startPrivatePostgres, type PgClient, type PrivatePostgres } from '../test/helpers/private-postgres';
import { median, percentile, table, us } from './measure';

const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
/** Foreign UPDATEs per lag measurement (BENCH_STREAM_WRITES). */
const WRITES = Number(process.env['BENCH_STREAM_WRITES'] ?? 400);

let PG_VERSION = '';

interface LagResult { readonly label: string; readonly writers: number; readonly p50: number; readonly p99: number; readonly n: number }

function defineItem(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('Item', { name: DataTypes.STRING, n: DataTypes.INTEGER }, { tableName: 'bench_stream_items', timestamps: false });
}

/** A second table: the small transaction after a big one writes there, so its own invalidation is seen apart. */
function defineOther(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('Other', { name: DataTypes.STRING, n: DataTypes.INTEGER }, { tableName: 'bench_stream_other', timestamps: false });
}

async function pgApp(server: PrivatePostgres, stream: false | Record<string, unknown>): Promise<{ sequelize: Sequelize; Item: ModelStatic<Model>; cacheops: Cacheops }> {
  const sequelize = new Sequelize('bench', 'postgres', '', { host: '127.0.0.1', port: server.port, dialect: 'postgres', logging: false });
  const Item = defineItem(sequelize);
  defineOther(sequelize);
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: `bench-stream-${process.pid}:`, profiles: { Item: { ops: 'all' }, Other: { ops: 'all' } },
    changeStream: stream === false ? false : { slot: 'bench', ...stream }, logger: () => undefined,
  });
  await cacheops.changeStreamReady();
  return { sequelize, Item, cacheops };
}

/** Writers update rows to unique names; the lag of each is from its COMMIT's return to the invalidation naming it. */
async function pgLag(server: PrivatePostgres, writers: number): Promise<LagResult & { perSecond: number }> {
  const app = await pgApp(server, {});
  const committed = new Map<string, number>();
  const lags: number[] = [];
  const seen = new Map<string, number>();
  app.cacheops.on('invalidated', (e) => {
    if (e.values === 'all') return;
    const now = performance.now();
    for (const row of e.values) {
      const name = String(row['name']);
      const at = committed.get(name);
      if (at !== undefined) { lags.push(now - at); committed.delete(name); } else if (!seen.has(name)) seen.set(name, now);
    }
  });
  const clients: PgClient[] = [];
  for (let w = 0; w < writers; w += 1) {
    const c = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'bench' });
    await c.connect();
    clients.push(c);
  }
  const per = Math.ceil(WRITES / writers);
  const started = performance.now();
  await Promise.all(clients.map(async (c, w) => {
    for (let i = 0; i < per; i += 1) {
      const name = `w${w}-${i}`;
      await c.query('UPDATE bench_stream_items SET name = $1 WHERE id = $2', [name, w + 1]);
      const now = performance.now();
      const early = seen.get(name);
      if (early !== undefined) lags.push(Math.max(0, early - now)); // invalidated before the writer saw COMMIT return
      else committed.set(name, now);
    }
  }));
  const deadline = performance.now() + 5000;
  while (committed.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const perSecond = (per * writers) / ((performance.now() - started) / 1000);
  for (const c of clients) await c.end();
  await app.cacheops.close();
  await app.sequelize.close();
  return { label: `postgres ${PG_VERSION}`, writers, p50: percentile(lags, 50), p99: percentile(lags, 99), n: lags.length, perSecond };
}

interface Costs { writeOn: number; writeOff: number; hitOn: number; hitOff: number; idleOn: number; idleOff: number }

/**
 * Medians (µs), in alternating phases with and without a running consumer in the
 * same process: a hit while nothing is written (the consumer idle), then an
 * in-app update by pk followed by a hit (each update comes back through the stream).
 */
async function pgCosts(server: PrivatePostgres, rounds = 4, per = 300): Promise<Costs> {
  const samples = { writeOn: [] as number[], writeOff: [] as number[], hitOn: [] as number[], hitOff: [] as number[], idleOn: [] as number[], idleOff: [] as number[] };
  for (let r = 0; r < rounds * 2; r += 1) {
    const on = r % 2 === 0;
    const app = await pgApp(server, on ? {} : false);
    await app.Item.findByPk(1);
    // The consumer's start (everything invalidated once on a new slot, the first batches) is over before timing.
    await new Promise((res) => setTimeout(res, 300));
    await app.Item.findByPk(1);
    for (let i = 0; i < per * 2; i += 1) {
      const t = performance.now();
      await app.Item.findByPk(1);
      (on ? samples.idleOn : samples.idleOff).push((performance.now() - t) * 1000);
    }
    for (let i = 0; i < per; i += 1) {
      let t = performance.now();
      await app.Item.findByPk(1);
      (on ? samples.hitOn : samples.hitOff).push((performance.now() - t) * 1000);
      t = performance.now();
      await app.Item.update({ n: i }, { where: { id: 2 } });
      (on ? samples.writeOn : samples.writeOff).push((performance.now() - t) * 1000);
    }
    await app.cacheops.close();
    await app.sequelize.close();
  }
  return {
    writeOn: median(samples.writeOn), writeOff: median(samples.writeOff), hitOn: median(samples.hitOn), hitOff: median(samples.hitOff),
    idleOn: median(samples.idleOn), idleOff: median(samples.idleOff),
  };
}

/**
 * A 100k-row INSERT by another program, then a one-row UPDATE by a second one:
 * from each COMMIT's return to the invalidation that covers it (ms).
 */
async function pgBigTransaction(server: PrivatePostgres, rows = 100_000): Promise<{ big: number; small: number }> {
  const app = await pgApp(server, {});
  const big = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'bench' });
  const small = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'bench' });
  await big.connect();
  await small.connect();
  let bigAt = Number.NaN;
  let smallAt = Number.NaN;
  app.cacheops.on('invalidated', (e) => {
    const now = performance.now();
    if (e.table === 'bench_stream_items' && e.values === 'all' && Number.isNaN(bigAt)) bigAt = now;
    if (e.table === 'bench_stream_other' && Number.isNaN(smallAt)) smallAt = now;
  });
  await big.query(`INSERT INTO bench_stream_items (name, n) SELECT 'bulk', g FROM generate_series(1, ${rows}) g`);
  const bigCommitted = performance.now();
  await small.query("UPDATE bench_stream_other SET n = n + 1 WHERE id = 1");
  const smallCommitted = performance.now();
  const deadline = performance.now() + 120_000;
  while (Number.isNaN(smallAt) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  await big.query("DELETE FROM bench_stream_items WHERE name = 'bulk'");
  await big.end();
  await small.end();
  await app.cacheops.close();
  await app.sequelize.close();
  return { big: bigAt - bigCommitted, small: smallAt - smallCommitted };
}

/** SQLite: a foreign connection's commit to the next invalidation (data_version polled every 100 ms). */
async function sqliteLag(): Promise<LagResult> {
  const dir = mkdtempSync(join(tmpdir(), 'cacheops-bench-sqlite-'));
  const file = join(dir, 'db.sqlite');
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: file, logging: false });
  const Item = defineItem(sequelize);
  await sequelize.sync({ force: true });
  await Item.create({ name: 'a', n: 0 });
  const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix: `bench-sqlite-stream-${process.pid}:`, profiles: { Item: { ops: 'all' } }, changeStream: true });
  await new Promise((r) => setTimeout(r, 300));
  const db = new sqlite3.Database(file);
  const lags: number[] = [];
  for (let i = 0; i < 40; i += 1) {
    let onInvalidated: (() => void) | undefined;
    const invalidated = new Promise<number>((resolve) => {
      onInvalidated = () => resolve(performance.now());
      cacheops.on('invalidated', onInvalidated);
      setTimeout(() => resolve(Number.NaN), 2000).unref();
    });
    await new Promise((r) => setTimeout(r, Math.random() * 100));
    await new Promise<void>((resolve, reject) => db.run(`UPDATE bench_stream_items SET n = ${i + 1}`, (e) => (e ? reject(e) : resolve())));
    const t0 = performance.now();
    const at = await invalidated;
    cacheops.off('invalidated', onInvalidated!);
    if (Number.isNaN(at)) console.log(`  sqlite: no invalidation within 2 s of write ${i} (${JSON.stringify(cacheops.stats().changeStream)})`);
    else lags.push(Math.max(0, at - t0));
  }
  await new Promise<void>((resolve) => db.close(() => resolve()));
  await cacheops.invalidateAll();
  await cacheops.close();
  await sequelize.close();
  rmSync(dir, { recursive: true, force: true });
  return { label: 'sqlite, poll 100 ms', writers: 1, p50: percentile(lags, 50), p99: percentile(lags, 99), n: lags.length };
}

export async function runStreamBench(): Promise<void> {
  let server: PrivatePostgres;
  try {
    server = await startPrivatePostgres();
  } catch (error) {
    console.log(`  change stream skipped: no private PostgreSQL (${(error as Error).message.split('\n')[0]})`);
    return;
  }
  try {
    const admin = await server.client();
    PG_VERSION = String((await admin.query('SHOW server_version')).rows[0]!['server_version']).split(' ')[0]!;
    await admin.query('CREATE DATABASE bench');
    await admin.end();
    const setup = new Sequelize('bench', 'postgres', '', { host: '127.0.0.1', port: server.port, dialect: 'postgres', logging: false });
    const Item = defineItem(setup);
    await Item.sync({ force: true });
    await setup.query('ALTER TABLE bench_stream_items REPLICA IDENTITY FULL');
    const Other = defineOther(setup);
    await Other.sync({ force: true });
    await setup.query('ALTER TABLE bench_stream_other REPLICA IDENTITY FULL');
    await Other.create({ name: 'o', n: 0 });
    await Item.bulkCreate(Array.from({ length: 16 }, (_, i) => ({ name: `r${i}`, n: i })));
    await setup.close();
    const lags: (LagResult & { perSecond?: number })[] = [await sqliteLag()];
    for (const writers of [1, 8]) lags.push(await pgLag(server, writers));
    console.log(`\n== change stream: COMMIT to invalidation (ms), ${WRITES} foreign UPDATEs per PostgreSQL line, 40 on SQLite ==`);
    console.log(table(['stream', 'writers', 'p50 ms', 'p99 ms', 'changes', 'changes/s written'],
      lags.map((l) => [l.label, String(l.writers), l.p50.toFixed(1), l.p99.toFixed(1), String(l.n), l.perSecond === undefined ? '-' : l.perSecond.toFixed(0)])));
    const costs = await pgCosts(server);
    console.log('\n== change stream: cost to the application (PostgreSQL, medians µs, phases with and without a running consumer alternated) ==');
    console.log(table(['measure', 'stream on', 'stream off', 'on/off'], [
      ['findByPk hit, consumer idle', us(costs.idleOn), us(costs.idleOff), (costs.idleOn / costs.idleOff).toFixed(2)],
      ['in-app update by pk', us(costs.writeOn), us(costs.writeOff), (costs.writeOn / costs.writeOff).toFixed(2)],
      ['findByPk hit between updates', us(costs.hitOn), us(costs.hitOff), (costs.hitOn / costs.hitOff).toFixed(2)],
    ]));
    const big = await pgBigTransaction(server);
    console.log('\n== change stream: a 100k-row INSERT, then a one-row UPDATE by another client (ms from each COMMIT to its invalidation) ==');
    console.log(table(['transaction', 'ms'], [['100k-row INSERT', big.big.toFixed(0)], ['one-row UPDATE right after', big.small.toFixed(0)]]));
  } finally {
    await server.stop();
  }
}

if (require.main === module) {
  runStreamBench().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
