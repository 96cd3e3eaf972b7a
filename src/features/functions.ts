/**
 * Function caching: `cachedAs(...samples, opts)(fn)` (invalidated like a
 * query on the samples) and `cached(opts)(fn)` (by time only).
 *
 * Function identity (see function-identity.ts) is the place the cached
 * function is declared, its name and source text, or `opts.key`: the same in
 * every process running the same code, different between two functions.
 * Closures made at one place that differ only by captured values share an
 * identity: give them `extra` (or `key`).
 */
import type { CacheopsCore } from '../core/cacheops-core';
import type { Dependency } from '../core/cache-store';
import { profileFor } from '../core/config';
import { CacheMiss, CacheopsConfigError } from '../core/errors';
import { callHash, checkFunction, checkFunctionOptions, declarationSite, functionIdentity } from './function-identity';
import { stableStringify } from '../query/key';
import { decodeValue, encodeValue } from '../core/serialize';
import { isSample, sampleDependencies, type Sample } from './function-samples';
import type { ValueCodec } from '../core/read-plan';

export type { Sample };
export { declarationSite };

export interface CachedOptions {
  /** Seconds (default: the smallest timeout of the samples' profiles, else 3600). */
  readonly timeout?: number;
  /** Part of the key: a value, or a function of the arguments. */
  readonly extra?: unknown;
  /** Dog-pile lock for concurrent misses. */
  readonly lock?: boolean;
  /** An explicit identity, instead of the declaration site. */
  readonly key?: string;
}

export interface CachedEntry<R> {
  /** The cached value; throws CacheMiss when there is none. */
  get(): Promise<R>;
  /** Stores a value for these arguments. */
  set(value: R): Promise<void>;
  /** Deletes it; true when something was there. */
  delete(): Promise<boolean>;
}

export type CachedFunction<A extends unknown[], R> = ((...args: A) => Promise<R>) & {
  /** Drops the entry of these arguments. */
  invalidate(...args: A): Promise<boolean>;
  key(...args: A): CachedEntry<R>;
};

const OPTION_KEYS = ['timeout', 'extra', 'lock', 'key'];

function isOptions(v: unknown): v is CachedOptions {
  return typeof v === 'object' && v !== null && !isSample(v) && Object.getPrototypeOf(v) === Object.prototype;
}

function checkOptions(o: CachedOptions, where: string): void {
  checkFunctionOptions(o, where, OPTION_KEYS);
}

interface FunctionCacheSpec {
  readonly deps: readonly Dependency[];
  readonly timeout: number;
  readonly lock: boolean;
  readonly extra: unknown;
  readonly identity: string;
}

/** The codec of function results: any serializable value, model instances rebuilt on this Sequelize. */
function valueCodec(core: CacheopsCore): ValueCodec<unknown> {
  return { encode: encodeValue, decode: (bytes) => decodeValue(bytes, core.sequelize) };
}

function makeCached<A extends unknown[], R>(core: CacheopsCore, spec: FunctionCacheSpec, fn: (...args: A) => Promise<R> | R): CachedFunction<A, R> {
  checkFunction(fn);
  const identity = functionIdentity(spec.identity, fn);
  const hashOf = (args: A): string => callHash(identity, spec.extra, args);
  const tables = spec.deps.map((d) => d.table);
  const prefix = (): string => core.prefixFor(tables);
  const name = fn.name || 'anonymous';
  const codec = valueCodec(core);

  const wrapped = (async (...args: A): Promise<R> => {
    const admission = core.gate.admit();
    if (!admission) return fn(...args);
    return core.readCached<R>({
      prefix: prefix(),
      hash: hashOf(args),
      deps: spec.deps,
      timeout: spec.timeout,
      staleWhileRevalidate: 0,
      lock: spec.lock,
      admission,
      codec: codec as ValueCodec<R>,
      near: undefined,
      localGet: false,
      sample: false,
      op: 'function',
      fn: name,
    }, async () => fn(...args));
  }) as CachedFunction<A, R>;

  wrapped.invalidate = async (...args: A) => core.store.deleteValue(prefix(), hashOf(args));
  wrapped.key = (...args: A): CachedEntry<R> => {
    const hash = hashOf(args);
    return {
      async get() {
        // What the gate refuses to read (an invalidation may not have reached Redis) is no entry.
        if (!core.gate.admit()) throw new CacheMiss(`${name}(${stableStringify(args)})`);
        const res = await core.store.fetch(prefix(), hash, [], 0);
        if (res.kind === 'hit') {
          const decoded = decodeValue(res.bytes, core.sequelize);
          if (decoded) return decoded.value as R;
        }
        throw new CacheMiss(`${name}(${stableStringify(args)})`);
      },
      async set(value: R) {
        const bytes = encodeValue(value);
        // An explicit set is the caller's word: stored without an epoch check.
        await core.store.store(prefix(), hash, bytes, spec.timeout, spec.deps, { fields: [], values: [], lockToken: '' });
      },
      async delete() {
        return core.store.deleteValue(prefix(), hash);
      },
    };
  };
  return wrapped;
}

/** `cachedAs(...samples, opts)`: see Cacheops#cachedAs. */
export function cachedAsFactory(core: CacheopsCore, samplesAndOptions: readonly unknown[]): <A extends unknown[], R>(fn: (...args: A) => Promise<R> | R) => CachedFunction<A, R> {
  const last = samplesAndOptions[samplesAndOptions.length - 1];
  const options: CachedOptions = isOptions(last) ? last : {};
  const samples = isOptions(last) ? samplesAndOptions.slice(0, -1) : samplesAndOptions;
  checkOptions(options, 'cachedAs');
  if (samples.length === 0) throw new CacheopsConfigError('cachedAs', 'give at least one sample (a model, scoped model, instance or { model, where })');
  const { deps, models } = sampleDependencies(core, samples, 'cachedAs');
  const timeouts = models.map((m) => profileFor(core.config, m.name)?.timeout).filter((t): t is number => t !== undefined);
  const spec: FunctionCacheSpec = {
    deps,
    timeout: options.timeout ?? (timeouts.length ? Math.min(...timeouts) : core.config.defaultTimeout),
    lock: options.lock ?? false,
    extra: options.extra,
    identity: options.key ?? declarationSite(),
  };
  return (fn) => makeCached(core, spec, fn);
}

/** `cached(opts)`: see Cacheops#cached. */
export function cachedFactory(core: CacheopsCore, options: CachedOptions): <A extends unknown[], R>(fn: (...args: A) => Promise<R> | R) => CachedFunction<A, R> {
  checkOptions(options, 'cached');
  const spec: FunctionCacheSpec = {
    deps: [],
    timeout: options.timeout ?? core.config.defaultTimeout,
    lock: options.lock ?? false,
    extra: options.extra,
    identity: options.key ?? declarationSite(),
  };
  return (fn) => makeCached(core, spec, fn);
}
