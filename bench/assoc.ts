/**
 * Association and count hits: the reads of an N+1 page (association getters,
 * has*, count*, counts, aggregates, findAndCountAll), every one a cache hit.
 *
 * Two installations read the same tables: one with `near: true` (process
 * memory), one without (every hit a Redis GET). Each read is measured
 * interleaved five ways: a near hit, a Redis hit, each as the installation
 * serves it and as it did before association, count and aggregate calls had
 * a fast path (`core.fastPath.extended = false`: those calls take Sequelize's
 * whole option processing before the cache is asked), and the floor: a plain
 * GET of the very bytes the library stored (both values' for
 * findAndCountAll, at once), their decoding and the build of the result
 * (bulkBuild for instances, the number or boolean the method returns).
 * Near hits are then also measured back to back (no I/O wait before each).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type IORedis from 'ioredis';
import { Op, Utils, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { installCacheops, type Cacheops } from 'sequelize-cacheops';
import { decodeRaw } from '../src/core/serialize';
import { fromCacheable, type SelectOptions } from '../src/query/rehydrate';
import { defineAssocModels, dropAssoc, seedAssoc, type AssocModels } from './assoc-models';
import { openSequelize, type BenchDialect } from './models';
import { forgetPrefix, keyStoredBy } from './redis-probe';
import { interleave, median } from './measure';

export interface AssocHitResult {
  readonly name: string;
  readonly near: number;
  readonly nearBefore: number;
  readonly nearBackToBack: number;
  readonly nearBackToBackBefore: number;
  readonly redis: number;
  readonly redisBefore: number;
  readonly floor: number;
}

interface Installation {
  readonly sequelize: Sequelize;
  readonly models: AssocModels;
  readonly cacheops: Cacheops;
  readonly prefix: string;
  /** Instances per variant, fetched around the cache. */
  readonly users: Model[];
  readonly articles: Model[];
}

type Call = (i: Installation, v: number, uncached: boolean) => Promise<unknown>;

/** One part of a read: one cached value. `raw` parts are stored as query rows, others as instances. */
interface Part { readonly call: Call }

interface ReadKind {
  readonly name: string;
  readonly run: Call;
  /** The calls that store the read's values one by one (default: the read itself). */
  readonly parts?: readonly Part[];
  /** The read's result from its parts' decoded (and built) values. */
  readonly finish: (values: unknown[], i: Installation, v: number) => unknown;
}

const VARIANTS = 8;
const nc = (uncached: boolean): Record<string, unknown> => (uncached ? { cacheops: false } : {});
const method = (o: Model, name: string, ...args: unknown[]): Promise<unknown> => (o as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name]!(...args);
const listOptions = (m: AssocModels, v: number, uncached: boolean): Record<string, unknown> => ({
  where: { authorId: { [Op.lte]: 4 + v } },
  include: [{ model: m.User, as: 'author' }, { model: m.Tag, as: 'tagList', through: { attributes: [] } }],
  limit: 20, order: [['id', 'DESC']], distinct: true, ...nc(uncached),
});
const countOf = (values: unknown[]): number => parseInt((values[0] as { count: string }).count, 10);

const READS: readonly ReadKind[] = [
  { name: 'Article.findByPk', run: (i, v, u) => i.models.Article.findByPk(1 + v * 7, nc(u)), finish: (x) => x[0] },
  { name: 'article.getAuthor() (belongsTo)', run: (i, v, u) => method(i.articles[v]!, 'getAuthor', nc(u)), finish: (x) => x[0] },
  { name: 'user.getSettings() (hasOne)', run: (i, v, u) => method(i.users[v]!, 'getSettings', nc(u)), finish: (x) => x[0] },
  { name: 'article.getComments() (hasMany)', run: (i, v, u) => method(i.articles[v]!, 'getComments', { order: [['id', 'ASC']], ...nc(u) }), finish: (x) => x[0] },
  { name: 'article.countComments()', run: (i, v, u) => method(i.articles[v]!, 'countComments', nc(u)), finish: countOf },
  { name: 'article.getTagList() (belongsToMany)', run: (i, v, u) => method(i.articles[v]!, 'getTagList', nc(u)), finish: (x) => x[0] },
  {
    name: 'user.hasFollower(user)', run: (i, v, u) => method(i.users[v]!, 'hasFollower', i.users[(v + 1) % VARIANTS]!, nc(u)),
    finish: (x, i, v) => (x[0] as Record<string, unknown>[]).some((r) => r['id'] === i.users[(v + 1) % VARIANTS]!.get('id')),
  },
  { name: 'user.countFollowers()', run: (i, v, u) => method(i.users[v]!, 'countFollowers', nc(u)), finish: countOf },
  {
    name: 'article.hasUser(user)', run: (i, v, u) => method(i.articles[v]!, 'hasUser', i.users[v]!, nc(u)),
    finish: (x, i, v) => (x[0] as Record<string, unknown>[]).some((r) => r['id'] === i.users[v]!.get('id')),
  },
  { name: 'article.countUsers()', run: (i, v, u) => method(i.articles[v]!, 'countUsers', nc(u)), finish: countOf },
  { name: 'Article.count({ where })', run: (i, v, u) => i.models.Article.count({ where: { authorId: 1 + v }, ...nc(u) } as never), finish: countOf },
  {
    name: 'Article.max(\'id\', { where })', run: (i, v, u) => i.models.Article.max('id', { where: { authorId: 1 + v }, ...nc(u) } as never),
    finish: (x) => Number((x[0] as { max: unknown }).max),
  },
  // The same options object given to findAll (apps share one between a page and its count): findAll reads neither distinct nor col.
  // A literal condition whose placeholder replacements fill (a search box's usual query).
  {
    name: 'findAll, literal where, replacements', run: (i, v, u) => i.models.Article.findAll({
      where: i.sequelize.literal('id <= :last'), replacements: { last: 5 + v }, order: [['id', 'ASC']], ...nc(u),
    } as never),
    finish: (x) => x[0],
  },
  // (limit 10: a query of its own, not the findAll part of the findAndCountAll below.)
  {
    name: 'findAll, 2 includes, limit 10, distinct', run: (i, v, u) => i.models.Article.findAll({ ...listOptions(i.models, v, u), limit: 10 } as never),
    finish: (x) => x[0],
  },
  {
    name: 'findAndCountAll, 2 includes, limit 20',
    run: (i, v, u) => i.models.Article.findAndCountAll(listOptions(i.models, v, u) as never),
    parts: [
      { call: (i, v, u) => i.models.Article.count(Utils.cloneDeep(listOptions(i.models, v, u)) as never) },
      { call: (i, v, u) => i.models.Article.findAll(listOptions(i.models, v, u) as never) },
    ],
    finish: (x) => {
      const count = parseInt((x[0] as { count: string }).count, 10);
      return { count, rows: count === 0 ? [] : x[1] };
    },
  },
];

const json = (v: unknown): string => JSON.stringify(v);

type SelectFn = (model: ModelStatic<Model>, table: unknown, options: Record<string, unknown>) => Promise<unknown>;

/** A part's floor: GET of the key its first call stores, decoded, built as the library builds it. */
async function partFloor(inst: Installation, redis: IORedis, part: Part, v: number): Promise<(bytes: Buffer) => unknown> {
  const qi = inst.sequelize.getQueryInterface() as unknown as { select: SelectFn };
  const inner = qi.select;
  let build: { model: ModelStatic<Model>; options: SelectOptions } | undefined;
  qi.select = async function select(this: unknown, model, table, options) {
    build ??= { model, options: { ...options } as SelectOptions };
    return inner.call(this, model, table, options);
  };
  try {
    await part.call(inst, v, false);
  } finally {
    qi.select = inner;
  }
  void redis;
  return (bytes) => {
    const decoded = decodeRaw(bytes);
    if (!decoded) throw new Error('floor: undecodable bytes');
    return build ? fromCacheable(decoded.value, build.model, build.options) : decoded.value;
  };
}

async function floorOf(inst: Installation, redis: IORedis, read: ReadKind, v: number): Promise<() => Promise<unknown>> {
  const parts = read.parts ?? [{ call: read.run }];
  const keys: string[] = [];
  const builds: ((bytes: Buffer) => unknown)[] = [];
  for (const part of parts) {
    let build: ((bytes: Buffer) => unknown) | undefined;
    keys.push(await keyStoredBy(redis, inst.prefix, async () => { build = await partFloor(inst, redis, part, v); }));
    builds.push(build!);
  }
  return async () => {
    const all = await Promise.all(keys.map((k) => redis.getBuffer(k)));
    return read.finish(all.map((b, n) => {
      if (!b) throw new Error(`floor: ${keys[n]} vanished`);
      return builds[n]!(b);
    }), inst, v);
  };
}

async function open(dialect: BenchDialect, storage: string | undefined, tables: string, redisUrl: string, label: string, near: boolean, seed: boolean): Promise<Installation> {
  const sequelize = openSequelize(dialect, storage);
  const models = defineAssocModels(sequelize, tables);
  if (seed) await seedAssoc(models);
  const prefix = `bench-${randomBytes(4).toString('hex')}-${label}:`;
  const profile = { ops: 'all' as const, near };
  const cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix,
    profiles: Object.fromEntries(Object.keys(models).map((name) => [name, profile])),
  });
  const users: Model[] = [];
  const articles: Model[] = [];
  for (let v = 0; v < VARIANTS; v += 1) {
    users.push((await models.User.findByPk(1 + v * 3, { cacheops: false } as never))!);
    articles.push((await models.Article.findByPk(1 + v * 11, { cacheops: false } as never))!);
  }
  return { sequelize, models, cacheops, prefix, users, articles };
}

async function close(inst: Installation | undefined, redis: IORedis): Promise<void> {
  if (!inst) return;
  await forgetPrefix(inst.cacheops, inst.prefix);
  await inst.cacheops.close();
  await inst.sequelize.close();
}

/** Sets whether association, count and aggregate calls take the fast path (no-op where the library has no such switch). */
function extended(inst: Installation, on: boolean): void {
  const fast = inst.cacheops.core.fastPath as { extended?: boolean } | undefined;
  if (fast) fast.extended = on;
}

async function withExtended<T>(inst: Installation, on: boolean, fn: () => Promise<T>): Promise<T> {
  extended(inst, on);
  try {
    return await fn();
  } finally {
    extended(inst, true);
  }
}

export async function measureAssocHits(dialect: BenchDialect, redisUrl: string, redis: IORedis, iterations: number): Promise<AssocHitResult[]> {
  const dir = dialect === 'sqlite' ? mkdtempSync(join(tmpdir(), 'cacheops-bench-assoc-')) : undefined;
  const storage = dir ? join(dir, 'assoc.sqlite') : undefined;
  const tables = `bench_a${randomBytes(3).toString('hex')}_`;
  let plain: Installation | undefined;
  let near: Installation | undefined;
  try {
    plain = await open(dialect, storage, tables, redisUrl, 'assoc', false, true);
    near = await open(dialect, storage, tables, redisUrl, 'assoc-near', true, false);
    const tracker = near.cacheops.core.near?.tracker;
    for (let k = 0; k < 500 && tracker && !tracker.active; k += 1) await new Promise((r) => setTimeout(r, 10));
    if (!tracker?.active) throw new Error('near cache tracking did not come up');
    const p = plain;
    const n = near;
    const results: AssocHitResult[] = [];
    for (const read of READS) {
      const floors: (() => Promise<unknown>)[] = [];
      for (let v = 0; v < VARIANTS; v += 1) {
        floors.push(await floorOf(p, redis, read, v));
        for (let k = 0; k < 4; k += 1) await read.run(n, v, false);
        const expected = json(await read.run(p, v, true));
        for (const [label, got] of [['Redis hit', await read.run(p, v, false)], ['floor', await floors[v]!()], ['near hit', await read.run(n, v, false)],
          ['Redis hit before', await withExtended(p, false, () => read.run(p, v, false))]] as const) {
          if (json(got) !== expected) throw new Error(`${read.name}: the ${label} differs from the database: ${json(got).slice(0, 200)} vs ${expected.slice(0, 200)}`);
        }
      }
      const warmup = Math.max(300, iterations);
      const before = { plain: p.cacheops.stats(), near: n.cacheops.stats() };
      const samples = await interleave({
        near: (i) => read.run(n, i % VARIANTS, false),
        nearBefore: (i) => withExtended(n, false, () => read.run(n, i % VARIANTS, false)),
        redis: (i) => read.run(p, i % VARIANTS, false),
        redisBefore: (i) => withExtended(p, false, () => read.run(p, i % VARIANTS, false)),
        floor: (i) => floors[i % VARIANTS]!(),
      }, iterations, warmup);
      const b2b = await interleave({ near: (i) => read.run(n, i % VARIANTS, false) }, iterations, warmup);
      const b2bBefore = await withExtended(n, false, () => interleave({ near: (i) => read.run(n, i % VARIANTS, false) }, iterations, warmup));
      const after = { plain: p.cacheops.stats(), near: n.cacheops.stats() };
      // Every measured read was a hit: nothing missed or stored meanwhile, and the near ones came from memory.
      for (const side of ['plain', 'near'] as const) {
        if (after[side].misses !== before[side].misses || after[side].stores !== before[side].stores) {
          throw new Error(`${read.name}: ${after[side].misses - before[side].misses} misses on the ${side} installation while measuring hits`);
        }
      }
      const parts = read.parts?.length ?? 1;
      const nearServed = after.near.nearHits - before.near.nearHits;
      if (nearServed !== 4 * parts * (iterations + warmup)) throw new Error(`${read.name}: ${nearServed} near hits, expected ${4 * parts * (iterations + warmup)}`);
      results.push({
        name: read.name, near: median(samples.near), nearBefore: median(samples.nearBefore), nearBackToBack: median(b2b.near),
        nearBackToBackBefore: median(b2bBefore.near), redis: median(samples.redis), redisBefore: median(samples.redisBefore), floor: median(samples.floor),
      });
    }
    return results;
  } finally {
    await close(near, redis);
    if (plain && dialect !== 'sqlite') await dropAssoc(plain.models).catch((e: unknown) => console.error('dropping the bench tables failed:', e));
    await close(plain, redis);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
