/**
 * Joins: a cached read with includes depends on every table it reads, and
 * is invalidated granularly: by the include's conditions and, for
 * non-required includes, by the join keys of the rows it returned.
 */
import test from 'ava';
import { Op } from 'sequelize';
import { makeBlog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';

const json = (v: unknown): string => JSON.stringify(v);

for (const dialect of dialects()) {
  test.serial(`${dialect}: include dependencies are narrowed by join keys, and stay fresh`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'joins');
    try {
      const { Post, Category, Comment, Tag, sequelize } = blog;
      const [c1, c2] = await Category.bulkCreate([{ name: 'one' }, { name: 'two' }]);
      const p1 = await Post.create({ title: 'p1', categoryId: c1!.get('id') });
      const p2 = await Post.create({ title: 'p2', categoryId: c2!.get('id') });
      await Comment.create({ text: 'x', postId: p1.get('id') });
      const tag = await Tag.create({ name: 't1' });
      await (p1 as unknown as { addTag(t: unknown): Promise<void> }).addTag(tag);
      const read = () => Post.findAll({ where: { id: p1.get('id') }, include: [Category, Comment, Tag], order: [['id', 'ASC']] });
      const fresh = () => Post.findAll({ where: { id: p1.get('id') }, include: [Category, Comment, Tag], order: [['id', 'ASC']], cacheops: false });
      const sqlOf = async () => (await countSql(sequelize, read)).sql.length;
      await read();

      await c2!.update({ name: 'two!' });
      t.is(await sqlOf(), 0, 'a category the post does not belong to');
      await Comment.create({ text: 'y', postId: p2.get('id') });
      t.is(await sqlOf(), 0, "a comment of another post");

      await c1!.update({ name: 'one!' });
      t.is(await sqlOf(), 1, 'the joined category');
      await Comment.create({ text: 'z', postId: p1.get('id') });
      t.is(await sqlOf(), 1, 'a new comment of the returned post');
      await Comment.update({ postId: p2.get('id') }, { where: { text: 'z' } });
      t.is(await sqlOf(), 1, 'a comment moved away from the returned post');
      await (p2 as unknown as { addTag(t: unknown): Promise<void> }).addTag(tag);
      t.is(await sqlOf(), 0, 'a through row of another post');
      await tag.update({ name: 't1!' });
      t.is(await sqlOf(), 1, 'the joined tag');
      t.is(json(await read()), json(await fresh()));
    } finally {
      await blog.close();
    }
  });

  test.serial(`${dialect}: required includes and include conditions are not narrowed by keys`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'joinsreq');
    try {
      const { Post, Comment, sequelize } = blog;
      const p1 = await Post.create({ title: 'p1' });
      const p2 = await Post.create({ title: 'p2' });
      await Comment.create({ text: 'ok', approved: true, postId: p1.get('id') });
      // Posts with an approved comment: which posts are returned depends on comments.
      const read = () => Post.findAll({ include: [{ model: Comment, where: { approved: true } }], order: [['id', 'ASC']] });
      t.is((await read()).length, 1);
      await Comment.create({ text: 'no', approved: false, postId: p2.get('id') });
      t.is((await countSql(sequelize, read)).sql.length, 0, 'a comment that does not match the include where');
      await Comment.update({ approved: true }, { where: { text: 'no' } });
      const after = await countSql(sequelize, read);
      t.is(after.sql.length, 1, 'a comment that now matches: a new parent appears');
      t.deepEqual(after.result.map((p) => p.get('title')), ['p1', 'p2']);
      const limited = () => Post.findAll({ where: { id: { [Op.in]: [p1.get('id'), p2.get('id')] } }, include: [Comment], limit: 1, order: [[Comment, 'id', 'DESC']] });
      const first = await limited();
      await Comment.create({ text: 'newest', postId: p1.get('id') });
      const second = await limited();
      t.is(json(second), json(await Post.findAll({ where: { id: { [Op.in]: [p1.get('id'), p2.get('id')] } }, include: [Comment], limit: 1, order: [[Comment, 'id', 'DESC']], cacheops: false })), 'ordered by an include with a limit: fresh');
      t.truthy(first);
    } finally {
      await blog.close();
    }
  });
}
