/**
 * The small schema of the never-stale differential test, its seed rows and
 * the value pools every generator draws from.
 *
 *   Owner 1—n Item (paranoid) 1—n Note
 *   Item n—m Label through ItemLabel (extra column `w`)
 *
 * Associations have no database constraints: any write order is valid, so
 * no generated step fails on a foreign key (a failed statement would abort
 * a PostgreSQL transaction and end the run for the wrong reason).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataTypes, Sequelize, type Model, type ModelStatic } from 'sequelize';
import { installCacheops, type Cacheops, type CacheopsConfig, type RedisClientLike } from '../../src/index';
import { makeSequelize, uniquePrefix, type Dialect } from '../helpers/env';
import type { Columns } from './where';

export interface Models {
  readonly Owner: ModelStatic<Model>;
  readonly Item: ModelStatic<Model>;
  readonly Note: ModelStatic<Model>;
  readonly Label: ModelStatic<Model>;
  readonly ItemLabel: ModelStatic<Model>;
}
export type ModelName = keyof Models;

/** Everything a step runs against. */
export interface World {
  readonly dialect: Dialect;
  readonly sequelize: Sequelize;
  readonly cacheops: Cacheops;
  readonly m: Models;
  /**
   * With the near cache on: a second installation (its own Sequelize and Redis
   * connections, as another process has) on the same database and key prefix.
   * Steps write through the first; reads are checked through both.
   */
  readonly peer?: World;
}

/** IN lists longer than this are not granular: generated lists go past it. */
export const MAX_IN_LIST = 3;

const d = (iso: string): Date => new Date(iso);
export const INTS: readonly (number | null)[] = [null, 0, 1, 2, -1, 10];
export const STRINGS: readonly (string | null)[] = [null, '', 'null', 'a&b=c:d', 'A', 'a', 'a ', 'ü', 'u', '*'];
export const BOOLS: readonly (boolean | null)[] = [null, true, false];
export const DATES: readonly (Date | null)[] = [null, d('2020-01-01T00:00:00Z'), d('2021-06-15T12:30:00Z'), d('1999-12-31T23:59:59Z')];
export const OWNER_IDS: readonly (number | null)[] = [null, 1, 2, 3, 4];
/** Item ids steps aim at: seeded ones, ones later creates get, and the explicit-id range. */
export const ITEM_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 100, 101, 102] as const;
/** Ids an upsert or a duplicate-aware bulkCreate may name (never ones autoincrement hands out next). */
export const EXPLICIT_ITEM_IDS = [1, 2, 3, 4, 5, 6, 100, 101, 102] as const;
export const LABEL_IDS = [1, 2, 3, 4, 5] as const;
export const EXPLICIT_LABEL_IDS = [1, 2, 3, 4, 100, 101] as const;
export const NOTE_IDS = [1, 2, 3, 4, 5, 6] as const;

/** The columns where trees of each model test, with their value pools. */
export const COLUMNS: Readonly<Record<ModelName, Columns>> = {
  Item: {
    id: { values: ITEM_IDS, ordered: true },
    n: { values: INTS, ordered: true },
    s: { values: STRINGS, text: true },
    flag: { values: BOOLS },
    at: { values: DATES, ordered: true },
    ownerId: { values: OWNER_IDS },
  },
  Owner: { id: { values: OWNER_IDS }, name: { values: STRINGS, text: true } },
  Note: { itemId: { values: ITEM_IDS.slice(0, 7) }, body: { values: STRINGS, text: true }, n: { values: INTS, ordered: true } },
  Label: { id: { values: LABEL_IDS }, name: { values: STRINGS, text: true } },
  ItemLabel: { itemId: { values: ITEM_IDS.slice(0, 7) }, labelId: { values: LABEL_IDS }, w: { values: [1, 2, 3, null], ordered: true } },
};

export function defineModels(sequelize: Sequelize): Models {
  const Owner = sequelize.define('Owner', { name: DataTypes.STRING }, { tableName: 'owners', timestamps: false });
  const Item = sequelize.define('Item', {
    n: DataTypes.INTEGER,
    s: DataTypes.STRING,
    flag: DataTypes.BOOLEAN,
    at: DataTypes.DATE,
    ownerId: DataTypes.INTEGER,
  }, { tableName: 'items', paranoid: true });
  const Note = sequelize.define('Note', { itemId: DataTypes.INTEGER, body: DataTypes.STRING, n: DataTypes.INTEGER }, { tableName: 'notes', timestamps: false });
  const Label = sequelize.define('Label', { name: DataTypes.STRING }, { tableName: 'labels', timestamps: false });
  const ItemLabel = sequelize.define('ItemLabel', { w: { type: DataTypes.INTEGER, defaultValue: 1 } }, { tableName: 'item_labels', timestamps: false });
  const loose = { constraints: false } as const;
  Item.belongsTo(Owner, { foreignKey: 'ownerId', ...loose });
  Owner.hasMany(Item, { foreignKey: 'ownerId', ...loose });
  Item.hasMany(Note, { foreignKey: 'itemId', ...loose });
  Note.belongsTo(Item, { foreignKey: 'itemId', ...loose });
  Item.belongsToMany(Label, { through: ItemLabel, foreignKey: 'itemId', otherKey: 'labelId', ...loose });
  Label.belongsToMany(Item, { through: ItemLabel, foreignKey: 'labelId', otherKey: 'itemId', ...loose });
  // A hasOne, for its getter (reads.ts); nothing includes ItemLabel from Label by model.
  Label.hasOne(ItemLabel, { as: 'FirstLink', foreignKey: 'labelId', ...loose });
  return { Owner, Item, Note, Label, ItemLabel };
}

const noCache = { cacheops: { invalidate: false } } as const;

/** The rows every run starts from (the cache is emptied afterwards). */
export async function seed(m: Models): Promise<void> {
  await m.Owner.bulkCreate([{ name: 'A' }, { name: 'a ' }, { name: 'ü' }], noCache as never);
  await m.Label.bulkCreate([{ name: '' }, { name: 'null' }, { name: '*' }, { name: 'a&b=c:d' }], noCache as never);
  await m.Item.bulkCreate([
    { n: 1, s: 'a', flag: true, at: DATES[1], ownerId: 1 },
    { n: 2, s: 'A', flag: false, at: DATES[2], ownerId: 1 },
    { n: null, s: 'null', flag: null, at: null, ownerId: 2 },
    { n: 0, s: '', flag: true, at: DATES[3], ownerId: null },
    { n: 10, s: 'ü', flag: false, at: DATES[1], ownerId: 4 },
    { n: 1, s: 'a ', flag: null, at: null, ownerId: 3 },
  ], noCache as never);
  await m.Item.destroy({ where: { id: 6 }, ...noCache } as never);
  await m.Note.bulkCreate([
    { itemId: 1, body: 'a', n: 1 }, { itemId: 1, body: '*', n: 2 }, { itemId: 2, body: null, n: 1 }, { itemId: 6, body: 'ü', n: null },
  ], noCache as never);
  await m.ItemLabel.bulkCreate([
    { itemId: 1, labelId: 1, w: 1 }, { itemId: 1, labelId: 2, w: 2 }, { itemId: 2, labelId: 1, w: 1 }, { itemId: 3, labelId: 3, w: 2 }, { itemId: 6, labelId: 4, w: 1 },
  ], noCache as never);
}

/**
 * Hands out a freshly seeded world per run. SQLite: a new in-memory
 * database each time. PostgreSQL/MariaDB: one database, tables truncated
 * (identities restarted) and the installation's keys dropped.
 */
/** Another database and installation than the test file's own (the stream write mode on a private PostgreSQL). */
export interface WorldOptions {
  /** Opens the Sequelize of a world (default: the test file's database). */
  readonly open?: () => Sequelize;
  /** Merged into the installation's configuration. */
  readonly config?: Partial<CacheopsConfig>;
  /** Runs after the tables are created, before cacheops is installed. */
  readonly afterSync?: (sequelize: Sequelize) => Promise<void>;
  /** Called with each installation made. */
  readonly installed?: (cacheops: Cacheops) => void;
}

export class WorldFactory {
  private shared: World | undefined;
  /** One key prefix for all runs (each run starts with invalidateAll), so runs leave nothing behind. */
  private readonly prefix: string;

  /** SQLite with a peer: the database is a file both installations open. */
  private dir: string | undefined;
  private runs = 0;

  constructor(private readonly dialect: Dialect, private readonly file: string, private readonly redis: RedisClientLike, private readonly near = false,
    private readonly options: WorldOptions = {}) {
    this.prefix = uniquePrefix(`ns-${dialect}${near ? '-near' : ''}`);
  }

  private async open(): Promise<Sequelize> {
    if (this.options.open) return this.options.open();
    if (!this.near || this.dialect !== 'sqlite') return makeSequelize(this.dialect, this.file);
    this.dir ??= mkdtempSync(join(tmpdir(), 'cacheops-ns-'));
    return new Sequelize({ dialect: 'sqlite', storage: join(this.dir, `run-${this.runs}.sqlite`), logging: false });
  }

  private async install(sequelize: Sequelize, sync: boolean): Promise<World> {
    const m = defineModels(sequelize);
    if (sync) await sequelize.sync({ force: true });
    if (sync) await this.options.afterSync?.(sequelize);
    const cacheops = installCacheops(sequelize, {
      ...this.options.config,
      redis: this.redis,
      prefix: this.prefix,
      profiles: { '*': { ops: 'all', ...(this.near ? { near: true } : {}) } },
      maxInListLength: MAX_IN_LIST,
      // Generous: a Redis timeout under a loaded machine is not what this test is about.
      redisTimeout: 10_000,
    });
    this.options.installed?.(cacheops);
    if (this.near) {
      for (let i = 0; !cacheops.core.near?.tracker.active; i += 1) {
        if (i > 1000) {
          // Nothing may outlive a failed setup: open connections would keep the test worker alive.
          await cacheops.close();
          await sequelize.close();
          throw new Error('near cache tracking did not come up');
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    return { dialect: this.dialect, sequelize, cacheops, m };
  }

  private async build(): Promise<World> {
    this.runs += 1;
    const world = await this.install(await this.open(), true);
    if (!this.near) return world;
    return { ...world, peer: await this.install(await this.open(), false) };
  }

  async fresh(): Promise<World> {
    if (this.dialect === 'sqlite') {
      const w = await this.build();
      await seed(w.m); // the previous run's keys went in its release()
      return w;
    }
    this.shared ??= await this.build();
    const w = this.shared;
    const tables = ['owners', 'items', 'notes', 'labels', 'item_labels'];
    await w.cacheops.noInvalidation(async () => {
      if (this.dialect === 'postgres') await w.sequelize.query(`TRUNCATE ${tables.join(', ')} RESTART IDENTITY`);
      else for (const t of tables) await w.sequelize.query(`TRUNCATE TABLE ${t}`);
    });
    await seed(w.m);
    await w.cacheops.invalidateAll();
    return w;
  }

  /** Ends a run (SQLite: drops its database and its keys). */
  async release(w: World): Promise<void> {
    if (this.dialect !== 'sqlite') return;
    await w.cacheops.invalidateAll();
    await this.shut(w);
  }

  private async shut(w: World): Promise<void> {
    for (const x of w.peer ? [w.peer, w] : [w]) {
      await x.cacheops.close();
      await x.sequelize.close();
    }
    if (this.dir && this.dialect === 'sqlite') rmSync(join(this.dir, `run-${this.runs}.sqlite`), { force: true });
  }

  async close(): Promise<void> {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    if (!this.shared) return;
    await this.shared.cacheops.invalidateAll();
    await this.shut(this.shared);
    this.shared = undefined;
  }
}
