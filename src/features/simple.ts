/**
 * `cacheops.cache`: plain key/value caching by time, with the same
 * serializer as everything else.
 */
import type { CacheopsCore } from '../core/cacheops-core';
import { checkTimeout } from '../core/config';
import { CacheMiss, CacheopsError } from '../core/errors';
import { decodeValue, encodeValue } from '../core/serialize';

export class SimpleCache {
  constructor(private readonly core: CacheopsCore) {}

  private prefix(): string {
    return this.core.prefixFor([]);
  }

  private checkKey(key: unknown): string {
    if (typeof key !== 'string' || key === '') throw new CacheopsError('cache key must be a non-empty string');
    return key;
  }

  /** The value stored under key; throws CacheMiss when there is none (or it expired). */
  async get<T = unknown>(key: string): Promise<T> {
    this.checkKey(key);
    if (!this.core.config.enabled) throw new CacheMiss(key);
    const bytes = await this.core.store.getSimple(this.prefix(), key);
    if (!bytes) throw new CacheMiss(key);
    const decoded = decodeValue(bytes, this.core.sequelize);
    if (!decoded) throw new CacheMiss(key);
    return decoded.value as T;
  }

  /** Stores value for `timeout` seconds (default: the defaults' timeout). Unserializable values throw; nothing is stored. */
  async set(key: string, value: unknown, timeout?: number): Promise<void> {
    this.checkKey(key);
    const ttl = timeout === undefined ? this.core.config.defaultTimeout : checkTimeout(timeout, 'timeout');
    const bytes = encodeValue(value);
    if (!this.core.config.enabled) return;
    const stored = await this.core.store.setSimple(this.prefix(), key, bytes, ttl);
    if (!stored && this.core.store.full.isFull()) this.core.counters.fullStores += 1;
  }

  /** Deletes key; true when something was there. */
  async delete(key: string): Promise<boolean> {
    this.checkKey(key);
    if (!this.core.config.enabled) return false;
    return this.core.store.deleteSimple(this.prefix(), key);
  }
}
