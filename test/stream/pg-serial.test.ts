/**
 * Queries on one `pg` client go one after another: pg 8.19+ deprecates a query
 * sent while another runs on the client, pg 9 refuses it. The change stream's
 * clients serialize their queries (serialized in src/stream/pg-server.ts), and
 * every test file fails on the overlap pg warns of (helpers/pg-serial.ts):
 * both are checked here, on PostgreSQL: reads sent at once in one
 * transaction (the shape the never-stale reads had) are seen, Sequelize's own
 * BelongsToMany set is not.
 */
import test from 'ava';
import { serialized } from '../../src/stream/pg-server';
import { DataTypes, type Model } from 'sequelize';
import { dialects, makeSequelize } from '../helpers/env';
import { allowOverlaps } from '../helpers/pg-serial';
import { Client } from '../helpers/private-postgres';

const config = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' };

const run = dialects().includes('postgres') ? test.serial : test.serial.skip;

run('the guard sees queries sent at once on a plain client', async (t) => {
  const client = new Client(config);
  await client.connect();
  try {
    const overlaps = await allowOverlaps(() => Promise.all([1, 2, 3].map((n) => client.query(`SELECT pg_sleep(0.02), ${n} AS n`))));
    t.is(overlaps.length, 1, 'the third query was sent while the first ran and the second waited');
  } finally {
    await client.end();
  }
});

run('a serialized client answers queries asked at once, one after another, each with its own answer', async (t) => {
  const client = serialized(new Client(config));
  await client.connect();
  try {
    const overlaps = await allowOverlaps(async () => {
      const failing = t.throwsAsync(client.query('SELECT * FROM no_such_table_here'), { message: /no_such_table_here/ });
      const answers = await Promise.all([1, 2, 3].map((n) => client.query('SELECT pg_sleep(0.02), $1::int AS n', [n])));
      t.deepEqual(answers.map((a) => a.rows[0]?.['n']), [1, 2, 3]);
      await failing;
      t.is((await client.query('SELECT 4 AS n')).rows[0]?.['n'], 4, 'a failed query does not stop the ones after it');
    });
    t.deepEqual(overlaps, []);
  } finally {
    await client.end();
  }
});

run('reads sent at once in one transaction are seen; Sequelize\'s own BelongsToMany set and individualHooks update are left out', async (t) => {
  const sequelize = await makeSequelize('postgres', __filename);
  const Item = sequelize.define('SerialItem', { name: DataTypes.STRING });
  const Label = sequelize.define('SerialLabel', { name: DataTypes.STRING });
  const Tag = sequelize.define('SerialTag', { weight: DataTypes.INTEGER });
  Item.belongsToMany(Label, { through: Tag });
  Label.belongsToMany(Item, { through: Tag });
  try {
    await sequelize.sync({ force: true });
    const item = await Item.create({ name: 'i' });
    const labels = await Label.bulkCreate([1, 2, 3, 4].map((n) => ({ name: `l${n}` })));
    const setLabels = (item as unknown as { setSerialLabels(l: unknown[], o: unknown): Promise<unknown> }).setSerialLabels.bind(item);
    await setLabels(labels, { through: { weight: 1 } });
    const reads = await allowOverlaps(() => sequelize.transaction(async (transaction) => {
      await Promise.all(labels.map((l) => Label.findByPk(l.get('id') as number, { transaction })));
    }));
    t.true(reads.length > 0, 'four reads at once on the transaction\'s connection');
    const own = await allowOverlaps(() => sequelize.transaction(async (transaction) => {
      await setLabels(labels, { through: { weight: 2 }, transaction });
    }));
    t.deepEqual(own, []);
    t.deepEqual((await Tag.findAll()).map((r) => r.get('weight')), [2, 2, 2, 2], 'the set ran (its updates overlapped)');
    // Model.update with individualHooks whose hooks make the rows' values differ saves each
    // instance at once (a Promise.all in Sequelize's model.js).
    Label.addHook('beforeUpdate', (label: Model) => { label.set('name', `renamed-${String(label.get('id'))}`); });
    const hooked = await allowOverlaps(() => sequelize.transaction(async (transaction) => {
      await Label.update({ name: 'renamed' }, { where: {}, individualHooks: true, transaction });
    }));
    t.deepEqual(hooked, []);
    t.deepEqual((await Label.findAll({ order: [['id', 'ASC']] })).map((r) => r.get('name')), labels.map((l) => `renamed-${String(l.get('id'))}`));
  } finally {
    await sequelize.drop();
    await sequelize.close();
  }
});
