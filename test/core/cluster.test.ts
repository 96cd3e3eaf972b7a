/**
 * Redis Cluster: every script stays in one slot (hash tags), the values
 * spread over the masters, invalidation reaches every shard, and
 * invalidateAll scans every master.
 */
import test from 'ava';
import { Sequelize } from 'sequelize';
import { installCacheops } from '../../src/index';
import { defineBlog } from '../helpers/models';
import { countSql } from '../helpers/env';
import { startPrivateCluster } from '../helpers/private-cluster';

test.serial('cluster: cached reads spread over masters and are invalidated granularly', async (t) => {
  const cluster = await startPrivateCluster();
  const client = cluster.client();
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const { Post, Category } = defineBlog(sequelize);
  await sequelize.sync();
  const cacheops = installCacheops(sequelize, { redis: client, profiles: { '*': { ops: 'all' } }, clusterShards: 12 });
  try {
    await Post.bulkCreate(Array.from({ length: 40 }, (_, i) => ({ title: `p${i}`, views: i })));
    const read = (v: number) => Post.findAll({ where: { views: v } });
    for (let v = 0; v < 40; v += 1) await read(v);
    for (let v = 0; v < 40; v += 1) t.is((await countSql(sequelize, () => read(v))).sql.length, 0, `hit ${v}`);

    // Values live on more than one master.
    const perNode = await Promise.all(client.nodes('master').map((n) => n.dbsize()));
    t.true(perNode.filter((n) => n > 0).length >= 2, `keys per master: ${perNode.join(', ')}`);

    await Post.update({ title: 'changed' }, { where: { views: 7 } });
    const after = await countSql(sequelize, () => read(7));
    t.is(after.sql.length, 1, 'the matching query was invalidated');
    t.is((after.result[0] as unknown as { title: string }).title, 'changed');
    t.is((await countSql(sequelize, () => read(8))).sql.length, 0, 'an unrelated one was not');

    await Category.create({ name: 'x' });
    await cacheops.invalidateModel(Post);
    t.is((await countSql(sequelize, () => read(9))).sql.length, 1, 'invalidateModel reaches every shard');

    await cacheops.invalidateAll();
    const left = await Promise.all(client.nodes('master').map(async (n) => (await n.keys('cacheops:*')).filter((k) => !k.endsWith(':epochs'))));
    t.deepEqual(left.flat(), [], 'invalidateAll removed every value on every master');
  } finally {
    await cacheops.close();
    client.disconnect();
    await sequelize.close();
    await cluster.stop();
  }
});
