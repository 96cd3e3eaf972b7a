/**
 * The fast path (src/query/fast-path.ts): a repeated find is served from the
 * select its first call prepared, without Sequelize's find machinery (so
 * without QueryInterface.select), and returns what the same find returns
 * uncached. It steps aside where the result could differ.
 */
import test from 'ava';
import { DataTypes, EmptyResultError, Op, Transaction, type Model, type ModelStatic } from 'sequelize';
import { makeBlog, type Blog } from '../helpers/models';
import { dialects } from '../helpers/env';
import { plain, sqlCount } from '../helpers/check';
import { seedBlog } from '../helpers/seed';
import { selectCounter, twice } from '../helpers/fast-path';

type Read = (o: Record<string, unknown>) => Promise<unknown>;

/**
 * First call: the normal path (one select). Later calls: no select, no SQL,
 * the uncached result. Returns a fast hit's result.
 */
async function fastRead(t: import('ava').ExecutionContext, blog: Blog, read: Read, label: string): Promise<unknown> {
  const reference = plain(await read({ cacheops: false }));
  const selects = selectCounter(blog.sequelize, ['select']);
  try {
    const first = await read({});
    t.true(selects.count() >= 1, `${label}: the first call takes the normal path`);
    t.deepEqual(plain(first), reference, `${label}: first call`);
    const before = selects.count();
    let result: unknown;
    const sql = await sqlCount(blog.sequelize, async () => { result = await read({}); });
    t.is(selects.count(), before, `${label}: the second call does not reach QueryInterface.select`);
    t.is(sql, 0, `${label}: the second call runs no SQL`);
    t.deepEqual(plain(result), reference, `${label}: a fast hit returns what the uncached read does`);
    return result;
  } finally {
    selects.restore();
  }
}

const call = (instance: Model, method: string): Read => (o) =>
  (instance as unknown as Record<string, (o: unknown) => Promise<unknown>>)[method]!(o);

for (const dialect of dialects()) {
  test.serial(`${dialect}: repeated finds are served without Sequelize's find machinery`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts, categories } = await seedBlog(blog);
      const { Post, Category, Author, Tag, Comment } = blog;
      const id = posts[2]!.get('id') as number;
      const hit = await fastRead(t, blog, (o) => Post.findByPk(id, o), 'findByPk') as Model;
      t.true(hit instanceof Post);
      t.false(hit.isNewRecord);
      t.deepEqual(hit.changed(), false);
      await fastRead(t, blog, (o) => Post.findOne({ ...o, where: { title: 'post 3' } }), 'findOne');
      await fastRead(t, blog, (o) => Post.findOne({ ...o, where: { title: 'nothing' } }), 'findOne of nothing');
      const list = await fastRead(t, blog, (o) => Post.findAll({
        ...o,
        where: { views: { [Op.gte]: 10 } },
        include: [{ model: Category }, { model: Author }, { model: Tag }, { model: Comment, required: false }],
        order: [['id', 'ASC'], [Tag, 'id', 'ASC'], [Comment, 'id', 'ASC']],
      }), 'findAll with includes') as Model[];
      t.true(list.every((p) => p.get('Category') instanceof Category && (p.get('Tags') as Model[]).every((x) => x instanceof Tag)));
      await fastRead(t, blog, (o) => Post.findAll({ ...o, raw: true, nest: true, include: [Category], order: [['id', 'DESC']], limit: 3 }), 'raw nest');
      await fastRead(t, blog, (o) => Post.findAll({ ...o, attributes: ['id', 'title'], where: { id: [1, 2, 3] }, paranoid: false }), 'attributes');
      Post.addScope('popular', { where: { views: { [Op.gte]: 30 } } });
      await fastRead(t, blog, (o) => Post.scope('popular').findAll({ ...o, order: [['id', 'ASC']] }), 'scoped model');
      await fastRead(t, blog, call(categories[0]!, 'getPosts'), 'hasMany getter');
      await fastRead(t, blog, call(posts[0]!, 'getCategory'), 'belongsTo getter');
      await fastRead(t, blog, call(posts[2]!, 'getTags'), 'belongsToMany getter');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: a fast miss runs the remembered SQL, stores, and later hits are current`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts } = await seedBlog(blog);
      const { Post, Category, sequelize } = blog;
      const read = (o: Record<string, unknown> = {}) => Post.findAll({ ...o, where: { published: true }, include: [Category], order: [['id', 'ASC']] });
      await read();
      await read();
      const selects = selectCounter(sequelize, ['select']);
      try {
        await posts[0]!.update({ title: 'renamed' });
        const start = selects.count(); // the write's own reads of its rows
        const after = await sqlCount(sequelize, read);
        t.is(after, 1, 'the invalidated read runs its one SELECT');
        t.is(selects.count(), start, 'through the fast path');
        t.is(await sqlCount(sequelize, read), 0, 'and is stored again');
        t.deepEqual(plain(await read()), plain(await read({ cacheops: false })));
        t.is((await read() as Model[])[0]!.get('title'), 'renamed');
        // A per-call logging function is used on a fast miss.
        await posts[2]!.update({ views: 99 });
        const again = selects.count();
        const logged: string[] = [];
        await read({ logging: (sql: string) => logged.push(sql) });
        t.is(logged.length, 1);
        t.is(selects.count(), again);
      } finally {
        selects.restore();
      }
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: the fast path steps aside for hooks, transactions, separate includes and unknown options`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { categories } = await seedBlog(blog);
      const { Post, Category, Comment, sequelize } = blog;
      const selects = selectCounter(sequelize, ['select']);
      try {
        t.is(await twice(selects, () => Post.findAll({ where: { views: 10 } })), 1, 'control: the second call is fast');
        let hooked = 0;
        const hook = () => { hooked += 1; };
        Post.addHook('beforeFind', 'count', hook);
        t.is(await twice(selects, () => Post.findAll({ where: { views: 10 } })), 2, 'a beforeFind hook: both calls take the normal path');
        t.is(hooked, 2, 'and the hook runs every time');
        t.is(await twice(selects, () => Post.findAll({ where: { views: 10 }, hooks: false } as never)), 1, 'hooks: false: fast again');
        Post.removeHook('beforeFind', 'count');
        sequelize.addHook('afterFind', 'global', hook);
        t.is(await twice(selects, () => Post.findAll({ where: { views: 20 } })), 2, 'a global afterFind hook');
        sequelize.removeHook('afterFind', 'global');
        await sequelize.transaction(async (transaction) => {
          t.is(await twice(selects, () => Post.findAll({ where: { views: 10 }, transaction })), 2, 'an explicit transaction');
        });
        t.is(await twice(selects, () => Post.findAll({ where: { views: 30 }, include: [{ model: Comment, separate: true }] })), 4, 'a separate include');
        t.is(await twice(selects, () => Post.findAll({ where: { views: 30 }, someUnknownOption: 1 } as never)), 2, 'an unknown option');
        t.is(await twice(selects, () => Post.findAll({ where: { views: 30 }, lock: Transaction.LOCK.UPDATE } as never)), 2, 'a lock');
        t.is(await twice(selects, () => Post.findAll({ where: { views: 30 }, cacheops: false } as never)), 2, 'cacheops: false');
        t.is(await twice(selects, () => Category.findAll({ where: { id: categories[0]!.get('id') }, include: [{ model: Post, where: { views: { [Op.in]: [0, 10] } } }] })), 1, 'control again');
      } finally {
        selects.restore();
      }
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: rejectOnEmpty on a fast hit throws as findAll does`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { Post } = blog;
      class Missing extends Error {}
      for (let i = 0; i < 2; i++) {
        await t.throwsAsync(Post.findOne({ where: { title: 'none' }, rejectOnEmpty: true }), { instanceOf: EmptyResultError });
        await t.throwsAsync(Post.findByPk(999_999, { rejectOnEmpty: new Missing('gone') }), { instanceOf: Missing, message: 'gone' });
        await t.throwsAsync(Post.findAll({ where: { title: 'none' }, rejectOnEmpty: Missing } as never), { instanceOf: Missing });
        t.truthy(await Post.findOne({ where: { title: 'post 1' }, rejectOnEmpty: true }));
        t.is(await Post.findOne({ where: { title: 'none' }, rejectOnEmpty: false }) as unknown, null);
      }
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: a changed definition (default scope, new association, attributes) is never served from an old select`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { Post, sequelize } = blog;
      const all = () => Post.findAll({ order: [['id', 'ASC']] });
      t.is((await all()).length, 6);
      t.is((await all()).length, 6);
      Post.addScope('defaultScope', { where: { published: true } }, { override: true });
      t.deepEqual(plain(await all()), plain(await Post.findAll({ order: [['id', 'ASC']], cacheops: false } as never)));
      t.is((await all()).length, 3, 'the new default scope applies');
      const withAll = () => Post.findAll({ include: [{ all: true }], order: [['id', 'ASC']] }) as Promise<Model[]>;
      const before = await withAll();
      t.false('Note' in (before[0]!.dataValues as object));
      const Note = sequelize.define('Note', { text: DataTypes.STRING });
      Post.hasOne(Note, { foreignKey: 'postId', constraints: false });
      await Note.sync();
      const after = await withAll();
      t.true('Note' in (after[0]!.dataValues as object), 'an association defined later is included by include all');
      t.deepEqual(plain(after), plain(await Post.findAll({ include: [{ all: true }], order: [['id', 'ASC']], cacheops: false } as never)));
      (Post as ModelStatic<Model>).removeAttribute('body');
      const slim = (await all())[0]!;
      t.false('body' in (slim.dataValues as object), 'a removed attribute is not selected any more');
    } finally {
      await blog.close();
    }
  });
}
