/**
 * The benchmark: `npm run bench` (or `node scripts/with-redis.mjs npx tsx bench/run.ts`).
 *
 *   BENCH_DIALECTS=sqlite,postgres   which databases (default both; PostgreSQL is
 *                                    skipped with a note when it does not answer)
 *   BENCH_ITERATIONS=1500            measured iterations of each hit comparison, after
 *                                    as many warm-up ones (saves use a third of it)
 *   BENCH_UNRELATED=100000           unrelated cached queries for the save test
 *   BENCH_CLS=3                      rounds of the CLS namespace comparison (0: skip;
 *                                    BENCH_DIALECTS= with nothing runs it alone)
 *
 * Prints medians in µs and the ratios, with PASS/FAIL against the targets; a
 * missed target never fails the process (errors do).
 */
import { randomBytes } from 'node:crypto';
import IORedis from 'ioredis';
import type { Sequelize } from 'sequelize';
import { installCacheops, type Cacheops } from '../src/index';
import { defineModels, dropTables, openSequelize, postgresReachable, seed, SIZES, type BenchDialect, type BenchModels } from './models';
import { measureHits, type HitResult } from './hits';
import { measureSaves, type SaveResult } from './saves';
import { breakdown, type Breakdown } from './breakdown';
import { ratio, table, us, verdict } from './measure';
import { countCommands, valueKeys } from './redis-probe';
import { measureCls, printCls } from './cls';

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

function requestedDialects(): BenchDialect[] {
  const raw = (process.env['BENCH_DIALECTS'] ?? 'sqlite,postgres').split(',').map((d) => d.trim().toLowerCase()).filter(Boolean);
  for (const d of raw) if (d !== 'sqlite' && d !== 'postgres') throw new Error(`BENCH_DIALECTS: unknown dialect ${d} (sqlite, postgres)`);
  return raw as BenchDialect[];
}

interface Setup {
  readonly sequelize: Sequelize;
  readonly models: BenchModels;
  readonly cacheops: Cacheops;
  readonly prefix: string;
}

async function setup(dialect: BenchDialect, label: string, seeded: boolean): Promise<Setup> {
  const sequelize = openSequelize(dialect);
  const models = defineModels(sequelize);
  if (!seeded) await seed(models);
  const prefix = `bench-${randomBytes(4).toString('hex')}-${label}:`;
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl,
    prefix,
    profiles: { Post: { ops: 'all' }, Category: { ops: 'all' }, Author: { ops: 'all' } },
  });
  return { sequelize, models, cacheops, prefix };
}

async function teardown(s: Setup | undefined, dropDb: boolean, raw: IORedis): Promise<void> {
  if (!s) return;
  // Before invalidateAll: dropping a table is a write the library invalidates for (a new epoch).
  if (dropDb) await dropTables(s.models).catch((e: unknown) => console.error('dropping the bench tables failed:', e));
  await s.cacheops.invalidateAll().catch((e: unknown) => console.error('cleanup failed:', e));
  // invalidateAll keeps the epochs hash (race protection); this prefix is never used again.
  await raw.del(`${s.prefix}cacheops:{0}:epochs`);
  const left = (await valueKeys(raw, s.prefix)).size;
  if (left > 0) console.error(`  cleanup: ${left} cached values of ${s.prefix} are still in Redis`);
  await s.cacheops.close();
  await s.sequelize.close();
}

interface DialectResult {
  readonly dialect: BenchDialect;
  readonly hits: HitResult[];
  readonly saves: SaveResult;
}

async function runDialect(dialect: BenchDialect): Promise<DialectResult> {
  let main: Setup | undefined;
  let large: Setup | undefined;
  const raw = new IORedis(redisUrl);
  try {
    const t0 = Date.now();
    main = await setup(dialect, 'main', false);
    console.log(`  seeded ${SIZES.posts} posts, ${SIZES.categories} categories, ${SIZES.authors} authors (${Date.now() - t0} ms)`);
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
    await main.cacheops.invalidateAll();
    // PostgreSQL: the second installation reads the same tables; SQLite in memory needs its own copy.
    large = await setup(dialect, 'large', dialect === 'postgres');
    const t2 = Date.now();
    const saves = await measureSaves(main, large, {
      iterations: SAVE_ITERATIONS, smallCount: SMALL, largeCount: UNRELATED, postId: 500,
    });
    console.log(`  ${UNRELATED} unrelated queries cached in ${saves.fillSeconds.toFixed(1)} s; saves measured (${((Date.now() - t2) / 1000).toFixed(1)} s in all)`);
    printSaves(saves);
    return { dialect, hits, saves };
  } finally {
    await teardown(large, false, raw);
    await teardown(main, dialect === 'postgres', raw);
    raw.disconnect();
  }
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
    const s = r.saves;
    const trips = Math.max(s.commandsSmall.count, s.commandsLarge.count);
    rows.push([`${r.dialect} save ${SMALL} vs ${UNRELATED}`, us(s.small), us(s.large), '', ratio(s.large / s.small), `${trips} trip(s)`,
      `${verdict(s.large / s.small <= 1.2)}/${verdict(trips <= 1)}`]);
  }
  console.log('\n== summary (medians, µs) ==');
  console.log(table(['measure', 'hit | save', 'uncached | save many', 'floor', 'hit/floor | ratio', 'uncached/hit', 'targets'], rows));
}

async function main(): Promise<void> {
  const started = Date.now();
  console.log(`cacheops bench: ${ITERATIONS} iterations per hit comparison, ${SAVE_ITERATIONS} per save comparison, Node ${process.version}`);
  const results: DialectResult[] = [];
  for (const dialect of requestedDialects()) {
    console.log(`\n== ${dialect} ==`);
    if (dialect === 'postgres') {
      const problem = await postgresReachable();
      if (problem) {
        console.log(`  PostgreSQL skipped: not reachable (${problem})`);
        continue;
      }
    }
    results.push(await runDialect(dialect));
  }
  if (results.length) printSummary(results);
  const clsRounds = Number(process.env['BENCH_CLS'] ?? 3);
  if (clsRounds > 0) {
    console.log(`\n== Sequelize.useCLS namespaces (SQLite, ${ITERATIONS} iterations, median of ${clsRounds} rounds, one process per variant and round) ==`);
    printCls(await measureCls(ITERATIONS, clsRounds));
  }
  console.log(`\ndone in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
