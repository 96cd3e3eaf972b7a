/**
 * Section 1c: which client-tracking mode keeps the near cache true at less
 * cost. The same near installation runs each mode in turn:
 *
 * - default tracking (what the library uses): Redis remembers every key the
 *   tracked connection read and names it when it changes;
 * - BCAST with the value keys' prefixes: Redis remembers nothing per key and
 *   names every value key that changes under those prefixes.
 *
 * Per mode: the near hit (findByPk, back to back), the keys Redis tracks for
 * this process, an own write (update by primary key, which waits for this
 * process's near cache to drop what it invalidated), and what other
 * processes' activity costs this one: `FOREIGN` values stored and dropped
 * under the same prefix that this process never reads (raw SET and UNLINK of
 * value keys, what other processes' stores and invalidations do to them) —
 * the messages received and the CPU this process spent meanwhile.
 */
import type IORedis from 'ioredis';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import type { Cacheops } from 'sequelize-cacheops';
import { namespace, valueKey } from '../src/core/keys';
import type { BenchModels } from './models';
import { interleave, median } from './measure';

export interface TrackingModeResult {
  readonly mode: 'default' | 'BCAST';
  readonly hit: number;
  readonly ownWrite: number;
  /** Keys Redis tracks (INFO stats tracking_total_keys) once the near cache is warm. */
  readonly trackedKeys: number;
  readonly foreign: number;
  readonly messages: number;
  readonly keysNamed: number;
  /** Prefixes Redis tracks for BCAST clients (INFO stats tracking_total_prefixes). */
  readonly trackedPrefixes: number;
  /** This process's CPU time (user + system) while the foreign values were stored and dropped. */
  readonly cpuMs: number;
}

interface Installation {
  readonly sequelize: Sequelize;
  readonly cacheops: Cacheops;
  readonly prefix: string;
  readonly models: BenchModels;
}

const VARIANTS = 8;
const id = (i: number): number => 1 + (i % VARIANTS) * 101;

async function tracking(redis: IORedis): Promise<{ keys: number; prefixes: number }> {
  const info = await redis.info('stats');
  const field = (name: string): number => Number(new RegExp(`${name}:(\\d+)`).exec(info)?.[1] ?? Number.NaN);
  return { keys: field('tracking_total_keys'), prefixes: field('tracking_total_prefixes') };
}

async function warm(near: Installation, Post: ModelStatic<Model>): Promise<void> {
  for (let v = 0; v < VARIANTS; v += 1) {
    for (let k = 0; ; k += 1) {
      const before = near.cacheops.stats().nearHits;
      await Post.findByPk(id(v));
      if (near.cacheops.stats().nearHits > before) break;
      if (k > 20) throw new Error('the near cache did not take the value');
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

export async function measureTrackingModes(near: Installation, redis: IORedis, iterations: number, foreign: number): Promise<TrackingModeResult[]> {
  const tracker = near.cacheops.core.near?.tracker;
  if (!tracker) throw new Error('the near installation has no near cache');
  const { Post } = near.models;
  const shards = near.cacheops.core.store.shards;
  const prefixes = Array.from({ length: shards }, (_, shard) => valueKey(namespace(near.prefix, shard), ''));
  const results: TrackingModeResult[] = [];
  for (const mode of ['default', 'BCAST'] as const) {
    await tracker.useBroadcast(mode === 'BCAST' ? prefixes : undefined);
    if (!tracker.active) throw new Error(`tracking (${mode}) did not come up`);
    await warm(near, Post);
    const tracked = await tracking(redis);
    const hits = await interleave({ near: (i) => Post.findByPk(id(i)) }, iterations, Math.min(iterations, 500));
    let n = 0;
    const writes = await interleave({ write: () => Post.update({ title: `mode ${mode} ${(n += 1)}` }, { where: { id: 2 } }) }, Math.ceil(iterations / 10), 20);
    const messages = tracker.messages;
    const named = tracker.keysNamed;
    const cpu = process.cpuUsage();
    const ns = namespace(near.prefix, 0);
    for (let i = 0; i < foreign; i += 100) {
      const batch = redis.pipeline();
      for (let j = i; j < Math.min(foreign, i + 100); j += 1) batch.set(valueKey(ns, `bench-foreign-${mode}-${j}`), 'x', 'PX', 60_000);
      await batch.exec();
      const drop = redis.pipeline();
      for (let j = i; j < Math.min(foreign, i + 100); j += 1) drop.unlink(valueKey(ns, `bench-foreign-${mode}-${j}`));
      await drop.exec();
    }
    await tracker.barrier(); // the messages those changes produced have arrived
    const used = process.cpuUsage(cpu);
    results.push({
      mode, hit: median(hits.near), ownWrite: median(writes.write), trackedKeys: tracked.keys, trackedPrefixes: tracked.prefixes, foreign,
      messages: tracker.messages - messages, keysNamed: tracker.keysNamed - named, cpuMs: (used.user + used.system) / 1000,
    });
  }
  await tracker.useBroadcast(undefined);
  return results;
}
