/**
 * A map bounded in entries (and, when sizes are given, in bytes) that lets
 * the least recently used entry go first. Every process-memory structure of
 * the library that grows with the key space is one of these, so none can
 * grow without bound (see docs/memory.md for each bound and its default).
 *
 * An entry may carry an expiry: it is dropped when met past it; on every
 * insert the expired entries at the least recently used end are dropped, and
 * at most once a second (on an insert) all expired entries are, so expired
 * entries do not wait for the count bound to push them out.
 *
 * A removal callback (the constructor's second argument) hears of every entry
 * that leaves other than by clear(), with the reason, so a structure built
 * beside the map (the near cache's dependency index) leaves with it. An
 * entry's size may change in place (resize): the near cache counts a decoded
 * value it keeps beside an entry's bytes.
 */

/** How often an insert may sweep every expired entry (ms). */
const SWEEP_MS = 1000;

export interface LruLimits {
  readonly maxEntries: number;
  /** The sum of the entries' sizes may not exceed this (default: no byte bound). */
  readonly maxBytes?: number;
}

/** Why an entry left: pushed out by a bound, met past its expiry, delete(), or set() again under its key. */
export type LruRemoval = 'evicted' | 'expired' | 'deleted' | 'replaced';

/** Hears of each entry that leaves the map (not of clear()); it must not change the map. */
export type LruOnRemove<K, V> = (key: K, value: V, reason: LruRemoval) => void;

interface Slot<V> {
  readonly value: V;
  size: number;
  /** Date.now() past which the entry is not returned (Infinity: never). */
  readonly expires: number;
}

export class LruMap<K, V> {
  /** Insertion order is recency order: the first entry is the least recently used. */
  private readonly slots = new Map<K, Slot<V>>();
  private used = 0;
  /** Whether an entry with an expiry was ever put (else no sweep is needed). */
  private expiring = false;
  private nextSweep = 0;
  /** Entries dropped to stay within the bounds (expired ones not counted). */
  evictions = 0;

  constructor(readonly limits: LruLimits, private readonly onRemove?: LruOnRemove<K, V>) {}

  get size(): number {
    return this.slots.size;
  }

  /** The sum of the entries' sizes. */
  get bytes(): number {
    return this.used;
  }

  /** The value when present and not expired; marks it most recently used. */
  get(key: K, now?: number): V | undefined {
    const slot = this.slots.get(key);
    if (slot === undefined) return undefined;
    this.slots.delete(key);
    // The clock is read only for an entry that can expire (most never do).
    if (slot.expires !== Infinity && slot.expires <= (now ?? Date.now())) {
      this.used -= slot.size;
      this.onRemove?.(key, slot.value, 'expired');
      return undefined;
    }
    this.slots.set(key, slot);
    return slot.value;
  }

  /** The value when present and not expired, without marking it used. */
  peek(key: K, now = Date.now()): V | undefined {
    const slot = this.slots.get(key);
    return slot !== undefined && slot.expires > now ? slot.value : undefined;
  }

  /** Whether a live entry is there, without marking it used. */
  has(key: K, now = Date.now()): boolean {
    const slot = this.slots.get(key);
    return slot !== undefined && slot.expires > now;
  }

  /** Puts an entry (most recently used), then drops what the bounds and expiries say. */
  set(key: K, value: V, options: { readonly size?: number; readonly expires?: number } = {}): void {
    const size = options.size ?? 0;
    const expires = options.expires ?? Infinity;
    this.remove(key, 'replaced');
    const now = Date.now();
    if (expires <= now || (this.limits.maxBytes !== undefined && size > this.limits.maxBytes)) return;
    this.slots.set(key, { value, size, expires });
    this.used += size;
    if (expires !== Infinity) this.expiring = true;
    if (this.expiring) this.dropExpired(now);
    this.evictPastLimits();
  }

  /**
   * Sets an entry's size in place, keeping its recency, then drops what the
   * bounds say (which may be the entry itself when it is the least recently
   * used). False, and nothing changed, when the entry is not there or the size
   * alone is past the byte bound.
   */
  resize(key: K, size: number): boolean {
    const slot = this.slots.get(key);
    if (slot === undefined || (this.limits.maxBytes !== undefined && size > this.limits.maxBytes)) return false;
    this.used += size - slot.size;
    slot.size = size;
    this.evictPastLimits();
    return true;
  }

  delete(key: K): boolean {
    return this.remove(key, 'deleted');
  }

  /** Drops every entry, without calling the removal callback. */
  clear(): void {
    this.slots.clear();
    this.used = 0;
  }

  keys(): IterableIterator<K> {
    return this.slots.keys();
  }

  /**
   * Expired entries at the least recently used end (each is dropped once:
   * amortized O(1) per insert), and every expired entry once a second.
   */
  private dropExpired(now: number): void {
    const all = now >= this.nextSweep;
    if (all) this.nextSweep = now + SWEEP_MS;
    for (const [key, slot] of this.slots) {
      if (slot.expires > now) {
        if (all) continue;
        return;
      }
      this.slots.delete(key);
      this.used -= slot.size;
      this.onRemove?.(key, slot.value, 'expired');
    }
  }

  private remove(key: K, reason: LruRemoval): boolean {
    const slot = this.slots.get(key);
    if (slot === undefined) return false;
    this.slots.delete(key);
    this.used -= slot.size;
    this.onRemove?.(key, slot.value, reason);
    return true;
  }

  private evictPastLimits(): void {
    const maxBytes = this.limits.maxBytes ?? Infinity;
    while (this.slots.size > this.limits.maxEntries || this.used > maxBytes) {
      const oldest = this.slots.keys().next();
      if (oldest.done) return;
      this.remove(oldest.value, 'evicted');
      this.evictions += 1;
    }
  }
}
