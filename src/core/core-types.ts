/**
 * The installation's public data types: the `cacheops` option of finds and writes, the
 * events it emits, its statistics, and the read decision it hands the query layer.
 * cacheops-core.ts re-exports them.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { CacheOp, Profile } from './config';
import type { ReadAdmission } from './read-gate';
import type { ReadOp } from './read-plan';

/** The `cacheops` option of a find call. */
export type FindCacheopsOption = boolean | { readonly ops?: CacheOp | readonly CacheOp[] | 'all'; readonly timeout?: number; readonly lock?: boolean };

/**
 * The `cacheops` option of a write call. Checked when the write runs: an unknown
 * key or a non-boolean `invalidate` rejects it with CacheopsConfigError before
 * anything is written.
 */
export interface WriteCacheopsOption {
  /** false: this write invalidates nothing (invalidate yourself, e.g. with invalidateModel). */
  readonly invalidate?: boolean;
}

/**
 * The `cacheops` option as Sequelize's option types carry it (see augment.ts):
 * on reads `true` / `false` / `{ ops, timeout, lock }`, on writes `{ invalidate }`.
 */
export type CacheopsOption = boolean | {
  readonly ops?: CacheOp | readonly CacheOp[] | 'all';
  readonly timeout?: number;
  readonly lock?: boolean;
  readonly invalidate?: boolean;
};

export interface ReadEvent {
  readonly model?: ModelStatic<Model>;
  readonly fn?: string;
  readonly op: ReadOp;
  readonly hit: boolean;
  /** A miss whose value was stored (false for a hit, and for a miss that stored nothing). */
  readonly stored: boolean;
  /** The Redis key of the value: while it exists, the value is cached (EXISTS tells what an invalidation dropped). */
  readonly key: string;
}

/** One table's invalidation: by row states (attribute-keyed), or the whole table. */
export interface InvalidationItem {
  readonly model?: ModelStatic<Model>;
  readonly table: string;
  readonly rows: readonly Readonly<Record<string, unknown>>[] | 'all';
}

export interface InvalidatedEvent {
  readonly model: ModelStatic<Model> | undefined;
  readonly table: string;
  /** The row values invalidated by, or 'all' for the whole model. */
  readonly values: readonly Readonly<Record<string, unknown>>[] | 'all';
}

export interface CacheopsStats {
  hits: number;
  misses: number;
  stores: number;
  /** Stores refused because an invalidation raced the read. */
  refusedStores: number;
  invalidations: number;
  /** Writes that invalidated a whole model (raw SQL, over the row threshold, invalidateModel). */
  modelInvalidations: number;
  /** Hits served from the near cache (process memory), without Redis; also counted in `hits`. */
  nearHits: number;
  /** Hits served past their timeout while another caller refreshed them (`staleWhileRevalidate`); also counted in `hits`. */
  staleHits: number;
  /** Hits the consistency sampler re-ran against the database (`verifySampleRate`). */
  checks: number;
  /** Of those, how many differed from the database (each emitted as `stale`). */
  stale: number;
  /** Values not stored because Redis was full (maxmemory reached): the reads were answered all the same. */
  fullStores: number;
}

/** What the read decision says for one query (the query layer turns it into a ReadPlan, read-plan.ts). */
export interface ReadDecision {
  readonly timeout: number;
  readonly lock: boolean;
  /** The read gate's answer (read-gate.ts). */
  readonly admission: ReadAdmission;
  readonly profile: Profile;
}
