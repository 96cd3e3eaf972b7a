/**
 * `installCacheops` and the public `Cacheops` object.
 */
import type { Model, ModelStatic, Sequelize, Transaction } from 'sequelize';
import { CacheopsCore, type CacheopsStats, type InvalidatedEvent, type ReadEvent } from './core/cacheops-core';
import type { CacheopsConfig } from './core/config';
import { Sampler, type StaleEvent } from './ops/consistency-sampler';
import { installationClosed, installationOpened } from './core/open-installations';
import { CacheopsError, type CacheopsInvalidationError } from './core/errors';
import { interceptReads } from './query/intercept';
import { installFastPath } from './query/fast-path';
import { tableOf } from './core/tables';
import { installWriteCapture } from './write/capture';
import { instrument } from './ops/otel';
import { SimpleCache } from './features/simple';
import { cachedAsFactory, cachedFactory, type CachedFunction, type CachedOptions, type Sample } from './features/functions';
import { flushStats } from './ops/stats';
import { startChangeStream } from './stream/change-stream';
import { emptyStats, type ChangeStreamStats } from './stream/source';
import { cachedViewFactory, type ViewCacheOptions, type ViewDecorator } from './features/views';
import { previousValuesOf } from './core/sequelize-internals';

const installations = new WeakMap<Sequelize, Cacheops>();
const all = new Set<Cacheops>();

export interface CacheopsEvents {
  read: ReadEvent;
  invalidated: InvalidatedEvent;
  /** A write's invalidation failed after its commit (the write resolved; its tables bypass the cache until a retry succeeds). */
  error: CacheopsInvalidationError;
  /** The consistency sampler found a hit that differs from the database (`verifySampleRate`). */
  stale: StaleEvent;
}

/**
 * An installation of cacheops on one Sequelize instance; returned by `installCacheops`.
 *
 * @example
 * const cacheops = installCacheops(sequelize, { redis: 'redis://127.0.0.1:6379/1', profiles: { Post: ['all', 600] } });
 * cacheops.on('read', (e) => console.log(e.model?.name, e.op, e.hit));
 * await cacheops.invalidateModel(Post);
 * await cacheops.close();
 */
export class Cacheops {
  /** @internal The installation's engine; left out of the published types (stripInternal), so applications cannot come to depend on it. */
  readonly core: CacheopsCore;
  /** Plain key/value caching: `get` throws `CacheMiss` when nothing is stored. */
  readonly cache: SimpleCache;

  /** Use installCacheops, which also installs the interception and write capture. */
  constructor(readonly sequelize: Sequelize, config: CacheopsConfig) {
    this.core = new CacheopsCore(sequelize, config);
    const core = this.core;
    if (core.config.verifySampleRate > 0) {
      core.sampler = new Sampler(core.config.verifySampleRate, (event) => {
        core.counters.stale += 1;
        core.events.emit('stale', event);
      }, core.config.logger, () => { core.counters.checks += 1; });
    }
    this.cache = new SimpleCache(this.core);
  }

  /** Listens to `read` ({ model, fn, op, hit }), `invalidated` ({ model, table, values }) or `error` (CacheopsInvalidationError). */
  on<E extends keyof CacheopsEvents>(event: E, listener: (payload: CacheopsEvents[E]) => void): this {
    this.core.events.on(event, listener);
    return this;
  }

  off<E extends keyof CacheopsEvents>(event: E, listener: (payload: CacheopsEvents[E]) => void): this {
    this.core.events.off(event, listener);
    return this;
  }

  /**
   * Resolves once Redis confirmed that its user may run every command and key
   * cacheops needs (or could not be asked: Redis did not answer, or has no
   * ACL); rejects with `CacheopsPermissionError` naming the missing commands.
   * The same error is logged once either way; await this at start-up to fail fast.
   * @example
   * await cacheops.ready();
   */
  ready(): Promise<void> {
    return this.core.permissions?.ready() ?? Promise.resolve();
  }

  /** Counters since install (hits, misses, stores, refused stores, invalidations), and the change stream's. */
  stats(): Readonly<CacheopsStats & { changeStream: Readonly<ChangeStreamStats> }> {
    return { ...this.core.counters, changeStream: { ...(this.core.stream?.stats ?? emptyStats('off')) } };
  }

  /**
   * Resolves once the change stream has checked the server and taken its role
   * (`stats().changeStream.role`: consumer or standby); rejects with
   * CacheopsStreamError saying what the server lacks. Resolves at once without `changeStream`.
   * @example
   * await cacheops.changeStreamReady();
   */
  async changeStreamReady(): Promise<void> {
    await this.core.stream?.ready;
  }

  /**
   * Adds this process's read counters (since the last flush) to a hash in
   * Redis, so that `cacheops stats` can report hits and misses of every
   * process. Counting in Redis on every read would cost a round trip per read;
   * call this periodically or at shutdown instead. The process consuming the
   * change stream writes its `stats().changeStream` too (`cacheops stats` shows it).
   * @example
   * setInterval(() => void cacheops.flushStats(), 60_000).unref();
   */
  async flushStats(): Promise<void> {
    await flushStats(this.core);
  }

  /** Invalidates what this instance's row could affect (its current and previous values). */
  async invalidateObj(instance: Model, options: { transaction?: Transaction } = {}): Promise<void> {
    const model = this.core.checkModel(instance?.constructor, 'invalidateObj');
    const current = { ...(instance.dataValues as Record<string, unknown>) };
    const previous = { ...current, ...(previousValuesOf(instance) ?? {}) };
    await this.core.invalidate([{ model, table: tableOf(model), rows: [current, previous] }], this.core.transactions.current(options), true);
  }

  /** The same as invalidateObj for a plain object of attribute values; a missing attribute matches anything. */
  async invalidateDict(model: ModelStatic<Model>, values: Readonly<Record<string, unknown>>, options: { transaction?: Transaction } = {}): Promise<void> {
    const m = this.core.checkModel(model, 'invalidateDict');
    if (typeof values !== 'object' || values === null) throw new CacheopsError('invalidateDict: values must be an object of attribute values');
    await this.core.invalidate([{ model: m, table: tableOf(m), rows: [values] }], this.core.transactions.current(options), true);
  }

  /** Every cached value depending on this model's table; cost independent of the keyspace size. */
  async invalidateModel(model: ModelStatic<Model>, options: { transaction?: Transaction } = {}): Promise<void> {
    await this.core.invalidateModel(this.core.checkModel(model, 'invalidateModel'), this.core.transactions.current(options), true);
  }

  /** Drops every key of this installation (its prefix), nothing else in the Redis database. */
  async invalidateAll(): Promise<void> {
    await this.core.invalidateAll();
  }

  /** Runs fn (sync or async) with invalidation off in its async context only. */
  noInvalidation<T>(fn: () => T): T {
    return this.core.noInvalidation(fn);
  }

  /**
   * Caches a function by its arguments, invalidated like a query on the samples.
   * @example
   * const stats = cacheops.cachedAs(Post, { model: Post, where: { categoryId: 2 } }, { timeout: 120 })(async (n: number) => compute(n));
   */
  cachedAs(...samplesAndOptions: (Sample | CachedOptions)[]): <A extends unknown[], R>(fn: (...args: A) => Promise<R> | R) => CachedFunction<A, R> {
    return cachedAsFactory(this.core, samplesAndOptions);
  }

  /**
   * Caches a function by its arguments for a time, with no invalidation.
   * @example
   * const top = cacheops.cached({ timeout: 600 })(async (category: string) => load(category));
   */
  cached(options: CachedOptions = {}): <A extends unknown[], R>(fn: (...args: A) => Promise<R> | R) => CachedFunction<A, R> {
    return cachedFactory(this.core, options);
  }

  /**
   * Caches an Express/Connect handler's successful GET/HEAD responses by path (+ `extra(req)`),
   * invalidated like a query on the samples.
   * @example
   * app.get('/news', cacheops.cachedViewAs(News, { timeout: 60 })(async (req: Request, res: Response) => { res.render(...) }));
   */
  cachedViewAs(...samplesAndOptions: (Sample | ViewCacheOptions)[]): ViewDecorator {
    return cachedViewFactory(this.core, samplesAndOptions, true);
  }

  /**
   * Caches an Express/Connect handler's successful GET/HEAD responses for a time.
   * @example
   * const top = cacheops.cachedView({ timeout: 60 })(handler); app.get('/top', top); await top.invalidate('/top');
   */
  cachedView(options: ViewCacheOptions = {}): ViewDecorator {
    return cachedViewFactory(this.core, [options], false);
  }

  /** Adds the `cached_as` / `cached` tags to a Nunjucks environment. */
  addNunjucksExtension(env: { addExtension(name: string, ext: unknown): unknown }): void {
    // Loaded lazily: nunjucks is an optional peer dependency.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { CacheopsExtension } = require('./features/nunjucks') as typeof import('./features/nunjucks');
    env.addExtension('cacheops', new CacheopsExtension(this));
  }

  /** Closes the Redis connection cacheops opened (not one it was given). */
  async close(): Promise<void> {
    all.delete(this);
    installationClosed(this.sequelize);
    await this.core.close();
  }
}

/**
 * Installs cacheops on a Sequelize instance: reads are cached by profile,
 * writes invalidate. Throws `CacheopsConfigError` on bad configuration, and
 * `CacheopsError` when called twice on one instance.
 *
 * @example
 * const cacheops = installCacheops(sequelize, {
 *   redis: 'redis://127.0.0.1:6379/1',
 *   profiles: { User: { ops: 'get', timeout: 900 }, Post: { ops: ['get', 'fetch', 'count'] }, '*': {} },
 * });
 */
export function installCacheops(sequelize: Sequelize, config: CacheopsConfig = {}): Cacheops {
  if (installations.has(sequelize)) {
    throw new CacheopsError('cacheops is already installed on this Sequelize instance');
  }
  const cacheops = new Cacheops(sequelize, config);
  interceptReads(cacheops.core);
  installFastPath(cacheops.core);
  installWriteCapture(cacheops.core);
  instrument(cacheops.core); // only when @opentelemetry/api is installed (otel.ts)
  cacheops.core.stream = startChangeStream(cacheops.core);
  installations.set(sequelize, cacheops);
  all.add(cacheops);
  installationOpened(sequelize);
  return cacheops;
}

/** The installation on this Sequelize instance, if there is one. */
export function installationOf(sequelize: Sequelize): Cacheops | undefined {
  return installations.get(sequelize);
}

/** The installation that serves a model or instance (or the only one). */
export function installationFor(target?: unknown): Cacheops {
  const ctor = typeof target === 'function' ? target : (target as { constructor?: unknown } | undefined)?.constructor;
  const sequelize = (ctor as { sequelize?: Sequelize } | undefined)?.sequelize;
  if (sequelize) {
    const found = installations.get(sequelize);
    if (found) return found;
  }
  if (all.size === 1) return [...all][0]!;
  throw new CacheopsError(all.size === 0 ? 'cacheops is not installed' : 'several cacheops installations exist: call the method on the Cacheops object');
}
