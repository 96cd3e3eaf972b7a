/**
 * Several OS processes read and write the same few rows through the cache,
 * on one shared database, for a while (STRESS_SECONDS, default 6). Once all
 * have exited, every read any of them ran is replayed through the cache and
 * without it: a cached value that differs from the database is a stale read
 * the race protection should have prevented.
 *
 * The same run with the protection off and every read held 40 ms between the
 * database and its store must leave stale values: that proves the check can
 * see what it is looking for. With the protection on, the very same run must
 * leave none.
 */
import test from 'ava';
import { dialects } from '../helpers/env';
import { assertStressReport, runStress, stressAttempts } from './stress-harness';

const SECONDS = Number(process.env['STRESS_SECONDS'] ?? 6);
const PROCESSES = Number(process.env['STRESS_PROCESSES'] ?? 4);
const SLOW_READ_MS = 40;
/**
 * SQLite has no row locks and the in-process write mutex does not reach other
 * processes: writers of several processes need IMMEDIATE transactions (the
 * default here). STRESS_SQLITE_PLAIN_WRITES=1 runs them bare, to observe that window.
 */
const SQLITE_TRANSACTIONS = process.env['STRESS_SQLITE_PLAIN_WRITES'] !== '1';
/** Without protection, staleness is likely but not certain in one run: up to this many runs. */
const ATTEMPTS = 3;

const runs = [
  { label: 'race protection on', raceProtection: true, readDelayMs: 0 },
  { label: `race protection on, reads held ${SLOW_READ_MS} ms before their store`, raceProtection: true, readDelayMs: SLOW_READ_MS },
  { label: `race protection OFF, reads held ${SLOW_READ_MS} ms before their store`, raceProtection: false, readDelayMs: SLOW_READ_MS },
  { label: 'near cache on, sampler at rate 1', raceProtection: true, readDelayMs: 0, near: true },
] as const;

for (const dialect of dialects()) {
  for (const run of runs) {
    const expectation = run.raceProtection ? 'leaves no stale cached value' : 'leaves stale cached values';
    test.serial(`${dialect}: ${PROCESSES} processes racing on the same rows, ${run.label}, ${expectation}`, async (t) => {
      t.timeout((SECONDS * 1000 + 60_000) * (run.raceProtection ? 1 : ATTEMPTS));
      const options = {
        dialect, testFile: __filename, processes: PROCESSES, seconds: SECONDS,
        raceProtection: run.raceProtection, readDelayMs: run.readDelayMs, sqliteTransactions: SQLITE_TRANSACTIONS,
        near: 'near' in run && run.near,
      };
      const report = await stressAttempts(t, `${dialect}, ${run.label}`, run.raceProtection, ATTEMPTS, (seed) => runStress({ ...options, seed }));
      assertStressReport(t, report, run.raceProtection);
      if ('near' in run) {
        const sampled = report.workers.map((w) => w.sampler!);
        t.true(sampled.reduce((a, x) => a + x.checks, 0) > 0, 'hits were sampled while writes ran');
        t.true(sampled.every((x) => x.quiescentChecks > 0 && x.nearHits > 0), 'every worker sampled its replayed hits, near hits among them');
        t.is(sampled.reduce((a, x) => a + x.quiescentStale, 0), 0, 'no stale hit once writes settled');
      }
    });
  }
}
