/**
 * Values that stress tokens and keys: separators and braces in strings,
 * non-ASCII, null vs 'null' vs '', numbers spelled as strings, booleans,
 * case and trailing spaces (MySQL/MariaDB collations compare those equal).
 *
 * For a query `col = V` and another value W: writing a row with W must
 * invalidate exactly when the database says W = V (or when the condition is
 * not granular on that dialect); moving a row between W and V always must.
 */
import test from 'ava';
import type { Model } from 'sequelize';
import { makeBlog } from '../helpers/models';
import { dialects, type Dialect } from '../helpers/env';
import { checkWrite, type ReadOptions } from '../helpers/check';

interface Other {
  readonly value: unknown;
  /** Dialects on which the database compares it equal to the query's value, or the condition is not granular. */
  readonly invalidatesOn: readonly Dialect[];
}

interface ValueCase {
  readonly name: string;
  readonly column: 'title' | 'views' | 'published' | 'big';
  readonly value: unknown;
  /** The value a row gets when moved into the set (default: value). */
  readonly stored?: unknown;
  readonly others: readonly Other[];
}

const NONE: Dialect[] = [];
const MYSQL: Dialect[] = ['mysql'];
const ALL: Dialect[] = ['sqlite', 'postgres', 'mysql'];
const SEPARATORS = 'a&b=c:d,e*f?g{h}i[j] k\\l%26';

const CASES: ValueCase[] = [
  {
    name: 'separators, braces, globs, spaces', column: 'title', value: SEPARATORS,
    others: [
      { value: SEPARATORS.replace(/ /g, ''), invalidatesOn: NONE },
      { value: 'a%26b%3Dc%3Ad%2Ce%2Af%3Fg%7Bh%7Di%5Bj%5D%20k%5Cl%2526', invalidatesOn: NONE }, // its escaped form
      { value: 'a', invalidatesOn: NONE },
      { value: `${SEPARATORS} `, invalidatesOn: MYSQL }, // PAD SPACE collations
    ],
  },
  {
    name: 'a value that looks like a conjunction', column: 'title', value: 'x&views=n1',
    others: [{ value: 'x', invalidatesOn: NONE }, { value: 'x&views=n2', invalidatesOn: NONE }],
  },
  {
    name: 'non-ASCII', column: 'title', value: 'café ☕ ü',
    others: [
      // MySQL/MariaDB collations fold accents: such conditions are not granular there.
      { value: 'cafe ☕ u', invalidatesOn: MYSQL },
      { value: 'café ☕ ü\u2000', invalidatesOn: MYSQL },
      { value: 'plain', invalidatesOn: MYSQL },
    ],
  },
  {
    name: "'null'", column: 'title', value: 'null',
    others: [{ value: null, invalidatesOn: NONE }, { value: '', invalidatesOn: NONE }, { value: 'NULL', invalidatesOn: MYSQL }],
  },
  {
    name: "''", column: 'title', value: '',
    others: [{ value: null, invalidatesOn: NONE }, { value: 'null', invalidatesOn: NONE }, { value: ' ', invalidatesOn: MYSQL }],
  },
  {
    name: 'null', column: 'title', value: null,
    others: [{ value: '', invalidatesOn: NONE }, { value: 'null', invalidatesOn: NONE }, { value: 'NULL', invalidatesOn: NONE }],
  },
  {
    name: "'1' on an INTEGER column", column: 'views', value: '1', stored: 1,
    others: [{ value: 1, invalidatesOn: ALL }, { value: '01', invalidatesOn: ALL }, { value: 2, invalidatesOn: NONE }, { value: 10, invalidatesOn: NONE }, { value: null, invalidatesOn: NONE }],
  },
  {
    name: '1 on an INTEGER column', column: 'views', value: 1,
    others: [{ value: '1', invalidatesOn: ALL }, { value: 11, invalidatesOn: NONE }, { value: -1, invalidatesOn: NONE }],
  },
  {
    name: "'1' on a STRING column", column: 'title', value: '1',
    others: [
      { value: 1, invalidatesOn: ALL }, // stored as the string '1'
      { value: '01', invalidatesOn: NONE }, { value: ' 1', invalidatesOn: NONE }, { value: '1.0', invalidatesOn: NONE },
      { value: '1 ', invalidatesOn: MYSQL },
    ],
  },
  {
    name: 'a BIGINT past 2^53', column: 'big', value: '9007199254740993',
    others: [{ value: '9007199254740992', invalidatesOn: ['sqlite'] /* SQLite reads it back as a double */ }, { value: '9007199254740993', invalidatesOn: ALL }],
  },
  { name: 'true', column: 'published', value: true, others: [{ value: false, invalidatesOn: NONE }, { value: null, invalidatesOn: NONE }, { value: 1, invalidatesOn: ALL }] },
  { name: 'false', column: 'published', value: false, others: [{ value: true, invalidatesOn: NONE }, { value: null, invalidatesOn: NONE }] },
  { name: 'case', column: 'title', value: 'Abc', others: [{ value: 'abc', invalidatesOn: MYSQL }, { value: 'ABC', invalidatesOn: MYSQL }, { value: 'Abd', invalidatesOn: NONE }] },
];

for (const dialect of dialects()) {
  for (const c of CASES) {
    test.serial(`${dialect}: ${c.name}`, async (t) => {
      const blog = await makeBlog(dialect, __filename, {}, 'values');
      try {
        const { Post, sequelize } = blog;
        const read = (o: ReadOptions) => Post.findAll({ ...o, where: { [c.column]: c.value }, order: [['id', 'ASC']] });
        await Post.create({ title: 'unrelated', views: 999, published: null });
        await checkWrite(t, sequelize, read, () => Post.create({ [c.column]: c.stored ?? c.value }), true, 'create with the value');
        for (const other of c.others) {
          const label = `${JSON.stringify(other.value)}`;
          const expected = other.invalidatesOn.includes(dialect);
          let row: Model | undefined;
          await checkWrite(t, sequelize, read, async () => { row = await Post.create({ [c.column]: other.value }); }, expected, `${label}: create`);
          await checkWrite(t, sequelize, read, () => row!.update({ body: 'touched' }), expected, `${label}: update another column`);
          // Between values the database holds equal, Sequelize may skip the UPDATE: nothing to expect then but a current read.
          await checkWrite(t, sequelize, read, () => row!.update({ [c.column]: c.stored ?? c.value }), expected ? 'either' : true, `${label}: move into the set`);
          await checkWrite(t, sequelize, read, () => row!.update({ [c.column]: other.value }), expected ? 'either' : true, `${label}: move out of the set`);
          await checkWrite(t, sequelize, read, () => row!.destroy({ force: true }), expected, `${label}: destroy`);
        }
      } finally {
        await blog.close();
      }
    });
  }
}
