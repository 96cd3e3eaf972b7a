/**
 * The near tier of the read path: process memory in front of Redis for the
 * profiles with `near`, one bounded cache per profile, all kept true by one
 * tracker (tracking.ts).
 *
 * A read: the near cache when tracking is on and it holds the value; else one
 * tracked read on the tracker's connection (the round trip the hit path pays
 * anyway), admitted to the near cache when the tracker says so; on a miss
 * there, the normal path, minus its first GET. A value stored by a miss is
 * not admitted (the tracked connection did not read it); the next read is.
 * A stale-while-revalidate value is kept no longer than its fresh time: the
 * near cache never serves a stale value; past that time the read goes the
 * normal way, which decides who refreshes it.
 */
import type { Redis } from 'ioredis';
import type { CacheStore } from '../core/cache-store';
import { isCluster, type RedisClient } from '../core/redis';
import type { Profile } from '../core/config';
import { valueKey } from '../core/keys';
import { freshnessOf, PLAIN_READ, readThrough, type ReadOutcome, type ReadThroughOptions } from '../core/read-through';
import type { Compute, ReadPlan } from '../core/read-plan';
import { NearCache } from './near-cache';
import type { NearLimits } from '../core/memory-limits';
import { ClusterTracker } from './cluster-tracking';
import { Tracker, type TrackerOptions } from './tracking';

export interface TieredOutcome<T> extends ReadOutcome<T> {
  /** Which tier answered a hit. */
  readonly tier?: 'near' | 'redis';
}

const NO_OWNERS: readonly object[] = Object.freeze([]);

function sameOwners(a: readonly object[], b: readonly object[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

export class NearTier {
  /** One node's tracking, or one per master on a cluster (cluster-tracking.ts). */
  readonly tracker: Tracker | ClusterTracker;
  private readonly caches = new Map<Profile, NearCache>();

  constructor(main: RedisClient, options: TrackerOptions) {
    this.tracker = isCluster(main) ? new ClusterTracker(main, options) : new Tracker(main as Redis, options);
  }

  /** The near cache of a profile (created on first use). */
  cacheOf(profile: Profile, limits: NearLimits): NearCache {
    let cache = this.caches.get(profile);
    if (!cache) {
      cache = new NearCache(limits);
      this.caches.set(profile, cache);
      this.tracker.register(cache);
    }
    return cache;
  }

  /** Entries held, over every profile. */
  get entries(): number {
    let n = 0;
    for (const c of this.caches.values()) n += c.size;
    return n;
  }

  /** Reads a plan from the near cache, else by one tracked read, else through Redis as usual (readThrough). */
  async readNearFirst<T>(store: CacheStore, cache: NearCache, plan: ReadPlan<T>, compute: Compute<T>, readOptions: ReadThroughOptions = PLAIN_READ): Promise<TieredOutcome<T>> {
    // While the breaker is open (Redis out or slow) the tracked connection is not relied on either;
    // while the Redis user lacks permissions (permissions.ts) every read skips the cache.
    if (!this.tracker.active || store.breaker.open || store.refusal) return readThrough(store, plan, compute, readOptions);
    const key = valueKey(store.nsFor(plan.prefix, plan.hash), plan.hash);
    const now = Date.now();
    const entry = cache.get(key, now);
    if (entry) {
      // Entries expire at their fresh time (below), so the near cache only ever serves fresh values.
      const { codec } = plan;
      const copy = codec.copy;
      const owners = codec.owners ?? NO_OWNERS;
      const near = (value: T, payload: Buffer, freshUntil: number): TieredOutcome<T> =>
        ({ value, hit: true, stored: false, bytes: payload, at: entry.admitted, freshUntil, tier: 'near' });
      const kept = entry.kept;
      if (copy && kept && kept.freshUntil > now && sameOwners(kept.owners, owners)) return near(copy(kept.value as T), kept.payload, kept.freshUntil);
      const held = freshnessOf(plan, entry.bytes);
      const decoded = held.freshUntil > now ? codec.decode(held.payload) : undefined;
      if (decoded) {
        if (!copy) return near(decoded.value, held.payload, held.freshUntil);
        cache.keep(entry, { owners, value: decoded.value, payload: held.payload, freshUntil: held.freshUntil });
        return near(copy(decoded.value), held.payload, held.freshUntil);
      }
    }
    const started = performance.now();
    const read = await this.tracker.trackedGet(key);
    // Timed like the store's reads: a slow Redis is bypassed whichever connection meets it (slow.ts).
    if (read.kind !== 'failed') store.slow?.cacheRead(performance.now() - started);
    if (read.kind === 'value') {
      const found = freshnessOf(plan, read.bytes);
      // Past its fresh time (stale-while-revalidate): the normal path decides who refreshes it.
      if (found.freshUntil <= read.at) return readThrough(store, plan, compute, { ...readOptions, ...(store.insideout ? {} : { found: read.bytes }) });
      const decoded = plan.codec.decode(found.payload);
      if (decoded) {
        if (read.admissible) cache.set(key, read.bytes, read.deps, read.at, Math.min(read.ttlMs, found.freshUntil - read.at));
        return { value: decoded.value, hit: true, stored: false, bytes: found.payload, at: read.at, freshUntil: found.freshUntil, tier: 'redis' };
      }
    }
    // Nothing valid in Redis (or the tracked read failed): the normal path; its GET is skipped
    // when the tracked read just found nothing (insideout mode has no separate GET).
    return readThrough(store, plan, compute, { ...readOptions, skipGet: read.kind === 'none' });
  }

  async close(): Promise<void> {
    await this.tracker.close();
    for (const c of this.caches.values()) c.clear();
  }
}
