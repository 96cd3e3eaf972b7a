/**
 * The read path shared by queries, functions, fragments and views.
 *
 * A hit is one plain GET (insideout mode: one script call that also checks
 * the stamps), and nothing else: the dependencies are not even worked out.
 * A miss then takes the epoch snapshot (and the dog-pile lock when asked) in
 * one script call, before it computes, and stores with the snapshot (see
 * cache-store.ts for why that makes stale stores impossible). So a miss costs
 * three round trips: GET, snapshot, store. With the lock, concurrent misses
 * of one key wait for the one that holds the lease (lua/includes/miss_snapshot.lua):
 * an invalidation voids it, a dead holder's expires, and no one waits longer
 * than LEASE_WAIT_MS.
 */
import type { CacheStore, Dependency } from './cache-store';

export interface ReadRequest<T> {
  readonly prefix: string;
  readonly hash: string;
  /** What the value depends on; a function when it is worth computing only on a miss (undefined: do not store). */
  readonly deps: readonly Dependency[] | (() => readonly Dependency[] | undefined);
  /** The dependencies narrowed by the computed value (join keys); same tables as `deps`. */
  readonly refineDeps?: (value: T) => readonly Dependency[];
  readonly timeout: number;
  readonly lock: boolean;
  /** false inside a transaction: the value may be read from cache but is never stored. */
  readonly canStore: boolean;
  /** false only to demonstrate the race in tests: the store skips the epoch check. */
  readonly raceProtection?: boolean;
  readonly compute: () => Promise<T>;
  readonly encode: (value: T) => Buffer;
  /** undefined: the bytes are of another format (treated as a miss). */
  readonly decode: (bytes: Buffer) => { value: T } | undefined;
}

export interface ReadOutcome<T> {
  readonly value: T;
  readonly hit: boolean;
  readonly stored: boolean;
  /** On a hit: the bytes it was decoded from, and Date.now() when they were read (for the sampler). */
  readonly bytes?: Buffer;
  readonly at?: number;
}

export interface ReadThroughOptions {
  /** The caller already looked for the value and found none: go straight to the miss's snapshot. */
  readonly skipGet?: boolean;
}

/** How long a dog-pile lease lives if its holder dies (ms). */
export const LEASE_TTL_MS = 5_000;
/** How long a miss waits for another's lease before it reads the database itself (ms). */
export const LEASE_WAIT_MS = 2_000;
const LOCK_POLL_MS = 15;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function readThrough<T>(store: CacheStore, req: ReadRequest<T>, options: ReadThroughOptions = {}): Promise<ReadOutcome<T>> {
  if (!store.insideout && options.skipGet !== true) {
    const bytes = await store.getValue(req.prefix, req.hash);
    if (bytes === undefined) return { value: await req.compute(), hit: false, stored: false }; // Redis unavailable
    if (bytes !== null) {
      const decoded = req.decode(bytes);
      if (decoded) return { value: decoded.value, hit: true, stored: false, bytes, at: Date.now() };
    }
  }
  const deps = typeof req.deps === 'function' ? req.deps() : req.deps;
  if (deps === undefined) return { value: await req.compute(), hit: false, stored: false };
  const tables = [...new Set(deps.map((d) => d.table))];
  const lockMs = req.lock && req.canStore ? LEASE_TTL_MS : 0;
  let fetched = await store.fetch(req.prefix, req.hash, tables, lockMs);
  // Bounded: past it the waiter reads the database (and does not store: the holder will).
  const deadline = Date.now() + LEASE_WAIT_MS;
  while (fetched.kind === 'miss' && fetched.lockHeld && Date.now() < deadline) {
    await sleep(LOCK_POLL_MS);
    fetched = await store.fetch(req.prefix, req.hash, tables, lockMs);
  }
  if (fetched.kind === 'hit') {
    const decoded = req.decode(fetched.bytes);
    if (decoded) return { value: decoded.value, hit: true, stored: false, bytes: fetched.bytes, at: Date.now() };
  }
  const value = await req.compute();
  if (fetched.kind !== 'miss' || fetched.lockHeld || !req.canStore) return { value, hit: false, stored: false };
  const bytes = req.encode(value);
  const snapshot = req.raceProtection === false ? { fields: [], values: [], lockToken: fetched.snapshot.lockToken } : fetched.snapshot;
  const stored = await store.store(req.prefix, req.hash, bytes, req.timeout, req.refineDeps ? req.refineDeps(value) : deps, snapshot);
  return { value, hit: false, stored };
}
