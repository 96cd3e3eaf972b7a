/**
 * Watching the fast paths (src/query/fast-path.ts) from tests: which calls
 * reach Sequelize's QueryInterface, and which a remembered select serves.
 * Both wrap methods of the one instance and put them back on restore, so the
 * production objects carry no counters or switches for tests.
 */
import type { Sequelize } from 'sequelize';
import type { FastPath } from '../../src/query/fast-path';

export interface Counter {
  readonly count: () => number;
  readonly restore: () => void;
}

type QueryMethod = 'select' | 'rawSelect';

/** Counts calls of this Sequelize's QueryInterface methods (the normal path's ways to the database). */
export function selectCounter(sequelize: Sequelize, methods: readonly QueryMethod[] = ['select', 'rawSelect']): Counter {
  const qi = sequelize.getQueryInterface() as unknown as Record<QueryMethod, (...args: unknown[]) => Promise<unknown>>;
  const inner = { select: qi.select, rawSelect: qi.rawSelect };
  let n = 0;
  for (const name of methods) {
    qi[name] = function (this: unknown, ...args: unknown[]) {
      n += 1;
      return inner[name].apply(this, args);
    };
  }
  return { count: () => n, restore: () => { for (const name of methods) qi[name] = inner[name]; } };
}

/** Runs read twice; how many QueryInterface calls the two made (1: the second was fast). */
export async function twice(counter: Counter, read: () => Promise<unknown>): Promise<number> {
  const before = counter.count();
  await read();
  await read();
  return counter.count() - before;
}

/** The fast path of an installation (the core holds it untyped: the core layer knows nothing of query/). */
export function fastPathOf(cacheops: { readonly core: { readonly fastPath: object | undefined } }): FastPath {
  const fast = cacheops.core.fastPath;
  if (!fast) throw new Error('no fast path installed');
  return fast as FastPath;
}

/** Counts the calls a fast path serves from a remembered select (hits and misses: readRemembered and readRememberedRaw). */
export function servedCounter(fast: FastPath): Counter {
  let n = 0;
  // Named through keyof FastPath: a rename of either method fails the type check here instead of counting nothing.
  const names: readonly (keyof FastPath & ('readRemembered' | 'readRememberedRaw'))[] = ['readRemembered', 'readRememberedRaw'];
  const own = fast as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const name of names) {
    const inner = own[name]!;
    own[name] = function (this: unknown, ...args: unknown[]) {
      n += 1;
      return inner.apply(this, args);
    };
  }
  return { count: () => n, restore: () => { for (const name of names) delete own[name]; } };
}
