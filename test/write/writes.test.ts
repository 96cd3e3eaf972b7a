/**
 * Every write path invalidates by default, and only what it must: for each
 * path, probes cached before the write must equal the uncached read after
 * it, and a probe on rows the write does not touch stays cached.
 */
import test from 'ava';
import { Op, QueryTypes, type Model } from 'sequelize';
import { makeBlog, type Blog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';

type Probe = (b: Blog, opts: Record<string, unknown>) => Promise<unknown>;

const norm = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && 'toJSON' in x && typeof (x as { toJSON: unknown }).toJSON === 'function' && !(x instanceof Date) ? (x as { toJSON(): unknown }).toJSON() : x));

const probes: Record<string, Probe> = {
  views1: (b, o) => b.Post.findAll({ where: { views: 1 }, order: [['id', 'ASC']], ...o }),
  views2: (b, o) => b.Post.findAll({ where: { views: 2 }, order: [['id', 'ASC']], ...o }),
  count: (b, o) => b.Post.count(o),
  withTags: (b, o) => b.Post.findAll({ include: [b.Tag], order: [['id', 'ASC'], [b.Tag, 'id', 'ASC']], ...o }),
  tagsOfFirst: (b, o) => b.Tag.findAll({ include: [{ model: b.Post, where: { title: 'first' } }], order: [['id', 'ASC']], ...o }),
  comments: (b, o) => b.Comment.findAll({ where: { postId: 1 }, order: [['id', 'ASC']], ...o }),
  paranoidOff: (b, o) => b.Post.findAll({ paranoid: false, order: [['id', 'ASC']], ...o }),
  sumViews: (b, o) => b.Post.sum('views', o),
};

async function seed(b: Blog): Promise<void> {
  const [t1, t2] = await b.Tag.bulkCreate([{ name: 'red' }, { name: 'blue' }]);
  const posts = await b.Post.bulkCreate([
    { title: 'first', views: 1 }, { title: 'second', views: 2 }, { title: 'third', views: 3 },
  ]);
  await (posts[0] as unknown as { setTags(t: unknown[]): Promise<void> }).setTags([t1, t2]);
  await b.Comment.bulkCreate([{ text: 'c1', postId: 1 }, { text: 'c2', postId: 2 }]);
}

async function checkAll(t: import('ava').ExecutionContext, b: Blog, label: string): Promise<void> {
  for (const [name, probe] of Object.entries(probes)) {
    const cached = await probe(b, {});
    const fresh = await probe(b, { cacheops: false });
    t.is(norm(cached), norm(fresh), `${label}: probe ${name} is fresh`);
  }
}

const writes: Record<string, (b: Blog) => Promise<unknown>> = {
  'create': (b) => b.Post.create({ title: 'new', views: 1 }),
  'instance update': async (b) => (await b.Post.findByPk(2))!.update({ views: 1 }),
  'instance save of a stale instance': async (b) => {
    const stale = (await b.Post.findByPk(2, { cacheops: false } as never))!;
    await b.Post.update({ views: 1 }, { where: { id: 2 }, cacheops: { invalidate: false } } as never);
    await b.cacheops.invalidateModel(b.Post);
    await b.Post.findAll({ where: { views: 1 } });
    return stale.update({ title: 'renamed' });
  },
  'instance destroy (soft)': async (b) => (await b.Post.findByPk(1))!.destroy(),
  'instance destroy (force)': async (b) => (await b.Post.findByPk(1))!.destroy({ force: true }),
  'instance restore': async (b) => {
    await (await b.Post.findByPk(1))!.destroy();
    await checkAllSilently(b);
    return (await b.Post.findByPk(1, { paranoid: false }))!.restore();
  },
  'Model.update': (b) => b.Post.update({ views: 2 }, { where: { views: 1 } }),
  'Model.destroy soft': (b) => b.Post.destroy({ where: { views: 1 } }),
  'Model.destroy force': (b) => b.Post.destroy({ where: { views: { [Op.lt]: 3 } }, force: true }),
  'Model.restore': async (b) => {
    await b.Post.destroy({ where: { views: 1 } });
    await checkAllSilently(b);
    return b.Post.restore({ where: { views: 1 } });
  },
  'truncate': (b) => b.Comment.truncate(),
  'bulkCreate': (b) => b.Post.bulkCreate([{ title: 'b1', views: 1 }, { title: 'b2', views: 2 }]),
  'bulkCreate updateOnDuplicate': (b) => b.Post.bulkCreate([{ id: 1, title: 'dup', views: 2 }], { updateOnDuplicate: ['title', 'views'] }),
  'bulkCreate ignoreDuplicates': (b) => b.Post.bulkCreate([{ id: 1, title: 'ignored', views: 9 }, { id: 9, title: 'nine', views: 1 }], { ignoreDuplicates: true }),
  'upsert existing': (b) => b.Post.upsert({ id: 2, title: 'ups', views: 1 }),
  'upsert new': (b) => b.Post.upsert({ id: 7, title: 'seven', views: 2 }),
  'static increment': (b) => b.Post.increment('views', { by: 1, where: { id: 1 } }),
  'instance increment': async (b) => (await b.Post.findByPk(1))!.increment('views'),
  'instance decrement': async (b) => (await b.Post.findByPk(2))!.decrement('views'),
  'setTags': async (b) => ((await b.Post.findByPk(1)) as unknown as { setTags(t: unknown[]): Promise<unknown> }).setTags([]),
  'addTag': async (b) => ((await b.Post.findByPk(2)) as unknown as { addTag(t: Model): Promise<unknown> }).addTag((await b.Tag.findOne({ where: { name: 'red' } }))!),
  'removeTag': async (b) => ((await b.Post.findByPk(1)) as unknown as { removeTag(t: Model): Promise<unknown> }).removeTag((await b.Tag.findOne({ where: { name: 'blue' } }))!),
  'tag rename (joined)': async (b) => (await b.Tag.findOne({ where: { name: 'red' } }))!.update({ name: 'crimson' }),
  'hasMany createComment': async (b) => ((await b.Post.findByPk(1)) as unknown as { createComment(v: object): Promise<unknown> }).createComment({ text: 'c3' }),
  'hasMany setComments': async (b) => ((await b.Post.findByPk(1)) as unknown as { setComments(v: unknown[]): Promise<unknown> }).setComments([]),
  'hasMany addComment': async (b) => ((await b.Post.findByPk(1)) as unknown as { addComment(v: Model): Promise<unknown> }).addComment((await b.Comment.findOne({ where: { text: 'c2' } }))!),
  'raw UPDATE': (b) => b.sequelize.query(`UPDATE ${b.sequelize.getQueryInterface().quoteIdentifier('Posts')} SET views = 1 WHERE id = 3`),
  'raw INSERT typed': (b) => b.sequelize.query(`INSERT INTO ${b.sequelize.getQueryInterface().quoteIdentifier('Comments')} (text, approved, ${b.sequelize.getQueryInterface().quoteIdentifier('postId')}, ${b.sequelize.getQueryInterface().quoteIdentifier('createdAt')}, ${b.sequelize.getQueryInterface().quoteIdentifier('updatedAt')}) VALUES ('raw', false, 1, '2020-01-01', '2020-01-01')`, { type: QueryTypes.INSERT }),
  'raw DELETE': (b) => b.sequelize.query(`DELETE FROM ${b.sequelize.getQueryInterface().quoteIdentifier('Comments')} WHERE text = 'c1'`),
};

async function checkAllSilently(b: Blog): Promise<void> {
  for (const probe of Object.values(probes)) await probe(b, {});
}

for (const dialect of dialects()) {
  for (const [name, write] of Object.entries(writes)) {
    test.serial(`${dialect}: ${name} invalidates what it changes`, async (t) => {
      const blog = await makeBlog(dialect, __filename, {}, 'w');
      try {
        await seed(blog);
        await checkAllSilently(blog);
        await write(blog);
        await checkAll(t, blog, name);
      } finally {
        await blog.close();
      }
    });
  }

  test.serial(`${dialect}: a write invalidates only matching queries`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'wgran');
    try {
      await seed(blog);
      const { Post, sequelize } = blog;
      await checkAllSilently(blog);
      await Post.update({ title: 'third!' }, { where: { id: 3 } });
      t.is((await countSql(sequelize, () => probes.views1!(blog, {}))).sql.length, 0, 'views=1 untouched');
      t.is((await countSql(sequelize, () => probes.views2!(blog, {}))).sql.length, 0, 'views=2 untouched');
      t.is((await countSql(sequelize, () => probes.comments!(blog, {}))).sql.length, 0, 'another model untouched');
      t.is((await countSql(sequelize, () => probes.paranoidOff!(blog, {}))).sql.length, 1, 'a query over all rows refreshed');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: { cacheops: { invalidate: false } } opts out; mass writes over the threshold invalidate the model`, async (t) => {
    const blog = await makeBlog(dialect, __filename, { maxRowsForGranularWrite: 2 }, 'wopt');
    try {
      await seed(blog);
      const { Post, sequelize, cacheops } = blog;
      await checkAllSilently(blog);
      await Post.update({ title: 'silent' }, { where: { id: 1 }, cacheops: { invalidate: false } } as never);
      const stale = await countSql(sequelize, () => probes.views1!(blog, {}));
      t.is(stale.sql.length, 0, 'opted out: nothing invalidated');
      await cacheops.invalidateModel(Post);
      let modelWide = 0;
      cacheops.on('invalidated', (e) => { if (e.values === 'all' && e.table === 'Posts') modelWide += 1; });
      await Post.update({ body: 'x' }, { where: { views: { [Op.gte]: 1 } } });
      t.is(modelWide, 1, 'three rows > threshold of two: model-wide');
      await checkAll(t, blog, 'threshold');
    } finally {
      await blog.close();
    }
  });
}
