/**
 * What one cached read is, as data: the read plan a caller (a query, a cached
 * function, a view, a template fragment) hands the read engine
 * (`CacheopsCore.readCached`, read-through.ts), with the codec of its values
 * and the computation that answers a miss.
 *
 * The plan holds no callbacks into its caller beyond the codec and, for
 * queries, the dependency source, both objects the caller keeps from one read
 * to the next: a query's hit allocates the plan and its compute closure only.
 * Whether a computed value is stored is what the computation returns (a
 * `NotStored` value is answered but not stored), never an exception.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { Dependency } from './cache-store';
import type { CacheOp, Profile } from './config';
import type { ReadAdmission } from './read-gate';

/** How the values of a read become bytes and back. */
export interface ValueCodec<T> {
  encode(value: T): Buffer;
  /** undefined: the bytes are of another format (treated as a miss). */
  decode(bytes: Buffer): { readonly value: T } | undefined;
  /**
   * Present when the near cache may keep a decoded value and answer with copies
   * of it: a value equal to the one given, sharing nothing mutable with it.
   */
  readonly copy?: (value: T) => T;
  /**
   * Whose values these are (compared by identity: the model class and build
   * options a query result is built with); a kept value is copied only for a
   * codec with the same owners.
   */
  readonly owners?: readonly object[];
}

/** The dependencies of a read worked out only on a miss (a hit needs none). */
export interface MissDependencies<T> {
  /** undefined: the value must not be stored. */
  dependencies(): readonly Dependency[] | undefined;
  /** The dependencies narrowed by the computed value (join keys); the same tables. */
  refine?(value: T): readonly Dependency[];
}

/** What a read says about itself in the `read` event. */
export type ReadOp = CacheOp | 'function' | 'fragment' | 'view';

export interface ReadPlan<T> {
  readonly prefix: string;
  readonly hash: string;
  /** What the value depends on, known now or worked out on a miss. */
  readonly deps: readonly Dependency[] | MissDependencies<T>;
  /** Seconds the value is fresh. */
  readonly timeout: number;
  /** Seconds past `timeout` during which it may be served stale while one caller refreshes it (0: off). */
  readonly staleWhileRevalidate: number;
  /** Dog-pile lock: concurrent misses wait for the one holding the lease. */
  readonly lock: boolean;
  /** The read gate's answer (read-gate.ts); `canStore` false: read from cache, never stored. */
  readonly admission: ReadAdmission;
  readonly codec: ValueCodec<T>;
  /** The profile whose near cache answers first (near/near-tier.ts); undefined: Redis only. */
  readonly near: Profile | undefined;
  /** The never-invalidated process-memory cache of gets (as in django-cacheops). */
  readonly localGet: boolean;
  /** The read is a database query the consistency sampler may re-run. */
  readonly sample: boolean;
  readonly op: ReadOp;
  readonly model?: ModelStatic<Model>;
  readonly fn?: string;
}

/** A computed value to answer with but not to store (a view's response that is not cacheable). */
export class NotStored<T> {
  constructor(readonly value: T) {}
}

/** What a miss's computation returns: the value (stored), or the value not to store. */
export type Computed<T> = T | NotStored<T>;

export type Compute<T> = () => Promise<Computed<T>>;
