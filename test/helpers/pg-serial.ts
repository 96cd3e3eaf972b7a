/**
 * Fails a test file whose code sends a query on a `pg` client while two are
 * already there (one running, one waiting): `pg` 8.19+ then warns
 * (DeprecationWarning "Calling client.query() when the client is already
 * executing a query"), once per process, so a later one would go unseen; pg 9
 * refuses it. Queries on a Sequelize transaction share its connection, so
 * queries in one transaction sent at once (Promise.all) are what this finds:
 * await each instead.
 *
 * Left out: Sequelize 6's own overlaps, which no caller can change
 * (BelongsToMany and HasMany set/add updating rows at once, findAndCountAll's
 * count and rows, `Model.update`/`destroy` with `individualHooks` and any
 * other `Promise.all` in Sequelize's sources, and the library's
 * findAndCountAll fast path that reads both at once the same way).
 *
 * Installed by env.ts, so every test file that uses a database has it.
 */

interface PgClientInternals {
  _queryQueue?: unknown[];
  query(...args: unknown[]): unknown;
}

/** Sequelize's own overlaps (see above), by their frames in the stack. */
const SEQUELIZE_OWN = /[\\/]associations[\\/](belongs-to-many|has-many)\.js|findAndCountAll|FindAndCountAll/;

/**
 * Whether the queries were sent at once by a `Promise.all` of Sequelize's own
 * code (`Model.update` / `Model.destroy` with `individualHooks` save or
 * destroy each instance at once, among others): the frame that awaits the
 * Promise.all is in Sequelize's sources.
 */
function sentBySequelize(stack: string): boolean {
  const lines = stack.split('\n');
  const at = lines.findIndex((l) => /\bPromise\.(all|allSettled)\b/.test(l));
  if (at < 0) return false;
  const caller = lines.slice(at + 1).find((l) => /^\s*at /.test(l));
  return caller !== undefined && /node_modules[\\/]sequelize[\\/]/.test(caller);
}

/** Overlaps seen while allowOverlaps runs (the guard's own test provokes one). */
let allowed: string[] | undefined;
let installed = false;

function loadPg(): { Client: { prototype: PgClientInternals } } | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('pg') as { Client: { prototype: PgClientInternals } };
  } catch {
    return undefined; // pg is not installed: nothing to guard
  }
}

export function guardPgOverlaps(): void {
  if (installed) return;
  const pg = loadPg();
  if (!pg) return;
  installed = true;
  const original = pg.Client.prototype.query;
  pg.Client.prototype.query = function guardedQuery(this: PgClientInternals, ...args: unknown[]): unknown {
    // pg 8's own condition for the warning (the running query is not in the queue).
    if ((this._queryQueue?.length ?? 0) > 0) {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 60; // far enough to see who sent the queries at once
      const stack = new Error('a query was sent on a pg client while others were there (serialize them: await each)').stack ?? '';
      Error.stackTraceLimit = limit;
      if (!SEQUELIZE_OWN.test(stack) && !sentBySequelize(stack)) {
        if (allowed) allowed.push(stack);
        else process.nextTick(() => { throw new Error(stack); });
      }
    }
    return original.apply(this, args);
  };
}

/** Runs fn and returns the overlapping queries it sent (instead of failing the file). */
export async function allowOverlaps(fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  allowed = seen;
  try {
    await fn();
  } finally {
    allowed = undefined;
  }
  return seen;
}
