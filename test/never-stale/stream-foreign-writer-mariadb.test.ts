/**
 * MariaDB (row binlog) variant of stream-foreign-writer.test.ts.
 * Foreign writers under load: four plain mysql2 clients update, insert and delete
 * rows of a cached table while the application reads it through the cache,
 * with the consistency sampler at rate 1.0. After quiescence (a marker write
 * seen through the stream: it is decoded after every earlier commit), every
 * query of the catalogue, read through the cache, equals the database, and the
 * sampler finds nothing stale. Without the stream the same run leaves stale
 * values (the test can fail).
 */
import test from 'ava';
import { Op, Sequelize, type Model, type ModelStatic } from 'sequelize';
import { installCacheops, type Cacheops } from '../../src/index';
import { redisUrl, uniquePrefix } from '../helpers/env';
import { mariadbUnavailable, startPrivateMariadb, type MariaConnection, type PrivateMariadb } from '../helpers/private-mariadb';
import { defineItem } from '../helpers/stream-models';

const unavailable = mariadbUnavailable();
const run = unavailable === undefined ? test.serial : test.serial.skip;
if (unavailable !== undefined) test('MariaDB foreign-writer soak', (t) => { t.log(`skipped: ${unavailable}`); t.pass(); });
const RUN_MS = Number(process.env['STREAM_SOAK_MS'] ?? 3000);
let server: PrivateMariadb;

test.before(async () => {
  if (unavailable !== undefined) return;
  server = await startPrivateMariadb();
  const admin = await server.client();
  await admin.query('CREATE DATABASE soak');
  await admin.end();
});

test.after.always(async () => {
  await server?.stop();
});

const NAMES = ['a', 'b', 'c', 'd'];
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

type Query = (Item: ModelStatic<Model>, cacheops: boolean) => Promise<unknown>;
const plain = (rows: Model[]): unknown => rows.map((r) => r.get({ plain: true }));
const catalogue: Query[] = [
  ...NAMES.map((name): Query => async (Item, c) => plain(await Item.findAll({ where: { name }, order: [['id', 'ASC']], cacheops: c } as never))),
  ...[0, 3, 7].map((n): Query => async (Item, c) => Item.count({ where: { n }, cacheops: c } as never)),
  ...[1, 2, 5, 9].map((id): Query => async (Item, c) => (await Item.findByPk(id, { cacheops: c } as never))?.get({ plain: true }) ?? null),
  async (Item, c) => plain(await Item.findAll({ where: { name: { [Op.in]: ['a', 'c'] }, n: { [Op.lt]: 5 } }, order: [['id', 'ASC']], cacheops: c } as never)),
  async (Item, c) => Item.count({ cacheops: c } as never),
];

async function soak(stream: boolean, label: string): Promise<{ differing: number; stale: number; checks: number; writes: number }> {
  const table = `soak_${label}`;
  const sequelize = new Sequelize('soak', 'root', '', { host: '127.0.0.1', port: server.port, dialect: 'mysql', logging: false });
  const Item = defineItem(sequelize, table);
  await Item.sync({ force: true });
  await Item.bulkCreate(Array.from({ length: 12 }, (_, i) => ({ name: pick(NAMES), n: i % 10 })));
  const cacheops: Cacheops = installCacheops(sequelize, {
    redis: redisUrl, prefix: uniquePrefix(`soak${label}`), profiles: { Item: { ops: 'all' } }, verifySampleRate: 1,
    changeStream: stream, logger: () => undefined,
  });
  cacheops.on('stale', () => undefined);
  await cacheops.changeStreamReady();
  const writers: MariaConnection[] = [];
  for (let i = 0; i < 4; i += 1) writers.push(await server.client('soak'));
  let writes = 0;
  const until = Date.now() + RUN_MS;
  try {
    const writing = writers.map(async (c) => {
      while (Date.now() < until) {
        const r = Math.random();
        const id = 1 + Math.floor(Math.random() * 14);
        if (r < 0.6) await c.query(`UPDATE \`${table}\` SET name = ?, n = ? WHERE id = ?`, [pick(NAMES), Math.floor(Math.random() * 10), id]);
        else if (r < 0.8) await c.query(`INSERT INTO \`${table}\` (name, n) VALUES (?, ?)`, [pick(NAMES), Math.floor(Math.random() * 10)]);
        else await c.query(`DELETE FROM \`${table}\` WHERE id = ?`, [id]);
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
    await writers[0]!.query(`INSERT INTO \`${table}\` (id, name, n) VALUES (1000, ?, 0)`, [marker]);
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

run('foreign writers under load: after quiescence every cached query equals the database and the sampler finds 0 stale', async (t) => {
  const r = await soak(true, 'on');
  t.log(`${r.writes} foreign writes in ${RUN_MS} ms; after quiescence ${r.checks} sampled hits, ${r.stale} stale, ${r.differing} of ${catalogue.length} queries differing`);
  t.true(r.checks > 0);
  t.is(r.stale, 0);
  t.is(r.differing, 0);
});

run('the same run without the change stream leaves stale values (the test can fail)', async (t) => {
  const r = await soak(false, 'off');
  t.log(`${r.writes} foreign writes; ${r.stale} stale sampled, ${r.differing} of ${catalogue.length} queries differing`);
  t.true(r.differing > 0);
  t.true(r.stale > 0);
});
