/**
 * A full Redis (maxmemory reached under the `noeviction` policy): Redis
 * refuses every command that may grow memory with an OOM reply. That is not
 * an outage: reads still answer, and invalidations (allow-oom scripts, see
 * lua/invalidate.lua) still delete, which is what frees memory. So an OOM
 * reply never opens the breaker and never reaches a reader: the store is
 * dropped (counted in `stats().fullStores`), the state turns full (one log
 * line), and every store is skipped while it lasts.
 *
 * Room is found by a probe of its own, not by a store: a store can be refused
 * for an invalidation that raced it (store.lua), which says nothing of memory,
 * and under a steady stream of writes nearly every store is. The probe is a
 * plain `SET <namespace>probe:full <token> PX <ms>` per shard (cache-store.ts),
 * a write Redis refuses with OOM exactly while it is above maxmemory. It is sent
 * in the background, at most one at a time and at most once per probe interval,
 * when a store is skipped (so an idle application sends none). Accepted by
 * every shard: the state ends (one log line) and caching resumes; refused with
 * OOM: still full, the next interval probes again; any other failure is the
 * call's (the guard's breaker), and the next interval probes again too. A Redis
 * that fills again soon after it had room doubles the interval (up to
 * MAX_PROBE_MS), so a Redis hovering at its limit logs at most two lines per
 * interval.
 *
 * `isFull()` is what the read gate consults; `mayStore()` is asked by each store.
 */

/** The first probe interval, and its ceiling. */
const MIN_PROBE_MS = 250;
const MAX_PROBE_MS = 30_000;
/** Room that lasted this long resets the probe interval. */
const STABLE_MS = 60_000;

/**
 * Is this a Redis OOM reply (`OOM command not allowed when used memory > 'maxmemory'`)? A
 * MULTI whose commands were refused so fails with EXECABORT, carrying them as `previousErrors`.
 */
export function isOomError(error: unknown): boolean {
  const e = error as { message?: unknown; previousErrors?: unknown } | null;
  if (typeof e?.message === 'string' && /^(ERR )?OOM\b|\bOOM command not allowed\b/.test(e.message)) return true;
  return Array.isArray(e?.previousErrors) && e.previousErrors.some(isOomError);
}

/** What a probe found: room on every shard, still full, or no answer (an error, the breaker open). */
export type ProbeResult = 'room' | 'full' | 'failed';

export interface FullStateOptions {
  /** Where Redis is, for the log lines. */
  readonly endpoint: string;
  readonly logger: (message: string, error?: unknown) => void;
  /** Sends the probe write (never rejects); undefined: none is sent (the state then never ends by itself). */
  readonly probe?: () => Promise<ProbeResult>;
}

export class FullState {
  /** Read on every store: a plain field. */
  full = false;
  /** When the current (or last) full period began, ms since the epoch. */
  since = 0;
  /** Full periods seen since start. */
  episodes = 0;
  /** The current probe interval. */
  probeMs = MIN_PROBE_MS;
  /** The probe in flight, if any: one at a time. */
  probing: Promise<void> | undefined;
  private nextProbe = 0;
  private roomSince = 0;

  constructor(private readonly options: FullStateOptions) {}

  /** Whether Redis refuses stores now (the read gate skips storing, reads go on). */
  isFull(): boolean {
    return this.full;
  }

  /** Whether a probe is due now (full, its interval over, none in flight). */
  private probeDue(): boolean {
    return this.full && !this.probing && Date.now() >= this.nextProbe;
  }

  /**
   * May a store go to Redis now? Not while full: the store is skipped, and when the probe
   * interval is over, the probe is sent instead (in the background: the caller does not wait).
   */
  mayStore(): boolean {
    if (!this.full) return true;
    if (this.probeDue()) this.sendProbe();
    return false;
  }

  private sendProbe(): void {
    const probe = this.options.probe;
    if (!probe) return;
    this.nextProbe = Date.now() + this.probeMs;
    const episode = this.episodes;
    this.probing = probe().catch((): ProbeResult => 'failed').then((result) => {
      this.probing = undefined;
      // An answer to a probe of an earlier full period says nothing of this one.
      if (result === 'room' && episode === this.episodes) this.accepted();
    });
  }

  /** Redis answered a write with OOM. */
  refused(error: unknown, what: string): void {
    const now = Date.now();
    if (this.full) return;
    // Full again soon after it had room: probe less often, so the log stays short.
    this.probeMs = now - this.roomSince < STABLE_MS && this.episodes > 0 ? Math.min(this.probeMs * 2, MAX_PROBE_MS) : MIN_PROBE_MS;
    this.full = true;
    this.since = now;
    this.episodes += 1;
    this.nextProbe = now + this.probeMs;
    const reply = ((error as { message?: string }).message ?? 'OOM').split('\n')[0]!.replace(/\. script:.*$/, '');
    this.options.logger(`Redis is full: ${reply} (${what}) ${this.options.endpoint}; values are not stored until it has room, hits and invalidations go on`);
  }

  /**
   * The probe was accepted: Redis has room (again). An accepted store is no such sign: Redis may
   * have taken it just before it filled, its answer arriving after the state turned full.
   */
  private accepted(): void {
    if (!this.full) return;
    this.full = false;
    this.roomSince = Date.now();
    const seconds = ((this.roomSince - this.since) / 1000).toFixed(1);
    this.options.logger(`Redis has room again: ${this.options.endpoint} after ${seconds} s; values are stored again`);
  }
}
