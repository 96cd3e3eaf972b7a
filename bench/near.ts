/**
 * Section 1b: the near cache. The same hits as section 1 (findByPk; findAll
 * with two includes, 20 rows) served from process memory (an installation
 * with `near: true`), beside the Redis hit (the installation without it) and
 * the floor (a plain GET of the stored bytes, decoding, bulkBuild), all
 * interleaved in one run; then near hits back to back, as they copy a kept
 * result and as they would decode and build each time; then the throughput
 * of 64 concurrent findByPk requests from each tier and uncached.
 *
 * Why two near figures: interleaved, each near hit runs right after the
 * process waited for Redis or the database, and on a virtual machine the
 * first microseconds after such a wait are slow (caches cold, the CPU
 * waking); back to back measures the hit's own cost.
 */
import type IORedis from 'ioredis';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import type { Cacheops } from 'sequelize-cacheops';
import { decodeRaw } from '../src/core/serialize';
import { fromCacheable, type SelectOptions } from '../src/query/rehydrate';
import type { BenchModels } from './models';
import { keyStoredBy } from './redis-probe';
import { inParallel, interleave, median } from './measure';
import { recordSelect } from './select-probe';

export interface NearHitResult {
  readonly name: string;
  /** Near hits interleaved with the Redis hit and the floor (each follows a wait for I/O). */
  readonly near: number;
  /** Near hits one after another (the event loop never waits between them). */
  readonly nearBackToBack: number;
  /** The same, with every hit decoding and building anew instead of copying a kept result. */
  readonly nearBuilt: number;
  readonly redis: number;
  readonly floor: number;
}

export interface ThroughputResult {
  readonly name: string;
  /** Requests per second, by tier. */
  readonly near: number;
  readonly redis: number;
  readonly uncached: number;
}

interface Installation {
  readonly sequelize: Sequelize;
  readonly cacheops: Cacheops;
  readonly prefix: string;
  readonly models: BenchModels;
}

type Query = (models: BenchModels, i: number) => Promise<unknown>;

const VARIANTS = 8;

const QUERIES: readonly { name: string; run: Query; uncached: Query }[] = [
  {
    name: 'findByPk',
    run: (m, i) => m.Post.findByPk(1 + (i % VARIANTS) * 101),
    uncached: (m, i) => m.Post.findByPk(1 + (i % VARIANTS) * 101, { cacheops: false } as never),
  },
  {
    name: 'findAll+include (20 rows)',
    run: (m, i) => m.Post.findAll({
      where: { categoryId: 1 + (i % VARIANTS) * 5 }, include: [{ model: m.Category }, { model: m.Author }], limit: 20, order: [['id', 'ASC']],
    }),
    uncached: (m, i) => m.Post.findAll({
      where: { categoryId: 1 + (i % VARIANTS) * 5 }, include: [{ model: m.Category }, { model: m.Author }], limit: 20, order: [['id', 'ASC']], cacheops: false,
    } as never),
  },
];

const json = (v: unknown): string => JSON.stringify(v);

/** The floor of one variant: GET the bytes the plain installation stored, decode, build. */
async function floorOf(plain: Installation, redis: IORedis, run: () => Promise<unknown>): Promise<() => Promise<unknown>> {
  let options: SelectOptions | undefined;
  let model: ModelStatic<Model> | undefined;
  const key = await keyStoredBy(redis, plain.prefix, async () => {
    const call = await recordSelect(plain.sequelize, run);
    options = call.options as SelectOptions;
    model = call.model;
  });
  return async () => {
    const bytes = await redis.getBuffer(key);
    const decoded = bytes && decodeRaw(bytes);
    if (!decoded) throw new Error(`floor: ${key} vanished`);
    return fromCacheable(decoded.value, model!, options!);
  };
}

/** Near hit vs Redis hit vs floor, interleaved. */
export async function measureNearHits(near: Installation, plain: Installation, redis: IORedis, iterations: number): Promise<NearHitResult[]> {
  const tracker = near.cacheops.core.near?.tracker;
  if (!tracker) throw new Error('the near installation has no near cache');
  for (let i = 0; i < 500 && !tracker.active; i += 1) await new Promise((r) => setTimeout(r, 10));
  if (!tracker.active) throw new Error('near cache tracking did not come up');
  const results: NearHitResult[] = [];
  for (const q of QUERIES) {
    const floors: (() => Promise<unknown>)[] = [];
    for (let v = 0; v < VARIANTS; v += 1) {
      floors.push(await floorOf(plain, redis, () => q.run(plain.models, v)));
      // Until the near installation serves it from memory (a first read stores, the next is admitted).
      for (let k = 0; k < 5; k += 1) await q.run(near.models, v);
      // (On SQLite the two installations have their own databases, seeded with different timestamps.)
      if (json(await q.run(near.models, v)) !== json(await q.uncached(near.models, v))) throw new Error(`${q.name}: the near hit differs from the database`);
      if (json(await q.run(plain.models, v)) !== json(await floors[v]!())) throw new Error(`${q.name}: the Redis hit differs from its floor`);
    }
    const before = near.cacheops.stats();
    const warmup = Math.max(300, iterations);
    const samples = await interleave({
      near: (i) => q.run(near.models, i),
      redis: (i) => q.run(plain.models, i),
      floor: (i) => floors[i % VARIANTS]!(),
    }, iterations, warmup);
    const after = near.cacheops.stats();
    const served = after.nearHits - before.nearHits;
    if (served !== iterations + warmup) throw new Error(`${q.name}: expected ${iterations + warmup} near hits, got ${served}`);
    const alone = await interleave({ near: (i) => q.run(near.models, i) }, iterations, warmup);
    // Every near hit decoded and built anew: the tier is given requests without their reuse.
    // Swapped on the prototype and put back, never added to and deleted from the instance: a
    // deleted property turns the tier into a slow dictionary-mode object for the queries after.
    const proto = Object.getPrototypeOf(near.cacheops.core.near!) as { readNearFirst: (...args: unknown[]) => Promise<unknown> };
    const read = proto.readNearFirst;
    proto.readNearFirst = function (this: unknown, store, cache, plan, compute, options) {
      const p = plan as { codec: object };
      // The codec may be a class instance: its methods stay reachable through the prototype chain.
      return read.call(this, store, cache, { ...p, codec: Object.assign(Object.create(p.codec) as object, { copy: undefined }) }, compute, options);
    };
    let built: Record<'near', number[]>;
    try {
      built = await interleave({ near: (i) => q.run(near.models, i) }, iterations, warmup);
    } finally {
      proto.readNearFirst = read;
    }
    const total = near.cacheops.stats().nearHits - after.nearHits;
    if (total !== 2 * (iterations + warmup)) throw new Error(`${q.name}: expected ${2 * (iterations + warmup)} near hits back to back, got ${total}`);
    results.push({
      name: q.name, near: median(samples.near), nearBackToBack: median(alone.near), nearBuilt: median(built.near),
      redis: median(samples.redis), floor: median(samples.floor),
    });
  }
  return results;
}

/** Requests per second with 64 in flight, near hits vs Redis hits vs uncached. */
export async function measureThroughput(near: Installation, plain: Installation, requests: number): Promise<ThroughputResult> {
  const rate = async (job: (i: number) => Promise<unknown>): Promise<number> => {
    await inParallel(Math.min(requests, 640), 64, job); // warm-up
    const start = process.hrtime.bigint();
    await inParallel(requests, 64, job);
    return requests / (Number(process.hrtime.bigint() - start) / 1e9);
  };
  const q = QUERIES[0]!;
  const nearRate = await rate((i) => q.run(near.models, i));
  const redisRate = await rate((i) => q.run(plain.models, i));
  const uncachedRate = await rate((i) => q.uncached(plain.models, i));
  return { name: `${q.name}, 64 concurrent`, near: nearRate, redis: redisRate, uncached: uncachedRate };
}
