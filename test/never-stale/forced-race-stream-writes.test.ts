/**
 * The forced read/write race (forced-race-pair.ts) with the writer in
 * `writes: 'stream'`, on a private PostgreSQL with wal_level=logical and a
 * private MariaDB with the row binlog (TEST_DIALECTS postgres, mysql): the
 * invalidation now comes from the change stream's consumer, and the writer's
 * call resolves once it came. The consumer runs in the writer's installation,
 * in the reader's, or in a fourth one; every installation has the same
 * configuration.
 *
 * With race protection the held store is refused and the next read is fresh;
 * without it the raced value is cached and stale (the test sees it). With the
 * write's wait for the stream short-circuited (it resolves at once), the
 * reader stores before the consumer's invalidation and reads it back: stale
 * reads with the protection on, which the wait is there to prevent.
 */
import test from 'ava';
import type { CacheopsConfig } from '../../src/index';
import { STREAM_WAITED_EVENT, StreamWaits, type WaitOutcome } from '../../src/write/stream-wait';
import { dialects, type Dialect } from '../helpers/env';
import { replicaIdentityFull, useStreamDatabases } from '../helpers/stream-databases';
import { force, openPair, scenarios, type Pair, type PairOptions } from './forced-race-pair';

const databases = useStreamDatabases('race', { postgres: dialects().includes('postgres'), mariadb: dialects().includes('mysql') });

let slots = 0;

/** A pair in the stream write mode; the PostgreSQL slot is dropped after `use`. */
async function withStreamPair<T>(dialect: Dialect, raceProtection: boolean, consumer: NonNullable<PairOptions['consumer']>, use: (pair: Pair) => Promise<T>): Promise<T> {
  slots += 1;
  const slot = `race_${process.pid}_${slots}`;
  const config: Partial<CacheopsConfig> = {
    writes: 'stream', logger: () => undefined,
    // A long lease: no handover while a loaded machine runs late (the handover is not what is tested).
    changeStream: dialect === 'postgres' ? { slot, handoverMs: 1000, writeWaitMs: 5000 } : { handoverMs: 1000, writeWaitMs: 5000 },
  };
  try {
    const pair = await openPair({
      dialect, testFile: __filename, raceProtection, server: databases.server(dialect), config, consumer,
      ...(dialect === 'postgres' ? { prepare: replicaIdentityFull } : {}),
    });
    try {
      return await use(pair);
    } finally {
      await pair.close();
    }
  } finally {
    if (dialect === 'postgres') await databases.dropSlot(slot);
  }
}

/** The writer's waits for the stream, by outcome, from now on. */
function countWaits(pair: Pair): Record<WaitOutcome, number> {
  const outcomes: Record<WaitOutcome, number> = { done: 0, timeout: 0 };
  pair.writer.cacheops.core.events.on(STREAM_WAITED_EVENT, (w: { outcome: WaitOutcome }) => { outcomes[w.outcome] += 1; });
  return outcomes;
}

const roles = (pair: Pair): string => ['reader', 'writer', 'other', 'consumer']
  .map((k) => `${k} ${(pair as unknown as Record<string, Pair['reader'] | undefined>)[k]?.cacheops.stats().changeStream.role ?? '-'}`).join(', ');

for (const dialect of ['postgres', 'mysql'] as const) {
  const run = (dialect === 'postgres' ? databases.withPostgres : databases.withMariadb) ? test.serial : test.serial.skip;

  for (const consumer of ['writer', 'reader', 'separate'] as const) {
    run(`${dialect}, writes stream, consumer in ${consumer === 'separate' ? 'a separate installation' : `the ${consumer}'s installation`}: ` +
      `with race protection a store that raced a write is refused and the next read is fresh (${scenarios.length} kinds of write)`, async (t) => {
      await withStreamPair(dialect, true, consumer, async (pair) => {
        const expected = consumer === 'separate' ? pair.consumer! : pair[consumer];
        t.is(expected.cacheops.stats().changeStream.role, 'consumer', roles(pair));
        const waits = countWaits(pair);
        for (const s of scenarios) {
          const before = { ...waits };
          const r = await force(pair, s);
          t.true(waits.done > before.done, `${s.name}: the write was resolved by the stream`);
          t.true(r.refused, `${s.name}: the store was refused`);
          t.is(r.stale, 0, `${s.name}: ${r.details}`);
        }
        t.is(waits.timeout, 0, 'no write waited out its bound');
        t.log(`${dialect}, consumer ${consumer}: ${waits.done} waits resolved by the stream, ${waits.timeout} past the bound; 0 of ${scenarios.length} forced races stale`);
      });
    });
  }

  run(`${dialect}, writes stream: without race protection the same forced races leave stale values (${scenarios.length} kinds of write)`, async (t) => {
    await withStreamPair(dialect, false, 'separate', async (pair) => {
      const waits = countWaits(pair);
      let stale = 0;
      for (const s of scenarios) {
        const r = await force(pair, s);
        stale += r.stale;
        t.false(r.refused, `${s.name}: nothing refused without protection`);
        t.is(r.hits, 1, `${s.name}: the raced value was cached`);
        t.is(r.stale, 1, `${s.name}: and it is stale`);
      }
      t.true(waits.done >= scenarios.length, `the writes were resolved by the stream (${waits.done})`);
      t.log(`${dialect}, protection off: ${stale} of ${scenarios.length} forced races left a stale value`);
    });
  });

  run(`${dialect}, writes stream: a write that resolves before the stream's invalidation lets a raced store through (the wait is what prevents it)`, async (t) => {
    const wait = Object.getOwnPropertyDescriptor(StreamWaits.prototype, 'wait')!;
    StreamWaits.prototype.wait = () => Promise.resolve('done');
    try {
      await withStreamPair(dialect, true, 'separate', async (pair) => {
        // Whether the check reads before the consumer's invalidation is a race of its own: up to three passes.
        let stale = 0;
        for (let pass = 1; pass <= 3 && stale === 0; pass += 1) {
          for (const s of scenarios) stale += (await force(pair, s)).stale;
          t.log(`${dialect}, protection on, wait short-circuited, pass ${pass}: ${stale} of ${scenarios.length} forced races left a stale value`);
        }
        t.true(stale > 0, 'the reader stored and read back the old value before the consumer invalidated it');
      });
    } finally {
      Object.defineProperty(StreamWaits.prototype, 'wait', wait);
    }
  });
}
