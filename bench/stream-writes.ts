/**
 * The stream write mode (BENCH_SECTIONS=streamwrites): on a private PostgreSQL
 * with wal_level=logical and a private MariaDB with the row binlog, each write kind of bench/writes.ts through plain
 * Sequelize, the floor (the plain call and one Redis round trip), cacheops's
 * synchronous mode and `writes: 'stream'`, interleaved in one process, each on
 * rows of its own. Twice: with the stream's consumer in this process, then in
 * another one (this process stands by and learns of its transactions through
 * Redis). Besides the medians: the statements one write sends, and the wait
 * for the stream inside a stream-mode write (p50/p99).
 *
 * Run as a child with `consumer <database> <port> <prefix>`: the consumer of
 * the second half, until killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { EventEmitter } from 'node:events';
import type IORedis from 'ioredis';
import { Sequelize } from 'sequelize';
import { installCacheops, type Cacheops } from 'sequelize-cacheops';
import { startPrivatePostgres } from '../test/helpers/private-postgres';
import { mariadbUnavailable, startPrivateMariadb } from '../test/helpers/private-mariadb';
import { defineModels, seed, type BenchModels } from './models';
import { interleave, median, percentile, ratio, table, us } from './measure';
import { fillUnrelated } from './saves';
import { roundTrip, statements, statementShape, UNRELATED_WRITES, WRITE_KINDS, WRITE_ORDER, writeKinds, type WriteKind } from './writes';
import { forgetPrefix } from './redis-probe';

const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const SLOT = 'bench_streamwrites';
const WAITED = 'changeStream:writeWaited';
const DECODED = 'changeStream:decoded';
/** The target of the issue: at most this much above the floor. */
const TARGET_OVER_FLOOR = 1.1;

type SideName = 'plain' | 'sync' | 'stream';
interface Side { readonly name: SideName; readonly index: number; readonly sequelize: Sequelize; readonly models: BenchModels; readonly cacheops?: Cacheops }

export interface StreamWriteResult {
  readonly kind: WriteKind;
  readonly plain: number;
  readonly floor: number;
  readonly sync: number;
  readonly stream: number;
  readonly syncSql: readonly string[];
  readonly streamSql: readonly string[];
  readonly waitP50: number;
  readonly waitP99: number;
  /** Consumer in this process: from the wait's start (the commit returned) to the consumer decoding the transaction, p50 ms (negative: decoded first). */
  readonly deliveryP50: number | undefined;
  /** From the decoding to the end of the wait (visibility, the invalidation script, the announcement), p50 ms. */
  readonly invalidationP50: number | undefined;
  readonly timeouts: number;
}

type Database = 'postgres' | 'mariadb';

function openOn(db: Database, port: number): Sequelize {
  return db === 'postgres'
    ? new Sequelize('bench', 'postgres', '', { host: '127.0.0.1', port, dialect: 'postgres', logging: false })
    : new Sequelize('bench', 'root', '', { host: '127.0.0.1', port, dialect: 'mysql', logging: false });
}

function install(db: Database, sequelize: Sequelize, prefix: string, stream: boolean): Cacheops {
  return installCacheops(sequelize, {
    redis: redisUrl, prefix, logger: () => undefined,
    profiles: { Post: { ops: 'all' }, Category: { ops: 'all' }, Author: { ops: 'all' } },
    ...(stream ? { changeStream: db === 'postgres' ? { slot: SLOT } : {}, writes: 'stream' as const } : {}),
  });
}

const eventsOf = (cacheops: Cacheops): EventEmitter => (cacheops as unknown as { core: { events: EventEmitter } }).core.events;

/** The four write paths of each kind, interleaved; the stream side's waits collected by kind. */
async function measure(sides: Record<SideName, Side>, iterations: number, redis: IORedis): Promise<StreamWriteResult[]> {
  const trip = roundTrip(redis);
  for (const side of [sides.sync, sides.stream]) await fillUnrelated({ cacheops: side.cacheops!, models: side.models }, UNRELATED_WRITES);
  const waits: { ms: number; outcome: string; id: string; end: number }[] = [];
  const events = eventsOf(sides.stream.cacheops!);
  events.on(WAITED, (w: { ms: number; outcome: string; id: string }) => waits.push({ ...w, end: performance.now() }));
  // When the consumer runs here: when each transaction was decoded (PostgreSQL: xids; MariaDB: GTIDs).
  const decodedAt = new Map<string, number>();
  events.on(DECODED, (d: { xids?: readonly number[]; ids?: readonly (string | undefined)[] }) => {
    const at = performance.now();
    for (const id of d.xids ?? d.ids ?? []) if (id !== undefined) decodedAt.set(String(id), at);
  });
  const warmup = Math.max(10, Math.floor(iterations / 10));
  const write = writeKinds([sides.plain, sides.sync, sides.stream]);
  await write.prepare();
  const results: StreamWriteResult[] = [];
  let counter = 0;
  for (const kind of WRITE_ORDER) {
    const run = write.run[kind];
    const samples = await interleave({
      plain: () => run(sides.plain, (counter += 1)),
      floor: async () => { await run(sides.plain, (counter += 1)); await trip(); },
      sync: () => run(sides.sync, (counter += 1)),
      stream: () => run(sides.stream, (counter += 1)),
    }, iterations, warmup);
    const measured = waits.splice(0).slice(-iterations);
    const ms = measured.map((w) => w.ms);
    const delivery: number[] = [];
    const invalidation: number[] = [];
    for (const w of measured) {
      const at = decodedAt.get(w.id);
      if (at === undefined || w.outcome !== 'done') continue;
      delivery.push(at - (w.end - w.ms));
      invalidation.push(w.end - at);
    }
    decodedAt.clear();
    const syncSql = await statements(sides.sync.sequelize, () => run(sides.sync, (counter += 1)));
    const streamSql = await statements(sides.stream.sequelize, () => run(sides.stream, (counter += 1)));
    waits.length = 0;
    results.push({
      kind, plain: median(samples.plain), floor: median(samples.floor), sync: median(samples.sync), stream: median(samples.stream),
      syncSql, streamSql, waitP50: percentile(ms, 50), waitP99: percentile(ms, 99), timeouts: measured.filter((w) => w.outcome !== 'done').length,
      deliveryP50: delivery.length > 0 ? percentile(delivery, 50) : undefined, invalidationP50: invalidation.length > 0 ? percentile(invalidation, 50) : undefined,
    });
  }
  return WRITE_KINDS.map((k) => results.find((r) => r.kind === k)!);
}

function print(label: string, results: readonly StreamWriteResult[]): void {
  console.log(`  ${label} (medians µs; ratios to plain; target stream/floor ≤${TARGET_OVER_FLOOR}x):`);
  console.log(table(
    ['write', 'plain', 'floor', 'sync', 'stream', 'floor/plain', 'sync/plain', 'stream/plain', 'stream/floor', 'wait p50/p99 ms', 'timeouts', 'target'],
    results.map((r) => [r.kind, us(r.plain), us(r.floor), us(r.sync), us(r.stream), ratio(r.floor / r.plain), ratio(r.sync / r.plain), ratio(r.stream / r.plain),
      ratio(r.stream / r.floor), `${r.waitP50.toFixed(2)} / ${r.waitP99.toFixed(2)}`, String(r.timeouts), r.stream / r.floor <= TARGET_OVER_FLOOR ? 'PASS' : 'FAIL']),
  ));
  const split = results.filter((r) => r.deliveryP50 !== undefined);
  if (split.length > 0) {
    console.log('    the wait, split where the consumer runs here (p50 ms): commit returned -> transaction decoded | decoded -> wait over; floor - plain (one Redis round trip)');
    for (const r of split) console.log(`    ${r.kind}: ${r.deliveryP50!.toFixed(2)} | ${r.invalidationP50!.toFixed(2)}; ${((r.floor - r.plain) / 1000).toFixed(2)}`);
  }
  for (const r of results) {
    console.log(`    ${r.kind}: sync ${r.syncSql.length} [${r.syncSql.map(statementShape).join('; ')}], stream ${r.streamSql.length} [${r.streamSql.map(statementShape).join('; ')}]`);
  }
}

/** A consumer in another process (this file run as a child): resolves once it consumes. */
/** Kills the consumer process and waits for its exit. */
function stopped(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

function startConsumer(db: Database, port: number, prefix: string): Promise<{ stop(): Promise<void> }> {
  const tsx = pathToFileURL(join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  const child = spawn(process.execPath, ['--import', tsx, __filename, 'consumer', db, String(port), prefix], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => { if (line === 'consumer') resolve({ stop: () => stopped(child) }); });
    child.once('exit', (code) => reject(new Error(`the consumer process exited (${code})`)));
  });
}

async function consumerMain(db: Database, port: number, prefix: string): Promise<void> {
  const sequelize = openOn(db, port);
  defineModels(sequelize);
  const cacheops = install(db, sequelize, prefix, true);
  await cacheops.changeStreamReady();
  const timer = setInterval(() => {
    if (cacheops.stats().changeStream.role === 'consumer') { process.stdout.write('consumer\n'); clearInterval(timer); }
  }, 20);
}

export async function runStreamWritesBench(iterations: number, redis: IORedis): Promise<void> {
  for (const db of ['postgres', 'mariadb'] as const) {
    const what = db === 'postgres' ? 'private PostgreSQL, wal_level=logical' : 'private MariaDB, row binlog';
    console.log(`\n== stream write mode, ${db} (${what}; ${iterations} interleaved calls per write kind and path) ==`);
    const missing = db === 'mariadb' ? mariadbUnavailable() : undefined;
    if (missing) {
      console.log(`  skipped: ${missing}`);
      continue;
    }
    await runOn(db, iterations, redis);
  }
}

async function runOn(db: Database, iterations: number, redis: IORedis): Promise<void> {
  const server = db === 'postgres' ? await startPrivatePostgres() : await startPrivateMariadb();
  const port = server.port;
  try {
    const admin: { query(sql: string): Promise<unknown>; end(): Promise<unknown> } = await server.client();
    await admin.query('CREATE DATABASE bench');
    await admin.end();
    const seeding = openOn(db, port);
    const models = defineModels(seeding);
    await seed(models);
    if (db === 'postgres') {
      for (const m of [models.Post, models.Category, models.Author]) await seeding.query(`ALTER TABLE "${m.getTableName() as string}" REPLICA IDENTITY FULL`);
    }
    await seeding.close();
    for (const where of ['in this process', 'in another process'] as const) {
      const prefix = `bench-sw-${process.pid}-${db}-${where === 'in this process' ? 'same' : 'other'}:`;
      const consumer = where === 'in another process' ? await startConsumer(db, port, prefix) : undefined;
      const sides = {} as Record<SideName, Side>;
      (['plain', 'sync', 'stream'] as const).forEach((name, index) => {
        const sequelize = openOn(db, port);
        const m = defineModels(sequelize);
        // The stream side shares its prefix with the other process's consumer (the marks live under it).
        const cacheops = name === 'plain' ? undefined : install(db, sequelize, name === 'stream' ? prefix : `${prefix}sync:`, name === 'stream');
        sides[name] = { name, index, sequelize, models: m, ...(cacheops ? { cacheops } : {}) };
      });
      try {
        await sides.stream.cacheops!.changeStreamReady();
        await sides.stream.sequelize.databaseVersion(); // MariaDB: the writer learns the server's kind
        await new Promise((r) => setTimeout(r, 100));
        const role = sides.stream.cacheops!.stats().changeStream.role;
        print(`consumer ${where} (this process: ${role})`, await measure(sides, iterations, redis));
      } finally {
        // Every consumer stopped first: one still running would write the prefix's epochs again.
        await consumer?.stop();
        for (const side of Object.values(sides)) {
          await side.cacheops?.close();
          await side.sequelize.close();
        }
        for (const gone of [prefix, `${prefix}sync:`]) await forgetPrefix(undefined, gone);
      }
    }
  } finally {
    await server.stop();
  }
}

if (process.argv[2] === 'consumer') void consumerMain(process.argv[3] as Database, Number(process.argv[4]), process.argv[5]!);
