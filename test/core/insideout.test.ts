/**
 * Insideout (memory-limit) mode: the same reads as without it, granular
 * invalidation, and no stale read when Redis evicts under maxmemory.
 */
import test from 'ava';
import { Op } from 'sequelize';
import { makeBlog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';
import { startPrivateRedis } from '../helpers/private-redis';

const plain = (rows: { toJSON(): unknown }[]) => rows.map((r) => r.toJSON());

for (const dialect of dialects()) {
  test.serial(`${dialect}: insideout caches, invalidates granularly and by model`, async (t) => {
    const blog = await makeBlog(dialect, __filename, { insideout: true }, 'io');
    try {
      const { Post, Category, sequelize, cacheops } = blog;
      const cat = await Category.create({ name: 'c' });
      await Post.bulkCreate([{ title: 'a', views: 1, categoryId: cat.get('id') }, { title: 'b', views: 2 }]);
      const read = () => Post.findAll({ where: { views: 1 }, include: [Category], order: [['id', 'ASC']] });
      const miss = await countSql(sequelize, read);
      t.is(miss.sql.length, 1);
      const hit = await countSql(sequelize, read);
      t.is(hit.sql.length, 0, 'second read is a hit');
      t.deepEqual(plain(hit.result), plain(miss.result));

      await Post.update({ title: 'b2' }, { where: { views: 2 } });
      t.is((await countSql(sequelize, read)).sql.length, 0, 'a write to a row the query does not match keeps it');

      await Post.update({ title: 'a2' }, { where: { views: 1 } });
      const after = await countSql(sequelize, read);
      t.is(after.sql.length, 1, 'a matching write invalidates');
      t.is((after.result[0] as unknown as { title: string }).title, 'a2');

      await cat.update({ name: 'c2' });
      const joined = await countSql(sequelize, read);
      t.is(joined.sql.length, 1, 'a write to the included model invalidates');
      t.is((joined.result[0] as unknown as { Category: { name: string } }).Category.name, 'c2');

      await countSql(sequelize, read);
      await cacheops.invalidateModel(Post);
      t.is((await countSql(sequelize, read)).sql.length, 1, 'invalidateModel moves the generation');

      await cacheops.invalidateDict(Post, { title: 'zzz' });
      t.is((await countSql(sequelize, read)).sql.length, 1, 'a dict missing a scheme field invalidates conservatively');
      const count = () => Post.count({ where: { views: { [Op.in]: [1, 2] } } });
      t.is(await count(), 2);
      await Post.create({ title: 'c', views: 2 });
      t.is(await count(), 3);
    } finally {
      await blog.close();
    }
  });
}

test.serial('sqlite: insideout never serves stale data while Redis evicts under maxmemory', async (t) => {
  const redis = await startPrivateRedis(['--maxmemory', '3mb', '--maxmemory-policy', 'volatile-lru']);
  const blog = await makeBlog('sqlite', __filename, { insideout: true, redis: redis.url }, 'evict');
  try {
    const { Post, cacheops } = blog;
    await Post.bulkCreate(Array.from({ length: 60 }, (_, i) => ({ title: `p${i}`, views: i % 12, body: 'x'.repeat(2000) })));
    const read = (v: number) => Post.findAll({ where: { views: v }, order: [['id', 'ASC']] });
    let stale = 0;
    for (let round = 0; round < 40; round += 1) {
      // Fill memory with many distinct cached queries so Redis must evict.
      await Promise.all(Array.from({ length: 40 }, (_, i) => Post.findAll({ where: { id: { [Op.in]: [round * 40 + i, 1] } } })));
      const v = round % 12;
      await read(v);
      await Post.update({ title: `r${round}` }, { where: { views: v } });
      const cached = plain(await read(v));
      const fresh = plain(await Post.findAll({ where: { views: v }, order: [['id', 'ASC']], cacheops: false } as never));
      if (JSON.stringify(cached) !== JSON.stringify(fresh)) stale += 1;
    }
    const info = await cacheops.core.redis.info('stats');
    const evicted = Number(/evicted_keys:(\d+)/.exec(info)?.[1] ?? '0');
    t.true(evicted > 0, `Redis evicted keys (${evicted})`);
    t.is(stale, 0);
  } finally {
    await blog.close();
    await redis.stop();
  }
});
