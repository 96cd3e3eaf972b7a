/**
 * The near cache's memory: cached value bytes by Redis value key, bounded by
 * entry count and bytes (least recently used go first), each entry listing
 * the Redis keys whose change makes it invalid (the value key; in insideout
 * mode also its stamp keys). Entries are only put here by the tracker's reads
 * (tracking.ts), which guarantee Redis will report a change of those keys.
 *
 * The bytes are kept, and beside them, once a hit decoded them, the decoded
 * value (for reads whose codec can copy it, see ValueCodec.copy): hits then
 * hand out copies of it, never the kept value itself, so a caller mutating
 * what it got can never change what the next caller gets.
 *
 * Recency, the bounds and expiry are core/lru.ts's LruMap; its removal
 * callback keeps the dependency index in step with whatever leaves.
 */
import { LruMap } from '../core/lru';
import type { NearLimits } from '../core/memory-limits';

/** Bookkeeping bytes counted per entry on top of the value and key lengths. */
const ENTRY_OVERHEAD = 96;

export interface NearEntry {
  readonly key: string;
  readonly bytes: Buffer;
  /** Redis keys besides `key` whose change invalidates this entry. */
  readonly deps: readonly string[];
  /** Date.now() when it was read from Redis. */
  readonly admitted: number;
  /** Date.now() after which it is not served (the Redis key's time to live when read). */
  readonly expires: number;
  size: number;
  /** The decoded value and whose it is (see keep). */
  kept?: KeptValue;
}

/** A decoded value kept beside its bytes: hits of reads whose codec has the same owners copy it. */
export interface KeptValue {
  readonly owners: readonly object[];
  readonly value: unknown;
  /** The value's bytes without their freshness header, and its fresh-until time (stale-while-revalidate). */
  readonly payload: Buffer;
  readonly freshUntil: number;
}

/** What a kept decoded value is counted as, per byte of its encoding (built objects take more room than their bytes). */
const KEPT_BYTES_FACTOR = 3;

export class NearCache {
  private readonly entries: LruMap<string, NearEntry>;
  /** Dependency key -> entries listing it (only for entries with deps beyond their own key). */
  private readonly byDep = new Map<string, Set<string>>();

  constructor(readonly limits: NearLimits) {
    this.entries = new LruMap<string, NearEntry>(limits, (key, entry) => this.unindex(key, entry));
  }

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.entries.bytes;
  }

  /** Entries dropped to stay within the bounds. */
  get evictions(): number {
    return this.entries.evictions;
  }

  /** The entry when present and not expired; marks it most recently used. */
  get(key: string, now: number): NearEntry | undefined {
    return this.entries.get(key, now);
  }

  set(key: string, bytes: Buffer, deps: readonly string[], admitted: number, ttlMs: number): void {
    const size = bytes.length + key.length + deps.reduce((n, d) => n + d.length, 0) + ENTRY_OVERHEAD;
    if (size > this.limits.maxBytes || ttlMs <= 0) {
      this.entries.delete(key);
      return;
    }
    const entry: NearEntry = { key, bytes, deps, admitted, expires: admitted + ttlMs, size };
    this.entries.set(key, entry, { size, expires: entry.expires });
    // Indexed once held (the entry it replaced is unindexed by then); an entry expired on arrival is not held.
    if (deps.length === 0 || this.entries.peek(key, -Infinity) !== entry) return;
    for (const dep of deps) {
      let set = this.byDep.get(dep);
      if (!set) this.byDep.set(dep, (set = new Set()));
      set.add(key);
    }
  }

  /** Keeps the decoded value of an entry still held, counting its room (an estimate) against the bytes bound. */
  keep(entry: NearEntry, kept: KeptValue): void {
    if (this.entries.peek(entry.key, -Infinity) !== entry) return;
    const size = entry.size + (entry.kept ? 0 : entry.bytes.length * KEPT_BYTES_FACTOR);
    if (size > this.limits.maxBytes) return;
    entry.kept = kept;
    entry.size = size;
    this.entries.resize(entry.key, size);
  }

  /** Drops whatever depends on this Redis key (an invalidation message named it). */
  drop(redisKey: string): void {
    this.entries.delete(redisKey);
    const dependents = this.byDep.get(redisKey);
    if (dependents) {
      for (const key of [...dependents]) this.entries.delete(key);
    }
  }

  clear(): void {
    this.entries.clear();
    this.byDep.clear();
  }

  private unindex(key: string, entry: NearEntry): void {
    for (const dep of entry.deps) {
      const set = this.byDep.get(dep);
      if (!set) continue;
      set.delete(key);
      if (set.size === 0) this.byDep.delete(dep);
    }
  }
}
