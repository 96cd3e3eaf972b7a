/**
 * The read/write race, forced step by step instead of hoped for. A reader
 * and a writer, two Sequelize instances (as two processes would be), share
 * one database and one cache prefix:
 *
 *   1. the reader misses and queries the database (old rows), and is held
 *      right after the database answered, before its store;
 *   2. the writer writes, commits and invalidates;
 *   3. the reader is let go and stores what it read.
 *
 * With race protection the store is refused (the invalidation moved an epoch
 * the miss had seen), so the next read goes to the database. Without it, the
 * old rows are cached after the invalidation that should have removed them:
 * a stale read until the next write. Both outcomes are asserted, for every
 * kind of write.
 *
 * Then a write's own window, with a second writer: see the phantom scenarios
 * (PostgreSQL's one-statement writes have their own form of them).
 */
import test from 'ava';
import { Transaction } from 'sequelize';
import { dialects, type Dialect } from '../helpers/env';
import { NOCACHE, checkReads, runRead, type ReadDescription } from './stress-catalog';
import { force, openPair, scenarios, type Side } from './forced-race-pair';

for (const dialect of dialects()) {
  for (const protection of [true, false]) {
    const title = protection
      ? `${dialect}: race protection on: a store that raced a write is refused (${scenarios.length} kinds of write)`
      : `${dialect}: race protection off: the same forced races leave stale values (${scenarios.length} kinds of write)`;
    test.serial(title, async (t) => {
      const pair = await openPair({ dialect, testFile: __filename, raceProtection: protection });
      try {
        let stale = 0;
        for (const s of scenarios) {
          const r = await force(pair, s);
          stale += r.stale;
          if (protection) {
            t.true(r.refused, `${s.name}: the store was refused`);
            t.is(r.stale, 0, `${s.name}: ${r.details}`);
          } else {
            t.false(r.refused, `${s.name}: nothing refused without protection`);
            t.is(r.hits, 1, `${s.name}: the raced value was cached`);
            t.is(r.stale, 1, `${s.name}: and it is stale`);
          }
        }
        t.log(`${dialect}, protection ${protection ? 'on' : 'off'}: ${stale} of ${scenarios.length} forced races left a stale value`);
      } finally {
        await pair.close();
      }
    });
  }
}

/**
 * A write's own window: between its pre-read (SELECT ... FOR UPDATE) and its
 * UPDATE/DELETE, another writer commits a row into its WHERE. Under READ
 * COMMITTED (PostgreSQL's default) the UPDATE/DELETE then changes that row
 * too, though the pre-read never saw it; a reader caching that row in between
 * must still not keep it once both writes are done.
 */
interface PhantomScenario {
  readonly name: string;
  /** The mass write, held after its pre-read. */
  readonly mass: (w: Side, transaction: Transaction | undefined) => Promise<unknown>;
  /** The other write, putting a row into the mass write's WHERE. */
  readonly enter: (w: Side) => Promise<unknown>;
  readonly reads: readonly ReadDescription[];
}

const phantoms: readonly PhantomScenario[] = [
  { name: 'Model.update', // post 3 (category 2, unpublished) moves into category 1
    mass: (w, transaction) => w.m.Post.update({ published: true }, { where: { categoryId: 1 }, transaction }),
    enter: (w) => w.m.Post.update({ categoryId: 1 }, { where: { id: 3 } }),
    reads: [{ kind: 'postByPk', args: [3] }, { kind: 'countPublished', args: [0] }, { kind: 'postsPublishedInCategory', args: [1, 0] }] },
  { name: 'Model.destroy', // post 3 has no comment yet; one is created
    mass: (w, transaction) => w.m.Comment.destroy({ where: { postId: 3 }, transaction }),
    enter: (w) => w.m.Comment.create({ postId: 3, text: 'new', approved: true }),
    reads: [{ kind: 'commentsOfPost', args: [3] }, { kind: 'postsWithApprovedComments', args: [3, 4] }] },
];

// Unref'd: a pending wait must not keep the test process alive.
const sleep = (ms: number): Promise<void> => new Promise((resolve) => { setTimeout(resolve, ms).unref(); });

/** Writes that are one statement (their old rows come back from it): no pre-read to hold. */
const oneStatement = (dialect: Dialect, s: PhantomScenario): boolean => dialect === 'postgres' || (dialect === 'mysql' && s.name === 'Model.destroy');

/**
 * PostgreSQL (and a MariaDB DELETE ... RETURNING): a mass write is one
 * statement (on PostgreSQL its old rows come from a locking CTE, see
 * src/write/images/postgres.ts), so there is no pre-read to hold.
 * Its window is between the statement's snapshot and its row locks: a third
 * transaction holds a lock on a row of the WHERE, the mass write starts and
 * waits for it, the other writer commits a row into the WHERE meanwhile and
 * the reader caches it; then the lock is let go.
 */
const lockInWhere: Record<string, (w: Side, transaction: Transaction) => Promise<unknown>> = {
  'Model.update': (w, transaction) => w.m.Post.findByPk(2, { ...NOCACHE, lock: true, transaction }),
  // No comment of post 3 to lock (and a lock on post 3 would hold up the new comment's foreign key check): the DELETE does not wait.
  'Model.destroy': async () => undefined,
};

for (const dialect of dialects().filter((d) => d !== 'sqlite')) {
  for (const mode of ['own transaction', 'READ COMMITTED transaction'] as const) {
    test.serial(`${dialect}: rows entering a one-statement mass write's WHERE while it waits for a lock are not left stale (${mode})`, async (t) => {
      for (const s of phantoms.filter((p) => oneStatement(dialect, p))) {
        const pair = await openPair({ dialect, testFile: __filename, raceProtection: true });
        try {
          const { reader, writer, other } = pair;
          const lock = await other.sequelize.transaction();
          await lockInWhere[s.name]!(other, lock);
          const mass = mode === 'own transaction' ? s.mass(writer, undefined)
            : writer.sequelize.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED }, (transaction) => s.mass(writer, transaction));
          await sleep(200); // the mass write has its snapshot and waits for the lock (or, with nothing to lock, is done)
          await s.enter(other);
          for (const read of s.reads) await runRead(reader.m, read);
          const cached = await checkReads(reader.m, reader.cacheops, s.reads);
          t.is(cached.stale, 0, `${s.name}: fresh before the mass write went on`);
          await lock.commit();
          await mass;
          const check = await checkReads(reader.m, reader.cacheops, s.reads);
          t.is(check.stale, 0, `${s.name}: ${check.details.join('\n')}`);
        } finally {
          await pair.close();
        }
      }
    });
  }
}

for (const dialect of dialects().filter((d): d is 'sqlite' | 'mysql' => d !== 'postgres')) {
  // SQLite has no row locks: writers of several processes must use IMMEDIATE transactions (see the stress test).
  const modes = dialect === 'sqlite' ? ['IMMEDIATE transaction'] as const : ['own transaction', 'READ COMMITTED transaction'] as const;
  for (const mode of modes) {
    test.serial(`${dialect}: rows entering a mass write's WHERE after its pre-read are not left stale (${mode})`, async (t) => {
      for (const s of phantoms.filter((p) => !oneStatement(dialect, p))) {
        const pair = await openPair({ dialect, testFile: __filename, raceProtection: true });
        try {
          const { reader, writer, other } = pair;
          const held = writer.hold(); // the mass write's pre-read is its first SELECT
          const mass = mode === 'own transaction' ? s.mass(writer, undefined)
            : writer.sequelize.transaction({
              ...(dialect === 'sqlite' ? { type: Transaction.TYPES.IMMEDIATE } : { isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED }),
            }, (transaction) => s.mass(writer, transaction));
          await held.reached;
          // The other writer: MariaDB's gap locks and SQLite's write lock make it wait.
          // Where nothing blocks it (READ COMMITTED has no gap locks), the row is in before the mass write goes on.
          const blockable = mode !== 'READ COMMITTED transaction';
          const entering = s.enter(other);
          const enteredFirst = await Promise.race([entering.then(() => true), sleep(blockable ? 300 : 10_000).then(() => false)]);
          if (!blockable) t.true(enteredFirst, `${s.name}: the other write committed first`);
          for (const read of s.reads) await runRead(reader.m, read);
          held.release();
          await mass;
          await entering;
          const check = await checkReads(reader.m, reader.cacheops, s.reads);
          // Blocked, it commits after the mass write and invalidates the reads itself; else they must still be cached to prove anything.
          if (enteredFirst) t.is(check.hits, s.reads.length, `${s.name}: the reads were cached before the mass write ran`);
          t.is(check.stale, 0, `${s.name}: ${check.details.join('\n')}`);
        } finally {
          await pair.close();
        }
      }
    });
  }
}
