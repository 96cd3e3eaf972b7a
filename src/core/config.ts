/**
 * normalizeConfig: checks what `installCacheops` is given (a typed error naming the key for
 * anything wrong) and fills the defaults; profileFor finds a model's profile. The types are in
 * config-types.ts.
 */
import { CacheopsConfigError } from './errors';
import { closest, unknownName } from './suggest';
import { describeError } from './breaker';
import type { SlowRedisOptions } from './slow';
import { normalizeStreamOptions, type NormalizedStreamOptions } from './stream-options';
import { DEFAULT_MEMORY_LIMITS, DEFAULT_NEAR_LIMITS, MEMORY_KEYS, type MemoryLimits, type NearLimits } from './memory-limits';
import { ALL_OPS, type CacheOp, type OpsSpec, type CacheopsConfig, type NormalizedConfig, type Profile, type ProfileOptions, type QueryInfo, type WriteMode } from './config-types';

export * from './config-types';

const OP_WORDS: readonly string[] = [...ALL_OPS, 'all', 'just_enable'];

const TOP_KEYS = new Set([
  'redis', 'defaults', 'profiles', 'prefix', 'degradeOnFailure', 'enabled', 'insideout', 'strict',
  'maxInListLength', 'maxRowsForGranularWrite', 'redisTimeout', 'logger', 'clusterShards', 'raceProtection',
  'verifySampleRate', 'slowRedis', 'changeStream', 'writes', 'memory',
]);

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
