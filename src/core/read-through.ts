/**
 * The read path shared by queries, functions, fragments and views: a read
 * plan (read-plan.ts) answered from Redis or by its computation.
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
 *
 * Stale-while-revalidate (a profile's `staleWhileRevalidate`): the value is
 * stored with its fresh-until time in front of it (freshness.ts) and its key
 * lives that many seconds longer. A reader finding it past its fresh time
 * asks refresh.lua who refreshes it: the first takes the lease and recomputes
 * in its own call (it pays what a miss pays), the others meanwhile get the
 * stale value without touching the database. An invalidation deletes the value
 * (or, in insideout mode, makes its stamps differ) like any other, so a stale
 * value is never served after one; the refresh stores with its epoch snapshot,
 * so a refresh that raced an invalidation is refused like any miss's store.
 */
import type { CacheStore, Dependency, Snapshot } from './cache-store';
import { readFreshness, withFreshness, type Freshness } from './freshness';
import { NotStored, type Compute, type ReadPlan } from './read-plan';

export interface ReadOutcome<T> {
  readonly value: T;
  readonly hit: boolean;
  readonly stored: boolean;
  /** On a hit: the bytes it was decoded from, and Date.now() when they were read (for the sampler). */
  readonly bytes?: Buffer;
  readonly at?: number;
  /** A hit served past its fresh time, while another caller refreshes it (stale-while-revalidate). */
  readonly stale?: boolean;
  /** On a hit: Date.now() until which it is fresh (Infinity without stale-while-revalidate). */
  readonly freshUntil?: number;
  /** Not stored because Redis is full (maxmemory reached). */
  readonly full?: boolean;
  /** Not stored because the computation said so (NotStored). */
  readonly declined?: boolean;
}

export interface ReadThroughOptions {
  /** The caller already looked for the value and found none: go straight to the miss's snapshot. */
  readonly skipGet?: boolean;
  /** The caller already read these bytes for the key (the near tier's tracked read found them stale). */
  readonly found?: Buffer;
  /** Stores skip the epoch check (only to demonstrate the race in tests: `raceProtection: false`). */
  readonly unchecked?: boolean;
}

/** The options of a plain read (shared: the hit path allocates none). */
export const PLAIN_READ: ReadThroughOptions = Object.freeze({});
/** The options of a read whose stores skip the epoch check (`raceProtection: false`). */
export const UNCHECKED_READ: ReadThroughOptions = Object.freeze({ unchecked: true });

/** How long a dog-pile lease lives if its holder dies (ms). */
export const LEASE_TTL_MS = 5_000;
/** How long a miss waits for another's lease before it reads the database itself (ms). */
export const LEASE_WAIT_MS = 2_000;
const LOCK_POLL_MS = 15;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The stale-while-revalidate window of a plan in ms (0: off). */
const windowMs = (plan: Pick<ReadPlan<unknown>, 'staleWhileRevalidate'>): number => Math.max(0, plan.staleWhileRevalidate * 1000);

/** Stored bytes split into header and payload; bytes of reads without the option are left whole. */
export function freshnessOf(plan: Pick<ReadPlan<unknown>, 'staleWhileRevalidate'>, bytes: Buffer): Freshness {
  return windowMs(plan) > 0 ? readFreshness(bytes) : { payload: bytes, freshUntil: Infinity, header: undefined };
}

/** The per-read state the helpers share: the dependencies, worked out at most once. */
class Read<T> {
  private deps: readonly Dependency[] | undefined | null = null;

  constructor(readonly store: CacheStore, readonly plan: ReadPlan<T>, private readonly computeValue: Compute<T>, private readonly unchecked: boolean) {}

  dependencies(): readonly Dependency[] | undefined {
    if (this.deps === null) {
      const deps = this.plan.deps;
      this.deps = isDependencyList(deps) ? deps : deps.dependencies();
    }
    return this.deps;
  }

  tables(): string[] | undefined {
    const deps = this.dependencies();
    return deps && [...new Set(deps.map((d) => d.table))];
  }

  /** Runs the read's computation, timed: what the database costs is what a slow Redis is measured against (slow.ts). */
  async compute(): Promise<T | NotStored<T>> {
    const started = performance.now();
    const computed = await this.computeValue();
    this.store.slow?.database(performance.now() - started);
    return computed;
  }

  /** The value straight from the database, not stored. */
  async computeOnly(): Promise<ReadOutcome<T>> {
    const computed = await this.compute();
    return computed instanceof NotStored ? { value: computed.value, hit: false, stored: false, declined: true } : { value: computed, hit: false, stored: false };
  }

  /**
   * Computes and stores under the snapshot (which holds our lease, if any: the
   * store releases it). A value the computation declines to store gives the
   * lease back through its token (release_lease.lua), so waiters go on at once.
   */
  async computeAndStore(snapshot: Snapshot, releaseOnFailure: boolean): Promise<ReadOutcome<T>> {
    const { plan, store } = this;
    let computed: T | NotStored<T>;
    try {
      computed = await this.compute();
    } catch (error) {
      // A refresh that failed gives its lease back: readers stop serving the stale value at once.
      if (releaseOnFailure) await store.releaseLease(plan.prefix, plan.hash, snapshot.lockToken);
      throw error;
    }
    if (computed instanceof NotStored) {
      await store.releaseLease(plan.prefix, plan.hash, snapshot.lockToken);
      return { value: computed.value, hit: false, stored: false, declined: true };
    }
    const value = computed;
    const deps = this.dependencies()!;
    const swrMs = windowMs(plan);
    const payload = plan.codec.encode(value);
    const bytes = swrMs > 0 ? withFreshness(payload, Date.now() + plan.timeout * 1000) : payload;
    const checked = this.unchecked ? { fields: [], values: [], lockToken: snapshot.lockToken } : snapshot;
    const source = isDependencyList(plan.deps) ? undefined : plan.deps;
    const result = await store.store(plan.prefix, plan.hash, bytes, plan.timeout + swrMs / 1000, source?.refine ? source.refine(value) : deps, checked);
    return { value, hit: false, stored: result === 'stored', ...(result === 'full' ? { full: true } : {}) };
  }

  /**
   * Answers from bytes found for the key: a fresh hit, a stale hit while
   * another caller refreshes, or this caller's refresh. undefined: they do not
   * decode (the caller carries on as on a miss).
   */
  async answer(bytes: Buffer): Promise<ReadOutcome<T> | undefined> {
    if (windowMs(this.plan) === 0) return freshHit(this.plan, bytes);
    const found = freshnessOf(this.plan, bytes);
    const now = Date.now();
    if (found.freshUntil > now) {
      const decoded = this.plan.codec.decode(found.payload);
      return decoded && { value: decoded.value, hit: true, stored: false, bytes: found.payload, at: now, freshUntil: found.freshUntil };
    }
    return this.stale(found, now);
  }

  /** A value past its fresh time: served stale only while another caller holds the refresh lease. */
  private async stale(found: Freshness, now: number): Promise<ReadOutcome<T> | undefined> {
    const { plan, store } = this;
    const tables = this.tables();
    // Inside a transaction nothing is stored, so nobody could be counted on to refresh.
    if (!plan.admission.canStore || tables === undefined || found.header === undefined) return this.computeOnly();
    const refresh = await store.refresh(plan.prefix, plan.hash, tables, found.header, LEASE_TTL_MS);
    switch (refresh.kind) {
      case 'unavailable':
        return this.computeOnly();
      case 'changed': {
        // Refreshed meanwhile: the new value, when it is fresh (else the database answers).
        const current = freshnessOf(plan, refresh.bytes);
        const decoded = current.freshUntil > Date.now() ? plan.codec.decode(current.payload) : undefined;
        if (decoded) return { value: decoded.value, hit: true, stored: false, bytes: current.payload, at: Date.now(), freshUntil: current.freshUntil };
        return this.computeOnly();
      }
      case 'gone':
        // Invalidated (or expired) since the read: a plain miss. With the lease it computes and
        // stores; without it the normal miss path waits for the holder.
        return refresh.lockHeld ? undefined : this.computeAndStore(refresh.snapshot, true);
      case 'stale': {
        if (!refresh.lockHeld) return this.computeAndStore(refresh.snapshot, true);
        // Past the window (the key's whole-second TTL can outlive it a little): not served.
        if (now >= found.freshUntil + windowMs(plan)) return this.computeOnly();
        const decoded = plan.codec.decode(found.payload);
        if (!decoded) return this.computeOnly();
        return { value: decoded.value, hit: true, stored: false, bytes: found.payload, at: now, freshUntil: found.freshUntil, stale: true };
      }
    }
  }
}

/**
 * The answer from bytes of a read without stale-while-revalidate (always
 * fresh): Read.answer's, made without a promise of its own, as most hits are.
 */
function freshHit<T>(plan: ReadPlan<T>, bytes: Buffer): ReadOutcome<T> | undefined {
  const decoded = plan.codec.decode(bytes);
  return decoded && { value: decoded.value, hit: true, stored: false, bytes, at: Date.now(), freshUntil: Infinity };
}

function isDependencyList<T>(deps: ReadPlan<T>['deps']): deps is readonly Dependency[] {
  return Array.isArray(deps);
}

/** Reads a plan through Redis: a hit, a stale hit, or the computation (stored when it may be). */
export async function readThrough<T>(store: CacheStore, plan: ReadPlan<T>, compute: Compute<T>, options: ReadThroughOptions = PLAIN_READ): Promise<ReadOutcome<T>> {
  let read: Read<T>;
  if (!store.insideout && options.skipGet !== true) {
    const bytes = options.found ?? await store.getValue(plan.prefix, plan.hash);
    // The common hit (no stale-while-revalidate): nothing else of the read is needed.
    const fresh = bytes && windowMs(plan) === 0 ? freshHit(plan, bytes) : undefined;
    if (fresh) return fresh;
    read = new Read(store, plan, compute, options.unchecked === true);
    if (bytes === undefined) return read.computeOnly(); // Redis unavailable
    // Bytes that did not decode (fresh is undefined) are a miss; with the window, answer() decides.
    if (bytes !== null && windowMs(plan) > 0) {
      const answered = await read.answer(bytes);
      if (answered) return answered;
    }
    // Redis is full: the store would be skipped (a due probe is sent instead), so the snapshot is not taken.
    if (plan.admission.canStore && !store.full.mayStore()) return { ...await read.computeOnly(), full: true };
  } else {
    read = new Read(store, plan, compute, options.unchecked === true);
  }
  const tables = read.tables();
  if (tables === undefined) return read.computeOnly();
  // No lease while Redis is full: it would be refused, and the store is dropped anyway.
  const lockMs = plan.lock && plan.admission.canStore && !store.full.full ? LEASE_TTL_MS : 0;
  let fetched = await store.fetch(plan.prefix, plan.hash, tables, lockMs);
  // Bounded: past it the waiter reads the database (and does not store: the holder will).
  const deadline = Date.now() + LEASE_WAIT_MS;
  while (fetched.kind === 'miss' && fetched.lockHeld && Date.now() < deadline) {
    await sleep(LOCK_POLL_MS);
    fetched = await store.fetch(plan.prefix, plan.hash, tables, lockMs);
  }
  if (fetched.kind === 'hit') {
    const answered = await read.answer(fetched.bytes);
    if (answered) return answered;
  }
  if (fetched.kind !== 'miss' || fetched.lockHeld || !plan.admission.canStore) return read.computeOnly();
  return read.computeAndStore(fetched.snapshot, false);
}
