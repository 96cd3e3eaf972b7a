/**
 * The configuration's types: what `installCacheops` accepts (CacheopsConfig and its parts)
 * and what normalizeConfig (config.ts) makes of it. config.ts re-exports them.
 */
import type { RedisOptions } from 'ioredis';
import type { SlowRedisOptions } from './slow';
import type { ChangeStreamOptions, NormalizedStreamOptions } from './stream-options';
import type { MemoryLimits, MemoryOptions, NearLimits } from './memory-limits';

/** The kinds of read a profile may cache automatically. */
export type CacheOp = 'get' | 'fetch' | 'count' | 'aggregate' | 'exists';
export const ALL_OPS: readonly CacheOp[] = ['get', 'fetch', 'count', 'aggregate', 'exists'];

export type OpsSpec = CacheOp | 'all' | 'just_enable' | readonly (CacheOp | 'all' | 'just_enable')[];

/** What a profile may say. Every key is optional; `defaults` fills the gaps. */
export interface ProfileOptions {
  /** Which reads are cached automatically (default: none, manual only). */
  readonly ops?: OpsSpec;
  /** Seconds a cached read lives (default 3600). */
  readonly timeout?: number;
  /** Dog-pile lock: concurrent misses on one key run the query once. */
  readonly lock?: boolean;
  /** Keep `get` results in process memory too (never invalidated, as in django-cacheops). */
  readonly localGet?: boolean;
  /** Write an instance to the get-cache when it is saved. */
  readonly cacheOnSave?: boolean | string;
  /** The same query on two databases shares a key (default true). */
  readonly dbAgnostic?: boolean;
  /**
   * Coherent process-memory cache in front of Redis, kept true by Redis client
   * tracking (default off). `true`: 10,000 entries, 32 MiB per profile.
   */
  readonly near?: boolean | { readonly maxEntries?: number; readonly maxBytes?: number };
  /**
   * Stale-while-revalidate (default 0: off): for this many seconds after a
   * value's timeout it may still be served while one caller refreshes it. The
   * first reader to find it expired recomputes and stores it in its own call;
   * readers meanwhile get the expired value instead of querying the database.
   * Never after an invalidation: an invalidated value is gone as without it.
   * The near cache serves only fresh values.
   */
  readonly staleWhileRevalidate?: number;
}

/** A profile: options, the seed's `[ops, timeout]` shorthand, or `null` (caching forbidden). */
export type ProfileSpec = ProfileOptions | readonly [OpsSpec, number?] | null;

/** What a `prefix` function is told about the query or write. */
export interface QueryInfo {
  /** Tables read or written. */
  readonly tables: readonly string[];
  /** The database name from the Sequelize configuration. */
  readonly db: string;
  readonly dialect: string;
}

export interface SentinelConfig {
  readonly sentinels: readonly { host: string; port: number }[];
  readonly name: string;
  readonly [option: string]: unknown;
}

/**
 * An application's ioredis client, `Redis` or `Cluster`, of ioredis 5 or 6 and
 * either protocol: described by what cacheops uses of it, so that the
 * application's own copy of ioredis is accepted whichever major it is (the
 * classes of two copies are different types to TypeScript).
 */
export interface RedisClientLike {
  readonly isCluster: boolean;
  readonly status: string;
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void;
  duplicate(...args: never[]): unknown;
}

export type RedisConfig = string | RedisOptions | RedisClientLike | SentinelConfig;

/**
 * The configuration of `installCacheops`.
 *
 * @example
 * installCacheops(sequelize, {
 *   redis: 'redis://127.0.0.1:6379/1',
 *   defaults: { timeout: 3600 },
 *   profiles: { User: { ops: 'get', timeout: 900 }, Post: ['all', 600], '*': {} },
 * });
 */
export interface CacheopsConfig {
  /**
   * A URL, ioredis options, `{ sentinels, name }`, or the application's ioredis
   * `Redis` or `Cluster` (left open by close()). A `Cluster` whose `scaleReads`
   * sends reads to replicas, or a Sentinel client on a replica (`role: 'slave'`),
   * is used through a copy of it on the masters: a replica may not have the
   * latest invalidation yet.
   */
  readonly redis?: RedisConfig;
  readonly defaults?: ProfileOptions;
  readonly profiles?: Readonly<Record<string, ProfileSpec>>;
  /** A string put before every key, or a function of the query (tenant per database...). */
  readonly prefix?: string | ((query: QueryInfo) => string);
  /**
   * Redis errors are logged and the database answers (default true). false is
   * the strict mode: cache reads throw CacheopsRedisError while Redis is out.
   */
  readonly degradeOnFailure?: boolean;
  /** false: every cacheops call is a no-op. */
  readonly enabled?: boolean;
  /** Memory-limit mode: values carry stamps of their invalidators (see README). */
  readonly insideout?: boolean;
  /** A profile for a model that does not exist is an error (checked at install). */
  readonly strict?: boolean;
  /** IN lists longer than this make a condition non-granular (default 200). */
  readonly maxInListLength?: number;
  /** Mass writes touching more rows than this invalidate the whole model (default 1000). */
  readonly maxRowsForGranularWrite?: number;
  /** Milliseconds a Redis command may take before it counts as failed (default 1000). */
  readonly redisTimeout?: number;
  /**
   * A Redis slower than this is bypassed like an outage until it is fast again
   * (see docs/pressure.md). Default `{ thresholdMs: redisTimeout / 2, dbFactor: 2,
   * floorMs: 20, windowMs: 1000 }`; `false`: off.
   */
  readonly slowRedis?: false | Partial<SlowRedisOptions>;
  /** Where `degradeOnFailure` logs; default `console.warn`. */
  readonly logger?: (message: string, error?: unknown) => void;
  /** Cluster only: how many hash-tag shards the cache data is spread over (default 16). */
  readonly clusterShards?: number;
  /**
   * Refuse to store a value read before a concurrent invalidation (default true).
   * Only for demonstrating the race in tests: never turn it off in an application.
   */
  readonly raceProtection?: boolean;
  /**
   * The fraction (0..1) of hits, near or Redis, re-run against the database
   * after answering; a difference emits `stale` (default 0).
   */
  readonly verifySampleRate?: number;
  /**
   * Invalidate by the database's own change stream too, so writes by any program
   * are seen (default off; see docs/change-stream.md).
   */
  readonly changeStream?: boolean | ChangeStreamOptions;
  /**
   * How a write through Sequelize invalidates (see docs/stream-writes.md):
   * `'sync'` (default) learns its rows' states itself and invalidates them;
   * `'stream'` sends the statement plain Sequelize sends (PostgreSQL: its
   * transaction id added to a RETURNING; MariaDB: unchanged, the GTID read from
   * its OK packet) and resolves once the change stream invalidated its
   * transaction (needs `changeStream`; SQLite and MySQL keep `'sync'`, said once
   * in the log).
   */
  readonly writes?: WriteMode;
  /** Bounds of the process-memory structures that grow with the key space (docs/memory.md). */
  readonly memory?: MemoryOptions;
}

/** A profile after defaults and validation. */
export interface Profile {
  readonly ops: ReadonlySet<CacheOp>;
  readonly timeout: number;
  readonly lock: boolean;
  readonly localGet: boolean;
  readonly cacheOnSave: boolean | string;
  readonly dbAgnostic: boolean;
  /** The near cache's bounds; undefined: no near cache. */
  readonly near: NearLimits | undefined;
  /** Seconds a value may be served stale past its timeout while one caller refreshes it (0: off). */
  readonly staleWhileRevalidate: number;
}

export interface NormalizedConfig {
  readonly redis: RedisConfig;
  readonly prefix: string | ((query: QueryInfo) => string);
  readonly degradeOnFailure: boolean;
  readonly enabled: boolean;
  readonly insideout: boolean;
  readonly strict: boolean;
  readonly maxInListLength: number;
  readonly maxRowsForGranularWrite: number;
  readonly redisTimeout: number;
  /** Slow-Redis detection; undefined: off. */
  readonly slowRedis: SlowRedisOptions | undefined;
  readonly logger: (message: string, error?: unknown) => void;
  readonly clusterShards: number;
  readonly raceProtection: boolean;
  readonly verifySampleRate: number;
  /** The change stream's options; undefined when it is off. */
  readonly changeStream: NormalizedStreamOptions | undefined;
  /** `'stream'` only with a change stream (checked). */
  readonly writes: WriteMode;
  readonly memory: MemoryLimits;
  /** `defaults.timeout`, or 3600: for caches with no profile of their own (simple, cached, fragments). */
  readonly defaultTimeout: number;
  /** Exact model names first. */
  readonly exactProfiles: ReadonlyMap<string, Profile | null>;
  /** Then glob patterns, in the order given. */
  readonly globProfiles: readonly { readonly pattern: RegExp; readonly source: string; readonly profile: Profile | null }[];
  /** Then `'*'`. */
  readonly starProfile: Profile | null | undefined;
}

/** The write modes (`writes`). */
export type WriteMode = 'sync' | 'stream';
