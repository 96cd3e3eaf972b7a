/**
 * Manual caching: with '*': {} nothing is cached unless the query asks
 * (cacheops: true or { ops, timeout }); cacheops: false always wins; a null
 * profile forbids caching (also of queries that include that model); a model
 * with no matching profile is never cached.
 */
import test from 'ava';
import { makeBlog } from '../helpers/models';
import { dialects, rawRedis } from '../helpers/env';
import { cachedRead, sqlCount, valueKeys } from '../helpers/check';
import { seedBlog } from '../helpers/seed';

/** SQL statements of two consecutive runs. */
async function twice(sequelize: Parameters<typeof sqlCount>[0], read: () => Promise<unknown>): Promise<[number, number]> {
  return [await sqlCount(sequelize, read), await sqlCount(sequelize, read)];
}

for (const dialect of dialects()) {
  test.serial(`${dialect}: '*': {} caches only on request`, async (t) => {
    const blog = await makeBlog(dialect, __filename, { profiles: { '*': {} } }, 'manual');
    try {
      await seedBlog(blog);
      const { sequelize, Post, Tag } = blog;
      t.deepEqual(await twice(sequelize, () => Post.findAll()), [1, 1], 'no automatic caching');
      t.deepEqual(await twice(sequelize, () => Post.count()), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Post.findByPk(1)), [1, 1]);
      await cachedRead(t, sequelize, (o) => Post.findAll({ where: { published: true }, ...o, ...('cacheops' in o ? {} : { cacheops: true }) }), 'cacheops: true');
      await cachedRead(t, sequelize, (o) => Post.count({ ...('cacheops' in o ? o : { cacheops: { ops: 'count' } }) }), 'cacheops: { ops }');
      await cachedRead(t, sequelize, (o) => Post.findByPk(2, { include: [Tag], ...('cacheops' in o ? o : { cacheops: { ops: ['get'], timeout: 30 } }) }), 'get with timeout');
      t.deepEqual(await twice(sequelize, () => Post.findAll({ where: { views: 10 }, cacheops: { ops: ['count'] } })), [1, 1], 'ops not listing this op: not cached');
      t.deepEqual(await twice(sequelize, () => Post.findAll({ where: { published: true }, cacheops: false })), [1, 1], 'cacheops: false never reads the cache');

      const before = new Set(await valueKeys(blog.cacheops.core.prefixFor([])));
      await Post.findAll({ where: { views: 20 }, cacheops: { timeout: 7 } });
      const added = (await valueKeys(blog.cacheops.core.prefixFor([]))).filter((k) => !before.has(k));
      t.is(added.length, 1);
      const redis = rawRedis();
      const ttl = await redis.ttl(added[0]!);
      redis.disconnect();
      t.true(ttl > 0 && ttl <= 7, `the query's timeout is used: ${ttl}`);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: cacheops: false wins over an automatic profile`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'nocache');
    try {
      await seedBlog(blog);
      const { sequelize, Post } = blog;
      t.deepEqual(await twice(sequelize, () => Post.findAll({ cacheops: false })), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Post.count({ cacheops: false })), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Post.max('views', { cacheops: false })), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Post.findAll()), [1, 0], 'the same query without the option is cached');
      t.is(await sqlCount(sequelize, () => Post.findAll({ cacheops: false })), 1, 'and cacheops: false still skips the entry');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: a null profile is never cached, not even through an include`, async (t) => {
    const blog = await makeBlog(dialect, __filename, { profiles: { Comment: null, '*': ['all'] } }, 'nullprofile');
    try {
      const { categories, posts } = await seedBlog(blog);
      const { sequelize, Post, Comment } = blog;
      t.deepEqual(await twice(sequelize, () => Comment.findAll()), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Comment.findAll({ cacheops: true })), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Comment.count({ cacheops: { ops: ['count'] } })), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Post.findAll({ include: [Comment] })), [1, 1], 'a query including it is not cached');
      t.deepEqual(await twice(sequelize, () => (posts[0] as unknown as { getComments(): Promise<unknown> }).getComments()), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Post.findAll({ where: { categoryId: categories[0]!.get('id') } })), [1, 0], 'other models still are');
      t.deepEqual(await twice(sequelize, () => Post.count({ where: sequelize.literal('"id" IN (SELECT "postId" FROM "Comments")'.replace(/"/g, dialect === 'mysql' ? '`' : '"')) })),
        [1, 1], 'a query naming its table in SQL is not cached');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: a model with no matching profile is not cached`, async (t) => {
    const blog = await makeBlog(dialect, __filename, { profiles: { Post: ['all'], 'Ta*': { ops: 'fetch' } } }, 'noprofile');
    try {
      await seedBlog(blog);
      const { sequelize, Post, Category, Tag, Author } = blog;
      t.deepEqual(await twice(sequelize, () => Post.findAll()), [1, 0]);
      t.deepEqual(await twice(sequelize, () => Tag.findAll()), [1, 0], 'glob match');
      t.deepEqual(await twice(sequelize, () => Category.findAll()), [1, 1]);
      t.deepEqual(await twice(sequelize, () => Category.findAll({ cacheops: true })), [1, 1], 'not even on request');
      t.deepEqual(await twice(sequelize, () => Author.count({ cacheops: { ops: ['count'] } })), [1, 1]);
      // A cached query may include an unprofiled model: its writes still invalidate it.
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, include: [Category], order: [['id', 'ASC']] }), 'include of an unprofiled model');
      await Category.update({ name: 'renamed' }, { where: { name: 'news' } });
      const after = await Post.findAll({ include: [Category], order: [['id', 'ASC']] });
      t.is((after[0]!.get('Category') as { get(k: string): unknown }).get('name'), 'renamed');
    } finally {
      await blog.close();
    }
  });
}
