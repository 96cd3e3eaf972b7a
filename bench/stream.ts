/**
 * The change stream (BENCH_SECTIONS=stream): lag from a foreign writer's
 * COMMIT to the invalidation, p50/p99 at 1 and 8 concurrent writers, on a
 * private PostgreSQL with wal_level=logical and a private MariaDB with a ROW
 * binlog (bench/stream-mariadb.ts), and SQLite's data_version poll; the
 * changes per second sustained when writers commit as fast as they can; and
 * what a running stream costs an in-app write and a hit (phases with and
 * without it, alternated). BENCH_DIALECTS chooses the databases.
 */
import { performance } from 'node:perf_hooks';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';
import sqlite3 from 'sqlite3';
import { installCacheops, type Cacheops } from 'sequelize-cacheops';
import { Client, startPrivatePostgres, type PrivatePostgres } from '../test/helpers/private-postgres';
import { percentile, table, us } from './measure';
import { runMariadbStream } from './stream-mariadb';
import { costs, lagAt, sustained, SEEDED_ROWS, type Costs, type ForeignWriter, type LagResult, type StreamApp, type SustainedResult } from './stream-measure';
import { forgetPrefix } from './redis-probe';

const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
/** Foreign UPDATEs per lag measurement (BENCH_STREAM_WRITES). */
const WRITES = Number(process.env['BENCH_STREAM_WRITES'] ?? 400);
/** Seconds writers commit as fast as they can for the sustained rate (BENCH_STREAM_SECONDS). */
const SECONDS = Number(process.env['BENCH_STREAM_SECONDS'] ?? 5);
/** Rounds of the cost comparison, each with and without a consumer (BENCH_STREAM_COST_ROUNDS). */
const COST_ROUNDS = Number(process.env['BENCH_STREAM_COST_ROUNDS'] ?? 4);

let PG_VERSION = '';

function defineItem(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('Item', { name: DataTypes.STRING, n: DataTypes.INTEGER }, { tableName: 'bench_stream_items', timestamps: false });
}

/** A second table: the small transaction after a big one writes there, so its own invalidation is seen apart. */
function defineOther(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('Other', { name: DataTypes.STRING, n: DataTypes.INTEGER }, { tableName: 'bench_stream_other', timestamps: false });
}

const PG_PREFIX = `bench-stream-${process.pid}:`;
const SQLITE_PREFIX = `bench-sqlite-stream-${process.pid}:`;

async function pgApp(server: PrivatePostgres, stream: false | Record<string, unknown>): Promise<{ sequelize: Sequelize; Item: ModelStatic<Model>; cacheops: Cacheops }> {
  const sequelize = new Sequelize('bench', 'postgres', '', { host: '127.0.0.1', port: server.port, dialect: 'postgres', logging: false });
  const Item = defineItem(sequelize);
  defineOther(sequelize);
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: PG_PREFIX, profiles: { Item: { ops: 'all' }, Other: { ops: 'all' } },
    changeStream: stream === false ? false : { slot: 'bench', ...stream }, logger: () => undefined,
  });
  await cacheops.changeStreamReady();
  return { sequelize, Item, cacheops };
}

function pgWriters(server: PrivatePostgres, count: number): Promise<ForeignWriter[]> {
  return Promise.all(Array.from({ length: count }, async () => {
    const c = new Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'bench' });
    await c.connect();
    return {
      async rename(id: number, name: string) { await c.query('UPDATE bench_stream_items SET name = $1 WHERE id = $2', [name, id]); },
      end: () => c.end(),
    };
  }));
}

async function pgOpen(server: PrivatePostgres, on: boolean): Promise<StreamApp & { close(): Promise<void> }> {
  const app = await pgApp(server, on ? {} : false);
  return { ...app, async close() { await app.cacheops.close(); await app.sequelize.close(); } };
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
  const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix: SQLITE_PREFIX, profiles: { Item: { ops: 'all' } }, changeStream: true });
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
  await forgetPrefix(cacheops, SQLITE_PREFIX);
  await cacheops.close();
  await sequelize.close();
  rmSync(dir, { recursive: true, force: true });
  return { label: 'sqlite, poll 100 ms', writers: 1, p50: percentile(lags, 50), p99: percentile(lags, 99), n: lags.length };
}

interface PgResults { lags: LagResult[]; sustained: SustainedResult[]; costs: Costs; big: { big: number; small: number } }

async function runPg(): Promise<PgResults | undefined> {
  let server: PrivatePostgres;
  try {
    server = await startPrivatePostgres();
  } catch (error) {
    console.log(`  PostgreSQL change stream skipped: no private PostgreSQL (${(error as Error).message.split('\n')[0]})`);
    return undefined;
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
    await Item.bulkCreate(Array.from({ length: SEEDED_ROWS }, (_, i) => ({ name: `r${i}`, n: i })));
    await setup.close();
    const label = `postgres ${PG_VERSION}`;
    const lags: LagResult[] = [];
    const rates: SustainedResult[] = [];
    const app = await pgOpen(server, true);
    try {
      for (const count of [1, 8]) {
        const ws = await pgWriters(server, count);
        lags.push(await lagAt(label, app, ws, WRITES));
        rates.push(await sustained(label, app, ws, SECONDS));
        for (const w of ws) await w.end();
      }
    } finally {
      await app.close();
    }
    const measured = await costs((on) => pgOpen(server, on), COST_ROUNDS, 300);
    return { lags, sustained: rates, costs: measured, big: await pgBigTransaction(server) };
  } finally {
    await forgetPrefix(undefined, PG_PREFIX);
    await server.stop();
  }
}

function printCosts(db: string, c: Costs): void {
  console.log(`\n== change stream: cost to the application (${db}, medians µs, phases with and without a running consumer alternated) ==`);
  console.log(table(['measure', 'stream on', 'stream off', 'on/off'], [
    ['findByPk hit, consumer idle', us(c.idleOn), us(c.idleOff), (c.idleOn / c.idleOff).toFixed(2)],
    ['in-app update by pk', us(c.writeOn), us(c.writeOff), (c.writeOn / c.writeOff).toFixed(2)],
    ['findByPk hit between updates', us(c.hitOn), us(c.hitOff), (c.hitOn / c.hitOff).toFixed(2)],
  ]));
}

export async function runStreamBench(dialects: readonly string[] = ['sqlite', 'postgres', 'mariadb']): Promise<void> {
  const lags: LagResult[] = [];
  const rates: SustainedResult[] = [];
  if (dialects.includes('sqlite')) lags.push(await sqliteLag());
  const pg = dialects.includes('postgres') ? await runPg() : undefined;
  const maria = dialects.includes('mariadb') ? await runMariadbStream(WRITES, SECONDS, COST_ROUNDS) : undefined;
  for (const r of [pg, maria]) if (r) { lags.push(...r.lags); rates.push(...r.sustained); }
  console.log(`\n== change stream: COMMIT to invalidation (ms, from the writer's COMMIT returning), ${WRITES} foreign UPDATEs per line (40 on SQLite) ==`);
  console.log(table(['stream', 'writers', 'p50 ms', 'p99 ms', 'changes', 'changes/s written', 'model-wide batches'],
    lags.map((l) => [l.label, String(l.writers), l.p50.toFixed(1), l.p99.toFixed(1), String(l.n), l.perSecond === undefined ? '-' : l.perSecond.toFixed(0), String(l.modelWide ?? '-')])));
  if (rates.length > 0) {
    console.log(`\n== change stream: sustained, writers committing as fast as they can for ${SECONDS} s (one-row UPDATEs, autocommit) ==`);
    console.log(table(['stream', 'writers', 'committed/s', 'invalidated/s', 'lag p50 ms', 'lag p99 ms', 'lag max ms', 'backlog at end', 'drained in ms', 'model-wide batches'],
      rates.map((r) => [r.label, String(r.writers), r.committedPerSecond.toFixed(0), r.invalidatedPerSecond.toFixed(0), r.p50.toFixed(1), r.p99.toFixed(1),
        r.max.toFixed(0), String(r.backlog), r.drainMs.toFixed(0), String(r.modelWide)])));
  }
  if (pg) printCosts(`PostgreSQL ${PG_VERSION}`, pg.costs);
  if (maria) printCosts(`MariaDB ${maria.version}`, maria.costs);
  if (pg) {
    console.log('\n== change stream: a 100k-row INSERT, then a one-row UPDATE by another client (PostgreSQL, ms from each COMMIT to its invalidation) ==');
    console.log(table(['transaction', 'ms'], [['100k-row INSERT', pg.big.big.toFixed(0)], ['one-row UPDATE right after', pg.big.small.toFixed(0)]]));
  }
}

if (require.main === module) {
  runStreamBench().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
