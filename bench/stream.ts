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

interface LagResult { readonly label: string; readonly writers: number; readonly p50: number; readonly p99: number; readonly n: number }

function defineItem(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('Item', { name: DataTypes.STRING, n: DataTypes.INTEGER }, { tableName: 'bench_stream_items', timestamps: false });
}

async function pgApp(server: PrivatePostgres, stream: false | Record<string, unknown>): Promise<{ sequelize: Sequelize; Item: ModelStatic<Model>; cacheops: Cacheops }> {
  const sequelize = new Sequelize('bench', 'postgres', '', { host: '127.0.0.1', port: server.port, dialect: 'postgres', logging: false });
  const Item = defineItem(sequelize);
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: `bench-stream-${process.pid}:`, profiles: { Item: { ops: 'all' } },
    changeStream: stream === false ? false : { slot: 'bench', ...stream }, logger: () => undefined,
  });
  await cacheops.changeStreamReady();
  return { sequelize, Item, cacheops };
}

/** Writers update rows to unique names; the lag of each is from its COMMIT's return to the invalidation naming it. */
async function pgLag(server: PrivatePostgres, writers: number, pollIntervalMs: number | undefined): Promise<LagResult & { perSecond: number }> {
  const app = await pgApp(server, pollIntervalMs === undefined ? {} : { pollIntervalMs });
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
      const name = `w${w}-${i}-${pollIntervalMs}`;
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
  return { label: `postgres, poll ${pollIntervalMs ?? 50} ms`, writers, p50: percentile(lags, 50), p99: percentile(lags, 99), n: lags.length, perSecond };
}

/** Medians (µs) of an in-app update and of a hit, in alternating phases with and without a running stream. */
async function pgCosts(server: PrivatePostgres, rounds = 4, per = 300): Promise<{ writeOn: number; writeOff: number; hitOn: number; hitOff: number }> {
  const samples = { writeOn: [] as number[], writeOff: [] as number[], hitOn: [] as number[], hitOff: [] as number[] };
  for (let r = 0; r < rounds * 2; r += 1) {
    const on = r % 2 === 0;
    const app = await pgApp(server, on ? {} : false);
    await app.Item.findByPk(1);
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
  return { writeOn: median(samples.writeOn), writeOff: median(samples.writeOff), hitOn: median(samples.hitOn), hitOff: median(samples.hitOff) };
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
    await admin.query('CREATE DATABASE bench');
    await admin.end();
    const setup = new Sequelize('bench', 'postgres', '', { host: '127.0.0.1', port: server.port, dialect: 'postgres', logging: false });
    const Item = defineItem(setup);
    await Item.sync({ force: true });
    await setup.query('ALTER TABLE bench_stream_items REPLICA IDENTITY FULL');
    await Item.bulkCreate(Array.from({ length: 16 }, (_, i) => ({ name: `r${i}`, n: i })));
    await setup.close();
    const lags: (LagResult & { perSecond?: number })[] = [await sqliteLag()];
    for (const poll of [undefined, 10]) for (const writers of [1, 8]) lags.push(await pgLag(server, writers, poll));
    console.log(`\n== change stream: COMMIT to invalidation (ms), ${WRITES} foreign UPDATEs per PostgreSQL line, 40 on SQLite ==`);
    console.log(table(['stream', 'writers', 'p50 ms', 'p99 ms', 'changes', 'changes/s written'],
      lags.map((l) => [l.label, String(l.writers), l.p50.toFixed(1), l.p99.toFixed(1), String(l.n), l.perSecond === undefined ? '-' : l.perSecond.toFixed(0)])));
    const costs = await pgCosts(server);
    console.log('\n== change stream: cost to the application (PostgreSQL, medians µs, phases with and without a running consumer alternated) ==');
    console.log(table(['measure', 'stream on', 'stream off', 'on/off'], [
      ['in-app update by pk', us(costs.writeOn), us(costs.writeOff), (costs.writeOn / costs.writeOff).toFixed(2)],
      ['findByPk hit', us(costs.hitOn), us(costs.hitOff), (costs.hitOn / costs.hitOff).toFixed(2)],
    ]));
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
