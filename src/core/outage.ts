/**
 * What a Redis outage does to invalidation, and how the cache recovers from
 * it without ever serving a stale value.
 *
 * A write's invalidation that does not reach Redis cannot be undone: its
 * transaction has committed. So its tables are marked dirty, every read
 * bypasses the cache while any table is dirty, and a model-wide invalidation
 * of the dirty tables is retried (every 500 ms, and as soon as Redis answers
 * again) until it succeeds.
 *
 * An invalidation Redis acknowledged can still be lost by the outage that
 * follows it: a replica promoted by Sentinel may not have received it, a
 * restart may reload an older snapshot. So the time each table was last
 * invalidated is kept, and when Redis is back the tables invalidated within
 * LOST_WINDOW_MS before the outage began are marked dirty too.
 */
import type { EventEmitter } from 'node:events';
import type { CacheStore } from './cache-store';
import type { NearTier } from '../near/near-tier';
import { CacheopsInvalidationError } from './errors';

/** Invalidations acknowledged this long before an outage are redone after it (replication lag, snapshot age). */
const LOST_WINDOW_MS = 5_000;
/** How long after a failed invalidation (or a failed retry) the dirty tables are retried. */
const RETRY_MS = 500;

/** What the recovery needs of its installation (CacheopsCore). */
export interface OutageHost {
  readonly store: CacheStore;
  readonly near: NearTier | undefined;
  readonly events: EventEmitter;
  readonly closed: boolean;
}

/** The dirty tables and lost-invalidation window of one installation. */
export class OutageRecovery {
  /** Per prefix, tables whose invalidation failed or may have been lost: the cache is bypassed until it is redone. */
  readonly dirtyTables = new Map<string, Set<string>>();
  /**
   * Per prefix, when each table was last invalidated (acknowledged by Redis);
   * only the last LOST_WINDOW_MS matter, so older entries are pruned (it would
   * otherwise grow with every prefix a prefix function ever returned).
   */
  private readonly lastInvalidated = new Map<string, Map<string, number>>();
  private prunedAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly host: OutageHost) {}

  /** Whether any table is dirty: every read then bypasses the cache. */
  get bypassing(): boolean {
    for (const dirty of this.dirtyTables.values()) if (dirty.size > 0) return true;
    return false;
  }

  /** Redis acknowledged an invalidation of these tables. */
  noteInvalidated(prefix: string, items: readonly { table: string }[]): void {
    let tables = this.lastInvalidated.get(prefix);
    if (!tables) this.lastInvalidated.set(prefix, (tables = new Map()));
    const now = Date.now();
    for (const it of items) tables.set(it.table, now);
    if (now - this.prunedAt >= LOST_WINDOW_MS) this.prune(now);
  }

  /**
   * Drops the invalidation times no outage can reach back to any more: with
   * Redis up, the next outage begins after now, so it looks back no further
   * than now - LOST_WINDOW_MS. While it is out, resumed() prunes instead.
   */
  private prune(now: number): void {
    if (this.host.store.breaker.open) return;
    this.prunedAt = now;
    const since = now - LOST_WINDOW_MS;
    for (const [prefix, tables] of this.lastInvalidated) {
      for (const [table, at] of tables) if (at < since) tables.delete(table);
      if (tables.size === 0) this.lastInvalidated.delete(prefix);
    }
  }

  /**
   * An invalidation that did not reach Redis: its tables are bypassed by every
   * read until a model-wide invalidation of them succeeds (flush), and
   * `error` is emitted when asked and someone listens. The log line is the breaker's.
   */
  invalidationFailed(prefix: string, tables: readonly string[], cause: unknown, emit: boolean): void {
    this.markDirty(prefix, tables);
    this.scheduleRetry();
    const { events, store } = this.host;
    if (emit && events.listenerCount('error') > 0) {
      const why = cause instanceof Error ? cause.message : `Redis unavailable (${store.breaker.cause})`;
      events.emit('error', new CacheopsInvalidationError(tables, why, cause));
    }
  }

  /** Redis answers again (the breaker closed): retry what failed, and what the outage may have lost. */
  resumed(): void {
    const since = this.host.store.breaker.openedAt - LOST_WINDOW_MS;
    for (const [prefix, tables] of this.lastInvalidated) {
      for (const [table, at] of tables) if (at < since) tables.delete(table);
      if (tables.size > 0) this.markDirty(prefix, tables.keys());
      else this.lastInvalidated.delete(prefix);
    }
    void this.flush();
  }

  /** Retries the dirty tables' invalidations model-wide; the cache is used again once none is left. */
  async flush(): Promise<void> {
    for (const [prefix, tables] of this.dirtyTables) {
      if (tables.size === 0) continue;
      // Tables marked while this retry runs stay marked: only those it covered are cleared.
      const covered = [...tables];
      const deleted = await this.host.store.invalidate(prefix, covered.map((table) => ({ table, rows: 'all' as const }))).catch(() => -1);
      await this.host.near?.tracker.barrier();
      if (deleted >= 0) {
        for (const table of covered) tables.delete(table);
        if (tables.size === 0) this.dirtyTables.delete(prefix);
      } else this.scheduleRetry();
    }
  }

  /** Stops the retry timer (close()). */
  stop(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private markDirty(prefix: string, tables: Iterable<string>): void {
    let dirty = this.dirtyTables.get(prefix);
    if (!dirty) this.dirtyTables.set(prefix, (dirty = new Set()));
    for (const table of tables) dirty.add(table);
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.host.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flush();
    }, RETRY_MS);
    this.retryTimer.unref();
  }
}
