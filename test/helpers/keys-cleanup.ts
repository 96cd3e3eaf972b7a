/**
 * When a test file ends, its Redis keys go: every key whose prefix came from
 * uniquePrefix (env.ts) in this file, in every database index of the test
 * Redis, and its members of `cacheops:prefixes`. Registered by env.ts in AVA
 * workers only (processes a test starts import env.ts too, and AVA's `test`
 * exists only in a worker).
 */
import type { TestFn } from 'ava';

interface Sweeper { sweepKeys(url: string, start: string, options?: { remove?: boolean }): Promise<string[]> }

/** Whether this process is an AVA worker running a test file. */
export function inAvaWorker(): boolean {
  return /[\\/]ava[\\/]lib[\\/]worker[\\/]base\.js$/.test(process.argv[1] ?? '');
}

export function removeKeysAfterFile(url: string, start: string): void {
  // Loaded here rather than imported: outside a worker 'ava' refuses to load.
  const test = (require('ava') as { default: TestFn }).default;
  const { sweepKeys } = require('../../scripts/test-keys.cjs') as Sweeper;
  test.after.always('remove the Redis keys of this file', async () => {
    await sweepKeys(url, start, { remove: true }).catch(() => undefined); // a Redis a test stopped on purpose
  });
}
