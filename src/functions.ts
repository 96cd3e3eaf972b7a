/**
 * Function caching: `cachedAs(...samples, opts)(fn)` (invalidated like a
 * query on the samples) and `cached(opts)(fn)` (by time only).
 *
 * Function identity is the place the cached function is declared (file, line
 * and column of the `cachedAs(...)` / `cached(...)` call), the function's name
 * and source text, and `opts.key` when given. All of that is the same in every
 * process running the same code, and differs between two functions. Closures
 * made at one place that differ only by captured values share an identity:
 * give them `extra` (or `key`).
 */
import { createHash } from 'node:crypto';
import type { CacheopsCore } from './cacheops';
import type { Dependency } from './cache-store';
import { DEFAULT_TIMEOUT, checkTimeout, profileFor } from './config';
import { CacheMiss, CacheopsConfigError } from './errors';
import { stableStringify } from './query/key';
import { decodeValue, encodeValue } from './serialize';
import { isSample, sampleDependencies, type Sample } from './samples';

export type { Sample };

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

const OPTION_KEYS = new Set(['timeout', 'extra', 'lock', 'key']);

/** The caller's position: the first stack frame outside this package's src. */
export function declarationSite(): string {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  const here = __dirname;
  for (const line of stack) {
    if (!line.includes(here) && !line.includes('node:internal')) {
      // Keep file:line:col, drop the absolute directory so two checkouts of one app agree.
      const m = /\(?([^()\s]+):(\d+):(\d+)\)?\s*$/.exec(line.trim());
      if (m) return `${m[1]!.split(/[\\/]/).slice(-3).join('/')}:${m[2]}:${m[3]}`;
    }
  }
  return '';
}

function isOptions(v: unknown): v is CachedOptions {
  return typeof v === 'object' && v !== null && !isSample(v) && Object.getPrototypeOf(v) === Object.prototype;
}

function checkOptions(o: CachedOptions, where: string): void {
  for (const k of Object.keys(o)) if (!OPTION_KEYS.has(k)) throw new CacheopsConfigError(`${where}.${k}`, `unknown option (known: ${[...OPTION_KEYS].join(', ')})`);
  if (o.timeout !== undefined) checkTimeout(o.timeout, `${where}.timeout`);
  if (o.lock !== undefined && typeof o.lock !== 'boolean') throw new CacheopsConfigError(`${where}.lock`, 'expected true or false');
  if (o.key !== undefined && (typeof o.key !== 'string' || o.key === '')) throw new CacheopsConfigError(`${where}.key`, 'expected a non-empty string');
}

interface FunctionCacheSpec {
  readonly deps: readonly Dependency[];
  readonly timeout: number;
  readonly lock: boolean;
  readonly extra: unknown;
  readonly identity: string;
}

function makeCached<A extends unknown[], R>(core: CacheopsCore, spec: FunctionCacheSpec, fn: (...args: A) => Promise<R> | R): CachedFunction<A, R> {
  if (typeof fn !== 'function') throw new CacheopsConfigError('fn', 'expected a function to cache');
  const identity = createHash('sha1').update(spec.identity).update('\0').update(fn.name).update('\0').update(fn.toString()).digest('hex');
  const hashOf = (args: A): string => {
    const extra = typeof spec.extra === 'function' ? (spec.extra as (...a: A) => unknown)(...args) : spec.extra;
    return createHash('sha1').update('fn\0').update(identity).update('\0').update(stableStringify(args)).update('\0').update(stableStringify(extra)).digest('hex');
  };
  const tables = spec.deps.map((d) => d.table);
  const prefix = (): string => core.prefixFor(tables);
  const name = fn.name || 'anonymous';

  const wrapped = (async (...args: A): Promise<R> => {
    const t = core.transactions.current(undefined);
    if (!core.config.enabled || core.closed || (t && core.transactions.hasWritten(t))) return fn(...args);
    return core.read<R>({
      prefix: prefix(),
      hash: hashOf(args),
      deps: spec.deps,
      timeout: spec.timeout,
      lock: spec.lock,
      canStore: t === undefined,
      compute: async () => fn(...args),
      encode: encodeValue,
      decode: (bytes) => decodeValue(bytes, core.sequelize) as { value: R } | undefined,
    }, { fn: name, op: 'function' });
  }) as CachedFunction<A, R>;

  wrapped.invalidate = async (...args: A) => core.store.deleteValue(prefix(), hashOf(args));
  wrapped.key = (...args: A): CachedEntry<R> => {
    const hash = hashOf(args);
    return {
      async get() {
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
    timeout: options.timeout ?? (timeouts.length ? Math.min(...timeouts) : DEFAULT_TIMEOUT),
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
    timeout: options.timeout ?? DEFAULT_TIMEOUT,
    lock: options.lock ?? false,
    extra: options.extra,
    identity: options.key ?? declarationSite(),
  };
  return (fn) => makeCached(core, spec, fn);
}
