/**
 * What the change-stream bench measures, the same way for every database:
 * lag from a foreign writer's COMMIT (the moment its client saw it return) to
 * the invalidation naming the row, at a number of concurrent writers; the rate
 * sustained when writers commit as fast as they can for a fixed time; and the
 * cost of a running consumer to in-app writes and hits in the same process.
 */
import { performance } from 'node:perf_hooks';
import type { Model, ModelStatic, Sequelize } from 'sequelize';
import type { Cacheops } from 'sequelize-cacheops';
import { median, percentile } from './measure';

/** Rows each writer updates in turn (its own range): no two writers wait on one row lock. */
export const ROWS_PER_WRITER = 100;
/** Rows the bench table is seeded with: a range for each of up to 8 writers. */
export const SEEDED_ROWS = 8 * ROWS_PER_WRITER;
const rowOf = (writer: number, k: number): number => writer * ROWS_PER_WRITER + (k % ROWS_PER_WRITER) + 1;

export interface StreamApp { readonly sequelize: Sequelize; readonly Item: ModelStatic<Model>; readonly cacheops: Cacheops }

/** A foreign client: one UPDATE of bench_stream_items per call, autocommitted. */
export interface ForeignWriter {
  rename(id: number, name: string): Promise<void>;
  end(): Promise<void>;
}

export interface LagResult { readonly label: string; readonly writers: number; readonly p50: number; readonly p99: number; readonly n: number; readonly perSecond?: number; readonly modelWide?: number }

export interface SustainedResult {
  readonly label: string;
  readonly writers: number;
  readonly seconds: number;
  /** Foreign commits per second over the window. */
  readonly committedPerSecond: number;
  /** Changes invalidated per second over the window (what the consumer kept up with). */
  readonly invalidatedPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** Commits not invalidated yet when the writers stopped, and how long the consumer took to catch up (ms). */
  readonly backlog: number;
  readonly drainMs: number;
  /** Batches invalidated model-wide (more rows than maxRowsForGranularWrite). */
  readonly modelWide: number;
}

/**
 * Follows the invalidations naming rows by their `name`: each writer renames its
 * row to names never used before, so an invalidation carrying a name is that commit's.
 */
class LagTracker {
  readonly lags: number[] = [];
  /** Commit times (writer side) not invalidated yet. */
  readonly pending = new Map<string, number>();
  /** Invalidations seen before their writer saw COMMIT return (lag counted as 0). */
  private readonly early = new Set<string>();
  invalidatedInWindow = 0;
  windowEnd = Infinity;
  /** Model-wide invalidations of the table (a batch past maxRowsForGranularWrite rows). */
  modelWide = 0;
  private readonly listener: (e: { table: string; values: 'all' | readonly Record<string, unknown>[] }) => void;

  constructor(private readonly app: StreamApp) {
    this.listener = (e) => {
      const now = performance.now();
      if (e.values === 'all') {
        if (e.table !== 'bench_stream_items') return;
        // Consecutive transactions are invalidated together; past maxRowsForGranularWrite rows the
        // batch is model-wide. It covers every commit returned before it (those of the next batch
        // too, so the lag of a few is taken a little short).
        this.modelWide += 1;
        for (const [name, at] of this.pending) {
          this.lags.push(now - at);
          this.pending.delete(name);
          if (now <= this.windowEnd) this.invalidatedInWindow += 1;
        }
        return;
      }
      for (const row of e.values) {
        const name = String(row['name']);
        if (!name.startsWith('w')) continue;
        const at = this.pending.get(name);
        if (at !== undefined) {
          this.lags.push(now - at);
          this.pending.delete(name);
          if (now <= this.windowEnd) this.invalidatedInWindow += 1;
        } else this.early.add(name);
      }
    };
    app.cacheops.on('invalidated', this.listener);
  }

  committed(name: string, at: number): void {
    if (this.early.delete(name)) {
      this.lags.push(0);
      if (at <= this.windowEnd) this.invalidatedInWindow += 1;
    } else this.pending.set(name, at);
  }

  /** Waits until every commit is invalidated (or limitMs passed); ms it took. */
  async drain(limitMs: number): Promise<number> {
    const start = performance.now();
    while (this.pending.size > 0 && performance.now() - start < limitMs) await new Promise((r) => setTimeout(r, 2));
    return performance.now() - start;
  }

  stop(): void {
    this.app.cacheops.off('invalidated', this.listener);
  }
}

/** `total` foreign UPDATEs spread over the writers, each as fast as its client commits. */
export async function lagAt(label: string, app: StreamApp, writers: readonly ForeignWriter[], total: number): Promise<LagResult> {
  const tracker = new LagTracker(app);
  const per = Math.ceil(total / writers.length);
  const started = performance.now();
  await Promise.all(writers.map(async (w, i) => {
    for (let k = 0; k < per; k += 1) {
      const name = `w${i}-${k}-${Math.random().toString(36).slice(2, 8)}`;
      await w.rename(rowOf(i, k), name);
      tracker.committed(name, performance.now());
    }
  }));
  const perSecond = (per * writers.length) / ((performance.now() - started) / 1000);
  await tracker.drain(5000);
  tracker.stop();
  if (tracker.pending.size > 0) console.log(`  ${label}: ${tracker.pending.size} commits not invalidated within 5 s`);
  return { label, writers: writers.length, p50: percentile(tracker.lags, 50), p99: percentile(tracker.lags, 99), n: tracker.lags.length, perSecond, modelWide: tracker.modelWide };
}

/**
 * Writers commit as fast as they can for `seconds`; the rate is what the consumer
 * invalidated within that window, the lag that of every commit, the backlog what
 * was left when the writers stopped.
 */
export async function sustained(label: string, app: StreamApp, writers: readonly ForeignWriter[], seconds: number): Promise<SustainedResult> {
  const tracker = new LagTracker(app);
  const started = performance.now();
  const end = started + seconds * 1000;
  tracker.windowEnd = end;
  let committed = 0;
  await Promise.all(writers.map(async (w, i) => {
    for (let k = 0; performance.now() < end; k += 1) {
      const name = `w${i}-${k}-${Math.random().toString(36).slice(2, 8)}`;
      await w.rename(rowOf(i, k), name);
      const at = performance.now();
      if (at <= end) committed += 1;
      tracker.committed(name, at);
    }
  }));
  const backlog = tracker.pending.size;
  const drainMs = backlog === 0 ? 0 : await tracker.drain(30_000);
  tracker.stop();
  return {
    label, writers: writers.length, seconds,
    committedPerSecond: committed / seconds, invalidatedPerSecond: tracker.invalidatedInWindow / seconds,
    p50: percentile(tracker.lags, 50), p99: percentile(tracker.lags, 99), max: Math.max(0, ...tracker.lags), backlog, drainMs, modelWide: tracker.modelWide,
  };
}

export interface Costs { writeOn: number; writeOff: number; hitOn: number; hitOff: number; idleOn: number; idleOff: number }

/**
 * Medians (µs), in alternating phases with and without a running consumer in the
 * same process: a hit while nothing is written (the consumer idle), then an
 * in-app update by pk followed by a hit (each update comes back through the stream).
 */
export async function costs(open: (stream: boolean) => Promise<StreamApp & { close(): Promise<void> }>, rounds: number, per: number): Promise<Costs> {
  const samples = { writeOn: [] as number[], writeOff: [] as number[], hitOn: [] as number[], hitOff: [] as number[], idleOn: [] as number[], idleOff: [] as number[] };
  for (let r = 0; r < rounds * 2; r += 1) {
    const on = r % 2 === 0;
    const app = await open(on);
    await app.Item.findByPk(1);
    // The consumer's start (everything invalidated once on a new slot or position, the first batches) is over before timing.
    await new Promise((res) => setTimeout(res, 300));
    await app.Item.findByPk(1);
    for (let i = 0; i < per * 2; i += 1) {
      const t = performance.now();
      await app.Item.findByPk(1);
      (on ? samples.idleOn : samples.idleOff).push((performance.now() - t) * 1000);
    }
    for (let i = 0; i < per; i += 1) {
      let t = performance.now();
      await app.Item.findByPk(1);
      (on ? samples.hitOn : samples.hitOff).push((performance.now() - t) * 1000);
      t = performance.now();
      await app.Item.update({ n: i }, { where: { id: 2 } });
      (on ? samples.writeOn : samples.writeOff).push((performance.now() - t) * 1000);
    }
    await app.close();
  }
  return {
    writeOn: median(samples.writeOn), writeOff: median(samples.writeOff), hitOn: median(samples.hitOn), hitOff: median(samples.hitOff),
    idleOn: median(samples.idleOn), idleOff: median(samples.idleOff),
  };
}
