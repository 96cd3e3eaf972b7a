// Runs the test command (AVA) for `npm test` and `npm run test:fast`: gives the
// run its tag (TEST_RUN_TAG: every test key prefix carries it), then states
// how long the run took and checks that it left no key in Redis (each test
// file removes its keys when it ends: test/helpers/keys-cleanup.ts). Keys left
// behind are listed, removed, and fail the run.
// Usage: node scripts/test-run.mjs <label> <command> [args...]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const { ensureRunTag, runKeyStart, sweepKeys } = createRequire(import.meta.url)('./test-keys.cjs');

const [label, cmd, ...args] = process.argv.slice(2);
const tag = ensureRunTag();
const started = Date.now();
const child = spawn(cmd, args, { stdio: 'inherit', shell: process.platform === 'win32' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
const [code, signal] = await new Promise((resolve) => child.on('exit', (c, s) => resolve([c, s])));

const seconds = ((Date.now() - started) / 1000).toFixed(0);
let exit = code ?? (signal ? 1 : 0);
try {
  const left = await sweepKeys(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', runKeyStart(tag), { remove: true });
  if (left.length === 0) {
    console.log(`\nRedis: no key left by this run (prefix ${runKeyStart(tag)})`);
  } else {
    console.log(`\nRedis: this run left ${left.length} ${left.length === 1 ? "key" : "keys"} (now removed); a test does not clean up:`);
    for (const key of left.slice(0, 20)) console.log(`  ${key}`);
    if (left.length > 20) console.log(`  and ${left.length - 20} more`);
    if (exit === 0) exit = 1;
  }
} catch (error) {
  console.log(`\nRedis: could not check for keys left behind (${error.message})`);
}
console.log(`${label} took ${seconds} s${label === 'npm test' ? ' (npm run test:fast runs the quick files in seconds)' : ''}`);
process.exit(exit);
