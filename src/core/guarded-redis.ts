/**
 * Calls to Redis, guarded: each bounded in time, and what a failure means
 * decided in one place. An outage opens the breaker (breaker.ts), a slow Redis
 * is bypassed (slow.ts), a full one only loses its stores (pressure.ts), a
 * refusal to the user (ACL) is reported, not tripped on; the caller gets its
 * fallback, or in strict mode a CacheopsRedisError. CacheStore (cache-store.ts)
 * sends every call of the cache through `guard`.
 */
import { randomBytes } from 'node:crypto';
import { endpointOf, isCluster, type RedisClient, type ScriptCommands } from './redis';
import { epochsKey, fullProbeKey, namespace, shardOf } from './keys';
import { CacheopsRedisError, type CacheopsPermissionError } from './errors';
import { isPermissionError } from './permissions';
import { describeError, RedisBreaker, type BreakerKind } from './breaker';
import { bounded } from './bounded';
import { FullState, isOomError, type ProbeResult } from './pressure';
import { SlowDetector, type SlowRedisOptions } from './slow';

/** How the cache's Redis calls behave: timeouts, failure mode, shards, the hooks of its failure states. */
export interface StoreOptions {
  readonly degradeOnFailure: boolean;
  readonly timeoutMs: number;
  readonly shards: number;
  readonly logger: (message: string, error?: unknown) => void;
  /** Memory-limit mode: values carry their invalidators' stamps (see lua/*_insideout.lua). */
  readonly insideout: boolean;
  /** Called when Redis answers again after an outage (or is fast again after a slow period). */
  readonly onAvailable?: (kind: BreakerKind) => void;
  /** Slow-Redis detection (slow.ts); undefined: off. */
  readonly slow?: SlowRedisOptions | undefined;
  /** The key prefix the probes' keys take (a user restricted to the installation's keys may read and write them). */
  readonly probePrefix?: string;
  /** Called when Redis refuses a call to the user (ACL): not an outage, so the breaker stays closed. */
  readonly onPermissionDenied?: () => void;
}

/** Redis 6 and older compile a shebang line as Lua, and fail on it. */
const isShebangRefused = (error: unknown): boolean =>
  /Error compiling script|unexpected symbol near '#'/.test(String((error as { message?: unknown } | null)?.message ?? ''));

/** Why a read threw and how to make it degrade instead (the error of the strict mode). */
const STRICT_HINT = 'Reads throw because degradeOnFailure is false (strict mode); '
  + 'leave it unset or set it to true to have the database answer while Redis is out';
/** What an invalidation's guard is called (it runs while permissions are refused too). */
export const INVALIDATION = 'an invalidation';
/** How long a full Redis's probe key lives (it is written at most once per probe interval). */
const FULL_PROBE_TTL_MS = 1000;

/** The guarded calls, the failure states they feed and the probes that end them; CacheStore adds the cache's calls. */
export class GuardedRedis {
  /** Open while Redis is out: every call skips it at once (breaker.ts). */
  readonly breaker: RedisBreaker;
  /**
   * Whether the client bounds every command itself (a standalone or Sentinel
   * client with a commandTimeout no longer than ours, as the one cacheops
   * opens): then a call needs no timer of ours. A cluster client queues
   * commands without a timeout while it is not ready, so it always gets one.
   */
  private readonly clientTimesOut: boolean;
  /** Full Redis (maxmemory, noeviction): stores are dropped, reads and invalidations go on (pressure.ts). */
  readonly full: FullState;
  /** Slow Redis: opens the breaker when cache reads take longer than the database would (slow.ts). */
  readonly slow: SlowDetector | undefined;
  /** The server does not know script flags (Redis < 7): the allow-oom scripts are sent without them. */
  private shebangless = false;
  /**
   * Set while the Redis user lacks commands cacheops needs (permissions.ts):
   * every call but an invalidation skips Redis, as with the breaker open.
   * Invalidations are still sent (a lost one would be a stale read elsewhere).
   */
  refusal: CacheopsPermissionError | undefined;

  constructor(
    readonly client: RedisClient & ScriptCommands,
    protected readonly options: StoreOptions,
  ) {
    const own = isCluster(client) ? undefined : (client as { options?: { commandTimeout?: unknown } }).options?.commandTimeout;
    this.clientTimesOut = typeof own === 'number' && own > 0 && own <= options.timeoutMs;
    const endpoint = endpointOf(client);
    this.full = new FullState({ endpoint, logger: options.logger, probe: () => this.probeRoom() });
    this.slow = options.slow && new SlowDetector(options.slow, (why) => this.breaker.degrade(why));
    this.breaker = new RedisBreaker({
      endpoint,
      logger: options.logger,
      probe: () => this.probe(),
      probeFast: () => this.probeFast(),
      onClose: (kind) => {
        if (kind === 'slow') this.slow?.ended();
        else this.slow?.reset();
        options.onAvailable?.(kind);
      },
      meanwhile: options.degradeOnFailure
        ? 'the database answers reads (degradeOnFailure: false would make them throw)'
        : 'cache reads throw CacheopsRedisError (strict mode, degradeOnFailure: false; true lets the database answer)',
    });
  }

  /**
   * Is Redis fast again? Three round trips in a row (the first shard's epochs
   * key), each timed; a failed or late one says no.
   */
  private async probeFast(): Promise<boolean> {
    const slow = this.slow;
    if (!slow || !(await this.probe())) return false;
    const times: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const started = performance.now();
      const call = this.client.exists(epochsKey(namespace('', 0)));
      const ok = await bounded(call.then(() => true), this.options.timeoutMs, () => false).catch(() => false);
      call.catch(() => undefined);
      if (!ok) return false;
      times.push(performance.now() - started);
      if (!slow.fastAgain(times)) return false;
    }
    return true;
  }

  /** A script that may run on a full Redis (`#!lua flags=allow-oom`), sent without its flags to a Redis < 7. */
  protected allowOom<T>(call: (shebangless: boolean) => Promise<T>): Promise<T> {
    if (this.shebangless) return call(true);
    return call(false).catch((error: unknown) => {
      if (!isShebangRefused(error)) throw error;
      this.shebangless = true;
      return call(true);
    });
  }

  /**
   * Does Redis answer for every shard? One EXISTS per shard's epochs key (on a
   * cluster each goes to the node owning that slot), bounded by the timeout.
   * Nothing is sent while the client is still reconnecting, so probes never
   * pile up in its offline queue.
   */
  private async probe(): Promise<boolean> {
    if (!this.connected()) return false;
    const calls: Promise<number>[] = [];
    const prefix = this.options.probePrefix ?? '';
    // A refusal to the user (ACL) is an answer too: Redis is up.
    const answered = (error: unknown): number => {
      if (isPermissionError(error)) return 0;
      throw error;
    };
    for (let shard = 0; shard < this.shards; shard += 1) calls.push(this.client.exists(epochsKey(namespace(prefix, shard))).catch(answered));
    try {
      return await bounded(Promise.all(calls).then(() => true), this.options.timeoutMs, () => false);
    } finally {
      // A late rejection of a probe that lost the race is of no interest.
      for (const c of calls) c.catch(() => undefined);
    }
  }

  /**
   * Has a full Redis room again? One small write per shard (fullProbeKey, under the installation's
   * prefix), which Redis refuses with OOM exactly while it is above maxmemory. Room only when every
   * shard took it; any other failure is handled by the guard as any call's (the breaker).
   */
  private async probeRoom(): Promise<ProbeResult> {
    const token = randomBytes(8).toString('hex');
    const prefix = this.options.probePrefix ?? '';
    return this.guard<ProbeResult>('a full Redis\'s probe', async () => {
      const calls: Promise<unknown>[] = [];
      for (let shard = 0; shard < this.shards; shard += 1) calls.push(this.client.set(fullProbeKey(namespace(prefix, shard)), token, 'PX', FULL_PROBE_TTL_MS));
      const settled = await Promise.allSettled(calls);
      const failed = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
      const other = failed.find((error) => !isOomError(error));
      if (other !== undefined) throw other;
      return failed.length > 0 ? 'full' : 'room';
    }, 'failed').catch(() => 'failed' as const);
  }

  get shards(): number {
    return isCluster(this.client) ? this.options.shards : 1;
  }

  nsFor(prefix: string, hash: string): string {
    return namespace(prefix, shardOf(hash, this.shards));
  }

  /** Runs a Redis call bounded in time; on failure, degrades or throws CacheopsRedisError. */
  guard<T>(what: string, call: () => Promise<T>, fallback: T): Promise<T> {
    if (this.breaker.open && !this.sendsWhileOpen(what)) return this.skipped(what, fallback);
    if (this.refusal && what !== INVALIDATION) return this.refused(this.refusal, fallback);
    let pending: Promise<T>;
    try {
      pending = call();
    } catch (error) {
      pending = Promise.reject(error);
    }
    // Cache reads Redis answered are timed: a Redis slower than the database is bypassed (slow.ts).
    const slow = this.slow;
    if (slow && what === 'a cache read') {
      const started = performance.now();
      pending = pending.then((value) => {
        slow.cacheRead(performance.now() - started);
        return value;
      });
    }
    if (this.clientTimesOut) return pending.catch((error: unknown) => this.failed(what, error, fallback));
    const ms = this.options.timeoutMs;
    return bounded(pending, ms, () => {
      throw Object.assign(new Error(`Redis did not answer within ${ms} ms`), { code: 'ETIMEDOUT' });
    }).catch((error: unknown) => this.failed(what, error, fallback));
  }

  /**
   * Whether a call goes to Redis while the breaker is open: an invalidation does, as long as the
   * client is connected (nothing waits in a reconnecting client's queue) and Redis is not merely
   * slow (slow.ts). The write it serves resolves either way, but its tables are marked dirty in
   * this process only: skipped while Redis answers again (the breaker's probe comes up to its
   * back-off ceiling later), or while the masters of the other slots of a cluster answer, it left
   * the values other processes read stale (test/stream/stream-writes-failover.test.ts).
   */
  private sendsWhileOpen(what: string): boolean {
    return what === INVALIDATION && this.breaker.kind !== 'slow' && this.connected();
  }

  /** Whether the client is connected (or connects at its first command): a call sent now does not wait in a reconnecting client's queue. */
  private connected(): boolean {
    const status = (this.client as { status?: string }).status;
    return status === 'ready' || status === 'wait';
  }

  /** A failed Redis call: opens the breaker; the fallback when degrading, else a CacheopsRedisError. */
  private failed<T>(what: string, error: unknown, fallback: T): T {
    // A full Redis refused a write (a lock, a store): not an outage, and never the caller's error.
    if (isOomError(error)) {
      this.full.refused(error, what);
      return fallback;
    }
    if (isPermissionError(error)) this.options.onPermissionDenied?.();
    else if (isCluster(this.client)) this.confirmOutage(error, what);
    else this.breaker.trip(error, what);
    if (!this.options.degradeOnFailure) {
      const own = describeError(error, this.breaker.endpoint);
      const outage = this.breaker.cause && this.breaker.cause !== own ? ` (Redis unavailable: ${this.breaker.cause})` : '';
      throw new CacheopsRedisError(`Redis failed during ${what}: ${own}${outage}. ${STRICT_HINT}`, { cause: error });
    }
    return fallback;
  }

  /** A probe confirming a cluster's failed call is in flight. */
  private confirming = false;

  /**
   * On a cluster a failed call may be its slot migrating (ioredis retries
   * TRYAGAIN past our timeout while the slot's keys are split between two
   * masters), which is no outage: the breaker opens only if the probe (one
   * single-key call per shard, which ASK redirections serve) fails too.
   * The failed call itself falls back as usual.
   */
  private confirmOutage(error: unknown, what: string): void {
    if (this.confirming || this.breaker.open) return;
    this.confirming = true;
    void this.probe().catch(() => false).then((ok) => {
      this.confirming = false;
      if (!ok) this.breaker.trip(error, what);
    });
  }

  /** A call made while the user lacks permissions: nothing is sent. */
  private refused<T>(error: CacheopsPermissionError, fallback: T): Promise<T> {
    return this.options.degradeOnFailure ? Promise.resolve(fallback) : Promise.reject(error);
  }

  /** A call made while the breaker is open (but an invalidation sendsWhileOpen sends): nothing is sent. */
  private skipped<T>(what: string, fallback: T): Promise<T> {
    // A slow Redis is bypassed in both modes: nothing failed.
    if (this.options.degradeOnFailure || this.breaker.kind === 'slow') return Promise.resolve(fallback);
    return Promise.reject(new CacheopsRedisError(`Redis failed during ${what}: unavailable (${this.breaker.cause}). ${STRICT_HINT}`));
  }

  get insideout(): boolean {
    return this.options.insideout;
  }

}
