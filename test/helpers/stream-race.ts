/**
 * The forced commit-visibility race of the change-stream tests, for any
 * stream database (test/never-stale/stream-visibility-race*.test.ts). The
 * database holds a writer's commit after the stream can decode it and before
 * other sessions see it; meanwhile a reader misses and stores the old row:
 *
 *   1. the writer's UPDATE (row 1's name to 'new') is decoded by the stream, still invisible;
 *   2. a reader misses, reads the old row from the database, and stores it;
 *   3. the commit is let through (or its hold times out): the UPDATE is visible.
 *
 * Without the protection the invalidation runs at 1 and the old row stays
 * cached (assertRace: stale, a hit); with it the invalidation waits for 3 and
 * the next read is fresh. How a database holds the commit is its file's part
 * (RaceHold); holdReadAssert runs steps 1 to 3 and the last read.
 */
import type { ExecutionContext } from 'ava';
import type { Model, ModelStatic } from 'sequelize';
import type { Cacheops } from '../../src/index';

/** One database's way to hold the commit. */
export interface RaceHold {
  /** The stream's event names: a change decoded, a batch applied. */
  readonly decodedEvent: string;
  readonly appliedEvent: string;
  /** Sends the UPDATE the server holds; settles once it is visible. */
  write(): Promise<unknown>;
  /** Row 1's name as another session sees it now. */
  observe(): Promise<unknown>;
  /** Lets the held commit through (PostgreSQL: cancel its wait); without it the hold must end by itself. */
  release?(): Promise<void>;
}

export interface RaceResult {
  /** The name read through the cache at the end, and whether it was a hit. */
  readonly read: unknown;
  readonly hit: boolean;
  /** Whether other sessions still saw the old row once the stream had decoded the UPDATE. */
  readonly decodedBeforeVisible: boolean;
  /** How long the UPDATE took from sent to visible (ms). */
  readonly heldMs: number;
}

const once = (emitter: { once(e: string, f: () => void): unknown }, event: string): Promise<void> => new Promise((r) => emitter.once(event, () => r()));

/**
 * Steps 1 to 3 against a table whose row 1 is named 'old', read through `Item`
 * (cached by `cacheops`, its stream ready), then the last read. `protection`
 * says whether the stream waits for visibility (then step 3 waits for the
 * stream's applied event, else 200 ms).
 */
export async function holdReadAssert(cacheops: Cacheops, Item: ModelStatic<Model>, protection: boolean, hold: RaceHold): Promise<RaceResult> {
  const name = async (): Promise<unknown> => ((await Item.findOne({ where: { id: 1 } })) as unknown as { name: string }).name;
  const decoded = once(cacheops.core.events, hold.decodedEvent);
  const invalidated = protection ? undefined : once(cacheops.core.events, 'invalidated');
  const started = Date.now();
  // 1. Decodable, not visible.
  const writing = hold.write();
  await decoded;
  await invalidated;
  const seen = await hold.observe();
  // 2. A reader: misses, reads the old row, stores it.
  await name();
  // 3. The UPDATE becomes visible; the stream settles.
  const applied = once(cacheops.core.events, hold.appliedEvent);
  await hold.release?.();
  await writing;
  const heldMs = Date.now() - started;
  if (protection) await applied;
  else await new Promise((r) => setTimeout(r, 200));
  const hits = cacheops.stats().hits;
  const read = await name();
  return { read, hit: cacheops.stats().hits === hits + 1, decodedBeforeVisible: seen === 'old', heldMs };
}

/** What each side of the race must show: the race exists without the protection, and is closed with it. */
export function assertRace(t: ExecutionContext, r: RaceResult, protection: boolean): void {
  if (protection) {
    t.true(r.decodedBeforeVisible);
    t.is(r.read, 'new');
  } else {
    t.true(r.decodedBeforeVisible, 'the stream decoded the UPDATE while other sessions still saw the old row');
    t.is(r.read, 'old', 'stale');
    t.true(r.hit, 'served from the cache');
  }
}
