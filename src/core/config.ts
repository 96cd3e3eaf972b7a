import type { RedisOptions } from 'ioredis';
import { CacheopsConfigError } from './errors';
import { closest, unknownName } from './suggest';
import { describeError } from './breaker';
import type { SlowRedisOptions } from './slow';
import { normalizeStreamOptions, type ChangeStreamOptions, type NormalizedStreamOptions } from './stream-options';
import { DEFAULT_MEMORY_LIMITS, DEFAULT_NEAR_LIMITS, MEMORY_KEYS, type MemoryLimits, type MemoryOptions, type NearLimits } from './memory-limits';

/** The kinds of read a profile may cache automatically. */
export type CacheOp = 'get' | 'fetch' | 'count' | 'aggregate' | 'exists';
export const ALL_OPS: readonly CacheOp[] = ['get', 'fetch', 'count', 'aggregate', 'exists'];
const OP_WORDS: readonly string[] = [...ALL_OPS, 'all', 'just_enable'];

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

const TOP_KEYS = new Set([
  'redis', 'defaults', 'profiles', 'prefix', 'degradeOnFailure', 'enabled', 'insideout', 'strict',
  'maxInListLength', 'maxRowsForGranularWrite', 'redisTimeout', 'logger', 'clusterShards', 'raceProtection',
  'verifySampleRate', 'slowRedis', 'changeStream', 'writes', 'memory',
]);

/** The write modes (`writes`). */
export type WriteMode = 'sync' | 'stream';

/** Checks `writes`: 'stream' needs the change stream it waits for. */
function writeMode(value: unknown, stream: NormalizedStreamOptions | undefined): WriteMode {
  if (value === undefined) return 'sync';
  if (value !== 'sync' && value !== 'stream') throw new CacheopsConfigError('writes', `expected 'sync' or 'stream', got ${describeValue(value)}`);
  if (value === 'stream' && !stream) {
    throw new CacheopsConfigError('writes', "'stream' resolves writes once the change stream invalidated them: it needs changeStream (true or its options)");
  }
  return value;
}
const PROFILE_KEYS = new Set(['ops', 'timeout', 'lock', 'localGet', 'cacheOnSave', 'dbAgnostic', 'near', 'staleWhileRevalidate']);

export const DEFAULT_TIMEOUT = 3600;

/** One line per message, the cause included, never a stack (a custom logger gets the error object). */
function defaultLogger(message: string, error?: unknown): void {
  const cause = error === undefined ? '' : describeError(error);
  console.warn(`[cacheops] ${message}${cause && !message.includes(cause) ? `: ${cause}` : ''}`);
}

/**
 * Any object but an array: looser than tree.ts's isPlainObject on purpose, so a
 * configuration built by a class or in another realm is read like a literal.
 */
function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A value as an error message shows it. Strings are quoted and called strings,
 * because `redisTimeout: '1000'` printed as `got 1000` reads as if 1000 were wrong.
 */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case 'string': return `${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value)} (a string)`;
    case 'bigint': return `${value}n (a bigint)`;
    case 'function': return 'a function';
    case 'symbol': return `${String(value)} (a symbol)`;
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `an array of ${value.length}`;
      const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor?.name;
      return name && name !== 'Object' ? `a ${name}` : 'an object';
    }
    default: return String(value); // number, boolean, undefined
  }
}

/** Parses an ops spec into a set, or throws naming `key`. */
export function parseOps(spec: unknown, key: string): Set<CacheOp> {
  const list: unknown[] = spec === undefined ? [] : Array.isArray(spec) ? spec : [spec];
  const ops = new Set<CacheOp>();
  for (const op of list) {
    if (typeof op !== 'string' || !OP_WORDS.includes(op)) {
      const shown = typeof op === 'string' ? JSON.stringify(op) : describeValue(op);
      throw new CacheopsConfigError(key, unknownName(`op ${shown}`, typeof op === 'string' ? op : '', OP_WORDS, 'expected one of'));
    }
    if (op === 'all') for (const o of ALL_OPS) ops.add(o);
    else if (op !== 'just_enable') ops.add(op as CacheOp);
  }
  return ops;
}

/** Validates a positive timeout in seconds. */
export function checkTimeout(value: unknown, key: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new CacheopsConfigError(key, `timeout must be a positive number of seconds, got ${describeValue(value)}`);
  }
  return value;
}

function checkBool(value: unknown, key: string): boolean {
  if (typeof value !== 'boolean') throw new CacheopsConfigError(key, `expected true or false, got ${describeValue(value)}`);
  return value;
}

function profileOptions(spec: unknown, key: string): ProfileOptions {
  if (Array.isArray(spec)) {
    if (spec.length < 1 || spec.length > 2) {
      throw new CacheopsConfigError(key, 'the shorthand is [ops, timeout]');
    }
    return spec.length === 2 ? { ops: spec[0] as OpsSpec, timeout: spec[1] as number } : { ops: spec[0] as OpsSpec };
  }
  if (!isRecord(spec)) throw new CacheopsConfigError(key, 'a profile is an object, [ops, timeout] or null');
  for (const k of Object.keys(spec)) {
    if (!PROFILE_KEYS.has(k)) throw new CacheopsConfigError(`${key}.${k}`, unknownName('profile option', k, [...PROFILE_KEYS]));
  }
  return spec as ProfileOptions;
}

function buildProfile(spec: ProfileOptions, defaults: ProfileOptions, key: string): Profile {
  const merged = { ...defaults, ...spec };
  const cacheOnSave = merged.cacheOnSave ?? false;
  if (typeof cacheOnSave !== 'boolean' && typeof cacheOnSave !== 'string') {
    throw new CacheopsConfigError(`${key}.cacheOnSave`, 'expected true, false or a field name');
  }
  return {
    ops: parseOps(merged.ops, `${key}.ops`),
    timeout: checkTimeout(merged.timeout ?? DEFAULT_TIMEOUT, `${key}.timeout`),
    lock: checkBool(merged.lock ?? false, `${key}.lock`),
    localGet: checkBool(merged.localGet ?? false, `${key}.localGet`),
    cacheOnSave,
    dbAgnostic: checkBool(merged.dbAgnostic ?? true, `${key}.dbAgnostic`),
    near: nearLimits(merged.near, `${key}.near`),
    staleWhileRevalidate: staleWindow(merged.staleWhileRevalidate, `${key}.staleWhileRevalidate`),
  };
}

/** Validates a stale-while-revalidate window: seconds, 0 (off) or more. */
function staleWindow(value: unknown, key: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new CacheopsConfigError(key, `expected a number of seconds (0 for off), got ${describeValue(value)}`);
  }
  return value;
}

function nearLimits(value: unknown, key: string): NearLimits | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return DEFAULT_NEAR_LIMITS;
  if (!isRecord(value)) throw new CacheopsConfigError(key, 'expected true, false or { maxEntries, maxBytes }');
  for (const k of Object.keys(value)) {
    if (k !== 'maxEntries' && k !== 'maxBytes') throw new CacheopsConfigError(`${key}.${k}`, unknownName('option', k, ['maxEntries', 'maxBytes']));
  }
  return {
    maxEntries: positiveInt(value['maxEntries'], DEFAULT_NEAR_LIMITS.maxEntries, `${key}.maxEntries`),
    maxBytes: positiveInt(value['maxBytes'], DEFAULT_NEAR_LIMITS.maxBytes, `${key}.maxBytes`),
  };
}

const SLOW_KEYS = ['thresholdMs', 'dbFactor', 'floorMs', 'windowMs'] as const;

/** Validates `slowRedis`: false, or thresholds in ms and a factor, each optional. */
function slowRedis(value: unknown, redisTimeout: number): SlowRedisOptions | undefined {
  if (value === false) return undefined;
  const spec = value === undefined || value === true ? {} : value;
  if (!isRecord(spec)) throw new CacheopsConfigError('slowRedis', `expected false or { ${SLOW_KEYS.join(', ')} }, got ${describeValue(value)}`);
  for (const k of Object.keys(spec)) {
    if (!(SLOW_KEYS as readonly string[]).includes(k)) throw new CacheopsConfigError(`slowRedis.${k}`, `unknown option (known: ${SLOW_KEYS.join(', ')})`);
  }
  const number = (k: (typeof SLOW_KEYS)[number], fallback: number, min: number): number => {
    const v = spec[k];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !(v >= min) || Number.isNaN(v)) {
      throw new CacheopsConfigError(`slowRedis.${k}`, `expected a number of at least ${min}, got ${describeValue(v)}`);
    }
    return v;
  };
  return {
    thresholdMs: number('thresholdMs', redisTimeout / 2, 1),
    dbFactor: number('dbFactor', 2, 0),
    floorMs: number('floorMs', 20, 0),
    windowMs: number('windowMs', 1000, 100),
  };
}

function memoryLimits(value: unknown): MemoryLimits {
  if (value === undefined) return DEFAULT_MEMORY_LIMITS;
  if (!isRecord(value)) throw new CacheopsConfigError('memory', 'expected { localGet?, fastPath?, prefixes? }');
  const limits: Record<string, Record<string, number>> = {};
  for (const [part, given] of Object.entries(value)) {
    const known = MEMORY_KEYS[part as keyof MemoryLimits] as readonly string[] | undefined;
    if (!known) throw new CacheopsConfigError(`memory.${part}`, `unknown option (known: ${Object.keys(MEMORY_KEYS).join(', ')})`);
    if (!isRecord(given)) throw new CacheopsConfigError(`memory.${part}`, `expected { ${known.join(', ')} }`);
    for (const k of Object.keys(given)) if (!known.includes(k)) throw new CacheopsConfigError(`memory.${part}.${k}`, `unknown option (known: ${known.join(', ')})`);
  }
  for (const [part, known] of Object.entries(MEMORY_KEYS)) {
    const given = (value[part] ?? {}) as Record<string, unknown>;
    const fallback = DEFAULT_MEMORY_LIMITS[part as keyof MemoryLimits] as unknown as Record<string, number>;
    limits[part] = Object.fromEntries(known.map((k) => [k, positiveInt(given[k], fallback[k]!, `memory.${part}.${k}`)]));
  }
  return limits as unknown as MemoryLimits;
}

function sampleRate(value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new CacheopsConfigError('verifySampleRate', `expected a number from 0 to 1, got ${String(value)}`);
  }
  return value;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function positiveInt(value: unknown, fallback: number, key: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new CacheopsConfigError(key, `expected a positive integer, got ${describeValue(value)}`);
  }
  return value;
}

/** A top-level key that is not one: the closest top-level key, else the profile option it resembles (`timeout`). */
function unknownTopKey(k: string): string {
  const top = [...TOP_KEYS];
  if (closest(k, top) === undefined) {
    const option = closest(k, PROFILE_KEYS);
    if (option !== undefined) {
      return `unknown option: ${JSON.stringify(option)} is a profile option, given in defaults or profiles.<Model> (known here: ${top.join(', ')})`;
    }
  }
  return unknownName('option', k, top);
}

/** Validates the whole configuration; throws `CacheopsConfigError` naming the first bad key. */
export function normalizeConfig(config: CacheopsConfig, modelNames: readonly string[]): NormalizedConfig {
  if (!isRecord(config)) throw new CacheopsConfigError('config', 'expected an object');
  for (const k of Object.keys(config)) {
    if (!TOP_KEYS.has(k)) throw new CacheopsConfigError(k, unknownTopKey(k));
  }
  const defaults = config.defaults === undefined ? {} : profileOptions(config.defaults, 'defaults');
  // Validate defaults on their own so an error names `defaults`, not a profile.
  buildProfile({}, defaults, 'defaults');

  const prefix = config.prefix ?? '';
  if (typeof prefix === 'string') {
    if (/[{}]/.test(prefix)) throw new CacheopsConfigError('prefix', 'must not contain { or } (they are Redis Cluster hash tags)');
  } else if (typeof prefix !== 'function') {
    throw new CacheopsConfigError('prefix', 'expected a string or a function of the query');
  }

  const exact = new Map<string, Profile | null>();
  const globs: { pattern: RegExp; source: string; profile: Profile | null }[] = [];
  let star: Profile | null | undefined;
  const profiles = config.profiles ?? {};
  if (!isRecord(profiles)) throw new CacheopsConfigError('profiles', 'expected an object keyed by model name');
  const strict = config.strict === undefined ? false : checkBool(config.strict, 'strict');
  for (const [name, spec] of Object.entries(profiles)) {
    const key = `profiles.${name}`;
    const profile = spec === null ? null : buildProfile(profileOptions(spec, key), defaults, key);
    if (name === '*') star = profile;
    else if (/[*?]/.test(name)) globs.push({ pattern: globToRegExp(name), source: name, profile });
    else {
      if (strict && !modelNames.includes(name)) {
        throw new CacheopsConfigError(key, `no model named ${name} is defined (strict: true)`);
      }
      exact.set(name, profile);
    }
  }

  const logger = config.logger ?? defaultLogger;
  if (typeof logger !== 'function') throw new CacheopsConfigError('logger', 'expected a function');
  const redisTimeout = positiveInt(config.redisTimeout, 1000, 'redisTimeout');
  const changeStream = normalizeStreamOptions(config.changeStream);
  return {
    redis: config.redis ?? process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379/0',
    prefix: prefix as string | ((query: QueryInfo) => string),
    degradeOnFailure: config.degradeOnFailure === undefined ? true : checkBool(config.degradeOnFailure, 'degradeOnFailure'),
    enabled: config.enabled === undefined ? true : checkBool(config.enabled, 'enabled'),
    insideout: config.insideout === undefined ? false : checkBool(config.insideout, 'insideout'),
    strict,
    maxInListLength: positiveInt(config.maxInListLength, 200, 'maxInListLength'),
    maxRowsForGranularWrite: positiveInt(config.maxRowsForGranularWrite, 1000, 'maxRowsForGranularWrite'),
    redisTimeout,
    slowRedis: slowRedis(config.slowRedis, redisTimeout),
    logger: logger as (message: string, error?: unknown) => void,
    clusterShards: positiveInt(config.clusterShards, 16, 'clusterShards'),
    raceProtection: config.raceProtection === undefined ? true : checkBool(config.raceProtection, 'raceProtection'),
    verifySampleRate: sampleRate(config.verifySampleRate),
    changeStream,
    writes: writeMode(config.writes, changeStream),
    memory: memoryLimits(config.memory),
    defaultTimeout: defaults.timeout === undefined ? DEFAULT_TIMEOUT : checkTimeout(defaults.timeout, 'defaults.timeout'),
    exactProfiles: exact,
    globProfiles: globs,
    starProfile: star,
  };
}

/**
 * The profile of a model: exact name, then globs, then `'*'`.
 * `undefined`: no profile (not cached, no hooks). `null`: caching forbidden.
 */
export function profileFor(config: NormalizedConfig, modelName: string): Profile | null | undefined {
  if (config.exactProfiles.has(modelName)) return config.exactProfiles.get(modelName);
  for (const g of config.globProfiles) if (g.pattern.test(modelName)) return g.profile;
  return config.starProfile;
}
