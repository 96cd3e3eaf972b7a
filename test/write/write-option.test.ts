/**
 * The `cacheops` option of a write, checked: an unknown key (a misspelt
 * `invalidate`) or a value of the wrong type rejects the call with a
 * CacheopsConfigError naming the key, on every write path, before anything
 * is written (no write statement is sent, every table is as it was); the
 * same write with a good option does write.
 */
import test from 'ava';
import type { Model, ModelStatic } from 'sequelize';
import { CacheopsConfigError } from '../../src/index';
import { makeBlog, type Blog } from '../helpers/models';
import { countSql, dialects } from '../helpers/env';

type O = { cacheops: never };

const bad: [unknown, string, RegExp][] = [
  [{ invalidat: false }, 'cacheops.invalidat', /unknown key of the cacheops write option: did you mean "invalidate"\? \(known: invalidate\)$/],
  [{ invalidate: false, extra: 1 }, 'cacheops.extra', /unknown key of the cacheops write option/],
  [{ invalidate: 0 }, 'cacheops.invalidate', /expected true or false, got 0$/],
  [{ invalidate: 'false' }, 'cacheops.invalidate', /expected true or false, got "false" \(a string\)/],
  [{ timeout: -1 }, 'cacheops.timeout', /positive number of seconds/],
  ['no', 'cacheops', /true, false or \{ invalidate \}, got "no" \(a string\)/],
  [[], 'cacheops', /got an array of 0/],
  [null, 'cacheops', /got null/],
];

/** Options a write accepts (findOrCreate hands a read's keys to its create). */
const good: unknown[] = [{ invalidate: false }, true, { invalidate: true, timeout: 60 }, false, {}];

const find = (model: ModelStatic<Model>, where: Record<string, unknown>): Promise<Model> =>
  model.findOne({ where, paranoid: false, cacheops: false } as never).then((m) => m!);

const writes: Record<string, (b: Blog, o: O) => Promise<unknown>> = {
  'instance.save': async (b, o) => {
    const post = await find(b.Post, { title: 'first' });
    post.set('views', 10);
    return post.save(o);
  },
  'instance.update': async (b, o) => (await find(b.Post, { title: 'first' })).update({ views: 11 }, o),
  'instance.increment': async (b, o) => (await find(b.Post, { title: 'first' })).increment('views', o),
  'instance.destroy (soft)': async (b, o) => (await find(b.Post, { title: 'second' })).destroy(o),
  'instance.destroy (force)': async (b, o) => (await find(b.Comment, { text: 'c1' })).destroy(o),
  'instance.restore': async (b, o) => (await find(b.Post, { title: 'third' })).restore(o),
  'create': (b, o) => b.Post.create({ title: 'new', views: 1 }, o),
  'bulkCreate': (b, o) => b.Post.bulkCreate([{ title: 'n1' }, { title: 'n2' }], o),
  'bulkCreate updateOnDuplicate': (b, o) => b.Author.bulkCreate([{ email: 'a@x', name: 'renamed' }], { updateOnDuplicate: ['name'], ...o }),
  'upsert': (b, o) => b.Author.upsert({ email: 'b@x', name: 'b' }, o),
  'Model.update': (b, o) => b.Post.update({ views: 12 }, { where: { title: 'first' }, ...o }),
  'Model.update individualHooks': (b, o) => b.Post.update({ views: 13 }, { where: { title: 'first' }, individualHooks: true, ...o }),
  'Model.increment': (b, o) => b.Post.increment('views', { where: { title: 'first' }, ...o }),
  'Model.decrement': (b, o) => b.Post.decrement('views', { where: { title: 'first' }, ...o }),
  'Model.destroy': (b, o) => b.Comment.destroy({ where: { text: 'c1' }, ...o }),
  'Model.destroy (soft)': (b, o) => b.Post.destroy({ where: { title: 'second' }, ...o }),
  'Model.destroy truncate': (b, o) => b.Comment.destroy({ truncate: true, ...o }),
  'Model.restore': (b, o) => b.Post.restore({ where: { title: 'third' }, ...o }),
  'truncate': (b, o) => b.Comment.truncate(o),
  'raw UPDATE': (b, o) => {
    const q = (name: string): string => b.sequelize.getQueryInterface().quoteIdentifier(name);
    return b.sequelize.query(`UPDATE ${q('Posts')} SET ${q('views')} = 14`, o);
  },
  'Model.update in a transaction': (b, o) => b.sequelize.transaction((transaction) => b.Post.update({ views: 15 }, { where: { title: 'first' }, transaction, ...o })),
  'Model.update under noInvalidation': (b, o) => b.cacheops.noInvalidation(() => b.Post.update({ views: 16 }, { where: { title: 'first' }, ...o })),
};

/** first, second, third (soft-deleted); two comments on first; one author. */
async function seed(b: Blog): Promise<void> {
  await b.cacheops.noInvalidation(async () => {
    for (const m of [b.Comment, b.Post, b.Author]) await m.destroy({ where: {}, force: true });
  });
  const [first] = await b.Post.bulkCreate([{ title: 'first', views: 1 }, { title: 'second', views: 2 }, { title: 'third', views: 3 }]);
  await (await find(b.Post, { title: 'third' })).destroy();
  await b.Comment.bulkCreate([{ text: 'c1', postId: first!.get('id') }, { text: 'c2', postId: first!.get('id') }]);
  await b.Author.create({ email: 'a@x', name: 'a' });
}

/** Every row of every table the writes touch (soft-deleted ones too). */
async function snapshot(b: Blog): Promise<string> {
  const tables: unknown[] = [];
  for (const m of [b.Post, b.Comment, b.Author]) {
    tables.push(await m.unscoped().findAll({ paranoid: false, order: [['id', 'ASC']], raw: true, cacheops: false } as never));
  }
  return JSON.stringify(tables);
}

/** The statements of a call that may change data (anything but reads and transaction control). */
const writeStatements = (sql: readonly string[]): string[] =>
  sql.filter((s) => !/^Executing \([^)]*\): (?:SELECT|START TRANSACTION|BEGIN|ROLLBACK|COMMIT|SET |SHOW )/i.test(s));

for (const dialect of dialects()) {
  test.serial(`${dialect}: a bad cacheops write option rejects with CacheopsConfigError before anything is written, on every write path`, async (t) => {
    const b = await makeBlog(dialect, __filename, {}, 'writeopt');
    try {
      let g = 0;
      for (const [name, write] of Object.entries(writes)) {
        await seed(b);
        const before = await snapshot(b);
        const invalidations = b.cacheops.stats().invalidations;
        for (const [option, key, message] of bad) {
          const label = `${name} ${JSON.stringify(option)}`;
          const { result: error, sql } = await countSql(b.sequelize, () => t.throwsAsync(write(b, { cacheops: option as never }), { instanceOf: CacheopsConfigError }, label));
          t.is((error as CacheopsConfigError | undefined)?.key, key, label);
          t.regex(error?.message ?? '', message, label);
          t.deepEqual(writeStatements(sql), [], `${label}: no write statement was sent`);
          t.is(await snapshot(b), before, `${label}: nothing was written`);
        }
        t.is(b.cacheops.stats().invalidations, invalidations, `${name}: the rejected calls invalidated nothing`);
        // The same write with a good option does write (so the checks above can fail).
        const option = good[g++ % good.length];
        await write(b, { cacheops: option as never });
        t.not(await snapshot(b), before, `${name} ${JSON.stringify(option)}: the write with a good option wrote`);
      }
    } finally {
      await b.close();
    }
  });
}
