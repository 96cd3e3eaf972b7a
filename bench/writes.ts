/**
 * Section 3: what a write costs with cacheops against the same call on a
 * plain Sequelize, in one process, interleaved (see measure.ts).
 *
 * Two Sequelize instances share one database and one set of tables (SQLite:
 * a file, since a database in memory cannot be shared): `plain` has no
 * cacheops, `cached` has it, with `UNRELATED_WRITES` unrelated cached
 * queries in Redis. Each side writes its own rows (posts, categories), so
 * neither waits for the other's locks. The write kinds: `instance.save()`,
 * `Model.update` by primary key, a mass `Model.update` of 20 rows (one
 * category's posts), `instance.destroy()` and `Model.create` (the destroys
 * remove the rows the creates made).
 *
 * Beside them, the floor of a write that must invalidate before it resolves:
 * the plain Sequelize call followed by one Redis round trip of the shape the
 * invalidation has (EVALSHA of a script that does nothing, one key and a few
 * arguments, on the same Redis). What a cacheops write costs above the floor
 * is what the library adds; the floor above plain is the round trip no
 * never-stale write can skip.
 */
import type IORedis from 'ioredis';
import type { Model, Sequelize } from 'sequelize';
import type { Cacheops } from 'sequelize-cacheops';
import type { BenchDialect, BenchModels } from './models';
import { SIZES } from './models';
import { fillUnrelated } from './saves';
import { interleave, median } from './measure';

export const UNRELATED_WRITES = 500;

/** The ratio each dialect must stay under. */
export const WRITE_TARGET: Record<BenchDialect, number> = { sqlite: 1.3, postgres: 1.3, mariadb: 1.5 };

export const WRITE_KINDS = ['save', 'update by pk', 'mass update (20 rows)', 'destroy', 'create'] as const;
export type WriteKind = (typeof WRITE_KINDS)[number];

export interface WriteResult {
  readonly kind: WriteKind;
  readonly plain: number;
  /** The plain call followed by one Redis round trip (see the module comment). */
  readonly floor: number;
  readonly cached: number;
  /** The SQL statements one call sends, on each side. */
  readonly plainSql: readonly string[];
  readonly cachedSql: readonly string[];
  readonly samples: number;
}

export interface WriteSide {
  readonly sequelize: Sequelize;
  readonly models: BenchModels;
}

/** Destroys remove the rows the creates made: create runs first (and once more for the statement count). */
export const WRITE_ORDER: readonly WriteKind[] = ['save', 'update by pk', 'mass update (20 rows)', 'create', 'destroy'];

/**
 * The write kinds, each side on rows of its own: side i saves post 1 + i,
 * updates post 10 + i, mass-updates the posts of the i-th part of the
 * categories, and destroys the rows it created.
 */
export function writeKinds<S extends WriteSide>(sides: readonly S[]): {
  prepare(): Promise<void>;
  readonly run: Record<WriteKind, (side: S, n: number) => Promise<unknown>>;
} {
  const part = Math.floor(SIZES.categories / sides.length);
  const index = (side: S): number => sides.indexOf(side);
  const saved = new Map<S, Model>();
  const created = new Map<S, Model[]>(sides.map((side) => [side, []]));
  const destroyed = new Map<S, number>(sides.map((side) => [side, 0]));
  return {
    async prepare() {
      for (const side of sides) {
        const post = await side.models.Post.findByPk(1 + index(side), { cacheops: false } as never);
        if (!post) throw new Error('the post to save is missing');
        saved.set(side, post);
      }
    },
    run: {
      'save': (side, n) => {
        const post = saved.get(side)!;
        post.set('title', `Saved ${n}`);
        return post.save();
      },
      'update by pk': (side, n) => side.models.Post.update({ title: `Updated ${n}` }, { where: { id: 10 + index(side) } }),
      'mass update (20 rows)': (side, n) => side.models.Post.update({ views: 2000 + n }, { where: { categoryId: 1 + (n % part) + index(side) * part } }),
      'create': async (side, n) => {
        created.get(side)!.push(await side.models.Post.create({ title: `Created ${n}`, views: 3000 + n, categoryId: 1, authorId: 1 }));
      },
      'destroy': async (side) => {
        const i = destroyed.get(side)!;
        destroyed.set(side, i + 1);
        const row = created.get(side)![i];
        if (!row) throw new Error('no created row left to destroy');
        await row.destroy();
      },
    },
  };
}

/** The statements fn sends through Sequelize's logging, shortened to their first words. */
export async function statements(sequelize: Sequelize, fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const opts = (sequelize as unknown as { options: { logging?: unknown } }).options;
  const previous = opts.logging;
  opts.logging = (sql: string) => { seen.push(sql.replace(/^Executing \([^)]*\): /, '')); };
  try {
    await fn();
  } finally {
    opts.logging = previous;
  }
  return seen;
}

/** A statement reduced to what tells it apart (`SELECT ... FOR UPDATE`, `UPDATE`, `BEGIN`). */
export function statementShape(sql: string): string {
  const head = /^\s*(?:WITH\b.*?\)\s*)?(\w+(?:\s+(?:DEFERRED|IMMEDIATE|TRANSACTION))?)/is.exec(sql)?.[1]?.toUpperCase() ?? sql.slice(0, 12);
  const extras = [
    /\bFOR UPDATE\b/i.test(sql) ? 'FOR UPDATE' : '',
    /\bRETURNING\b/i.test(sql) ? 'RETURNING' : '',
    /^\s*WITH\b/i.test(sql) ? 'WITH' : '',
  ].filter(Boolean);
  return extras.length ? `${head} (${extras.join(', ')})` : head;
}

/**
 * One Redis round trip shaped like an invalidation: EVALSHA (ioredis loads
 * the script on first use) with one key and a handful of arguments, of a
 * script that returns at once.
 */
export function roundTrip(redis: IORedis): () => Promise<unknown> {
  const client = redis as IORedis & { benchFloorTrip?: (...args: (string | number)[]) => Promise<number> };
  if (!client.benchFloorTrip) client.defineCommand('benchFloorTrip', { numberOfKeys: 1, lua: 'return #ARGV' });
  return () => client.benchFloorTrip!('bench-floor:{0}:epochs', 'bench-floor:{0}:', 1, 'bench_w_posts', 1, 1, 'id', '1');
}

export async function measureWrites(
  plain: WriteSide,
  cached: WriteSide & { readonly cacheops: Cacheops },
  iterations: number,
  redis: IORedis,
): Promise<WriteResult[]> {
  const trip = roundTrip(redis);
  await fillUnrelated({ cacheops: cached.cacheops, models: cached.models }, UNRELATED_WRITES);
  const warmup = Math.max(10, Math.floor(iterations / 10));
  const write = writeKinds([plain, cached]);
  // Destroys remove the rows the creates made: create runs first, and once more for the statement count.
  await write.prepare();
  const results = new Map<WriteKind, WriteResult>();
  let counter = 0;
  for (const kind of WRITE_ORDER) {
    const run = write.run[kind];
    const samples = await interleave({
      plain: () => run(plain, (counter += 1)),
      floor: async () => { await run(plain, (counter += 1)); await trip(); },
      cached: () => run(cached, (counter += 1)),
    }, iterations, warmup);
    const plainSql = await statements(plain.sequelize, () => run(plain, (counter += 1)));
    const cachedSql = await statements(cached.sequelize, () => run(cached, (counter += 1)));
    results.set(kind, { kind, plain: median(samples.plain), floor: median(samples.floor), cached: median(samples.cached), plainSql, cachedSql, samples: iterations });
  }
  return WRITE_KINDS.map((kind) => results.get(kind)!);
}
