/**
 * A slow Redis: one that answers, but later than the database would. Below
 * redisTimeout nothing fails, so without this every hit would cost more than
 * the query it spares. The cache reads that succeed are timed over short
 * windows; when three quarters of a window's reads took longer than the limit
 * (a slow Redis slows every call; a loaded process delays some), Redis is
 * treated as degraded like an outage (the breaker opens: reads go to the
 * database, writes mark their tables), and its probe closes it once a few
 * round trips take less than half the limit.
 *
 * The limit is the lower of an absolute threshold and a multiple of the
 * database's own latency (the median of the last reads that ran their query),
 * never below a floor: under it, differences are noise, not slowness.
 */

export interface SlowRedisOptions {
  /** A read slower than this is slow whatever the database costs (ms). */
  readonly thresholdMs: number;
  /** A read slower than this many times the database's median latency is slow (0: off). */
  readonly dbFactor: number;
  /** Reads faster than this are never slow (ms). */
  readonly floorMs: number;
  /** How long each window of reads lasts (ms). */
  readonly windowMs: number;
}

/** Fewer reads than this in a window decide nothing. */
const MIN_READS = 5;
/** How many of the last database latencies make its median. */
const DB_SAMPLES = 64;

/** The value a fraction q of `values` is at or below (q = 0.5: the median). */
function quantile(values: readonly number[], q: number): number {
  // A typed array sorts numbers natively (no comparator calls): a window holds every read of the last windowMs.
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.floor((sorted.length - 1) * q)] ?? 0;
}
const median = (values: readonly number[]): number => quantile(values, 0.5);

/** A slow period that begins this soon after the last one ended needs twice the limit (no flapping). */
const DAMPING_MS = 60_000;

export class SlowDetector {
  private window: number[] = [];
  /** When the last slow period ended (ms since the epoch; 0: none yet). */
  private endedAt = 0;
  private windowStart = 0;
  private readonly db: number[] = [];
  private dbNext = 0;

  /** `onSlow` is told why (one line) when a window was slow. */
  constructor(readonly options: SlowRedisOptions, private readonly onSlow: (why: string) => void) {}

  /** The database's median latency, or undefined before it was measured enough. */
  dbMedian(): number | undefined {
    return this.db.length >= MIN_READS ? median(this.db) : undefined;
  }

  /** The latency above which a read is slow now (ms). */
  limit(): number {
    const { thresholdMs, dbFactor, floorMs } = this.options;
    const db = this.dbMedian();
    const relative = db === undefined || dbFactor <= 0 ? Infinity : Math.max(floorMs, dbFactor * db);
    return Math.max(floorMs, Math.min(thresholdMs, relative));
  }

  /** A read's query ran on the database and took `ms`. */
  database(ms: number): void {
    if (this.db.length < DB_SAMPLES) this.db.push(ms);
    else this.db[this.dbNext] = ms;
    this.dbNext = (this.dbNext + 1) % DB_SAMPLES;
  }

  /** A cache read Redis answered took `ms`. */
  cacheRead(ms: number): void {
    const now = Date.now();
    if (now - this.windowStart >= this.options.windowMs) {
      const done = this.window;
      const took = now - this.windowStart;
      this.window = [];
      this.windowStart = now;
      if (done.length >= MIN_READS) {
        // Three quarters of the reads above the limit: the fastest quarter's top.
        const fast = quantile(done, 0.25);
        // Right after a slow period the probe met an idle Redis: the load that made it slow comes
        // back with the reads, so only a clearly slower Redis starts another period at once.
        const limit = this.limit() * (this.endedAt > 0 && now - this.endedAt < DAMPING_MS ? 2 : 1);
        if (fast > limit) {
          const db = this.dbMedian();
          this.onSlow(`reads took ${median(done).toFixed(0)} ms (median of ${done.length} in ${(took / 1000).toFixed(1)} s, 3/4 above the limit of ${limit.toFixed(0)} ms` +
            `${db === undefined ? '' : `, the database ${db.toFixed(1)} ms`})`);
          return;
        }
      }
    }
    this.window.push(ms);
  }

  /** A slow period ended (the breaker closed): the next minute is damped. */
  ended(): void {
    this.endedAt = Date.now();
    this.reset();
  }

  /** Forgets the current window (the breaker opened or closed: its reads say nothing of what follows). */
  reset(): void {
    this.window = [];
    this.windowStart = Date.now();
  }

  /** Do these probe round trips show a fast Redis again? (under half the limit: no flapping at its edge) */
  fastAgain(roundTrips: readonly number[]): boolean {
    return roundTrips.length > 0 && median(roundTrips) <= this.limit() / 2;
  }
}
