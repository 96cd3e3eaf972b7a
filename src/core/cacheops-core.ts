/**
 * One installation: the configuration, the Redis store, the read decision
 * (what is cached and how long), the invalidation API, events and counters.
 * Query interception lives in query/intercept.ts, write interception in
 * write/ (capture.ts); both call back into this object.
 */
import { EventEmitter } from 'node:events';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Model, ModelStatic, Sequelize, Transaction } from 'sequelize';
import { CacheStore, type Dependency, type DoneAnnouncement, type RowTokens, type TableInvalidation } from './cache-store';
import { normalizeConfig, profileFor, type CacheOp, type CacheopsConfig, type NormalizedConfig, type Profile, type QueryInfo } from './config';
import { connectRedis, isCluster, type RedisClient } from './redis';
import { prefixRegistryKey, valueKey } from './keys';
import { CacheopsError, CacheopsRedisError } from './errors';
import { OutageRecovery } from './outage';
import { isOomError } from './pressure';
import { bounded } from './bounded';
import { tableOf, treeContext } from './tables';
import { rowTokens } from './tree';
import { TransactionTracker } from './transactions';
import { parseFindOption, type ParsedFindOption } from './find-option';
import { PLAIN_READ, readThrough, UNCHECKED_READ } from './read-through';
import { NotStored, type Compute, type ReadPlan } from './read-plan';
import { NearTier, type TieredOutcome } from '../near/near-tier';
import { NO_SAMPLER, type HitSampler } from './hit-sampler';
import { ReadGate } from './read-gate';
import { LruMap } from './lru';
import type { ChangeSource } from '../stream/source';
import { checkStreamDialect } from './stream-options';
import { PermissionWatch } from './permission-watch';
import { isPermissionError } from './permissions';
import { sequelizeOf } from './sequelize-internals';

import type { CacheopsStats, FindCacheopsOption, InvalidatedEvent, InvalidationItem, ReadDecision, ReadEvent } from './core-types';

export * from './core-types';

/** Bytes counted per localGet entry on top of its value and key (the map entry and the Buffer object). */
const LOCAL_GET_OVERHEAD = 200;

/** How long close() lets QUIT take before dropping the connection. */
const CLOSE_GRACE_MS = 200;

export class CacheopsCore {
  readonly config: NormalizedConfig;
  readonly store: CacheStore;
  readonly redis: RedisClient;
  readonly transactions: TransactionTracker;
  readonly dialect: string;
  // Annotated so the declaration says `EventEmitter` with no type arguments: the
  // inferred `EventEmitter<[never]>` of @types/node 20 is rejected by @types/node 26.
  readonly events: EventEmitter = new EventEmitter();
  readonly counters: CacheopsStats = {
    hits: 0, misses: 0, stores: 0, refusedStores: 0, invalidations: 0, modelInvalidations: 0, nearHits: 0, staleHits: 0, checks: 0, stale: 0, fullStores: 0,
  };
  /** The near caches of the profiles with `near`, and their tracking connections; undefined when none has it. */
  readonly near: NearTier | undefined;
  /** Re-checks sampled hits against the database (`verifySampleRate`); installed by install.ts (ops/consistency-sampler.ts). */
  sampler: HitSampler = NO_SAMPLER;
  /** The check that the Redis user may run every command cacheops needs (permission-watch.ts). */
  readonly permissions: PermissionWatch | undefined;
  /** Dirty tables and lost invalidations of Redis outages (outage.ts): the cache is bypassed while any is left. */
  readonly outage: OutageRecovery = new OutageRecovery(this);
  /** Whether a read may use the cache now, for every kind of cached read (read-gate.ts). */
  readonly gate: ReadGate = new ReadGate(this);
  private readonly invalidationOff = new AsyncLocalStorage<boolean>();
  private readonly ownsRedis: boolean;
  /** localGet's gets by hash (bounded: `memory.localGet`). */
  private readonly localGets: LruMap<string, Buffer>;
  /**
   * Prefixes a prefix function returned in this process and registered in Redis
   * (see prefixFor); bounded by `memory.prefixes`: one forgotten is registered again.
   */
  private readonly registeredPrefixes: LruMap<string, true>;
  closed = false;
  private writeAfterCloseLogged = false;
  /** The change stream (stream/change-stream.ts), when `changeStream` is on. */
  stream: ChangeSource | undefined;
  /**
   * `writes: 'stream'` (write/stream-wait.ts): which of these transactions (32-bit xids, GTIDs,
   * as strings) are writes of this process whose commit has returned; the consumer skips
   * the visibility question for those (stream/pg-apply.ts, stream/mariadb-consumer.ts). While
   * a write of this process awaits its reply the answer waits for that reply (one bounded
   * wait for the whole batch): the stream may bring a transaction before its writer hears
   * of its commit.
   */
  committedHere: ((ids: readonly (number | string)[]) => Promise<ReadonlySet<string>>) | undefined;
  /**
   * `writes: 'stream'`: what the consumer's invalidation of these transactions tells the
   * writers waiting for them, in the same script (write/stream-wait.ts).
   */
  announcementFor: ((ids: readonly (number | string)[]) => DoneAnnouncement) | undefined;
  /** What close() stops after the change stream (the stream write mode's subscription). */
  readonly closing: (() => Promise<void>)[] = [];
  /** The installation's FastPath, set by installFastPath (query/fast-path.ts); tests and the benchmark reach it here. */
  fastPath: object | undefined;

  constructor(readonly sequelize: Sequelize, config: CacheopsConfig) {
    this.config = normalizeConfig(config, Object.keys(sequelize.models));
    this.dialect = sequelize.getDialect();
    checkStreamDialect(this.dialect, this.config.changeStream);
    this.localGets = new LruMap(this.config.memory.localGet);
    this.registeredPrefixes = new LruMap(this.config.memory.prefixes);
    const degrade = this.config.degradeOnFailure;
    const { client, owned } = connectRedis(this.config.redis, {
      commandTimeout: this.config.redisTimeout,
      maxRetriesPerRequest: degrade ? 1 : 20,
      enableOfflineQueue: true,
      lazyConnect: false,
    });
    this.redis = client;
    this.ownsRedis = owned;
    this.store = new CacheStore(client, {
      degradeOnFailure: degrade,
      timeoutMs: this.config.redisTimeout,
      shards: this.config.clusterShards,
      logger: this.config.logger,
      insideout: this.config.insideout,
      onAvailable: () => this.outage.resumed(),
      slow: this.config.slowRedis,
      onPermissionDenied: () => this.permissions?.check(),
      probePrefix: typeof this.config.prefix === 'string' ? this.config.prefix : '',
    });
    this.watchConnection(client, owned);
    // A slow Redis is bypassed by every kind of cached read, the process-memory tiers included.
    // A full one is not read-only here: its stores are skipped by the store itself, which lets one
    // through now and then as the probe that finds room again (pressure.ts).
    this.gate.consult(() => (this.store.breaker.open && this.store.breaker.kind === 'slow' ? 'bypass' : 'read-write'));
    // A Redis user lacking commands cacheops needs: every cached read is bypassed, in either degrade
    // mode (the error was reported once, at start-up: permission-watch.ts), not failed one by one.
    this.gate.consult(() => (this.store.refusal ? 'bypass' : 'read-write'));
    this.transactions = new TransactionTracker(sequelize, (error) => this.config.logger('a queued invalidation failed', error));
    this.events.setMaxListeners(0);
    this.near = this.config.enabled && this.nearProfiles() ? new NearTier(client, {
      insideout: this.config.insideout, timeoutMs: this.config.redisTimeout, logger: this.config.logger,
      probePrefix: typeof this.config.prefix === 'string' ? this.config.prefix : '',
      permitted: () => (this.permissions ? this.permissions.ready().then(() => true, () => false) : Promise.resolve(true)),
    }) : undefined;
    const prefix = this.config.prefix;
    this.permissions = this.config.enabled ? new PermissionWatch(client, this.store, {
      prefix: typeof prefix === 'string' ? prefix : '', prefixFunction: typeof prefix !== 'string', near: this.near !== undefined, cluster: isCluster(client),
      streamWrites: this.config.writes === 'stream' && (this.dialect === 'postgres' || this.dialect === 'mysql' || this.dialect === 'mariadb'),
      db: isCluster(client) ? 0 : (client.options.db ?? 0),
    }, this.config.logger) : undefined;
  }

  /** Whether a profile has a near cache (on a cluster, tracked per master: near/cluster-tracking.ts). */
  private nearProfiles(): boolean {
    const profiles: [string, Profile | null | undefined][] = [
      ...[...this.config.exactProfiles].map(([name, p]) => [name, p] as [string, Profile | null]),
      ...this.config.globProfiles.map((g) => [g.source, g.profile] as [string, Profile | null]),
      ['*', this.config.starProfile],
    ];
    const named = profiles.find(([, p]) => p?.near !== undefined);
    return named !== undefined;
  }

  /** Takes watchConnection's listener off the client (close(): a client the application gave stays in use). */
  private unwatch: (() => void) | undefined;

  /**
   * A lost connection opens the breaker at once, before any call waits for it.
   * On a client cacheops opened, connection errors go to the breaker (one log
   * line per outage, not one per reconnect attempt) and its reconnect timer is
   * unref'd, so a process whose Redis is down can still exit.
   */
  private watchConnection(client: RedisClient, owned: boolean): void {
    const onClose = (): void => this.store.breaker.trip(new Error('connection closed'), 'connection');
    // Connected again: the breaker probes at once instead of at its next back-off step.
    const onReady = (): void => this.store.breaker.probeNow();
    client.on('close', onClose);
    client.on('ready', onReady);
    this.unwatch = () => {
      client.off('close', onClose);
      client.off('ready', onReady);
    };
    if (!owned) return;
    client.on('error', (error: unknown) => this.store.breaker.trip(error, 'connection'));
    client.on('reconnecting', () => (client as unknown as { reconnectTimeout?: NodeJS.Timeout | null }).reconnectTimeout?.unref());
  }

  get db(): string {
    return String((this.sequelize.config as { database?: unknown }).database ?? '');
  }

  /** The key prefix of a query or write touching these tables. */
  prefixFor(tables: readonly string[]): string {
    const p = this.config.prefix;
    if (typeof p === 'string') return p;
    const info: QueryInfo = { tables, db: this.db, dialect: this.dialect };
    const prefix = p(info).replace(/[{}]/g, '_');
    // Not while Redis is out (the breaker): the next call after it is back registers it.
    if (this.registeredPrefixes.get(prefix) === undefined && !this.store.breaker.open) {
      // invalidateAll must find every prefix the function chose, in any process. The SADD goes
      // out on this connection before anything stored under the prefix, so it lands first.
      this.registeredPrefixes.set(prefix, true);
      this.redis.sadd(prefixRegistryKey, prefix).catch((error: unknown) => {
        this.registeredPrefixes.delete(prefix);
        // A full Redis refuses it: registered by the next call (its values are not stored meanwhile).
        if (isOomError(error)) this.store.full.refused(error, 'a key prefix registration');
        if (isPermissionError(error)) this.permissions?.check();
        else this.store.breaker.trip(error, 'a key prefix registration');
      });
    }
    return prefix;
  }

  profileOf(model: ModelStatic<Model>): Profile | null | undefined {
    return profileFor(this.config, model.name);
  }

  /** May values depending on this model be cached at all? (not when its profile is null) */
  mayCache = (model: ModelStatic<Model>): boolean => this.profileOf(model) !== null;

  /**
   * Should this read use the cache, and how. `undefined`: run it uncached.
   * Automatic by profile ops; the `cacheops` find option overrides per query.
   * A bad option throws (CacheopsConfigError) whatever the profile says.
   */
  planRead(model: ModelStatic<Model>, op: CacheOp, options: { cacheops?: FindCacheopsOption; transaction?: Transaction | null; lock?: unknown }): ReadDecision | undefined {
    return this.planParsed(model, op, parseFindOption(options.cacheops), options);
  }

  /** planRead with the `cacheops` option already parsed (the fast path keeps it per fingerprint). */
  planParsed(model: ModelStatic<Model>, op: CacheOp, opt: ParsedFindOption, options: { transaction?: Transaction | null; lock?: unknown }): ReadDecision | undefined {
    if (opt === 'off' || options.lock) return undefined;
    const profile = this.profileOf(model);
    if (!profile) return undefined;
    let timeout = profile.timeout;
    let lock = profile.lock;
    if (opt === 'auto') {
      if (!profile.ops.has(op)) return undefined;
    } else {
      if (opt.ops !== undefined && !opt.ops.has(op)) return undefined;
      if (opt.timeout !== undefined) timeout = opt.timeout;
      if (opt.lock !== undefined) lock = opt.lock;
    }
    const admission = this.gate.admit(options);
    if (!admission) return undefined;
    return { timeout, lock, admission, profile };
  }

  /**
   * The read engine's entry: a plan read through the cache (localGet memory,
   * near cache, Redis), counting and emitting `read`; samples hits when the
   * plan says so. Only for a read the gate admitted (`plan.admission`).
   */
  async readCached<T>(plan: ReadPlan<T>, compute: Compute<T>): Promise<T> {
    const { codec } = plan;
    if (plan.localGet) {
      const local = this.localGets.get(plan.hash);
      if (local) {
        const decoded = codec.decode(local);
        if (decoded) {
          this.count(true, plan, false);
          return decoded.value;
        }
      }
    }
    const options = this.config.raceProtection ? PLAIN_READ : UNCHECKED_READ;
    const nearLimits = plan.near?.near;
    const outcome: TieredOutcome<T> = nearLimits && this.near
      ? await this.near.readNearFirst(this.store, this.near.cacheOf(plan.near!, nearLimits), plan, compute, options)
      : await readThrough(this.store, plan, compute, options);
    this.count(outcome.hit, plan, outcome.stored);
    if (outcome.tier === 'near') this.counters.nearHits += 1;
    if (outcome.stale === true) this.counters.staleHits += 1;
    if (outcome.stored) this.counters.stores += 1;
    else if (outcome.full === true) this.counters.fullStores += 1;
    else if (!outcome.hit && outcome.declined !== true && plan.admission.canStore) this.counters.refusedStores += 1;
    // A stale value is not kept: process memory never extends its life. A fresh one no longer than its fresh time.
    if (plan.localGet && (outcome.hit || outcome.stored) && outcome.stale !== true) {
      const expires = Math.min(Date.now() + plan.timeout * 1000, outcome.freshUntil ?? Infinity);
      const bytes = codec.encode(outcome.value);
      this.localGets.set(plan.hash, bytes, { expires, size: bytes.length + plan.hash.length + LOCAL_GET_OVERHEAD });
    }
    // The sampler re-runs the query outside any transaction only (a transaction may be over by then).
    if (plan.sample && outcome.hit && outcome.bytes && plan.admission.canStore && !this.closed && this.sampler.picks()) {
      const { bytes, at } = outcome;
      this.sampler.check({
        model: plan.model, hash: plan.hash, bytes, at: at ?? Date.now(), tier: outcome.tier ?? 'redis',
        recompute: async () => {
          const computed = await compute();
          return codec.encode(computed instanceof NotStored ? computed.value : computed);
        },
      });
    }
    return outcome.value;
  }

  private count<T>(hit: boolean, plan: ReadPlan<T>, stored: boolean): void {
    if (hit) this.counters.hits += 1;
    else this.counters.misses += 1;
    if (this.events.listenerCount('read') > 0) {
      const key = valueKey(this.store.nsFor(plan.prefix, plan.hash), plan.hash);
      const event: ReadEvent = plan.fn === undefined
        ? { model: plan.model, op: plan.op, hit, stored, key }
        : { ...(plan.model ? { model: plan.model } : {}), fn: plan.fn, op: plan.op, hit, stored, key };
      this.events.emit('read', event);
    }
  }

  // ---- invalidation -------------------------------------------------------

  get invalidationEnabled(): boolean {
    return this.config.enabled && this.invalidationOff.getStore() !== true;
  }

  /** Runs fn with invalidation off in its async context only. */
  noInvalidation<T>(fn: () => T): T {
    return this.invalidationOff.run(true, fn);
  }

  /** Tokens of rows (attribute-keyed) of a model. */
  rowsOf(model: ModelStatic<Model>, rows: readonly Readonly<Record<string, unknown>>[]): RowTokens[] {
    const ctx = treeContext(model, this.dialect, this.config.maxInListLength);
    return rows.map((r) => rowTokens(r, ctx));
  }

  /**
   * Invalidates by row states (or whole models), now or, inside a transaction,
   * after its outermost commit. A Redis failure never rejects a write's call
   * (its transaction has committed): the tables are marked and `error` emitted.
   * An explicit call (`explicit`: invalidateModel, invalidateObj...) marks them
   * too, and rejects unless degrading.
   */
  async invalidate(items: readonly InvalidationItem[], transaction?: Transaction, explicit = false): Promise<void> {
    if (!this.invalidationEnabled || items.length === 0) return;
    const run = async (): Promise<void> => {
      const { arrived, failure } = await this.send(items, explicit);
      if (!arrived && this.closed) this.warnWriteAfterClose(items);
      if (explicit && failure) throw failure;
    };
    if (transaction) this.transactions.defer(transaction, run);
    else await run();
  }

  /**
   * A write after close() whose invalidation could not reach Redis: other processes
   * may serve what it changed until their timeout, so it is said once.
   */
  private warnWriteAfterClose(items: readonly InvalidationItem[]): void {
    if (this.writeAfterCloseLogged) return;
    this.writeAfterCloseLogged = true;
    const tables = [...new Set(items.map((it) => it.table))].join(', ');
    this.config.logger(`a write to ${tables} after close() invalidated nothing: cached reads of it may be served until their timeout; close cacheops after the application's last write`);
  }

  /**
   * Invalidates now, outside any transaction or noInvalidation context (the change
   * stream): true once Redis acknowledged it, false when it did not arrive.
   */
  async invalidateNow(items: readonly InvalidationItem[], done?: DoneAnnouncement): Promise<boolean> {
    if (!this.config.enabled || items.length === 0) {
      if (done) await this.store.announceDone(done).catch(() => undefined);
      return true;
    }
    try {
      return (await this.send(items, false, true, done)).arrived;
    } catch {
      return false;
    }
  }

  /**
   * Sends one invalidation: whether it arrived, and the Redis error when one was
   * thrown. A failure marks the tables (outage.ts) and, unless `explicit` or `quiet`, emits `error`.
   */
  private async send(items: readonly InvalidationItem[], explicit: boolean, quiet = false, done?: DoneAnnouncement): Promise<{ arrived: boolean; failure: CacheopsRedisError | undefined }> {
    const payload: TableInvalidation[] = items.map((it) => ({
      table: it.table,
      rows: it.rows === 'all' || !it.model ? 'all' : this.rowsOf(it.model, it.rows),
    }));
    const prefix = this.prefixFor(items.map((i) => i.table));
    let failure: CacheopsRedisError | undefined;
    let deleted: number;
    try {
      deleted = await this.store.invalidate(prefix, payload, done);
    } catch (error) {
      // Without degradeOnFailure too: the write has committed, so rejecting would tell a
      // retrying caller it had not. The tables are marked instead, and the failure emitted.
      if (!(error instanceof CacheopsRedisError)) throw error;
      failure = error;
      deleted = -1;
    }
    if (deleted >= 0) this.outage.noteInvalidated(prefix, items);
    // This process's near caches drop what the invalidation deleted before the write resolves.
    await this.near?.tracker.barrier();
    if (deleted < 0) {
      // Skipped while Redis is slow: nothing failed, the tables are invalidated when it is fast again.
      const slow = failure === undefined && this.store.breaker.kind === 'slow';
      this.outage.invalidationFailed(prefix, items.map((it) => it.table), failure, !explicit && !quiet && !slow);
    }
    for (const it of items) {
      this.counters.invalidations += 1;
      if (it.rows === 'all') this.counters.modelInvalidations += 1;
      if (this.events.listenerCount('invalidated') > 0) {
        this.events.emit('invalidated', { model: it.model, table: it.table, values: it.rows } satisfies InvalidatedEvent);
      }
    }
    return { arrived: deleted >= 0, failure };
  }

  /** Invalidates a whole model (every cached value depending on its table). */
  async invalidateModel(model: ModelStatic<Model>, transaction?: Transaction, explicit = false): Promise<void> {
    await this.invalidate([{ model, table: tableOf(model), rows: 'all' }], transaction, explicit);
  }

  async invalidateAll(): Promise<void> {
    if (!this.config.enabled) return;
    const p = this.config.prefix;
    this.localGets.clear();
    let prefixes: string[];
    if (typeof p === 'string') {
      prefixes = [p];
    } else {
      // A prefix function: every prefix it returned, in any process, is registered in Redis.
      const registered = await this.store.guard('invalidateAll', () => this.redis.smembers(prefixRegistryKey), [] as string[]);
      prefixes = [...new Set([...registered, ...this.registeredPrefixes.keys()])];
    }
    for (const prefix of prefixes) await this.store.invalidateAll(prefix);
    // Skipped in part or whole (Redis out or slow, the call degraded): every table of the
    // installation is bypassed until a model-wide invalidation of it succeeds.
    if (this.store.breaker.open && !this.closed) {
      const tables = [...new Set(Object.values(this.sequelize.models).map((m) => tableOf(m)))];
      for (const prefix of prefixes) this.outage.invalidationFailed(prefix, tables, undefined, false);
    }
    await this.near?.tracker.barrier();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const wasOpen = this.store.breaker.open;
    this.store.breaker.stop();
    this.outage.stop();
    await this.stream?.close();
    for (const close of this.closing.splice(0)) await close().catch(() => undefined);
    this.permissions?.close();
    await this.near?.close();
    this.unwatch?.();
    if (!this.ownsRedis) return;
    // QUIT waits for Redis's answer: a frozen or unreachable Redis gets a short grace, then the socket is dropped.
    if (!wasOpen) await bounded(this.redis.quit().then(() => undefined, () => undefined), CLOSE_GRACE_MS, () => undefined);
    // Not after a QUIT that ended it: a Cluster disconnected once ended stays 'disconnecting'.
    if (this.redis.status !== 'end') this.redis.disconnect();
  }

  /** Throws unless the model belongs to this installation's Sequelize. */
  checkModel(model: unknown, what: string): ModelStatic<Model> {
    const m = model as ModelStatic<Model> | undefined;
    if (!m || typeof m !== 'function' || sequelizeOf(m) !== this.sequelize) {
      throw new CacheopsError(`${what}: expected a model of the Sequelize instance cacheops is installed on`);
    }
    return m;
  }
}

export type { Dependency };
