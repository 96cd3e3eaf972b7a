/**
 * The fast paths of count, aggregate (max, min, sum), findAndCountAll and the
 * association methods that read (src/query/fast-aggregate.ts,
 * fast-association.ts): a repeated call reaches neither QueryInterface.select
 * nor rawSelect, runs no SQL, and returns what the same call returns
 * uncached; it steps aside where the result could differ.
 */
import test from 'ava';
import { DataTypes, Op, type Model } from 'sequelize';
import { makeBlog, type Blog } from '../helpers/models';
import { dialects } from '../helpers/env';
import { plain, sqlCount } from '../helpers/check';
import { seedBlog } from '../helpers/seed';
import { fastPathOf, selectCounter, servedCounter, twice } from '../helpers/fast-path';

type Read = (o: Record<string, unknown>) => Promise<unknown>;

async function fastRead(t: import('ava').ExecutionContext, blog: Blog, read: Read, label: string): Promise<unknown> {
  const reference = plain(await read({ cacheops: false }));
  const selects = selectCounter(blog.sequelize);
  const served = servedCounter(fastPathOf(blog.cacheops));
  try {
    const first = await read({});
    t.true(selects.count() >= 1, `${label}: the first call takes the normal path`);
    t.deepEqual(plain(first), reference, `${label}: first call`);
    const before = selects.count();
    const servedBefore = served.count();
    let result: unknown;
    const sql = await sqlCount(blog.sequelize, async () => { result = await read({}); });
    t.is(selects.count(), before, `${label}: the second call reaches neither select nor rawSelect`);
    t.true(served.count() > servedBefore, `${label}: served by the fast path`);
    t.is(sql, 0, `${label}: the second call runs no SQL`);
    t.deepEqual(plain(result), reference, `${label}: a fast hit returns what the uncached call does`);
    return result;
  } finally {
    selects.restore();
    served.restore();
  }
}

type Methods = Record<string, (...args: unknown[]) => Promise<unknown>>;
const on = (instance: Model, method: string, ...args: unknown[]): Read => (o) => (instance as unknown as Methods)[method]!(...args, o);

for (const dialect of dialects()) {
  test.serial(`${dialect}: counts, aggregates, findAndCountAll and association reads are served without Sequelize's machinery`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts, categories, authors, tags } = await seedBlog(blog);
      const { Post, Category, Author, Tag, Comment } = blog;
      Author.hasOne(Post, { as: 'firstPost', foreignKey: 'authorId' });
      t.is(await fastRead(t, blog, (o) => Post.count(o), 'count'), 6);
      await fastRead(t, blog, (o) => Post.count({ ...o, where: { views: { [Op.gte]: 20 } } }), 'count with where');
      await fastRead(t, blog, (o) => Post.count({ ...o, include: [{ model: Tag }], distinct: true, col: 'id' }), 'count distinct with include');
      const grouped = await fastRead(t, blog, (o) => Post.count({ ...o, group: ['categoryId'] }), 'grouped count') as { count: unknown }[];
      t.true(grouped.every((g) => typeof g.count === 'number'));
      t.is(await fastRead(t, blog, (o) => Post.max('views', o), 'max'), 50);
      await fastRead(t, blog, (o) => Post.min('publishedAt', { ...o, where: { published: true } }), 'min of a date');
      await fastRead(t, blog, (o) => Post.sum('views', { ...o, where: { categoryId: categories[0]!.get('id') } }), 'sum');
      await fastRead(t, blog, (o) => Post.aggregate('views', 'avg', { ...o, plain: true } as never), 'aggregate');
      const page = await fastRead(t, blog, (o) => Post.findAndCountAll({
        ...o, where: { views: { [Op.lte]: 40 } }, include: [{ model: Category }, { model: Tag }], distinct: true, limit: 2, order: [['id', 'ASC']],
      }), 'findAndCountAll') as { count: number; rows: Model[] };
      t.is(page.count, 5);
      t.true(page.rows.every((r) => r instanceof Post && r.get('Category') instanceof Category));
      await fastRead(t, blog, (o) => Post.findAndCountAll({ ...o, where: { title: 'none' } }), 'findAndCountAll of nothing');
      // An application's findAndCountAll options given to findAll (which reads neither distinct nor col).
      await fastRead(t, blog, (o) => Post.findAll({
        ...o, where: { views: { [Op.lte]: 40 } }, include: [{ model: Category }, { model: Tag }], distinct: true, col: 'id', limit: 2, order: [['id', 'ASC']],
      } as never), 'findAll given distinct and col');
      // A literal's placeholders filled by replacements and bind: each set of values is its own call.
      const { sequelize } = blog;
      for (const [v, n] of [[20, 3], [30, 2], ['20', 3]] as const) {
        const page = await fastRead(t, blog, (o) => Post.findAll({ ...o, where: sequelize.literal('views > :v'), replacements: { v }, order: [['id', 'ASC']] }),
          `findAll with replacements ${JSON.stringify(v)}`) as Model[];
        t.is(page.length, n, `replacements ${JSON.stringify(v)}`);
        t.is(await fastRead(t, blog, (o) => Post.count({ ...o, where: sequelize.literal('views > :v'), replacements: { v } } as never), `count with replacements ${JSON.stringify(v)}`), n);
      }
      t.is((await fastRead(t, blog, (o) => Post.findOne({ ...o, where: sequelize.literal('views = ?'), replacements: [30] }), 'findOne with positional replacements') as Model).get('views'), 30);
      const bound = await fastRead(t, blog, (o) => Post.findAll({ ...o, where: sequelize.literal('views > $1'), bind: [35], order: [['id', 'ASC']] } as never), 'findAll with bind') as Model[];
      t.is(bound.length, 2, 'bind [35]');
      // Association methods, without and with options.
      await fastRead(t, blog, on(posts[0]!, 'getCategory'), 'belongsTo get');
      await fastRead(t, blog, (o) => on(posts[0]!, 'getAuthor')({ ...o, attributes: ['id', 'name'] }), 'belongsTo get with attributes');
      await fastRead(t, blog, (o) => on(authors[0]!, 'getFirstPost')({ ...o, order: [['id', 'ASC']] }), 'hasOne get');
      await fastRead(t, blog, on(categories[0]!, 'getPosts'), 'hasMany get');
      await fastRead(t, blog, (o) => on(categories[0]!, 'getPosts')({ ...o, where: { published: true }, include: [Comment], order: [['id', 'DESC']] }), 'hasMany get with options');
      t.is(await fastRead(t, blog, on(categories[0]!, 'countPosts'), 'hasMany count'), 3);
      await fastRead(t, blog, (o) => on(categories[0]!, 'countPosts')({ ...o, where: { views: 0 } }), 'hasMany count with where');
      t.true(await fastRead(t, blog, (o) => on(categories[0]!, 'hasPost', posts[0]!)(o), 'hasMany has an instance') as boolean);
      t.false(await fastRead(t, blog, (o) => on(categories[0]!, 'hasPosts', [posts[0]!, posts[1]!])(o), 'hasMany has two') as boolean);
      t.true(await fastRead(t, blog, (o) => on(categories[0]!, 'hasPost', posts[2]!.get('id'))(o), 'hasMany has a key') as boolean);
      await fastRead(t, blog, on(posts[2]!, 'getTags'), 'belongsToMany get');
      await fastRead(t, blog, (o) => on(posts[2]!, 'getTags')({ ...o, joinTableAttributes: [], through: { where: { weight: { [Op.gte]: 2 } } } }), 'belongsToMany get with options');
      t.is(await fastRead(t, blog, on(posts[2]!, 'countTags'), 'belongsToMany count'), 3);
      await fastRead(t, blog, (o) => on(posts[2]!, 'countTags')({ ...o, where: { name: 'db' } }), 'belongsToMany count with where');
      t.true(await fastRead(t, blog, (o) => on(posts[2]!, 'hasTag', tags[2]!)(o), 'belongsToMany has an instance') as boolean);
      t.false(await fastRead(t, blog, (o) => on(posts[4]!, 'hasTags', [tags[2]!, tags[0]!.get('id')])(o), 'belongsToMany has two') as boolean);
      t.true(await fastRead(t, blog, (o) => on(posts[2]!, 'hasTags', [tags[0]!.get('id'), tags[1]!])(o), 'belongsToMany has mixed') as boolean);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: the new fast paths step aside for hooks, transactions, scope options and several instances, and follow writes`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts, categories, tags } = await seedBlog(blog);
      const { Post, Tag, sequelize } = blog;
      const selects = selectCounter(sequelize);
      try {
        t.is(await twice(selects, () => Post.count({ where: { views: 10 } })), 1, 'control: the second count is fast');
        let hooked = 0;
        const hook = () => { hooked += 1; };
        Post.addHook('beforeCount', 'n', hook);
        t.is(await twice(selects, () => Post.count({ where: { views: 10 } })), 2, 'a beforeCount hook: both counts take the normal path');
        t.is(hooked, 2, 'and the hook runs every time');
        t.is(await twice(selects, () => Post.findAndCountAll({ where: { views: 10 } })), 3, 'findAndCountAll: its count takes the normal path (its findAll the find fast path)');
        Post.removeHook('beforeCount', 'n');
        t.is(await twice(selects, () => Post.max('views', { where: { views: 10 } })), 1, 'max: fast');
        Tag.addHook('afterFind', 'n', hook);
        t.is(await twice(selects, () => (posts[2] as unknown as Methods)['countTags']!()), 2, 'a find hook on the target: association count steps aside');
        t.is(await twice(selects, () => (posts[2] as unknown as Methods)['hasTag']!(tags[0])), 2, 'and has');
        Tag.removeHook('afterFind', 'n');
        t.is(await twice(selects, () => (posts[2] as unknown as Methods)['hasTag']!(tags[0])), 1, 'has: fast again');
        await sequelize.transaction(async (transaction) => {
          t.is(await twice(selects, () => Post.count({ where: { views: 10 }, transaction })), 2, 'count in a transaction');
          t.is(await twice(selects, () => (categories[0] as unknown as Methods)['getPosts']!({ transaction })), 2, 'a getter in a transaction');
        });
        const association = (Post.associations as Record<string, unknown>)['Category'] as unknown as Methods;
        t.is(await twice(selects, () => association['get']!([posts[0], posts[1]])), 1, 'several source instances: the method steps aside, its findAll is fast');
        Post.addScope('popular', { where: { views: { [Op.gte]: 30 } } });
        t.is(await twice(selects, () => (categories[0] as unknown as Methods)['getPosts']!({ scope: 'popular' })), 2, 'a scope option');
        // A write: the next count is a fast miss that runs the remembered SQL and sees it.
        const count = () => (categories[0] as unknown as Methods)['countPosts']!();
        t.is(await count(), 3);
        await posts[1]!.update({ categoryId: categories[0]!.get('id') });
        const before = selects.count();
        t.is(await sqlCount(sequelize, count), 1, 'the invalidated count runs its one query');
        t.is(selects.count(), before, 'through the fast path');
        t.is(await count(), 4);
        t.is(await Post.count({ where: { categoryId: categories[0]!.get('id') } }), 4);
      } finally {
        selects.restore();
      }
    } finally {
      await blog.close();
    }
  });
  test.serial(`${dialect}: has* of targets whose primary key column is named otherwise answers as Sequelize does, per target`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { sequelize } = blog;
      // Primary keys mapped to other column names: has* keys its conditions by column (instance.where()).
      const Shelf = sequelize.define('Shelf', { label: DataTypes.STRING });
      const Book = sequelize.define('Book', { isbn: { type: DataTypes.STRING, primaryKey: true, field: 'book_isbn' }, title: DataTypes.STRING });
      const Reader = sequelize.define('Reader', { rid: { type: DataTypes.INTEGER, primaryKey: true, field: 'reader_id' }, name: DataTypes.STRING });
      const Shelving = sequelize.define('Shelving', {}, { timestamps: false });
      Shelf.hasMany(Book, { foreignKey: 'shelfId' });
      Shelf.belongsToMany(Reader, { through: Shelving, foreignKey: 'shelfId', otherKey: 'readerId' });
      // Dropped referencing tables first: a database kept from an earlier run has their foreign keys.
      for (const m of [Shelving, Book, Reader, Shelf]) await m.drop();
      for (const m of [Shelf, Book, Reader, Shelving]) await m.sync({ force: true });
      const [a, b] = await Shelf.bulkCreate([{ label: 'a' }, { label: 'b' }]);
      const books = await Book.bulkCreate([{ isbn: 'x1', title: 'one', shelfId: a!.get('id') }, { isbn: 'x2', title: 'two', shelfId: b!.get('id') }]);
      const readers = await Reader.bulkCreate([{ rid: 7, name: 'r7' }, { rid: 8, name: 'r8' }]);
      await Shelving.bulkCreate([{ shelfId: a!.get('id'), readerId: 7 }]);
      // Each target its own answer: a fingerprint that lost the target's key would serve one for the other.
      t.true(await fastRead(t, blog, (o) => on(a!, 'hasBook', books[0]!)(o), 'hasMany has its own book') as boolean);
      t.false(await fastRead(t, blog, (o) => on(a!, 'hasBook', books[1]!)(o), 'hasMany has another shelf\'s book') as boolean);
      t.false(await fastRead(t, blog, (o) => on(a!, 'hasBooks', [books[0]!, books[1]!])(o), 'hasMany has both') as boolean);
      // Sequelize compares the column-keyed condition with the row's attribute: what it answers is what a hit answers.
      await fastRead(t, blog, (o) => on(a!, 'hasReader', readers[0]!)(o), 'belongsToMany has a reader');
      await fastRead(t, blog, (o) => on(a!, 'hasReader', readers[1]!)(o), 'belongsToMany has another reader');
      await fastRead(t, blog, (o) => on(a!, 'hasReader', 7)(o), 'belongsToMany has a key');
    } finally {
      await blog.close();
    }
  });
}
