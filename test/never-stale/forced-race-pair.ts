/**
 * The forced read/write race (forced-race.test.ts, forced-race-stream-writes.test.ts):
 * a reader and writers, separate Sequelize instances and installations (as
 * separate processes would be) on one shared database and one cache prefix;
 * the kinds of write; and the race forced step by step:
 *
 *   1. the reader misses and queries the database (old rows), and is held
 *      right after the database answered, before its store;
 *   2. the writer writes, commits and invalidates (in `writes: 'stream'`:
 *      its call resolves once the change stream's consumer invalidated it);
 *   3. the reader is let go and stores what it read.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Model, Sequelize } from 'sequelize';
import { installCacheops, type Cacheops, type CacheopsConfig } from '../../src/index';
import { redisUrl, uniquePrefix, type Dialect } from '../helpers/env';
import { defineBlog } from '../helpers/models';
import { NOCACHE, checkReads, fixSequences, runRead, seed, type BlogModels, type ReadDescription } from './stress-catalog';
import { openShared, type SharedDatabase } from './stress-shared';

export interface Side {
  readonly sequelize: Sequelize;
  readonly m: BlogModels;
  readonly cacheops: Cacheops;
  /** Holds the next SELECT of this side right after the database answered, until released. */
  hold(): { reached: Promise<void>; release: () => void };
}

export interface Pair {
  readonly reader: Side;
  readonly writer: Side;
  /** A second writer (its own connection, as another process would have). */
  readonly other: Side;
  /** An installation that only consumes the change stream (`consumer: 'separate'`). */
  readonly consumer?: Side;
  close(): Promise<void>;
}

export interface PairOptions {
  readonly dialect: Dialect;
  readonly testFile: string;
  /** The reader's race protection (the writers always have it). */
  readonly raceProtection: boolean;
  /** A private server instead of the test file's database (see stress-shared.ts). */
  readonly server?: SharedDatabase['server'];
  /** Added to every installation's configuration (say `writes: 'stream'` and `changeStream`). */
  readonly config?: Partial<CacheopsConfig>;
  /** Runs once the tables are created and seeded (PostgreSQL: REPLICA IDENTITY FULL). */
  readonly prepare?: (sequelize: Sequelize) => Promise<void>;
  /**
   * With `changeStream`: the installation that consumes it, installed and ready first
   * (the others stand by); `separate`: a fourth one that only consumes.
   */
  readonly consumer?: 'writer' | 'reader' | 'separate';
}

/** A reader and two writers on one shared database and one prefix; the reader with the given protection. */
export async function openPair(options: PairOptions): Promise<Pair> {
  const { dialect } = options;
  const dir = dialect === 'sqlite' ? mkdtempSync(join(tmpdir(), 'cacheops-race-')) : undefined;
  const db: SharedDatabase = {
    dialect, testFile: options.testFile,
    ...(dir ? { storage: join(dir, 'shared.sqlite') } : {}), ...(options.server ? { server: options.server } : {}),
  };
  const prefix = uniquePrefix('race');
  const open = async (protection: boolean, prepare: boolean): Promise<Side> => {
    const sequelize = await openShared(db);
    const m = defineBlog(sequelize);
    if (prepare) {
      if (dialect === 'sqlite') await sequelize.query('PRAGMA journal_mode=WAL');
      await sequelize.sync({ force: true });
      await seed(m);
      await fixSequences(sequelize, m);
      await options.prepare?.(sequelize);
    }
    const cacheops = installCacheops(sequelize, { redis: redisUrl, prefix, raceProtection: protection, profiles: { '*': { ops: 'all' } }, ...options.config });
    // The first installation to be ready takes the consumer's role.
    if (options.config?.changeStream) await cacheops.changeStreamReady();
    let gate: { resolveReached: () => void; released: Promise<void> } | undefined;
    sequelize.addHook('afterQuery', async (o: { type?: string }) => {
      if (o.type !== 'SELECT' || !gate) return;
      const current = gate;
      gate = undefined;
      current.resolveReached();
      await current.released;
    });
    return {
      sequelize, m, cacheops,
      hold() {
        let resolveReached: () => void = () => undefined;
        let release: () => void = () => undefined;
        const reached = new Promise<void>((resolve) => { resolveReached = resolve; });
        const released = new Promise<void>((resolve) => { release = resolve; });
        gate = { resolveReached, released };
        return { reached, release };
      },
    };
  };
  const sides: Side[] = [];
  let consumer: Side | undefined;
  let reader: Side | undefined;
  let writer: Side | undefined;
  try {
    // The writer prepares the database unless another installation must be first.
    if (options.consumer === 'separate') sides.push(consumer = await open(true, true));
    if (options.consumer === 'reader') sides.push(reader = await open(options.raceProtection, true));
    sides.push(writer = await open(true, sides.length === 0));
    if (!reader) sides.push(reader = await open(options.raceProtection, false));
    sides.push(await open(true, false));
  } catch (error) {
    for (const side of sides) {
      await side.cacheops.close();
      await side.sequelize.close();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const other = sides[sides.length - 1]!;
  const theReader = reader!;
  return {
    reader: theReader, writer: writer!, other, ...(consumer ? { consumer } : {}),
    async close() {
      await theReader.cacheops.invalidateAll();
      for (const side of sides) {
        await side.cacheops.close();
        await side.sequelize.close();
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Scenario {
  readonly name: string;
  readonly read: ReadDescription;
  readonly write: (w: Side) => Promise<unknown>;
}

type WithTags = Model & { addTag(id: number): Promise<unknown> };

/** Seed (stress-catalog): posts 2 and 4 are in category 1 with 0 views; 1 and 3 in category 2; post 1 has comment 1. */
export const scenarios: readonly Scenario[] = [
  { name: 'instance update vs findByPk', read: { kind: 'postByPk', args: [1] },
    write: async (w) => (await w.m.Post.findByPk(1, { ...NOCACHE }))!.update({ views: 7 }) },
  { name: 'Model.update moving a row out of an equality read', read: { kind: 'postsByViews', args: [0] },
    write: (w) => w.m.Post.update({ views: 9 }, { where: { id: 2 } }) },
  { name: 'increment vs max()', read: { kind: 'maxViewsInCategory', args: [1] },
    write: (w) => w.m.Post.increment('views', { by: 5, where: { id: 2 } }) },
  { name: 'create vs count()', read: { kind: 'countInCategory', args: [2] },
    write: (w) => w.m.Post.create({ title: 'new', categoryId: 2 }) },
  { name: 'hard destroy vs findAll', read: { kind: 'commentsOfPost', args: [1] },
    write: (w) => w.m.Comment.destroy({ where: { postId: 1 } }) },
  { name: 'paranoid destroy vs IN read', read: { kind: 'postsIn', args: [3, 4] },
    write: (w) => w.m.Post.destroy({ where: { id: 3 } }) },
  { name: 'write to an included model', read: { kind: 'postsOfCategoryWithCategory', args: [1] },
    write: (w) => w.m.Category.update({ name: 'renamed' }, { where: { id: 1 } }) },
  { name: 'addTag vs association getter', read: { kind: 'postGetTags', args: [4] },
    write: (w) => (w.m.Post.build({ id: 4 }, { isNewRecord: false }) as WithTags).addTag(3) },
  { name: 'update in a transaction vs count()', read: { kind: 'countPublished', args: [1] },
    write: (w) => w.sequelize.transaction((transaction) => w.m.Post.update({ published: false }, { where: { id: 4 }, transaction })) },
];

export interface Forced {
  /** Whether the reader's store was refused. */
  readonly refused: boolean;
  readonly hits: number;
  readonly stale: number;
  readonly details: string;
}

/** Runs one scenario in the forced order; returns whether the reader's store was refused and the check. */
export async function force(pair: Pair, s: Scenario): Promise<Forced> {
  const { reader, writer } = pair;
  await reader.cacheops.invalidateAll(); // a clean miss to start from
  const refusedBefore = reader.cacheops.stats().refusedStores;
  const held = reader.hold();
  const reading = runRead(reader.m, s.read);
  await held.reached; // 1. the reader has its (old) rows from the database
  await s.write(writer); // 2. write, commit, invalidate
  held.release(); // 3. the reader stores
  await reading;
  const refused = reader.cacheops.stats().refusedStores > refusedBefore;
  const check = await checkReads(reader.m, reader.cacheops, [s.read]);
  return { refused, hits: check.hits, stale: check.stale, details: check.details.join('\n') };
}
