/**
 * Copies of built results (src/query/copy.ts), which near hits hand out: a
 * copy is deep-equal to what bulkBuild makes of the same rows and options,
 * shares no mutable object with the kept result, and behaves as a built
 * instance (changes, save).
 */
import { isDeepStrictEqual } from 'node:util';
import test from 'ava';
import fc from 'fast-check';
import { DataTypes, Model, Sequelize } from 'sequelize';
import { copyValue } from '../../src/query/copy';

function define() {
  const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
  const Author = sequelize.define('Author', { name: DataTypes.STRING, born: DataTypes.DATE });
  const Post = sequelize.define('Post', {
    title: DataTypes.STRING, views: DataTypes.INTEGER, score: DataTypes.FLOAT, published: DataTypes.BOOLEAN,
    publishedAt: DataTypes.DATE, day: DataTypes.DATEONLY, meta: DataTypes.JSON, blob: DataTypes.BLOB,
  });
  const Comment = sequelize.define('Comment', { body: DataTypes.TEXT, at: DataTypes.DATE });
  Post.belongsTo(Author);
  Post.hasMany(Comment);
  return { sequelize, Author, Post, Comment };
}

const { sequelize, Author, Post, Comment } = define();

const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.integer(), fc.string(), fc.boolean(),
    fc.array(tie('value'), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 4 }), tie('value'), { maxKeys: 3 })),
})).value;
const date = fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true });
const author = fc.record({ id: fc.integer({ min: 1, max: 1000 }), name: fc.option(fc.string()), born: fc.option(date), createdAt: date, updatedAt: date });
const comment = fc.record({ id: fc.integer({ min: 1, max: 1000 }), body: fc.string(), at: fc.option(date), PostId: fc.integer(), createdAt: date, updatedAt: date });
const post = fc.record({
  id: fc.integer({ min: 1, max: 1000 }), title: fc.option(fc.string()), views: fc.option(fc.integer()), score: fc.option(fc.double({ noNaN: true })),
  published: fc.option(fc.boolean()), publishedAt: fc.option(date), day: fc.option(fc.constantFrom('2024-01-31', '1999-12-01')),
  meta: fc.option(json), blob: fc.option(fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a))),
  AuthorId: fc.option(fc.integer()), createdAt: date, updatedAt: date,
  Author: fc.option(author), Comments: fc.array(comment, { maxLength: 3 }),
});

type Shape = 'plain' | 'includes' | 'raw';
const build = (rows: readonly Record<string, unknown>[], shape: Shape): unknown => {
  // Fresh row objects each time, as decoding gives.
  const fresh = structuredClone(rows) as Record<string, unknown>[];
  if (shape === 'raw') return fresh;
  if (shape === 'plain') return Post.bulkBuild(fresh.map(({ Author: _a, Comments: _c, ...r }) => r), { isNewRecord: false, raw: true });
  return Post.bulkBuild(fresh, { isNewRecord: false, raw: true, include: [Author, Comment] });
};

/** Every object reachable from a result, except Sequelize's option objects and classes. */
function objects(value: unknown, out = new Set<object>()): Set<object> {
  if (value === null || typeof value !== 'object' || out.has(value)) return out;
  out.add(value);
  for (const [key, v] of Object.entries(value)) if (key !== '_options') objects(v, out);
  return out;
}

/**
 * Where each instance's include elements point: the index of the instance of
 * the result whose options are their parent (-1: options outside the result).
 * A build that validates its includes points them at the last instance's
 * options; Node 24's deep equality compares these cycles, older Node's does not.
 */
function parents(result: unknown): number[][] {
  if (!Array.isArray(result)) return [];
  const options = result.map((m) => (m instanceof Model ? (m as unknown as { _options: object })._options : undefined));
  return options.map((o) => ((o as { include?: { parent?: object }[] } | undefined)?.include ?? []).map((e) => options.indexOf(e.parent)));
}

test('a copy equals a fresh build of the same rows and shares nothing mutable with the original', (t) => {
  fc.assert(fc.property(fc.array(post, { maxLength: 4 }), fc.constantFrom<Shape>('plain', 'includes', 'raw'), (rows, shape) => {
    const original = build(rows, shape);
    const copy = copyValue(original);
    if (!isDeepStrictEqual(parents(copy), parents(build(rows, shape)))) return false;
    if (!isDeepStrictEqual(copy, build(rows, shape))) return false;
    if (!isDeepStrictEqual(copy, original)) return false;
    const mine = objects(original);
    for (const o of objects(copy)) if (mine.has(o)) return false;
    return true;
  }), { numRuns: 300 });
  t.pass();
});

test('a copied instance is a working instance: changes, save and includes behave as on a built one', async (t) => {
  await sequelize.sync({ force: true });
  const a = await Author.create({ name: 'ann', born: new Date(1000) });
  const p = await Post.create({ title: 'x', views: 1, meta: { tags: ['a'] }, AuthorId: a.get('id') });
  await Comment.create({ body: 'c1', PostId: p.get('id') });
  const found = await Post.findAll({ include: [Author, Comment] });
  const copies = copyValue(found) as Model[];
  const c = copies[0]!;
  t.true(c instanceof Post);
  t.false(c.changed());
  t.false(c.isNewRecord);
  t.is(c.get('Author'), (c as unknown as { Author: unknown }).Author, 'the include accessor is the copied include');
  t.not(c.get('Author'), found[0]!.get('Author'));
  (c.get('meta') as { tags: string[] }).tags.push('b');
  t.deepEqual(found[0]!.get('meta'), { tags: ['a'] }, 'the original is untouched');
  c.set('title', 'y');
  t.deepEqual(c.changed(), ['title']);
  t.false(found[0]!.changed(), 'changes of a copy are its own');
  await c.save();
  t.is((await Post.findByPk(p.get('id') as number))!.get('title'), 'y');
  const date = (found[0]!.get('Author') as Model).get('born') as Date;
  ((c.get('Author') as Model).get('born') as Date).setTime(0);
  t.is(date.getTime(), 1000, 'dates are copied');
});
