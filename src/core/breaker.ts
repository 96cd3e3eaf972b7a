/**
 * A circuit breaker in front of Redis. The first failed call (an error, a
 * timeout, a lost connection) opens it; while it is open, no call but an
 * invalidation goes to Redis (GuardedRedis.sendsWhileOpen): reads go straight
 * to the database and writes whose invalidation fails mark their tables
 * (outage.ts), so an outage costs reads what the database costs instead of a
 * timeout per call. A background probe, with a back-off from 100 ms
 * doubling to 5 s, closes it once Redis answers again. One log line when it
 * opens, one when it closes, each with the endpoint and the cause on one line.
 *
 * A slow Redis (slow.ts) opens it too (`degrade`): calls skip Redis as in an
 * outage, but in both degrade modes (nothing failed, so no caller gets an
 * error), and its probe asks whether Redis is fast again, not only whether it
 * answers. A reconnected client (its `ready` event) is probed at once
 * (`probeNow`) rather than at the next back-off step.
 */

/** One line for a Redis error: `ECONNREFUSED 127.0.0.1:6380`, `timed out after 300 ms 127.0.0.1:6379`, ... */
export function describeError(error: unknown, endpoint?: string): string {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; message?: unknown; address?: unknown; port?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(error);
  let cause: string;
  if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) cause = e.code;
  else if (message === 'Command timed out') cause = 'ETIMEDOUT';
  else cause = (message.split('\n')[0] ?? '').trim() || 'unknown error';
  // A socket error names the address it failed on; prefer it to the configured endpoint.
  const where = typeof e.address === 'string' && e.port !== undefined ? `${e.address}:${String(e.port)}` : endpoint;
  return where && !cause.includes(where) ? `${cause} ${where}` : cause;
}

export interface BreakerOptions {
  /** Where Redis is, for the log lines (`127.0.0.1:6379`, `sentinel mymaster`, ...). */
  readonly endpoint: string;
  readonly logger: (message: string, error?: unknown) => void;
  /** Does Redis answer? Bounded in time by the caller; resolves false or rejects when not. */
  readonly probe: () => Promise<boolean>;
  /** Is Redis fast again? (after `degrade`; bounded in time by the caller) */
  readonly probeFast?: () => Promise<boolean>;
  /** Called once when it closes (caching resumes: failed invalidations are retried then). */
  readonly onClose?: (kind: BreakerKind) => void;
  /** What callers do meanwhile, for the log line. */
  readonly meanwhile: string;
  readonly minDelayMs?: number;
  readonly maxDelayMs?: number;
  /** The back-off ceiling while Redis is slow (a probe of a slow Redis costs the application nothing). */
  readonly slowMaxDelayMs?: number;
}

/** Why it is open: Redis failed, or Redis answers too slowly. */
export type BreakerKind = 'outage' | 'slow';

export class RedisBreaker {
  /** Read on every Redis call: a plain field, no getter. */
  open = false;
  /** The failure that opened it (for the error a skipped call reports). */
  cause = '';
  /** Why it is (or last was) open. */
  kind: BreakerKind = 'outage';
  /** When the last outage began (ms since the epoch). */
  openedAt = 0;
  private delay = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Outages seen (opened) since start, for tests and stats. */
  outages = 0;
  /** Slow periods seen since start. */
  slowPeriods = 0;
  private probing = false;

  private readonly watchers: ((open: boolean) => void)[] = [];

  constructor(private readonly options: BreakerOptions) {}

  /** Where Redis is, as the log lines name it. */
  get endpoint(): string {
    return this.options.endpoint;
  }

  /** Called with true when it opens, false when it closes (metrics). */
  watch(watcher: (open: boolean) => void): void {
    this.watchers.push(watcher);
  }

  /** A call failed: open (and log) unless already open. */
  trip(error: unknown, what: string): void {
    if (this.open || this.stopped) return;
    this.kind = 'outage';
    this.outages += 1;
    this.cause = describeError(error, this.options.endpoint);
    this.opened(`Redis unavailable: ${this.cause} (${what}); ${this.options.meanwhile} until it is back`, error);
  }

  /** Redis answers too slowly (`why`, one line): open (and log) unless already open. */
  degrade(why: string): void {
    if (this.open || this.stopped) return;
    this.kind = 'slow';
    this.slowPeriods += 1;
    this.cause = `slow: ${why}`;
    this.opened(`Redis is slow: ${why} ${this.options.endpoint}; the database answers until it is fast again`);
  }

  private opened(line: string, error?: unknown): void {
    this.open = true;
    this.openedAt = Date.now();
    this.options.logger(line, error);
    this.delay = this.options.minDelayMs ?? 100;
    this.schedule();
    for (const w of this.watchers) w(true);
  }

  /** The client is connected again: probe now instead of at the next back-off step. */
  probeNow(): void {
    if (!this.open || this.stopped || this.probing) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    void this.runProbe();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runProbe();
    }, this.delay);
    // A probe never keeps a process alive.
    this.timer.unref();
  }

  private async runProbe(): Promise<void> {
    if (this.probing) return; // the probe under way reschedules when it fails
    let ok = false;
    this.probing = true;
    const slow = this.kind === 'slow';
    try {
      ok = await (slow && this.options.probeFast ? this.options.probeFast() : this.options.probe());
    } catch {
      ok = false;
    } finally {
      this.probing = false;
    }
    if (this.stopped || !this.open) return;
    if (!ok) {
      const ceiling = slow ? this.options.slowMaxDelayMs ?? 1000 : this.options.maxDelayMs ?? 5000;
      this.delay = Math.min(this.delay * 2, ceiling);
      if (!this.timer) this.schedule();
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.open = false;
    const seconds = ((Date.now() - this.openedAt) / 1000).toFixed(1);
    this.options.logger(slow
      ? `Redis is fast again: ${this.options.endpoint} after ${seconds} s; caching resumed`
      : `Redis is back: ${this.options.endpoint} after ${seconds} s; caching resumed`);
    for (const w of this.watchers) w(false);
    this.options.onClose?.(this.kind);
  }

  /** No more probes (close()). Calls skip Redis from now on. */
  stop(): void {
    this.stopped = true;
    this.open = true;
    this.cause = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
