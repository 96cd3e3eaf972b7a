/**
 * The row states a write invalidates by are exactly those a read of the
 * same rows gives (PostgreSQL, SQLite and MariaDB take them from the write
 * statement itself where they can, see src/write/images/): for random values of every column type,
 * the states in the `invalidated` event equal the rows findAll returns just
 * before and just after the write, value for value (a Date, a Buffer, a
 * number or a string: a cache key built from the other kind would not match).
 */
import test from 'ava';
import fc from 'fast-check';
import type { Model } from 'sequelize';
import type { InvalidatedEvent } from '../../src/index';
import { dialects } from '../helpers/env';
import { makeBlog, type Blog } from '../helpers/models';

type Row = Record<string, unknown>;

// Text that holds a NUL character reaches the database only as a bound parameter (an
// update's SET; Sequelize writes an insert's values into the SQL on SQLite), and only SQLite takes it.
const nul = fc.constant("a\u0000b,'c''");
const text = fc.oneof(fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 6 }).map((s) => s.replace(/\u0000/g, '')),
  fc.constant(null), fc.constant('12'), fc.constant('1.0'), fc.constant("x,'y''"), fc.constant(''));
const record = (title: fc.Arbitrary<string | null>) => fc.record({
  title,
  views: fc.integer({ min: -1000, max: 1000 }),
  rating: fc.oneof(fc.constant(null), fc.integer({ min: -99999, max: 99999 }).map((n) => n / 100)),
  published: fc.boolean(),
  publishedAt: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 4_000_000_000_000 }).map((ms) => new Date(ms))),
  day: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 3_000_000_000_000 }).map((ms) => new Date(ms).toISOString().slice(0, 10))),
  meta: fc.oneof(fc.constant(null), fc.dictionary(fc.string({ maxLength: 3 }), fc.oneof(fc.integer(), fc.string({ maxLength: 3 })), { maxKeys: 2 })),
  blob: fc.oneof(fc.constant(null), fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a))),
  big: fc.oneof(fc.constant(null), fc.integer({ min: -1_000_000, max: 1_000_000 })),
}, { requiredKeys: [] });
const values = record(text);
const changes = (dialect: string) => (dialect === 'sqlite' ? record(fc.oneof(text, nul)) : values);

const byId = (rows: Row[]): Row[] => [...rows].sort((a, b) => Number(a['id']) - Number(b['id']));
const read = async (b: Blog, ids: number[]): Promise<Row[]> =>
  (await b.Post.unscoped().findAll({ where: { id: ids }, paranoid: false, cacheops: false } as never)).map((p: Model) => ({ ...(p.dataValues as Row) }));

for (const dialect of dialects()) {
  test.serial(`${dialect}: the states a write invalidates by are those a read gives`, async (t) => {
    const blog = await makeBlog(dialect, __filename, {}, 'images');
    const seen: Row[][] = [];
    blog.cacheops.on('invalidated', (e: InvalidatedEvent) => {
      if (e.table === blog.Post.getTableName() && Array.isArray(e.values)) seen.push(e.values as Row[]);
    });
    try {
      await fc.assert(fc.asyncProperty(fc.array(values, { minLength: 1, maxLength: 3 }), changes(dialect), fc.constantFrom('save', 'mass', 'destroy', 'create'), async (initial, change, kind) => {
        const posts = await blog.Post.bulkCreate(initial as never[]);
        const ids = posts.map((p) => p.get('id') as number);
        const before = await read(blog, ids);
        seen.length = 0;
        if (kind === 'create') {
          // The new row's state, from the insert itself on PostgreSQL, SQLite and MariaDB 10.5+.
          const created = await blog.Post.create(change as never);
          const id = created.get('id') as number;
          t.is(seen.length, 1);
          t.deepEqual(seen[0], await read(blog, [id]));
          await blog.Post.destroy({ where: { id: [...ids, id] }, force: true });
          return;
        }
        if (kind !== 'destroy' && Object.keys(change).length === 0) {
          // Nothing to change: Sequelize sends no statement, and there is nothing to invalidate.
          await (kind === 'save' ? posts[0]!.save() : blog.Post.update(change as never, { where: { id: ids } }));
          t.is(seen.length, 0);
          await blog.Post.destroy({ where: { id: ids }, force: true });
          return;
        }
        if (kind === 'save') {
          posts[0]!.set(change as never);
          await posts[0]!.save();
        } else if (kind === 'mass') {
          await blog.Post.update(change as never, { where: { id: ids } });
        } else {
          await blog.Post.destroy({ where: { id: ids } });
        }
        const after = await read(blog, ids);
        const touched = kind === 'save' ? [ids[0]] : ids;
        const expected = [...byId(before.filter((r) => touched.includes(r['id'] as number))), ...byId(after.filter((r) => touched.includes(r['id'] as number)))];
        t.is(seen.length, 1);
        const states = seen[0] ?? [];
        const half = states.length / 2;
        t.deepEqual([...byId(states.slice(0, half)), ...byId(states.slice(half))], expected);
        await blog.Post.destroy({ where: { id: ids }, force: true });
      }), { numRuns: Number(process.env['FC_RUNS'] ?? 60) });
    } finally {
      await blog.close();
    }
  });
}
