/**
 * Section 1: the cost of a cache hit, against the same query uncached and
 * against the floor — a plain GET of the very bytes the library stored, their
 * decoding, and (for instances) the same bulkBuild the library does on a hit.
 */
import type IORedis from 'ioredis';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import type { Cacheops } from 'sequelize-cacheops';
import { decodeRaw } from '../src/core/serialize';
import { fromCacheable, type SelectOptions } from '../src/query/rehydrate';
import type { BenchModels } from './models';
import { keyStoredBy } from './redis-probe';
import { interleave, median, type Task } from './measure';
import { recordSelect } from './select-probe';

export interface HitResult {
  readonly name: string;
  readonly hit: number;
  readonly uncached: number;
  readonly floor: number;
  readonly samples: number;
}

interface Variant {
  readonly hit: () => Promise<unknown>;
  readonly uncached: () => Promise<unknown>;
  readonly floor: () => Promise<unknown>;
}

const json = (v: unknown): string => JSON.stringify(Array.isArray(v) ? v.map(plain) : plain(v));
function plain(v: unknown): unknown {
  return v && typeof v === 'object' && 'toJSON' in v ? (v as { toJSON(): unknown }).toJSON() : v;
}

/** Warms a query and builds the three ways of getting its result. */
async function instanceVariant(
  ctx: { sequelize: Sequelize; redis: IORedis; prefix: string },
  model: ModelStatic<Model>,
  run: (cacheops?: false) => Promise<unknown>,
): Promise<Variant> {
  let options: SelectOptions | undefined;
  const key = await keyStoredBy(ctx.redis, ctx.prefix, async () => {
    options = (await recordSelect(ctx.sequelize, () => run())).options as SelectOptions;
  });
  const opts = options!;
  const floor = async (): Promise<unknown> => {
    const bytes = await ctx.redis.getBuffer(key);
    const decoded = bytes && decodeRaw(bytes);
    if (!decoded) throw new Error(`floor: ${key} vanished`);
    return fromCacheable(decoded.value, model, opts);
  };
  // The three must agree, or the comparison is meaningless.
  const [a, b, c] = [json(await run()), json(await run(false)), json(await floor())];
  if (a !== b || a !== c) throw new Error('hit, uncached and floor results differ');
  return { hit: () => run(), uncached: () => run(false), floor };
}

async function countVariant(
  ctx: { redis: IORedis; prefix: string },
  run: (cacheops?: false) => Promise<number>,
): Promise<Variant> {
  const key = await keyStoredBy(ctx.redis, ctx.prefix, () => run());
  const floor = async (): Promise<unknown> => {
    const bytes = await ctx.redis.getBuffer(key);
    const decoded = bytes && decodeRaw(bytes);
    if (!decoded) throw new Error(`floor: ${key} vanished`);
    return Number((decoded.value as { count: unknown }).count);
  };
  const [a, b, c] = [await run(), await run(false), await floor()];
  if (a !== b || a !== c) throw new Error(`count: hit ${a}, uncached ${b}, floor ${c} differ`);
  return { hit: () => run(), uncached: () => run(false), floor };
}

const VARIANTS = 8;

async function measure(name: string, variants: readonly Variant[], iterations: number, cacheops: Cacheops): Promise<HitResult> {
  const pick = (i: number): Variant => variants[i % variants.length]!;
  const tasks: Record<'hit' | 'uncached' | 'floor', Task> = {
    hit: (i) => pick(i).hit(),
    uncached: (i) => pick(i).uncached(),
    floor: (i) => pick(i).floor(),
  };
  // A long warm-up: the hit path runs through much of Sequelize, which V8 optimizes late.
  const warmup = Math.max(300, iterations);
  const before = cacheops.stats();
  const samples = await interleave(tasks, iterations, warmup);
  const after = cacheops.stats();
  // Every measured hit must have been a hit: nothing missed or stored meanwhile.
  if (after.misses !== before.misses || after.stores !== before.stores || after.hits - before.hits !== iterations + warmup) {
    throw new Error(`${name}: expected ${iterations + warmup} hits and no miss, got ${after.hits - before.hits} hits, ${after.misses - before.misses} misses`);
  }
  return { name, hit: median(samples.hit), uncached: median(samples.uncached), floor: median(samples.floor), samples: iterations };
}

/** Measures findByPk, findAll with include (20 rows) and count. */
export async function measureHits(
  ctx: { sequelize: Sequelize; cacheops: Cacheops; redis: IORedis; prefix: string; models: BenchModels },
  iterations: number,
): Promise<HitResult[]> {
  const { Post, Category, Author } = ctx.models;
  const byPk: Variant[] = [];
  const list: Variant[] = [];
  const counts: Variant[] = [];
  for (let v = 0; v < VARIANTS; v += 1) {
    const id = 1 + v * 101;
    byPk.push(await instanceVariant(ctx, Post, (cacheops) => Post.findByPk(id, cacheops === false ? { cacheops } as never : {})));
    const categoryId = 1 + v * 5;
    list.push(await instanceVariant(ctx, Post, (cacheops) => Post.findAll({
      where: { categoryId },
      include: [{ model: Category }, { model: Author }],
      limit: 20,
      order: [['id', 'ASC']],
      ...(cacheops === false ? { cacheops } : {}),
    } as never)));
    counts.push(await countVariant(ctx, (cacheops) => Post.count({ where: { categoryId }, ...(cacheops === false ? { cacheops } : {}) } as never) as unknown as Promise<number>));
  }
  const rows = (await list[0]!.hit()) as unknown[];
  if (rows.length !== 20) throw new Error(`the findAll returns ${rows.length} rows, expected 20`);
  return [
    await measure('findByPk', byPk, iterations, ctx.cacheops),
    await measure('findAll+include (20 rows)', list, iterations, ctx.cacheops),
    await measure('count', counts, iterations, ctx.cacheops),
  ];
}
