/**
 * The multi-process stress test (stress.test.ts) with `writes: 'stream'` in
 * every worker, on a private PostgreSQL with wal_level=logical and a private
 * MariaDB with the row binlog (TEST_DIALECTS postgres, mysql). Exactly one
 * worker consumes the change stream (the slot's advisory lock, the MariaDB
 * lease); the writes of the others resolve through Redis (the consumer's
 * marks and PUBLISH). Every read any worker ran is then replayed through the
 * cache and without it: no stale value with the race protection on; stale
 * values with it off, reads held 100 ms before their store (the check sees
 * what it looks for in this mode too).
 *
 *   STRESS_SECONDS          run length per run (default 6)
 *   STRESS_PROCESSES        workers (default 4)
 *   STRESS_STREAM_NO_WAIT=1 a write's wait for the stream resolves at once (see stress-shared.ts)
 */
import test from 'ava';
import { dialects, type Dialect } from '../helpers/env';
import { replicaIdentityFull, useStreamDatabases } from '../helpers/stream-databases';
import { assertStressReport, runStress, stressAttempts, type StressReport } from './stress-harness';

const SECONDS = Number(process.env['STRESS_SECONDS'] ?? 6);
const PROCESSES = Number(process.env['STRESS_PROCESSES'] ?? 4);
const SKIP_WAIT = process.env['STRESS_STREAM_NO_WAIT'] === '1';
/**
 * Longer than stress.test.ts's 40 ms: the invalidation comes from the consumer, a few ms after the
 * commit, and a raced store is stale only when it lands after it (else the invalidation deletes it).
 */
const SLOW_READ_MS = 100;
const ATTEMPTS = 3;
const databases = useStreamDatabases('stress', { postgres: dialects().includes('postgres'), mariadb: dialects().includes('mysql') });

const runs = [
  { label: `race protection on, reads held ${SLOW_READ_MS} ms before their store`, raceProtection: true },
  { label: `race protection OFF, reads held ${SLOW_READ_MS} ms before their store`, raceProtection: false },
] as const;

let slots = 0;

for (const dialect of ['postgres', 'mysql'] as const satisfies readonly Dialect[]) {
  const enabled = dialect === 'postgres' ? databases.withPostgres : databases.withMariadb;
  for (const run of runs) {
    const expectation = run.raceProtection ? 'leaves no stale cached value' : 'leaves stale cached values';
    (enabled ? test.serial : test.serial.skip)(`${dialect}, writes stream: ${PROCESSES} processes racing on the same rows, ${run.label}, ${expectation}`, async (t) => {
      t.timeout((SECONDS * 1000 + 90_000) * (run.raceProtection ? 1 : ATTEMPTS));
      const once = async (seed: number): Promise<StressReport> => {
        slots += 1;
        const slot = `stress_${process.pid}_${slots}`;
        // A long lease: no handover while a loaded machine runs late (one consumer throughout).
        const changeStream = dialect === 'postgres' ? { slot, handoverMs: 1000, writeWaitMs: 5000 } : { handoverMs: 1000, writeWaitMs: 5000 };
        try {
          return await runStress({
            dialect, testFile: __filename, processes: PROCESSES, seconds: SECONDS, seed,
            raceProtection: run.raceProtection, readDelayMs: SLOW_READ_MS,
            server: databases.server(dialect),
            stream: { changeStream, ...(SKIP_WAIT ? { skipWait: true } : {}) },
            ...(dialect === 'postgres' ? { prepare: replicaIdentityFull } : {}),
          });
        } finally {
          if (dialect === 'postgres') await databases.dropSlot(slot);
        }
      };
      const report = await stressAttempts(t, `${dialect}, ${run.label}`, run.raceProtection, ATTEMPTS, once);
      assertStressReport(t, report, run.raceProtection);
      // The mode was exercised: one consumer, and the others' writes resolved by its announcements.
      const streams = report.workers.map((w) => w.stream!);
      t.is(streams.filter((s) => s.role === 'consumer').length, 1, 'exactly one worker consumed the stream');
      const standby = streams.filter((s) => s.role !== 'consumer');
      t.true(standby.every((s) => s.role === 'standby' && s.done > 0), `every other worker's writes were resolved through Redis: ${JSON.stringify(streams)}`);
      t.is(streams.reduce((a, s) => a + s.timeout, 0), 0, 'no write waited out its bound (none fell back to the synchronous path)');
    });
  }
}
