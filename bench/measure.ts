/**
 * Timing helpers: interleaved measurement of several tasks (the order rotates
 * every iteration, so drift, GC and background load hit all of them alike),
 * medians in microseconds, and small formatting helpers.
 */

export type Task = (iteration: number) => Promise<unknown>;

/** Microseconds one call of fn takes. */
export async function timeOnce(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1000;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Lets work a call left behind (pool releases, socket reads, driver callbacks)
 * run before the next call is timed, so no task pays for its predecessor.
 */
async function settle(): Promise<void> {
  await tick();
  await tick();
}

/**
 * Runs every task `warmup` times unmeasured, then `iterations` times each,
 * rotating which task goes first, letting the event loop settle between
 * calls; returns the samples (µs) per task.
 */
export async function interleave<K extends string>(tasks: Readonly<Record<K, Task>>, iterations: number, warmup: number): Promise<Record<K, number[]>> {
  const names = Object.keys(tasks) as K[];
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < warmup; i += 1) {
    for (const n of names) await tasks[n](i);
  }
  for (let i = 0; i < iterations; i += 1) {
    for (let j = 0; j < names.length; j += 1) {
      const n = names[(i + j) % names.length]!;
      const task = tasks[n];
      samples[n].push(await timeOnce(() => task(i)));
      await settle();
    }
  }
  return samples;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs `count` jobs with at most `concurrency` in flight. */
export async function inParallel(count: number, concurrency: number, job: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next;
      next += 1;
      await job(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

export const us = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '-');
export const ratio = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)}x` : '-');
export const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');

/** A left-aligned first column, right-aligned others. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
