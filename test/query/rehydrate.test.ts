/**
 * A hit returns what the query would have: instances of the right classes,
 * not new, nothing changed, includes (and through rows) rebuilt, and every
 * column type as the database driver returns it.
 */
import test from 'ava';
import { Model, type ModelStatic } from 'sequelize';
import { makeBlog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';
import { plain, sqlCount } from '../helpers/check';
import { seedBlog } from '../helpers/seed';

/** Reads twice; returns [uncached reference, hit] after checking the hit ran no SQL. */
async function hitAndReference<T>(sequelize: Parameters<typeof countSql>[0], read: (o: object) => Promise<T>): Promise<[T, T]> {
  const reference = await read({ cacheops: false });
  await read({});
  const hit = await countSql(sequelize, () => read({}));
  if (hit.sql.length !== 0) throw new Error(`expected a hit, ran ${hit.sql.join('; ')}`);
  return [reference, hit.result];
}

/** Every instance in a result tree, with the class the uncached result has at the same place. */
function pairs(hit: unknown, ref: unknown, path = 'result'): [Model, Model, string][] {
  if (Array.isArray(hit)) return hit.flatMap((h, i) => pairs(h, (ref as unknown[])[i], `${path}[${i}]`));
  if (!(hit instanceof Model)) return [];
  const out: [Model, Model, string][] = [[hit, ref as Model, path]];
  for (const [k, v] of Object.entries(hit.dataValues as Record<string, unknown>)) {
    out.push(...pairs(v, ((ref as Model).dataValues as Record<string, unknown>)[k], `${path}.${k}`));
  }
  return out;
}

for (const dialect of dialects()) {
  test.serial(`${dialect}: hits are instances of the right classes, not new, unchanged, includes rebuilt`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      await seedBlog(blog);
      const { sequelize, Post, Category, Author, Tag, PostTag, Comment } = blog;
      const read = (o: object) => Post.findAll({
        ...o, include: [Category, Author, Tag, Comment], order: [['id', 'ASC'], [Tag, 'id', 'ASC'], [Comment, 'id', 'ASC']],
      });
      const [reference, hit] = await hitAndReference(sequelize, read);
      t.deepEqual(plain(hit), plain(reference), 'toJSON() of the hit deep-equals the uncached result');
      const all = pairs(hit, reference);
      t.true(all.length > 20);
      for (const [h, r, path] of all) {
        t.is(h.constructor, r.constructor, `${path}: class`);
        t.false(h.isNewRecord, `${path}: isNewRecord`);
        t.false(h.changed(), `${path}: changed()`);
        t.deepEqual(Object.keys(h.dataValues as object).sort(), Object.keys(r.dataValues as object).sort(), `${path}: attributes`);
      }
      const post = hit[2]!;
      t.true(post instanceof Post);
      t.true(post.get('Category') instanceof Category);
      t.true(post.get('Author') instanceof Author);
      const tags = post.get('Tags') as Model[];
      t.is(tags.length, 3);
      t.true(tags.every((x) => x instanceof Tag && x.get('PostTag') instanceof PostTag), 'belongsToMany through instance present');
      t.is((tags[2]!.get('PostTag') as Model).get('weight'), 4);
      t.true((post.get('Comments') as Model[])[0] instanceof Comment);
      t.deepEqual(post.get({ plain: true }), reference[2]!.get({ plain: true }));

      // A hit instance behaves like a loaded one: saving it updates its row.
      post.set('title', 'saved from a hit');
      t.deepEqual(post.changed(), ['title']);
      const save = await countSql(sequelize, () => post.save());
      t.true(save.sql.some((s) => /\bUPDATE\b/.test(s)), 'an UPDATE runs');
      t.false(save.sql.some((s) => /INSERT/i.test(s)), 'no insert: the hit is not a new record');
      t.is((await Post.findByPk(post.get('id') as number))!.get('title'), 'saved from a hit');
      t.is(await Post.count({ cacheops: false }), 6);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: column types survive the cache (Date, BLOB, BIGINT, DECIMAL, JSON, DATEONLY, booleans, null)`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts } = await seedBlog(blog);
      const { sequelize, Post, Author } = blog;
      await Post.create({ title: null, views: null, rating: null, published: null, publishedAt: null, day: null, meta: null, blob: null, big: null });
      const [reference, hit] = await hitAndReference(sequelize, (o) => Post.findAll({ ...o, order: [['id', 'ASC']] }));
      t.deepEqual(plain(hit), plain(reference));
      const row = hit[3]!;
      const ref = reference[3]!;
      for (const column of ['publishedAt', 'blob', 'big', 'rating', 'meta', 'day', 'published', 'views', 'title', 'createdAt']) {
        const h = row.get(column);
        const r = ref.get(column);
        t.is(typeof h, typeof r, `${column}: same JS type`);
        t.is(Object.getPrototypeOf(h), Object.getPrototypeOf(r), `${column}: same prototype`);
        t.deepEqual(h, r, column);
      }
      t.true(row.get('publishedAt') instanceof Date);
      t.is((row.get('publishedAt') as Date).getUTCHours(), 12);
      t.true(Buffer.isBuffer(row.get('blob')));
      t.deepEqual(row.get('blob'), Buffer.from([0, 3, 255]));
      t.is(typeof row.get('rating'), dialect === 'sqlite' ? 'number' : 'string', 'DECIMAL is a string on pg/mysql');
      t.is(Number(row.get('rating')), 3.53);
      if (dialect !== 'sqlite') t.is(String(row.get('big')), '9007199254740993', 'BIGINT past 2^53 keeps its digits');
      t.deepEqual(typeof row.get('meta') === 'string' ? JSON.parse(row.get('meta') as string) : row.get('meta'), { n: 3, list: [3, 'x'], nested: { ok: true } });
      t.is(row.get('day'), '2021-02-04', 'DATEONLY is a YYYY-MM-DD string');
      t.is(row.get('published'), false);
      t.is(hit[2]!.get('published'), true);
      const empty = hit[6]!;
      for (const column of ['title', 'views', 'rating', 'published', 'publishedAt', 'day', 'meta', 'blob', 'big']) {
        t.is(empty.get(column), null, `${column}: null stays null`);
      }

      const [authorsRef, authorsHit] = await hitAndReference(sequelize, (o) => Author.findAll({ ...o, order: [['id', 'ASC']] }));
      t.deepEqual(authorsHit.map((a) => a.get('active')), [true, false]);
      t.deepEqual(plain(authorsHit), plain(authorsRef));

      const [rawRef, rawHit] = await hitAndReference(sequelize, (o) => Post.findAll({ ...o, raw: true, where: { id: posts[1]!.get('id') } }));
      t.deepEqual(rawHit, rawRef, 'raw rows keep the driver types too');
      t.false(rawHit[0] instanceof Model);
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: findByPk, findOne with includes and reload keep classes and types`, async (t) => {
    const blog = await makeBlog(dialect, __filename);
    try {
      const { posts, tags } = await seedBlog(blog);
      const { sequelize, Post, Tag, Category } = blog;
      const id = posts[2]!.get('id') as number;
      const [ref, hit] = await hitAndReference(sequelize, (o) => Post.findByPk(id, { ...o, include: [{ model: Tag, include: [{ model: Post, attributes: ['id'] }] }, Category] }));
      t.true(hit instanceof Post);
      t.deepEqual(plain(hit), plain(ref));
      for (const [h, r, path] of pairs(hit, ref)) t.is(h.constructor as ModelStatic<Model>, r.constructor as ModelStatic<Model>, path);
      const [tagRef, tagHit] = await hitAndReference(sequelize, (o) => Tag.findOne({ ...o, where: { id: tags[1]!.get('id') }, include: [Post], order: [[Post, 'id', 'ASC']] }));
      t.true((tagHit!.get('Posts') as Model[]).every((p) => p instanceof Post && (p.get('PostTag') as Model) instanceof blog.PostTag));
      t.deepEqual(plain(tagHit), plain(tagRef));

      const instance = (await Post.findByPk(id, { cacheops: false }))!;
      await instance.reload();
      t.is(await sqlCount(sequelize, () => instance.reload()), 0);
      t.true(instance.get('publishedAt') instanceof Date);
      t.true(Buffer.isBuffer(instance.get('blob')));
      t.false(instance.isNewRecord);
      t.false(instance.changed());
    } finally {
      await blog.close();
    }
  });
}
