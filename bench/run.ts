/**
 * The benchmark: `npm run bench` (or `node scripts/with-redis.mjs npx tsx bench/run.ts`).
 *
 *   BENCH_DIALECTS=sqlite,postgres,mariadb   which databases (default all three;
 *                                    PostgreSQL and MariaDB are skipped with a note
 *                                    when they do not answer)
 *   BENCH_SECTIONS=hits,saves,writes,assoc,stream,streamwrites which sections (default all); hits include the near
 *                                    cache; assoc: association, count and aggregate hits (bench/assoc.ts);
 *                                    stream: the change stream's lag, sustained rate and cost on private
 *                                    PostgreSQL and MariaDB servers and SQLite, those of BENCH_DIALECTS
 *                                    (bench/stream.ts, bench/stream-mariadb.ts);
 *                                    streamwrites: `writes: 'stream'` beside plain, floor and sync writes
 *                                    on private PostgreSQL and MariaDB servers (bench/stream-writes.ts;
 *                                    BENCH_WRITE_ITERATIONS calls)
 *   BENCH_STREAM_WRITES=400          foreign UPDATEs per change-stream lag measurement
 *   BENCH_STREAM_SECONDS=5           seconds of the change stream's sustained-rate run (per writer count)
 *   BENCH_STREAM_COST_ROUNDS=4       rounds (stream on, then off) of the change stream's cost comparison
 *   BENCH_THROUGHPUT_REQUESTS=20000  findByPk requests per tier in the 64-concurrent throughput test
 *   BENCH_FOREIGN=20000              values other processes store and drop in the near cache's
 *                                    tracking-mode comparison (default vs BCAST)
 *   BENCH_ITERATIONS=1500            measured iterations of each hit comparison, after
 *                                    as many warm-up ones (saves use a third of it)
 *   BENCH_UNRELATED=100000           unrelated cached queries for the save test
 *   BENCH_CLS=3                      rounds of the CLS namespace comparison (0: skip;
 *                                    BENCH_DIALECTS= with nothing runs it alone)
 *   BENCH_OTEL=3                     rounds of the OpenTelemetry hit-path comparison (0: skip)
 *   BENCH_WRITE_ITERATIONS=400       measured calls of each write kind and side
 *
 * It measures the built package (dist/, what `npm run bench` builds first and
 * what users run), not the TypeScript sources through a loader.
 *
 * Prints medians in µs and the ratios, with PASS/FAIL against the targets; a
 * missed target never fails the process (errors do).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';
import type { Sequelize } from 'sequelize';
import { installCacheops, type Cacheops } from 'sequelize-cacheops';
import { defineModels, dropTables, openSequelize, RUN_TABLES, serverReachable, seed, SIZES, type BenchDialect, type BenchModels } from './models';
import { measureHits, type HitResult } from './hits';
import { measureSaves, type SaveResult } from './saves';
import { breakdown, type Breakdown } from './breakdown';
import { measureNearHits, measureThroughput, type NearHitResult, type ThroughputResult } from './near';
import { measureTrackingModes, type TrackingModeResult } from './near-modes';
import { ratio, table, us, verdict } from './measure';
import { countCommands, forgetPrefix } from './redis-probe';
import { measureCls, printCls } from './cls';
import { measureOtel, printOtel } from './otel';
import { measureAssocHits, type AssocHitResult } from './assoc';
import { runStreamBench } from './stream';
import { runStreamWritesBench } from './stream-writes';
import { measureWrites, statementShape, UNRELATED_WRITES, WRITE_TARGET, type WriteResult } from './writes';

const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const positive = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
};
const ITERATIONS = positive('BENCH_ITERATIONS', 1500);
const SAVE_ITERATIONS = Math.max(50, Math.round(ITERATIONS / 3));
const UNRELATED = positive('BENCH_UNRELATED', 100_000);
const SMALL = Math.min(100, UNRELATED);
const WRITE_ITERATIONS = positive('BENCH_WRITE_ITERATIONS', 400);

const list = (name: string, fallback: string, known: readonly string[]): string[] => {
  const raw = (process.env[name] ?? fallback).split(',').map((d) => d.trim().toLowerCase()).filter(Boolean);
  for (const d of raw) if (!known.includes(d)) throw new Error(`${name}: unknown value ${d} (${known.join(', ')})`);
  return raw;
};
const DIALECTS = list('BENCH_DIALECTS', 'sqlite,postgres,mariadb', ['sqlite', 'postgres', 'mariadb']) as BenchDialect[];
const THROUGHPUT_REQUESTS = positive('BENCH_THROUGHPUT_REQUESTS', 20_000);
/** Values other processes store and drop in the tracking-mode comparison. */
const FOREIGN_VALUES = positive('BENCH_FOREIGN', 20_000);
/** A near hit of findByPk should take no more than this (µs). */
const TARGET_NEAR_US = 10;
const SECTIONS = new Set(list('BENCH_SECTIONS', 'hits,saves,writes,assoc,stream,streamwrites', ['hits', 'saves', 'writes', 'assoc', 'stream', 'streamwrites']));

interface Setup {
  readonly sequelize: Sequelize;
  readonly models: BenchModels;
  readonly cacheops: Cacheops;
  readonly prefix: string;
}

async function setup(dialect: BenchDialect, label: string, seeded: boolean, near = false): Promise<Setup> {
  const sequelize = openSequelize(dialect);
  const models = defineModels(sequelize);
  if (!seeded) await seed(models);
  const prefix = `bench-${randomBytes(4).toString('hex')}-${label}:`;
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl,
    prefix,
    profiles: { Post: { ops: 'all', near }, Category: { ops: 'all', near }, Author: { ops: 'all', near } },
  });
  return { sequelize, models, cacheops, prefix };
}

async function teardown(s: Setup | undefined, dropDb: boolean, raw: IORedis): Promise<void> {
  if (!s) return;
  // Before invalidateAll: dropping a table is a write the library invalidates for (a new epoch).
  if (dropDb) await dropTables(s.models).catch((e: unknown) => console.error('dropping the bench tables failed:', e));
  await forgetPrefix(s.cacheops, s.prefix);
  await s.cacheops.close();
  await s.sequelize.close();
}

interface DialectResult {
  readonly dialect: BenchDialect;
  readonly hits: HitResult[];
  readonly saves: SaveResult | undefined;
  readonly writes: WriteResult[];
  readonly near: NearHitResult[];
  readonly throughput: ThroughputResult | undefined;
  readonly assoc: AssocHitResult[];
}

async function runDialect(dialect: BenchDialect): Promise<DialectResult> {
  const { hits, saves, near, throughput } = SECTIONS.has('hits') || SECTIONS.has('saves') ? await runReads(dialect)
    : { hits: [], saves: undefined, near: [], throughput: undefined };
  const writes = SECTIONS.has('writes') ? await runWrites(dialect) : [];
  const assoc = SECTIONS.has('assoc') ? await runAssoc(dialect) : [];
  return { dialect, hits, saves, writes, near, throughput, assoc };
}

interface ReadResults {
  hits: HitResult[];
  saves: SaveResult | undefined;
  near: NearHitResult[];
  throughput: ThroughputResult | undefined;
}

async function runReads(dialect: BenchDialect): Promise<ReadResults> {
  let main: Setup | undefined;
  let large: Setup | undefined;
  let near: Setup | undefined;
  const raw = new IORedis(redisUrl);
  try {
    const t0 = Date.now();
    main = await setup(dialect, 'main', false);
    console.log(`  seeded ${SIZES.posts} posts, ${SIZES.categories} categories, ${SIZES.authors} authors (${Date.now() - t0} ms)`);
    if (!SECTIONS.has('hits')) return { hits: [], saves: await runSaves(dialect, main, (l) => { large = l; }), near: [], throughput: undefined };
    const t1 = Date.now();
    const hits = await measureHits({ ...main, redis: raw }, ITERATIONS);
    console.log(`  hits measured, ${ITERATIONS} iterations each (${((Date.now() - t1) / 1000).toFixed(1)} s)`);
    printHits(dialect, hits);
    const hitTrips = await countCommands(main.cacheops.core.redis as IORedis, () => main!.models.Post.findByPk(1));
    console.log(`  Redis commands sent by one hit: ${hitTrips.count} [${hitTrips.commands.join(', ')}]`);
    const { Post, Category, Author } = main.models;
    const pieces = [
      await breakdown({ ...main, redis: raw }, 'findByPk', () => Post.findByPk(777), Math.ceil(ITERATIONS / 2)),
      await breakdown({ ...main, redis: raw }, 'findAll+include (20 rows)', () => Post.findAll({
        where: { categoryId: 50 }, include: [{ model: Category }, { model: Author }], limit: 20, order: [['id', 'ASC']],
      }), Math.ceil(ITERATIONS / 2)),
    ];
    printBreakdown(pieces);
    await main.cacheops.invalidateAll(); // the near section's floors need the values stored anew
    // The near cache: an installation with `near: true` (PostgreSQL: on the same tables).
    near = await setup(dialect, 'near', dialect !== 'sqlite', true);
    const nearHits = await measureNearHits(near, main, raw, ITERATIONS);
    printNear(nearHits);
    const throughput = await measureThroughput(near, main, THROUGHPUT_REQUESTS);
    printThroughput(throughput);
    printModes(await measureTrackingModes(near, raw, ITERATIONS, FOREIGN_VALUES));
    await teardown(near, false, raw);
    near = undefined;
    await main.cacheops.invalidateAll();
    return { hits, saves: SECTIONS.has('saves') ? await runSaves(dialect, main, (l) => { large = l; }) : undefined, near: nearHits, throughput };
  } finally {
    await teardown(near, false, raw);
    await teardown(large, false, raw);
    await teardown(main, dialect !== 'sqlite', raw);
    raw.disconnect();
  }
}

async function runSaves(dialect: BenchDialect, main: Setup, opened: (large: Setup) => void): Promise<SaveResult> {
  // PostgreSQL, MariaDB: the second installation reads the same tables; SQLite in memory needs its own copy.
  const large = await setup(dialect, 'large', dialect !== 'sqlite');
  opened(large);
  const t2 = Date.now();
  const saves = await measureSaves(main, large, {
    iterations: SAVE_ITERATIONS, smallCount: SMALL, largeCount: UNRELATED, postId: 500,
  });
  console.log(`  ${UNRELATED} unrelated queries cached in ${saves.fillSeconds.toFixed(1)} s; saves measured (${((Date.now() - t2) / 1000).toFixed(1)} s in all)`);
  printSaves(saves);
  return saves;
}

/** Section 3 (bench/writes.ts): two Sequelize instances on one database, one with cacheops. */
async function runWrites(dialect: BenchDialect): Promise<WriteResult[]> {
  const dir = dialect === 'sqlite' ? mkdtempSync(join(tmpdir(), 'cacheops-bench-')) : undefined;
  const storage = dir ? join(dir, 'writes.sqlite') : undefined;
  const plainSequelize = openSequelize(dialect, storage);
  const cachedSequelize = openSequelize(dialect, storage);
  const raw = new IORedis(redisUrl);
  const plain = { sequelize: plainSequelize, models: defineModels(plainSequelize, `${RUN_TABLES}w_`) };
  const models = defineModels(cachedSequelize, `${RUN_TABLES}w_`);
  const prefix = `bench-${randomBytes(4).toString('hex')}-writes:`;
  let cacheops: Cacheops | undefined;
  try {
    if (dialect === 'sqlite') await plainSequelize.query('PRAGMA journal_mode=WAL');
    await seed(plain.models);
    cacheops = installCacheops(cachedSequelize, { redis: redisUrl, prefix, profiles: { Post: { ops: 'all' }, Category: { ops: 'all' }, Author: { ops: 'all' } } });
    const t0 = Date.now();
    const writes = await measureWrites(plain, { sequelize: cachedSequelize, models, cacheops }, WRITE_ITERATIONS, raw);
    console.log(`  writes measured, ${WRITE_ITERATIONS} calls of each kind and side, ${UNRELATED_WRITES} unrelated cached queries (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    printWrites(dialect, writes);
    return writes;
  } finally {
    if (dialect !== 'sqlite') await dropTables(plain.models).catch((e: unknown) => console.error('dropping the bench tables failed:', e));
    if (cacheops) {
      await forgetPrefix(cacheops, prefix);
      await cacheops.close();
    }
    raw.disconnect();
    await cachedSequelize.close();
    await plainSequelize.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

async function runAssoc(dialect: BenchDialect): Promise<AssocHitResult[]> {
  const raw = new IORedis(redisUrl);
  try {
    const t0 = Date.now();
    const results = await measureAssocHits(dialect, redisUrl, raw, ITERATIONS);
    console.log(`  association and count hits measured, ${ITERATIONS} iterations each (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    printAssoc(results);
    return results;
  } finally {
    raw.disconnect();
  }
}

/** Targets of the association and count hits (issue 24). */
const TARGET_ASSOC_NEAR_US = 15;
const TARGET_ASSOC_FLOOR = 1.2;

function printAssoc(results: readonly AssocHitResult[]): void {
  console.log('  association and count hits (bench/assoc.ts), medians in µs; "before": the same call with association, count and');
  console.log('  aggregate fast paths off (as before they existed); near back to back: no I/O wait before each near hit; floor: GET + decode + build:');
  console.log(table(
    ['read', 'near b2b before', 'near b2b', 'near before', 'near', 'Redis before', 'Redis hit', 'floor', 'Redis/floor before', 'Redis/floor', 'near gain', 'Redis gain', 'targets'],
    results.map((r) => [r.name, us(r.nearBackToBackBefore), us(r.nearBackToBack), us(r.nearBefore), us(r.near), us(r.redisBefore), us(r.redis), us(r.floor),
      ratio(r.redisBefore / r.floor), ratio(r.redis / r.floor), ratio(r.nearBackToBackBefore / r.nearBackToBack), ratio(r.redisBefore / r.redis),
      `near≤${TARGET_ASSOC_NEAR_US} µs ${verdict(r.nearBackToBack <= TARGET_ASSOC_NEAR_US)}, Redis≤${TARGET_ASSOC_FLOOR}x floor ${verdict(r.redis / r.floor <= TARGET_ASSOC_FLOOR)}`]),
  ));
}

const shapes = (sql: readonly string[]): string => sql.map(statementShape).join('; ');

function printWrites(dialect: BenchDialect, writes: readonly WriteResult[]): void {
  const target = WRITE_TARGET[dialect];
  console.log('  floor: the plain call and one Redis round trip of the invalidation\'s shape (EVALSHA), the least a write that invalidates before it resolves costs');
  console.log(table(
    ['write', 'plain µs', 'floor µs', 'cacheops µs', 'ratio', 'floor/plain', 'cacheops/floor', 'target', 'statements plain', 'statements cacheops'],
    writes.map((w) => [w.kind, us(w.plain), us(w.floor), us(w.cached), ratio(w.cached / w.plain), ratio(w.floor / w.plain), ratio(w.cached / w.floor),
      `≤${target}x ${verdict(w.cached / w.plain <= target)}`, String(w.plainSql.length), String(w.cachedSql.length)]),
  ));
  for (const w of writes) console.log(`  ${w.kind}: plain [${shapes(w.plainSql)}], cacheops [${shapes(w.cachedSql)}]`);
}

const TARGET_FLOOR = 1.5;
const TARGET_SPEEDUP: Record<string, number> = { 'findByPk': 2, 'findAll+include (20 rows)': 3 };

function printHits(dialect: BenchDialect, hits: readonly HitResult[]): void {
  console.log(table(
    ['query', 'hit µs', 'uncached µs', 'floor µs', 'hit/floor', 'uncached/hit', 'targets'],
    hits.map((h) => {
      const marks: string[] = [];
      if (h.name !== 'count') marks.push(`floor≤${TARGET_FLOOR}x ${verdict(h.hit / h.floor <= TARGET_FLOOR)}`);
      const speedup = TARGET_SPEEDUP[h.name];
      if (dialect === 'postgres' && speedup) marks.push(`speedup≥${speedup}x ${verdict(h.uncached / h.hit >= speedup)}`);
      return [h.name, us(h.hit), us(h.uncached), us(h.floor), ratio(h.hit / h.floor), ratio(h.uncached / h.hit), marks.join(', ')];
    }),
  ));
}

function printNear(results: readonly NearHitResult[]): void {
  console.log('  near cache (process memory, kept true by Redis client tracking) beside the Redis hit and its floor;');
  console.log('  near µs: interleaved with them (after I/O waits); back to back: near hits only; built per hit: the same, decoding and building each time:');
  console.log(table(
    ['query', 'near µs', 'back to back', 'built per hit', 'Redis hit µs', 'floor µs', 'near/floor', 'Redis hit/near', 'target (back to back)'],
    results.map((r) => [r.name, us(r.near), us(r.nearBackToBack), us(r.nearBuilt), us(r.redis), us(r.floor), ratio(r.near / r.floor), ratio(r.redis / r.near),
      r.name === 'findByPk' ? `≤${TARGET_NEAR_US} µs ${verdict(r.nearBackToBack <= TARGET_NEAR_US)}` : '']),
  ));
}

function printModes(results: readonly TrackingModeResult[]): void {
  console.log(`  client tracking modes of the near cache (bench/near-modes.ts); other processes store and drop ${results[0]?.foreign ?? 0} values this one never reads:`);
  console.log(table(
    ['tracking', 'near hit µs', 'own write µs', 'Redis tracks keys | prefixes', 'messages | keys named', 'CPU ms meanwhile'],
    results.map((r) => [r.mode, us(r.hit), us(r.ownWrite), `${r.trackedKeys} | ${r.trackedPrefixes}`, `${r.messages} | ${r.keysNamed}`, r.cpuMs.toFixed(1)]),
  ));
}

function printThroughput(r: ThroughputResult): void {
  console.log(table(
    ['throughput', 'near req/s', 'Redis hit req/s', 'uncached req/s', 'near/Redis', 'near/uncached'],
    [[r.name, r.near.toFixed(0), r.redis.toFixed(0), r.uncached.toFixed(0), ratio(r.near / r.redis), ratio(r.near / r.uncached)]],
  ));
}

function printBreakdown(pieces: readonly Breakdown[]): void {
  console.log('  where a hit goes (medians, µs; see bench/breakdown.ts):');
  console.log(table(
    ['hit of', 'hit', '= redis read', '+ decode+build', '+ rest', 'plain GET', 'without fast path', 'fast path gain'],
    pieces.map((b) => [b.name, us(b.hit), us(b.fetch), us(b.build), us(b.rest), us(b.get), us(b.normal), ratio(b.normal / b.hit)]),
  ));
}

function printSaves(s: SaveResult): void {
  console.log(table(
    ['post.save()', `${SMALL} unrelated µs`, `${UNRELATED} unrelated µs`, 'ratio', 'target'],
    [
      ['save (median)', us(s.small), us(s.large), ratio(s.large / s.small), `≤1.2x ${verdict(s.large / s.small <= 1.2)}`],
      ['invalidateObj alone', us(s.invalidateSmall), us(s.invalidateLarge), ratio(s.invalidateLarge / s.invalidateSmall), ''],
    ],
  ));
  console.log(`  Redis commands sent by one save: ${s.commandsSmall.count} [${s.commandsSmall.commands.join(', ')}] with ${SMALL}, `
    + `${s.commandsLarge.count} [${s.commandsLarge.commands.join(', ')}] with ${UNRELATED} — target ≤1 ${verdict(Math.max(s.commandsSmall.count, s.commandsLarge.count) <= 1)}`);
}

function printSummary(results: readonly DialectResult[]): void {
  const rows: string[][] = [];
  for (const r of results) {
    for (const h of r.hits) {
      const speedup = TARGET_SPEEDUP[h.name];
      const checks = [
        ...(h.name !== 'count' ? [verdict(h.hit / h.floor <= TARGET_FLOOR)] : []),
        ...(r.dialect === 'postgres' && speedup ? [verdict(h.uncached / h.hit >= speedup)] : []),
      ];
      rows.push([`${r.dialect} ${h.name}`, us(h.hit), us(h.uncached), us(h.floor), ratio(h.hit / h.floor), ratio(h.uncached / h.hit), checks.join('/') || '-']);
    }
    for (const n of r.near) {
      rows.push([`${r.dialect} ${n.name} near (back to back ${us(n.nearBackToBack)})`, us(n.near), '', us(n.floor), ratio(n.near / n.floor), ratio(n.redis / n.near),
        n.name === 'findByPk' ? verdict(n.nearBackToBack <= TARGET_NEAR_US) : '-']);
    }
    if (r.throughput) {
      rows.push([`${r.dialect} ${r.throughput.name}, req/s (near | uncached; Redis hit ${r.throughput.redis.toFixed(0)})`,
        r.throughput.near.toFixed(0), r.throughput.uncached.toFixed(0), '', '', '', '-']);
    }
    for (const w of r.writes) {
      const target = WRITE_TARGET[r.dialect];
      rows.push([`${r.dialect} ${w.kind}`, us(w.cached), us(w.plain), us(w.floor), `${ratio(w.cached / w.plain)} (floor ${ratio(w.floor / w.plain)})`,
        `${w.cachedSql.length} vs ${w.plainSql.length} stmt`,
        `≤${target}x ${verdict(w.cached / w.plain <= target)}`]);
    }
    for (const a of r.assoc) {
      rows.push([`${r.dialect} ${a.name} (near ${us(a.nearBackToBack)}, before ${us(a.nearBackToBackBefore)})`, us(a.redis), us(a.redisBefore), us(a.floor),
        ratio(a.redis / a.floor), '', `${verdict(a.nearBackToBack <= TARGET_ASSOC_NEAR_US)}/${verdict(a.redis / a.floor <= TARGET_ASSOC_FLOOR)}`]);
    }
    const s = r.saves;
    if (!s) continue;
    const trips = Math.max(s.commandsSmall.count, s.commandsLarge.count);
    rows.push([`${r.dialect} save ${SMALL} vs ${UNRELATED}`, us(s.small), us(s.large), '', ratio(s.large / s.small), `${trips} trip(s)`,
      `${verdict(s.large / s.small <= 1.2)}/${verdict(trips <= 1)}`]);
  }
  console.log('\n== summary (medians, µs) ==');
  console.log(table(['measure', 'hit | save | write', 'uncached | save many | plain', 'floor', 'hit/floor | ratio', 'uncached/hit', 'targets'], rows));
}

async function main(): Promise<void> {
  const started = Date.now();
  console.log(`cacheops bench: ${ITERATIONS} iterations per hit comparison, ${SAVE_ITERATIONS} per save comparison, ${WRITE_ITERATIONS} per write comparison, Node ${process.version}`);
  const results: DialectResult[] = [];
  // The stream section starts its own servers: with it alone, the shared ones are not needed.
  const perDialect = [...SECTIONS].some((section) => section !== 'stream');
  for (const dialect of perDialect ? DIALECTS : []) {
    console.log(`\n== ${dialect} ==`);
    const problem = await serverReachable(dialect);
    if (problem) {
      console.log(`  ${dialect} skipped: not reachable (${problem})`);
      continue;
    }
    results.push(await runDialect(dialect));
  }
  if (results.length) printSummary(results);
  if (SECTIONS.has('stream')) await runStreamBench(DIALECTS);
  if (SECTIONS.has('streamwrites')) {
    const raw = new IORedis(redisUrl);
    try {
      await runStreamWritesBench(WRITE_ITERATIONS, raw);
    } finally {
      raw.disconnect();
    }
  }
  const clsRounds = Number(process.env['BENCH_CLS'] ?? 3);
  if (clsRounds > 0) {
    console.log(`\n== Sequelize.useCLS namespaces (SQLite, ${ITERATIONS} iterations, median of ${clsRounds} rounds, one process per variant and round) ==`);
    printCls(await measureCls(ITERATIONS, clsRounds));
  }
  const otelRounds = Number(process.env['BENCH_OTEL'] ?? 3);
  if (otelRounds > 0) {
    console.log(`\n== OpenTelemetry on the hit path (SQLite findByPk, ${ITERATIONS} iterations, median of ${otelRounds} rounds, one process per variant and round) ==`);
    printOtel(await measureOtel(ITERATIONS, otelRounds));
  }
  console.log(`\ndone in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
