/**
 * Where a hit's time goes. The pieces of a hit, each timed on its own (and
 * interleaved with the full hit, so they share its conditions):
 *
 *   hit         the find call, served by the fast path (src/query/fast-path.ts)
 *   normal      the same call with the fast path off: Sequelize's find
 *               machinery, then the patched QueryInterface.select (SQL
 *               generation, key, Redis read, build)
 *   fetch       the library's Redis read on a hit (a plain GET through its guard; insideout: the fetch script)
 *   get         a plain GET of the same key
 *   build       decoding the bytes and building the instances
 *   rest        hit − (fetch + build): the library's own work on a hit
 *               (fingerprint, plan, read-through, counters, promise hops)
 */
import type IORedis from 'ioredis';
import { type Model, type ModelStatic, type Sequelize } from 'sequelize';
import type { Cacheops } from 'sequelize-cacheops';
import { decodeRaw } from '../src/core/serialize';
import { fromCacheable, type SelectOptions } from '../src/query/rehydrate';
import { valueKeys } from './redis-probe';
import { interleave, median } from './measure';
import { recordSelect } from './select-probe';

export interface Breakdown {
  readonly name: string;
  readonly hit: number;
  readonly normal: number;
  readonly fetch: number;
  readonly get: number;
  readonly build: number;
  readonly rest: number;
}

/** `query` must be one not cached yet. */
export async function breakdown(
  ctx: { sequelize: Sequelize; cacheops: Cacheops; redis: IORedis; prefix: string },
  name: string,
  query: () => Promise<unknown>,
  iterations: number,
): Promise<Breakdown> {
  const before = await valueKeys(ctx.redis, ctx.prefix);
  const call = await recordSelect(ctx.sequelize, query);
  // The query must not have been cached before: its first run stores exactly one new value.
  const added = [...await valueKeys(ctx.redis, ctx.prefix)].filter((k) => !before.has(k));
  if (added.length !== 1) throw new Error(`breakdown: expected one new cached value, found ${added.length}`);
  const key = added[0]!;
  const hash = key.slice(key.lastIndexOf(':q:') + 3);
  const tables = [...new Set([call.model, ...includedModels(call.options)].map((m) => m.getTableName().toString()))];
  const bytes = await ctx.redis.getBuffer(key);
  if (!bytes) throw new Error(`breakdown: ${key} is not cached`);
  const store = ctx.cacheops.core.store;
  // The normal path: the fast path finds no call eligible meanwhile.
  // Swapped on the prototype and put back: a property deleted from the instance would leave it a slow object.
  const fast = ctx.cacheops.core.fastPath;
  if (!fast) throw new Error('breakdown: no fast path installed');
  const proto = Object.getPrototypeOf(fast) as { eligible: (...args: unknown[]) => boolean };
  const eligible = proto.eligible;
  const samples = await interleave({
    hit: () => query(),
    normal: async () => {
      proto.eligible = () => false;
      try {
        await query();
      } finally {
        proto.eligible = eligible;
      }
    },
    fetch: async () => {
      if (store.insideout) {
        const r = await store.fetch(ctx.prefix, hash, tables, 0);
        if (r.kind !== 'hit') throw new Error('breakdown: fetch missed');
      } else if (!(await store.getValue(ctx.prefix, hash))) throw new Error('breakdown: fetch missed');
    },
    get: () => ctx.redis.getBuffer(key),
    build: async () => fromCacheable(decodeRaw(bytes)!.value, call.model, call.options as SelectOptions),
  }, iterations, Math.max(20, iterations >> 3));
  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v as number[])])) as Record<keyof typeof samples, number>;
  return { name, ...m, rest: m.hit - m.fetch - m.build };
}

function includedModels(options: Record<string, unknown>): ModelStatic<Model>[] {
  const out: ModelStatic<Model>[] = [];
  const walk = (list: unknown): void => {
    if (!Array.isArray(list)) return;
    for (const inc of list as { model?: ModelStatic<Model>; include?: unknown }[]) {
      if (inc.model) out.push(inc.model);
      walk(inc.include);
    }
  };
  walk(options['include']);
  return out;
}

