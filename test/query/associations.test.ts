/**
 * Association getters, scopes, paranoid models and (nested) includes are
 * cached like any find: no SQL on the second call, same result as uncached.
 */
import test from 'ava';
import { Op, type Model } from 'sequelize';
import { makeBlog } from '../helpers/models';
import { dialects } from '../helpers/env';
import { cachedRead, plain, sqlCount } from '../helpers/check';
import { seedBlog } from '../helpers/seed';

type Getter = (o: object) => Promise<unknown>;
/** An association method by name (they are added at runtime, so untyped on Model). */
const call = (instance: Model, method: string, ...args: unknown[]): Getter => (o) =>
  (instance as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!(...args, o);

for (const dialect of dialects()) {
  test.serial(`${dialect}: association getters (hasMany, belongsTo, belongsToMany) and counters`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { categories, posts, tags, authors } = await seedBlog(blog);
      const { sequelize, Post, Tag } = blog;
      const category = categories[0]!;
      const post = posts[2]!;
      await cachedRead(t, sequelize, (o) => call(category, 'getPosts')({ ...o, order: [['id', 'ASC']] }), 'hasMany');
      await cachedRead(t, sequelize, (o) => call(category, 'getPosts')({ ...o, where: { published: true }, order: [['id', 'ASC']] }), 'hasMany where');
      await cachedRead(t, sequelize, (o) => call(categories[2]!, 'getPosts')(o), 'hasMany empty');
      await cachedRead(t, sequelize, call(post, 'getCategory'), 'belongsTo');
      await cachedRead(t, sequelize, call(post, 'getAuthor'), 'belongsTo author');
      const postTags = await cachedRead(t, sequelize, (o) => call(post, 'getTags')({ ...o, order: [['id', 'ASC']] }), 'belongsToMany') as Model[];
      t.deepEqual(postTags.map((x) => x.get('name')), ['js', 'db', 'cache']);
      t.true(postTags.every((x) => x instanceof Tag && (x.get('PostTag') as Model) instanceof blog.PostTag), 'through rows rebuilt');
      await cachedRead(t, sequelize, (o) => call(post, 'getTags')({ ...o, joinTableAttributes: [], order: [['name', 'ASC']] }), 'no join attributes');
      await cachedRead(t, sequelize, (o) => call(tags[1]!, 'getPosts')({ ...o, through: { where: { weight: { [Op.gte]: 2 } } } }), 'through where');
      t.is(await cachedRead(t, sequelize, call(category, 'countPosts'), 'hasMany count'), 3);
      t.is(await cachedRead(t, sequelize, call(post, 'countTags'), 'belongsToMany count'), 3);
      t.is(await cachedRead(t, sequelize, call(authors[0]!, 'hasPost', posts[0]), 'has'), true);
      // The instance the getter ran on does not matter, only its key values.
      const same = (await Post.findByPk(post.get('id') as number))!;
      t.is(await sqlCount(sequelize, () => call(same, 'getTags')({ order: [['id', 'ASC']] })), 0);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: scoped models`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { sequelize, Post, Category, Comment } = blog;
      Post.addScope('popular', { where: { views: { [Op.gte]: 30 } } });
      Post.addScope('ofCategory', (name: string) => ({ include: [{ model: Category, where: { name } }] }));
      Post.addScope('withComments', { include: [{ model: Comment, required: false }] });
      Post.addScope('titles', { attributes: ['id', 'title'] });
      await cachedRead(t, sequelize, (o) => Post.scope('popular').findAll({ ...o, order: [['id', 'ASC']] }), 'scope');
      await cachedRead(t, sequelize, (o) => Post.scope(['popular', { method: ['ofCategory', 'tech'] }]).findAll({ ...o, order: [['id', 'ASC']] }), 'two scopes');
      await cachedRead(t, sequelize, (o) => Post.scope(['withComments', 'titles']).findAll({ ...o, order: [['id', 'ASC'], [Comment, 'id', 'ASC']] }), 'include scope');
      await cachedRead(t, sequelize, (o) => Post.scope('popular').count({ ...o }), 'scoped count');
      const a = await Post.scope('popular').findAll({ order: [['id', 'ASC']] });
      const b = await Post.findAll({ order: [['id', 'ASC']] });
      t.not(a.length, b.length, 'a scope changes the key');
      t.is(await sqlCount(sequelize, () => Post.scope({ method: ['ofCategory', 'news'] }).findAll()), 1, 'another scope argument is another key');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: paranoid: soft-deleted rows excluded, paranoid: false includes them`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts, categories } = await seedBlog(blog);
      const { sequelize, Post, Category } = blog;
      await posts[1]!.destroy();
      await Post.destroy({ where: { views: 40 } });
      const visible = await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, order: [['id', 'ASC']] }), 'paranoid') as Model[];
      t.deepEqual(visible.map((p) => p.get('views')), [0, 20, 30, 50]);
      const all = await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, paranoid: false, order: [['id', 'ASC']] }), 'paranoid: false') as Model[];
      t.is(all.length, 6);
      t.true(all[1]!.get('deletedAt') instanceof Date);
      t.is(await cachedRead(t, sequelize, (o) => Post.count({ ...o }), 'count'), 4);
      t.is(await cachedRead(t, sequelize, (o) => Post.count({ ...o, paranoid: false }), 'count paranoid: false'), 6);
      t.is(await cachedRead(t, sequelize, (o) => Post.findByPk(posts[1]!.get('id') as number, { ...o }), 'findByPk deleted'), null);
      await cachedRead(t, sequelize, (o) => Category.findAll({ ...o, include: [Post], order: [['id', 'ASC'], [Post, 'id', 'ASC']] }), 'include excludes deleted');
      await cachedRead(t, sequelize, (o) => call(categories[1]!, 'getPosts')({ ...o, paranoid: false }), 'getter paranoid: false');
      await posts[1]!.restore();
      t.is(await sqlCount(sequelize, () => Post.count()), 1, 'restore invalidates');
      t.is(await Post.count(), 5);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: includes, nested, required, with where, separate`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { sequelize, Post, Category, Author, Tag, Comment } = blog;
      const nested = await cachedRead(t, sequelize, (o) => Category.findAll({
        ...o,
        include: [{ model: Post, include: [Tag, Comment, Author] }],
        order: [['id', 'ASC'], [Post, 'id', 'ASC'], [Post, Tag, 'id', 'ASC'], [Post, Comment, 'id', 'ASC']],
      }), 'nested') as Model[];
      const posts = nested[0]!.get('Posts') as Model[];
      t.true(posts[0] instanceof Post && (posts[0]!.get('Tags') as Model[])[0] instanceof Tag && posts[0]!.get('Author') instanceof Author);
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, include: [{ model: Tag, where: { name: 'cache' } }], order: [['id', 'ASC']] }), 'required with where');
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, include: [{ model: Comment, where: { approved: true }, required: false }], order: [['id', 'ASC'], [Comment, 'id', 'ASC']] }), 'left join with where');
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, include: [{ model: Author, where: { active: false } }, Category], order: [['id', 'ASC']] }), 'two includes');
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, include: [{ model: Comment, separate: true, order: [['id', 'DESC']] }], order: [['id', 'ASC']] }), 'separate');
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, include: [{ model: Tag, attributes: ['name'], through: { attributes: ['weight'] } }], order: [['id', 'ASC'], [Tag, 'name', 'ASC']] }), 'through attributes');
      await cachedRead(t, sequelize, (o) => Post.findOne({ ...o, where: { title: 'post 2' }, include: [{ all: true }] }), 'include all');
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, where: { '$Category.name$': 'tech' }, include: [Category], order: [['id', 'ASC']] }), '$nested$ where');
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, raw: true, nest: true, include: [Category], order: [['id', 'ASC']] }), 'raw nest');
      await cachedRead(t, sequelize, (o) => Post.findAll({ ...o, include: [Tag], limit: 2, order: [['id', 'ASC'], [Tag, 'id', 'ASC']] }), 'include with limit (subquery)');
      const plainOnes = plain(await Post.findAll({ raw: true, nest: true, include: [Category], order: [['id', 'ASC']] })) as { Category: { name: string } }[];
      t.is(plainOnes[0]!.Category.name, 'news', 'nest: true nests the include');
    } finally {
      await blog.close();
    }
  });
}
