// Runs the AVA suite in TAP mode (scripts/ava-tap.mjs), passes the TAP
// through to stdout as it comes, counts the results and prints, as its last
// line, `N passed, N failed` (`, N skipped` when some were skipped or todo).
// Failed counts `not ok` lines (failed tests, crashes, timeouts, known
// failures), tests left unrun in a crashed file, and an AVA exit code that is
// not 0 with nothing failed. Exit code: 1 when anything failed, else 0.
// With CI_SUMMARY_FILE set, the summary line is also written to that file.
// With CI_TEST_TIMEOUT (seconds) set, AVA is stopped after that long, and the
// stop counts as one failure; the summary is still printed.
// After AVA, one more result: that the run left no key in Redis (every test
// key prefix carries TEST_RUN_TAG, set here; scripts/test-keys.cjs).
// Usage: node scripts/ci-summary.mjs [ava arguments...]
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const runner = fileURLToPath(new URL('./ava-tap.mjs', import.meta.url));
const { ensureRunTag, runKeyStart, sweepKeys } = createRequire(import.meta.url)('./test-keys.cjs');
const tag = ensureRunTag();
const started = Date.now();
// AVA and its workers get a process group of their own, so that stopping
// them also stops a worker busy in a hung test (AVA alone would leave it).
const child = spawn(process.execPath, [runner, ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
const killGroup = (sig) => {
  try {
    process.kill(-child.pid, sig);
  } catch {
    // the group is gone already
  }
};
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => killGroup(sig));

let stoppedAfter = 0;
const limit = Number(process.env.CI_TEST_TIMEOUT ?? 0);
if (limit > 0) {
  setTimeout(() => {
    stoppedAfter = limit;
    console.error(`ci-summary: the tests did not finish within ${limit} s: stopping them`);
    killGroup('SIGTERM');
    setTimeout(() => killGroup('SIGKILL'), 20_000).unref();
  }, limit * 1000).unref();
}

const counts = { passed: 0, failed: 0, skipped: 0, todo: 0, knownFailures: 0, remaining: 0 };
const TEST_LINE = /^(not ok|ok)\b(.*)$/;
const DIRECTIVE = /#\s*(SKIP|TODO)\b[^#]*$/i;
const REMAINING = /^# (\d+) tests? remaining in /;

const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
lines.on('line', (line) => {
  process.stdout.write(`${line}\n`);
  const test = TEST_LINE.exec(line);
  if (test) {
    const ok = test[1] === 'ok';
    const directive = DIRECTIVE.exec(test[2] ?? '')?.[1]?.toUpperCase();
    if (directive === 'SKIP') counts.skipped += 1;
    else if (directive === 'TODO') counts.todo += 1;
    else if (ok) counts.passed += 1;
    else {
      counts.failed += 1;
      if (/\(known failure\)\s*$/.test(line)) counts.knownFailures += 1;
    }
    return;
  }
  const remaining = REMAINING.exec(line);
  if (remaining) counts.remaining += Number(remaining[1]);
  else if (/^Bail out!/.test(line)) counts.failed += 1;
});

const [code, signal] = await new Promise((resolve) => {
  child.on('close', (c, s) => resolve([c, s]));
});
killGroup('SIGKILL'); // what a test left running (servers, browsers) ends with the run

// The last check: nothing of this run is left in Redis (found keys are removed, and fail it).
try {
  const left = await sweepKeys(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', runKeyStart(tag), { remove: true });
  if (left.length === 0) {
    counts.passed += 1;
    process.stdout.write(`ok - redis › no key left by this run (prefix ${runKeyStart(tag)})\n`);
  } else {
    counts.failed += 1;
    process.stdout.write(`not ok - redis › this run left ${left.length} keys: ${left.slice(0, 10).join(', ')}${left.length > 10 ? ', ...' : ''}\n`);
  }
} catch (error) {
  counts.failed += 1;
  process.stdout.write(`not ok - redis › could not check for keys left behind: ${error.message}\n`);
}

let failed = counts.failed + counts.remaining + (stoppedAfter ? 1 : 0);
if ((code !== 0 || signal) && failed === 0) failed = 1; // AVA failed without reporting a test (config error, crash)
const skipped = counts.skipped + counts.todo;

const details = [
  `ava exit ${signal ?? code}`,
  `${((Date.now() - started) / 1000).toFixed(0)} s`,
  stoppedAfter ? `stopped after ${stoppedAfter} s (counted as 1 failed)` : '',
  counts.knownFailures ? `${counts.knownFailures} known failures (test.failing) counted as failed` : '',
  counts.remaining ? `${counts.remaining} tests not run in crashed files counted as failed` : '',
  counts.todo ? `${counts.todo} todo counted as skipped` : '',
].filter(Boolean).join('; ');
const summary = `${counts.passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
process.stdout.write(`\n# ci-summary: ${details}\n${summary}\n`);
if (process.env.CI_SUMMARY_FILE) writeFileSync(process.env.CI_SUMMARY_FILE, `${summary}\n`);
process.exitCode = failed > 0 ? 1 : 0;
