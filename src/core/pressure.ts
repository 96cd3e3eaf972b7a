/**
 * A full Redis (maxmemory reached under the `noeviction` policy): Redis
 * refuses every command that may grow memory with an OOM reply. That is not
 * an outage: reads still answer, and invalidations (allow-oom scripts, see
 * lua/invalidate.lua) still delete, which is what frees memory. So an OOM
 * reply never opens the breaker and never reaches a reader: the store is
 * dropped (counted in `stats().fullStores`), the state turns full (one log
 * line), and stores are skipped while it lasts, except one store per probe
 * interval that goes through as the probe (one refused for a raced invalidation does not count):
 * the first that Redis accepts ends
 * the state (one log line) and caching resumes. A Redis that fills again
 * soon after it had room doubles the interval (up to MAX_PROBE_MS), so a
 * Redis hovering at its limit logs at most two lines per interval.
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

export interface FullStateOptions {
  /** Where Redis is, for the log lines. */
  readonly endpoint: string;
  readonly logger: (message: string, error?: unknown) => void;
}

export class FullState {
  /** Read on every store: a plain field. */
  full = false;
  /** When the current (or last) full period began, ms since the epoch. */
  since = 0;
  /** Full periods seen since start. */
  episodes = 0;
  private probeMs = MIN_PROBE_MS;
  private nextProbe = 0;
  private roomSince = 0;

  constructor(private readonly options: FullStateOptions) {}

  /** Whether Redis refuses stores now (the read gate skips storing, reads go on). */
  isFull(): boolean {
    return this.full;
  }

  /** Would a store go to Redis now? (mayStore without taking the probe) */
  probeDue(): boolean {
    return !this.full || Date.now() >= this.nextProbe;
  }

  /** May a store go to Redis now? While full, one per probe interval (it is the probe). */
  mayStore(): boolean {
    if (!this.full) return true;
    const now = Date.now();
    if (now < this.nextProbe) return false;
    this.nextProbe = now + this.probeMs;
    return true;
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
   * The probe's store was refused for another reason (an invalidation raced it) before it wrote
   * anything: it said nothing of memory, so the next store probes at once. Under a steady stream
   * of writes, a probe per interval could otherwise race one every time and never find room.
   */
  inconclusive(): void {
    if (this.full) this.nextProbe = 0;
  }

  /** Redis accepted a write: it has room (again). */
  accepted(): void {
    if (!this.full) return;
    this.full = false;
    this.roomSince = Date.now();
    const seconds = ((this.roomSince - this.since) / 1000).toFixed(1);
    this.options.logger(`Redis has room again: ${this.options.endpoint} after ${seconds} s; values are stored again`);
  }
}
