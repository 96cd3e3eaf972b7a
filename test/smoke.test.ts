import test from 'ava';
import { makeBlog } from './helpers/models';
import { countSql, dialects } from './helpers/env';

for (const dialect of dialects()) {
  test.serial(`${dialect}: a findAll is cached and invalidated by a matching create`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { Post, sequelize } = blog;
      await Post.create({ title: 'a', views: 5 });
      const first = await countSql(sequelize, () => Post.findAll({ where: { views: 5 } }));
      t.is(first.sql.length, 1);
      const second = await countSql(sequelize, () => Post.findAll({ where: { views: 5 } }));
      t.is(second.sql.length, 0);
      t.deepEqual(second.result.map((p) => p.toJSON()), first.result.map((p) => p.toJSON()));
      await Post.create({ title: 'b', views: 6 });
      t.is((await countSql(sequelize, () => Post.findAll({ where: { views: 5 } }))).sql.length, 0, 'an unrelated create keeps the cache');
      await Post.create({ title: 'c', views: 5 });
      const third = await countSql(sequelize, () => Post.findAll({ where: { views: 5 } }));
      t.is(third.sql.length, 1);
      t.is(third.result.length, 2);
    } finally {
      await blog.close();
    }
  });
}
