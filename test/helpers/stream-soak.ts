/**
 * The foreign-writer soak of the change-stream tests, for any stream database
 * (test/never-stale/stream-foreign-writer*.test.ts): four plain clients of
 * another program update, insert and delete rows of a cached table while the
 * application reads it through the cache, with the consistency sampler at rate
 * 1.0; then a marker write, seen through the stream, says the stream is past
 * every earlier commit, and each query of the catalogue is compared with the
 * database.
 *
 * A database's test file starts its server, gives a SoakDatabase (how to
 * connect, how its SQL is spelled, its changeStream option) and calls
 * soakTests(run, database): the soak with the stream finds nothing stale, the
 * same soak without it does (so the test can fail). soak() runs one soak alone.
 */
import type { TestFn } from 'ava';
import { Op, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { installCacheops, type Cacheops, type CacheopsConfig } from '../../src/index';
import { redisUrl, uniquePrefix } from './env';
import { defineItem } from './stream-models';

/** A connected client of another program (pg's or mysql2's). */
export interface SoakWriter {
  query(sql: string, params: readonly unknown[]): Promise<unknown>;
  end(): Promise<void>;
}

/** One database's side of the soak. */
export interface SoakDatabase {
  /** A new Sequelize on the soak database (soak closes it). */
  sequelize(): Sequelize;
  /** Runs after the table is made, before rows go in (PostgreSQL: REPLICA IDENTITY FULL). */
  prepare?(sequelize: Sequelize, table: string): Promise<void>;
  /** The changeStream option of a run with the stream on. */
  changeStream(label: string): CacheopsConfig['changeStream'];
  /** A new connected writer on the soak database (soak ends it). */
  writer(): Promise<SoakWriter>;
  /** A table name quoted for the database's SQL. */
  quote(name: string): string;
  /** The n-th (1-based) parameter placeholder: `$n` or `?`. */
  param(n: number): string;
}

export interface SoakResult {
  /** Catalogue queries whose cached answer differed from the database after quiescence. */
  readonly differing: number;
  /** Stale values the sampler found after quiescence, and how many hits it checked. */
  readonly stale: number;
  readonly checks: number;
  /** Foreign writes made. */
  readonly writes: number;
}

/** How long the writers and readers run (ms). */
export const SOAK_MS = Number(process.env['STREAM_SOAK_MS'] ?? 3000);

const NAMES = ['a', 'b', 'c', 'd'];
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

type Query = (Item: ModelStatic<Model>, cacheops: boolean) => Promise<unknown>;
const plain = (rows: Model[]): unknown => rows.map((r) => r.get({ plain: true }));

/** The queries read during the soak and compared after it. */
export const catalogue: readonly Query[] = [
  ...NAMES.map((name): Query => async (Item, c) => plain(await Item.findAll({ where: { name }, order: [['id', 'ASC']], cacheops: c } as never))),
  ...[0, 3, 7].map((n): Query => async (Item, c) => Item.count({ where: { n }, cacheops: c } as never)),
  ...[1, 2, 5, 9].map((id): Query => async (Item, c) => (await Item.findByPk(id, { cacheops: c } as never))?.get({ plain: true }) ?? null),
  async (Item, c) => plain(await Item.findAll({ where: { name: { [Op.in]: ['a', 'c'] }, n: { [Op.lt]: 5 } }, order: [['id', 'ASC']], cacheops: c } as never)),
  async (Item, c) => Item.count({ cacheops: c } as never),
];

/** One soak run on a table `soak_<label>`, with the change stream on or off. */
export async function soak(db: SoakDatabase, stream: boolean, label: string): Promise<SoakResult> {
  const table = `soak_${label}`;
  const t = db.quote(table);
  const p = db.param;
  const sequelize = db.sequelize();
  const Item = defineItem(sequelize, table);
  await Item.sync({ force: true });
  await db.prepare?.(sequelize, table);
  await Item.bulkCreate(Array.from({ length: 12 }, (_, i) => ({ name: pick(NAMES), n: i % 10 })));
  const cacheops: Cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: uniquePrefix(`soak${label}`), profiles: { Item: { ops: 'all' } }, verifySampleRate: 1,
    changeStream: stream ? db.changeStream(label) : false, logger: () => undefined,
  });
  cacheops.on('stale', () => undefined);
  await cacheops.changeStreamReady();
  const writers: SoakWriter[] = [];
  for (let i = 0; i < 4; i += 1) writers.push(await db.writer());
  let writes = 0;
  const until = Date.now() + SOAK_MS;
  try {
    const writing = writers.map(async (c) => {
      while (Date.now() < until) {
        const r = Math.random();
        const id = 1 + Math.floor(Math.random() * 14);
        if (r < 0.6) await c.query(`UPDATE ${t} SET name = ${p(1)}, n = ${p(2)} WHERE id = ${p(3)}`, [pick(NAMES), Math.floor(Math.random() * 10), id]);
        else if (r < 0.8) await c.query(`INSERT INTO ${t} (name, n) VALUES (${p(1)}, ${p(2)})`, [pick(NAMES), Math.floor(Math.random() * 10)]);
        else await c.query(`DELETE FROM ${t} WHERE id = ${p(1)}`, [id]);
        writes += 1;
        await new Promise((res) => setTimeout(res, Math.random() * 10));
      }
    });
    const reading = Array.from({ length: 3 }, async () => {
      while (Date.now() < until) await pick(catalogue)(Item, true);
    });
    await Promise.all([...writing, ...reading]);
    // Quiescence: a marker committed after every write; once a cached read sees it, the stream is past them all.
    const marker = `marker-${label}`;
    await writers[0]!.query(`INSERT INTO ${t} (id, name, n) VALUES (1000, ${p(1)}, 0)`, [marker]);
    const readMarker = async (): Promise<unknown> => ((await Item.findByPk(1000)) as unknown as { name: string } | null)?.name;
    await readMarker();
    for (let i = 0; i < (stream ? 500 : 10) && (await readMarker()) !== marker; i += 1) await new Promise((res) => setTimeout(res, 10));
    await new Promise((res) => setTimeout(res, 300)); // samples of reads before the marker finish
    const before = cacheops.stats();
    let differing = 0;
    for (const query of catalogue) {
      await query(Item, true);
      const cached = await query(Item, true);
      if (JSON.stringify(cached) !== JSON.stringify(await query(Item, false))) differing += 1;
    }
    await new Promise((res) => setTimeout(res, 500)); // the sampler's checks of these hits
    const after = cacheops.stats();
    return { differing, stale: after.stale - before.stale, checks: after.checks - before.checks, writes };
  } finally {
    for (const c of writers) await c.end();
    await cacheops.invalidateAll();
    await cacheops.close();
    await sequelize.close();
  }
}

/**
 * Registers the two soak tests with `run` (test.serial, or test.serial.skip
 * where the database is not there). `db` is read when a test runs, so it may
 * be a server the file's test.before starts.
 */
export function soakTests(run: TestFn['serial'] | TestFn['serial']['skip'], db: () => SoakDatabase): void {
  run('foreign writers under load: after quiescence every cached query equals the database and the sampler finds 0 stale', async (t) => {
    const r = await soak(db(), true, 'on');
    t.log(`${r.writes} foreign writes in ${SOAK_MS} ms; after quiescence ${r.checks} sampled hits, ${r.stale} stale, ${r.differing} of ${catalogue.length} queries differing`);
    t.true(r.checks > 0);
    t.is(r.stale, 0);
    t.is(r.differing, 0);
  });

  run('the same run without the change stream leaves stale values (the test can fail)', async (t) => {
    const r = await soak(db(), false, 'off');
    t.log(`${r.writes} foreign writes; ${r.stale} stale sampled, ${r.differing} of ${catalogue.length} queries differing`);
    t.true(r.differing > 0);
    t.true(r.stale > 0);
  });
}
