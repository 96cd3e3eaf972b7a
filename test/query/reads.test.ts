/**
 * Every finder, count and aggregate is cached: the second call runs no SQL,
 * and both calls return what the same read with { cacheops: false } returns.
 */
import test from 'ava';
import { Op, type Model } from 'sequelize';
import { makeBlog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';
import { cachedRead, plain, sqlCount } from '../helpers/check';
import { seedBlog } from '../helpers/seed';

const byKey = (key: string) => (rows: unknown) =>
  [...(rows as Record<string, unknown>[])].sort((a, b) => String(a[key]).localeCompare(String(b[key])));

for (const dialect of dialects()) {
  test.serial(`${dialect}: findAll with where, order, limit, offset, attributes and raw`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { Post, sequelize } = blog;
      const reads: [string, (o: object) => Promise<unknown>][] = [
        ['all', (o) => Post.findAll({ ...o })],
        ['where', (o) => Post.findAll({ ...o, where: { published: true }, order: [['id', 'ASC']] })],
        ['where op', (o) => Post.findAll({ ...o, where: { views: { [Op.gte]: 20 }, title: { [Op.like]: 'post%' } }, order: [['views', 'DESC']] })],
        ['limit/offset', (o) => Post.findAll({ ...o, order: [['id', 'ASC']], limit: 2, offset: 1 })],
        ['attributes', (o) => Post.findAll({ ...o, attributes: ['id', 'title', ['views', 'seen']], order: [['id', 'ASC']] })],
        ['exclude', (o) => Post.findAll({ ...o, attributes: { exclude: ['blob', 'meta'] }, where: { id: [1, 2] } })],
        ['raw', (o) => Post.findAll({ ...o, raw: true, where: { views: [10, 20] }, order: [['id', 'ASC']] })],
        ['raw attributes', (o) => Post.findAll({ ...o, raw: true, attributes: ['categoryId', 'title'], order: [['title', 'ASC']] })],
        ['empty', (o) => Post.findAll({ ...o, where: { views: 12345 } })],
      ];
      for (const [label, read] of reads) await cachedRead(t, sequelize, read, label);
      // A different option makes a different key: limit 3 is not served by the limit 2 entry.
      t.is((await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, order: [['id', 'ASC']], limit: 3, offset: 1 }), 'limit 3') as Model[]).length, 3);
      const raw = await Post.findAll({ raw: true, where: { views: [10, 20] }, order: [['id', 'ASC']] });
      t.false(raw[0] instanceof Post, 'a raw hit is a plain object');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: findOne, findByPk and instance.reload`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts } = await seedBlog(blog);
      const { Post, sequelize } = blog;
      const id = posts[2]!.get('id') as number;
      await cachedRead(t, sequelize, (o) => Post.findOne({ ...o, where: { title: 'post 3' } }), 'findOne');
      await cachedRead(t, sequelize, (o) => Post.findOne({ ...o, where: { views: { [Op.gt]: 1000 } } }), 'findOne null');
      await cachedRead(t, sequelize, (o) => Post.findByPk(id, { ...o }), 'findByPk');
      await cachedRead(t, sequelize, (o) => Post.findByPk(String(id), { ...o }), 'findByPk with a string');
      await cachedRead(t, sequelize, (o) => Post.findByPk(99999, { ...o }), 'findByPk missing');
      await cachedRead(t, sequelize, (o) => Post.findByPk(id, { ...o, attributes: ['id', 'views'] }), 'findByPk attributes');

      const instance = (await Post.findByPk(posts[4]!.get('id') as number, { cacheops: false }))!;
      const reference = await instance.reload({ cacheops: false });
      const first = await countSql(sequelize, () => instance.reload());
      t.true(first.sql.length > 0);
      instance.set('title', 'changed in memory');
      const second = await countSql(sequelize, () => instance.reload());
      t.deepEqual(second.sql, [], 'the second reload is a hit');
      t.is(second.result, instance, 'reload returns the instance');
      t.deepEqual(instance.toJSON(), reference.toJSON(), 'a reload from cache resets in-memory changes');
      t.false(instance.changed());
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: findAndCountAll, and { ops: ['count'] } caching only the count`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { Post, Tag, sequelize } = blog;
      await cachedRead(t, sequelize, (o) => Post.findAndCountAll({ ...o, where: { published: true }, order: [['id', 'ASC']], limit: 2 }), 'findAndCountAll');
      await cachedRead(t, sequelize, (o) => Post.findAndCountAll({ ...o, include: [Tag], distinct: true, order: [['id', 'ASC'], [Tag, 'id', 'ASC']] }), 'with include');

      const page = (o: object) => Post.findAndCountAll({ where: { views: { [Op.lt]: 50 } }, order: [['id', 'DESC']], limit: 2, offset: 1, ...o });
      const reference = await page({ cacheops: false });
      const first = await countSql(sequelize, () => page({ cacheops: { ops: ['count'] } }));
      t.is(first.sql.length, 2);
      const second = await countSql(sequelize, () => page({ cacheops: { ops: ['count'] } }));
      t.is(second.sql.length, 1, 'only the rows query runs');
      t.notRegex(second.sql[0]!, /count\(/i, 'the count comes from cache');
      t.deepEqual(plain(second.result), plain(reference));
      t.is(second.result.count, 5);
      const rowsOnly = await countSql(sequelize, () => page({ cacheops: { ops: ['fetch'] } }));
      t.is(rowsOnly.sql.length, 2, "ops ['fetch'] does not use the count entry, and stores the rows");
      const fromFetch = await countSql(sequelize, () => page({ cacheops: { ops: ['fetch'] } }));
      t.is(fromFetch.sql.length, 1);
      t.regex(fromFetch.sql[0]!, /count\(/i, 'only the count runs now');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: count (plain, where, distinct, include, group)`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { Post, Tag, sequelize } = blog;
      t.is(await cachedRead(t, sequelize, (o) => Post.count({ ...o }), 'count'), 6);
      t.is(await cachedRead(t, sequelize, (o) => Post.count({ ...o, where: { published: false } }), 'count where'), 3);
      t.is(await cachedRead(t, sequelize, (o) => Post.count({ ...o, distinct: true, col: 'authorId' }), 'distinct col'), 2);
      await cachedRead(t, sequelize, (o) => Post.count({ ...o, include: [{ model: Tag, where: { name: 'db' } }], distinct: true }), 'include');
      const grouped = await cachedRead(t, sequelize, (o) => Post.count({ ...o, group: ['categoryId'] }).then(byKey('categoryId')), 'group');
      t.true(Array.isArray(grouped), 'count with group is an array');
      t.is((grouped as unknown[]).length, 2);
      await cachedRead(t, sequelize, (o) => Post.count({ ...o, group: ['categoryId', 'published'], where: { views: { [Op.gt]: 0 } } })
        .then((r) => [...(r as unknown as Record<string, unknown>[])].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))), 'group two');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: max, min, sum and aggregate`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { Post, sequelize } = blog;
      t.is(await cachedRead(t, sequelize, (o) => Post.max('views', { ...o }), 'max'), 50);
      t.is(await cachedRead(t, sequelize, (o) => Post.min('views', { ...o, where: { published: false } }), 'min'), 10);
      t.is(await cachedRead(t, sequelize, (o) => Post.sum('views', { ...o }), 'sum'), 150);
      await cachedRead(t, sequelize, (o) => Post.max('views', { ...o, where: { views: { [Op.gt]: 1000 } } }), 'max of nothing');
      const latest = await cachedRead(t, sequelize, (o) => Post.max('publishedAt', { ...o }), 'max date');
      t.true(latest instanceof Date, 'a date aggregate is a Date');
      await cachedRead(t, sequelize, (o) => Post.max('rating', { ...o }), 'max decimal');
      await cachedRead(t, sequelize, (o) => Post.min('title', { ...o }), 'min string');
      await cachedRead(t, sequelize, (o) => Post.aggregate('views', 'avg', { ...o }), 'avg');
      await cachedRead(t, sequelize, (o) => Post.aggregate('authorId', 'count', { ...o, distinct: true }), 'count distinct');
      await cachedRead(t, sequelize, (o) => Post.aggregate('views', 'sum', { ...o, plain: false, group: ['categoryId'], attributes: ['categoryId'] } as object)
        .then(byKey('categoryId')), 'aggregate grouped');
      // Different aggregates of one column do not share an entry.
      t.not(await Post.max('views'), await Post.min('views'));
      t.is(await sqlCount(sequelize, () => Post.sum('views', { where: { published: true } })), 1);
    } finally {
      await blog.close();
    }
  });
}
