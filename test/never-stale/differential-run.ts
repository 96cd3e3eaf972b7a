/**
 * The never-stale differential property (differential.test.ts), registered for
 * a Redis client: random sequences of reads, writes (through every write path)
 * and transactions with savepoints; after every step each probe read, each
 * recent generated read and the step's own read must give through the cache
 * exactly what it gives with `{ cacheops: false }`. With the near cache on,
 * two installations: steps write through one; every check also reads through
 * the other, once its near cache has applied the invalidation messages sent so
 * far (tracking.ts barrier).
 */
import test from 'ava';
import fc from 'fast-check';
import type { RedisClientLike } from '../../src/index';
import { dialects, rawRedis, type Dialect } from '../helpers/env';
import { fastPathOf, servedCounter } from '../helpers/fast-path';
import { WorldFactory, type WorldOptions } from './schema';
import { assertInRounds } from './rounds';
import { Runner, stepArb } from './steps';

const MAX_STEPS_PER_RUN = 30;
/** Mean steps per run observed (a transaction counts itself and each step inside it). */
const EXPECTED_STEPS_PER_RUN = 24;

export interface DifferentialRun {
  /** Names the databases (the test's `__filename`). */
  readonly file: string;
  /** Starts the tests' titles. */
  readonly label: string;
  /** Steps per dialect, by near cache off / on (0: not registered). */
  readonly steps: (near: boolean) => number;
  readonly seeds: number;
  /** The Redis client handed in (default: a plain ioredis 5 client). */
  readonly client?: () => RedisClientLike & { disconnect(): void };
  /** Only these of the tested dialects (default: all of them). */
  readonly dialects?: readonly Dialect[];
  /** The worlds' database and configuration (default: the test file's database, cacheops's defaults). */
  readonly world?: () => WorldOptions;
}

export function registerDifferential(run: DifferentialRun): void {
  for (const dialect of dialects()) for (const near of [false, true]) {
    if (run.steps(near) <= 0 || (run.dialects && !run.dialects.includes(dialect))) continue;
    const TARGET = run.steps(near) * run.seeds;
    const title = `${run.label}${near ? `${dialect}, near cache on in two installations` : dialect}`;
    test.serial(`${title}: a read through the cache always equals the same read around it`, async (t) => {
      t.timeout(60 * 60_000);
      const seed = process.env['FC_SEED'] !== undefined ? Number(process.env['FC_SEED']) : Math.floor(Math.random() * 0x7fffffff);
      const path = process.env['FC_PATH'];
      const redis = run.client ? run.client() : rawRedis();
      const factory = new WorldFactory(dialect, run.file, redis, near, run.world?.());
      const totals = { runs: 0, steps: 0, reads: 0, hits: 0, stores: 0, fast: 0, nearHits: 0 };
      const started = Date.now();
      try {
        const property = fc.asyncProperty(
          fc.array(stepArb(dialect), { minLength: 1, maxLength: MAX_STEPS_PER_RUN, size: 'max' }),
          async (steps) => {
            const world = await factory.fresh();
            const runner = new Runner(world);
            const before = world.cacheops.stats();
            const fast = world.cacheops.core.fastPath ? servedCounter(fastPathOf(world.cacheops)) : undefined;
            const nearBefore = (world.peer?.cacheops.stats().nearHits ?? 0) + before.nearHits;
            try {
              for (const step of steps) await runner.run(step);
            } finally {
              totals.runs += 1;
              totals.steps += runner.steps;
              totals.reads += runner.reads;
              const after = world.cacheops.stats();
              totals.hits += after.hits - before.hits;
              totals.stores += after.stores - before.stores;
              totals.fast += fast?.count() ?? 0;
              fast?.restore();
              totals.nearHits += (world.peer?.cacheops.stats().nearHits ?? 0) + after.nearHits - nearBefore;
              await factory.release(world);
            }
          },
        );
        // Rounds until the target is reached (one, usually); each round has its own seed.
        await assertInRounds(property, {
          label: dialect, target: TARGET, seeds: run.seeds, steps: () => totals.steps, expectedStepsPerRun: EXPECTED_STEPS_PER_RUN, seed, path, log: (m) => t.log(m),
        });
      } finally {
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        t.log(`${title}: ${totals.runs} runs, ${totals.steps} steps, ${totals.reads} checked reads (${totals.hits} cache hits, ${totals.stores} stores, ${totals.fast} through the fast path${near ? `, ${totals.nearHits} near hits over both installations` : ''}), ${seconds} s`);
        await factory.close();
        redis.disconnect();
      }
      t.true(path !== undefined || totals.steps >= TARGET, `ran ${totals.steps} of ${TARGET} steps`);
      // Not vacuous: a good share of the cached reads came from the cache.
      t.true(totals.hits * 10 > totals.reads, `only ${totals.hits} cache hits in ${totals.reads} reads`);
      // The fast path (query/fast-path.ts) is among what is checked.
      t.true(totals.fast * 20 > totals.reads, `only ${totals.fast} reads through the fast path in ${totals.reads}`);
      if (near) t.true(totals.nearHits * 20 > totals.reads, `only ${totals.nearHits} near hits in ${totals.reads} reads`);
    });
  }
}
