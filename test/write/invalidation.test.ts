/**
 * Granular invalidation by WHERE shape: for each condition, the writes that
 * can change the result invalidate it (the next read runs SQL and sees the
 * change) and those that cannot, don't (the next read runs none). Every check
 * also compares the read with the same read uncached.
 */
import test from 'ava';
import { Op, type Model, type WhereOptions } from 'sequelize';
import { makeBlog, type Blog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';
import { checkWrite, plain, sqlCount, type ReadOptions } from '../helpers/check';

type Row = Record<string, unknown>;

interface Case {
  readonly name: string;
  readonly where: WhereOptions;
  /** A row the condition selects, one it does not, and another it does not. */
  readonly match: Row;
  readonly nonMatch: Row;
  readonly nonMatch2: Row;
  /** false: the condition is not granular, every write invalidates. */
  readonly granular?: boolean;
}

const CASES: Case[] = [
  { name: 'eq', where: { views: 1 }, match: { views: 1 }, nonMatch: { views: 2 }, nonMatch2: { views: 3 } },
  { name: 'Op.eq', where: { title: { [Op.eq]: 'a' } }, match: { title: 'a' }, nonMatch: { title: 'b' }, nonMatch2: { title: 'c' } },
  { name: 'Op.in', where: { views: { [Op.in]: [1, 2] } }, match: { views: 2 }, nonMatch: { views: 3 }, nonMatch2: { views: 4 } },
  { name: 'array IN', where: { title: ['a', 'b'] }, match: { title: 'b' }, nonMatch: { title: 'c' }, nonMatch2: { title: 'd' } },
  { name: 'null', where: { title: null }, match: { title: null }, nonMatch: { title: 'x' }, nonMatch2: { title: 'y' } },
  { name: 'Op.is null', where: { publishedAt: { [Op.is]: null } }, match: { publishedAt: null }, nonMatch: { publishedAt: new Date(1000) }, nonMatch2: { publishedAt: new Date(2000) } },
  { name: 'Op.and', where: { [Op.and]: [{ views: 1 }, { published: true }] }, match: { views: 1, published: true }, nonMatch: { views: 1, published: false }, nonMatch2: { views: 2, published: true } },
  { name: 'Op.or', where: { [Op.or]: [{ views: 1 }, { title: 'a' }] }, match: { views: 1, title: 'z' }, nonMatch: { views: 2, title: 'b' }, nonMatch2: { views: 3, title: 'c' } },
  {
    name: 'nested or/and/in/null',
    where: { [Op.or]: [{ [Op.and]: [{ views: 1 }, { title: { [Op.in]: ['a', 'b'] } }] }, { published: true, title: null }] },
    match: { views: 1, title: 'b', published: false }, nonMatch: { views: 1, title: 'c', published: false }, nonMatch2: { views: 2, title: null, published: false },
  },
  { name: 'range and eq', where: { views: { [Op.gt]: 5 }, title: 'a' }, match: { views: 10, title: 'a' }, nonMatch: { views: 10, title: 'b' }, nonMatch2: { views: 1, title: 'c' } },
  { name: 'day and big', where: { day: '2020-05-06', big: '12' }, match: { day: '2020-05-06', big: 12 }, nonMatch: { day: '2020-05-07', big: 12 }, nonMatch2: { day: '2020-05-06', big: 13 } },
  { name: 'ne (not granular)', where: { views: { [Op.ne]: 1 } }, match: { views: 2 }, nonMatch: { views: 1 }, nonMatch2: { views: 1, title: 'other' }, granular: false },
];

interface Write {
  readonly name: string;
  /** Whether a granular condition must be invalidated by it. */
  readonly invalidates: boolean;
  run(blog: Blog, c: Case, rows: { a: Model; b: Model }): Promise<unknown>;
}

const WRITES: Write[] = [
  { name: 'create a matching row', invalidates: true, run: (b, c) => b.Post.create({ body: 'new', ...c.match }) },
  { name: 'create a non-matching row', invalidates: false, run: (b, c) => b.Post.create({ body: 'new', ...c.nonMatch2 }) },
  { name: 'update a row into the set', invalidates: true, run: (_b, c, r) => r.b.update(c.match) },
  { name: 'update a row out of the set', invalidates: true, run: (_b, c, r) => r.a.update(c.nonMatch) },
  { name: 'update another column of a matching row', invalidates: true, run: (_b, _c, r) => r.a.update({ body: 'changed' }) },
  { name: 'update another column of a non-matching row', invalidates: false, run: (_b, _c, r) => r.b.update({ body: 'changed' }) },
  { name: 'update a non-matching row, still non-matching', invalidates: false, run: (_b, c, r) => r.b.update(c.nonMatch2) },
  { name: 'save() a matching row', invalidates: true, run: (_b, _c, r) => r.a.set('body', 'saved').save() },
  { name: 'soft-destroy a matching row', invalidates: true, run: (_b, _c, r) => r.a.destroy() },
  { name: 'force-destroy a matching row', invalidates: true, run: (_b, _c, r) => r.a.destroy({ force: true }) },
  { name: 'destroy a non-matching row', invalidates: false, run: (_b, _c, r) => r.b.destroy({ force: true }) },
];

for (const dialect of dialects()) {
  for (const c of CASES) {
    test.serial(`${dialect}: ${c.name}: writes invalidate exactly what they must`, async (t) => {
      const blog = await makeBlog(dialect, __filename, {}, 'inval');
      try {
        const { Post, sequelize } = blog;
        const read = (o: ReadOptions) => Post.findAll({ ...o, where: c.where, order: [['id', 'ASC']] });
        for (const w of WRITES) {
          await Post.destroy({ where: {}, force: true });
          const a = await Post.create({ body: 'a', ...c.match });
          const b = await Post.create({ body: 'b', ...c.nonMatch });
          await Post.create({ body: 'filler', ...c.nonMatch2 });
          await checkWrite(t, sequelize, read, () => w.run(blog, c, { a, b }), w.invalidates || c.granular === false, w.name);
        }
      } finally {
        await blog.close();
      }
    });
  }

  test.serial(`${dialect}: an update invalidates by the old and the new values`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'oldnew');
    try {
      const { Post, sequelize } = blog;
      const row = await Post.create({ title: 'moving', views: 1 });
      await Post.create({ title: 'staying', views: 3 });
      const at = (views: number) => (o: ReadOptions) => Post.findAll({ ...o, where: { views }, order: [['id', 'ASC']] });
      for (const views of [1, 2, 3]) {
        await at(views)({});
        t.is(await sqlCount(sequelize, () => at(views)({})), 0);
      }
      await row.update({ views: 2 });
      for (const [views, expected] of [[1, true], [2, true], [3, false]] as const) {
        const after = await countSql(sequelize, () => at(views)({}));
        t.is(after.sql.length > 0, expected, `after moving 1 -> 2, views=${views} ${expected ? 'refreshes' : 'stays cached'}`);
        t.deepEqual(plain(after.result), plain(await at(views)({ cacheops: false })));
      }
      t.deepEqual((await at(1)({})).length, 0);
      t.deepEqual((await at(2)({})).map((p) => p.get('title')), ['moving']);

      // The same through Model.update, increment and reload.
      await checkWrite(t, sequelize, at(2), () => Post.update({ views: 5 }, { where: { title: 'moving' } }), true, 'Model.update out of the set');
      await checkWrite(t, sequelize, at(5), () => row.increment('views'), true, 'increment out of the set');
      await checkWrite(t, sequelize, at(6), () => Post.increment({ views: -3 }, { where: { id: row.get('id') as number } }), true, 'Model.increment');
      await checkWrite(t, sequelize, at(3), () => Post.update({ views: 4 }, { where: { title: 'staying' } }), true, 'Model.update of the other row');
      await checkWrite(t, sequelize, at(1), () => Post.update({ views: 7 }, { where: { title: 'nobody' } }), false, 'Model.update touching no row');
      const stale = (await Post.findByPk(row.get('id') as number))!;
      await Post.update({ title: 'renamed' }, { where: { id: row.get('id') as number } });
      await stale.reload();
      t.is(stale.get('title'), 'renamed', 'reload after an update sees it');
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: an update through a stale instance invalidates by the database's old values`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'staleinst');
    try {
      const { Post, sequelize } = blog;
      const row = await Post.create({ title: 't', views: 1 });
      const stale = (await Post.findByPk(row.get('id') as number, { cacheops: false }))!;
      await Post.update({ views: 8 }, { where: { id: row.get('id') as number } }); // the stale instance still says 1
      const at8 = (o: ReadOptions) => Post.findAll({ ...o, where: { views: 8 } });
      await checkWrite(t, sequelize, at8, () => stale.update({ views: 9 }), true, 'the row left views=8, which the instance never knew');
      t.is((await at8({})).length, 0);
    } finally {
      await blog.close();
    }
  });
}
