/**
 * tree.ts: a Sequelize where -> DNF over tokens. Exact expectations for the
 * granular operators, and a property: the DNF is implied by the condition
 * (every row the condition selects matches one of its conjunctions).
 */
import test from 'ava';
import fc from 'fast-check';
import { DataTypes, Op, Sequelize } from 'sequelize';
import { rowTokens, whereToDnf, type Dnf, type TreeContext } from '../../src/core/tree';
import { dialects, makeSequelize } from '../helpers/env';

const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
const Item = sequelize.define('Item', {
  n: DataTypes.INTEGER,
  s: DataTypes.STRING,
  b: DataTypes.BOOLEAN,
  authorName: { type: DataTypes.STRING, field: 'author_name' },
  meta: DataTypes.JSON,
  score: DataTypes.FLOAT,
});
test.after.always(() => sequelize.close());

const ctx = (maxInListLength = 200, dialect = 'sqlite'): TreeContext =>
  ({ attributes: Item.getAttributes() as TreeContext['attributes'], dialect, maxInListLength });

/** DNF as sorted plain objects, for readable comparisons. */
function plain(dnf: Dnf): Record<string, string>[] {
  return dnf.map((c) => Object.fromEntries([...c].sort(([a], [b]) => a.localeCompare(b))))
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}
const dnf = (where: unknown, c = ctx()) => plain(whereToDnf(where, c));
const TRUE = [{}];

test.serial('no where, equality, Op.eq and several columns', (t) => {
  t.deepEqual(dnf(undefined), TRUE);
  t.deepEqual(dnf({}), TRUE);
  t.deepEqual(dnf({ n: 1 }), [{ n: 'n1' }]);
  t.deepEqual(dnf({ n: { [Op.eq]: '01' } }), [{ n: 'n1' }]);
  t.deepEqual(dnf({ n: 1, s: 'a' }), [{ n: 'n1', s: 'sa' }]);
  t.deepEqual(dnf({ b: true }), [{ b: 'b1' }]);
  t.deepEqual(dnf({ author_name: 'x' }), [{ authorName: 'sx' }], 'a field name is an alias of its attribute');
});

test.serial('IN lists, arrays, null and Op.is null', (t) => {
  t.deepEqual(dnf({ n: [1, 2] }), [{ n: 'n1' }, { n: 'n2' }]);
  t.deepEqual(dnf({ n: { [Op.in]: [2, 1, 2] } }), [{ n: 'n1' }, { n: 'n2' }, { n: 'n2' }]);
  t.deepEqual(dnf({ n: [null, 3] }), [{ n: 'n3' }], 'IN (NULL) matches nothing');
  t.deepEqual(dnf({ s: null }), [{ s: 'N' }]);
  t.deepEqual(dnf({ s: { [Op.is]: null } }), [{ s: 'N' }]);
  t.deepEqual(dnf({ s: 'null' }), [{ s: 'snull' }]);
});

test.serial('Op.and, Op.or, attribute-level and nested combinations', (t) => {
  t.deepEqual(dnf({ [Op.or]: [{ n: 1 }, { s: 'a' }] }), [{ n: 'n1' }, { s: 'sa' }]);
  t.deepEqual(dnf({ [Op.or]: { n: 1, s: 'a' } }), [{ n: 'n1' }, { s: 'sa' }]);
  t.deepEqual(dnf({ [Op.and]: [{ n: 1 }, { s: 'a' }] }), [{ n: 'n1', s: 'sa' }]);
  t.deepEqual(dnf({ n: { [Op.or]: [1, 2] } }), [{ n: 'n1' }, { n: 'n2' }]);
  t.deepEqual(dnf({ n: 1, [Op.or]: [{ s: 'a' }, { s: 'b', b: false }] }), [{ b: 'b0', n: 'n1', s: 'sb' }, { n: 'n1', s: 'sa' }]);
  t.deepEqual(dnf({ [Op.or]: [{ [Op.and]: [{ n: [1, 2] }, { s: null }] }, { b: true }] }),
    [{ b: 'b1' }, { n: 'n1', s: 'N' }, { n: 'n2', s: 'N' }]);
  t.deepEqual(dnf([{ n: 1 }, { s: 'a' }]), [{ n: 'n1', s: 'sa' }], 'an array where is an AND');
});

test.serial('ranges, not, like, JSON, floats, literals and unknown keys are "may match anything"', (t) => {
  for (const where of [
    { n: { [Op.gt]: 1 } }, { n: { [Op.between]: [1, 5] } }, { n: { [Op.ne]: 1 } }, { n: { [Op.not]: 1 } },
    { [Op.not]: { n: 1 } }, { s: { [Op.like]: 'a%' } }, { s: { [Op.notIn]: ['a'] } }, { meta: { a: 1 } },
    { score: 1.5 }, { nope: 1 }, { '$Other.id$': 1 }, { 'meta.a': 1 }, sequelize.literal('n = 1'),
    sequelize.where(sequelize.fn('lower', sequelize.col('s')), 'a'), { n: sequelize.literal('1') }, { s: { [Op.is]: sequelize.literal('NULL') } },
  ]) t.deepEqual(dnf(where), TRUE, JSON.stringify(where));
  t.deepEqual(dnf({ n: { [Op.gt]: 1 }, s: 'a' }), [{ s: 'sa' }], 'the granular part is kept');
  t.deepEqual(dnf({ [Op.or]: [{ n: 1 }, { n: { [Op.gt]: 5 } }] }), TRUE, 'an OR with an unconstrained branch is TRUE');
});

test.serial('contradictions drop conjunctions; an empty IN is FALSE', (t) => {
  t.deepEqual(dnf({ [Op.and]: [{ n: 1 }, { n: 2 }] }), []);
  t.deepEqual(dnf({ n: { [Op.in]: [] } }), []);
  t.deepEqual(dnf({ n: [1, 2], [Op.and]: [{ n: 2 }] }), [{ n: 'n2' }]);
  t.deepEqual(dnf({ [Op.or]: [{ n: 1, [Op.and]: { n: 3 } }, { s: 'a' }] }), [{ s: 'sa' }]);
  t.deepEqual(dnf({ s: null, [Op.and]: [{ s: 'x' }] }), []);
});

test.serial('empty groups and lists under NOT may match anything (Sequelize drops them from enclosing groups)', (t) => {
  for (const where of [
    { [Op.not]: { [Op.or]: [{ [Op.and]: [] }] } }, // rendered NOT (0 = 1): every row
    { [Op.not]: { [Op.or]: [{ n: 1 }, { [Op.and]: [] }] } },
    { [Op.not]: { [Op.or]: [{}, { n: 1 }] } },
    { [Op.not]: { [Op.or]: [{ n: { [Op.notIn]: [] } }] } },
    { [Op.not]: { n: {} } },
    { [Op.not]: [] },
  ]) t.deepEqual(dnf(where), TRUE);
  t.deepEqual(dnf({ [Op.not]: { n: { [Op.ne]: 1 } } }), [{ n: 'n1' }], 'NOT of an inequality is granular');
  t.deepEqual(dnf({ [Op.not]: { n: { [Op.notIn]: [1, 2] } } }), [{ n: 'n1' }, { n: 'n2' }]);
  t.deepEqual(dnf({ [Op.not]: { s: { [Op.not]: null } } }), [{ s: 'N' }]);
});

test.serial('an IN longer than maxInListLength is TRUE; up to it stays granular', (t) => {
  const list = [1, 2, 3, 4];
  t.deepEqual(dnf({ n: list }, ctx(3)), TRUE);
  t.deepEqual(dnf({ n: { [Op.in]: list } }, ctx(3)), TRUE);
  t.is(dnf({ n: list }, ctx(4)).length, 4);
});

test.serial('too many conjunctions collapse to something implied (TRUE or one side)', (t) => {
  const wide = Array.from({ length: 70 }, (_, i) => ({ n: i }));
  t.deepEqual(dnf({ [Op.or]: wide }), TRUE);
  const product = dnf({ n: Array.from({ length: 10 }, (_, i) => i), s: Array.from({ length: 10 }, (_, i) => `v${i}`) });
  t.true(product.length <= 64 && product.length > 0);
});

test.serial('rowTokens tokenizes the attributes a row has', (t) => {
  const tokens = rowTokens({ n: '01', s: 'a', b: 1, meta: { x: 1 }, other: 3 }, ctx());
  t.deepEqual(Object.fromEntries(tokens), { n: 'n1', s: 'sa', b: 'b1' });
  t.deepEqual(Object.fromEntries(rowTokens({ s: null }, ctx())), { s: 'N' });
});

// ---- property: the DNF is implied by the condition ------------------------

type Value = number | string | null;
type LeafOp = 'eq' | 'in' | 'notIn' | 'is' | 'isNot' | 'gt' | 'ne' | 'not';
type Cond = { readonly kind: 'leaf'; readonly col: 'n' | 's'; readonly op: LeafOp; readonly v: Value | Value[] }
  | { readonly kind: 'and' | 'or'; readonly parts: Cond[] }
  | { readonly kind: 'not'; readonly part: Cond }
  | { readonly kind: 'empty' };

const nVal = fc.constantFrom<Value>(0, 1, 2, null);
const sVal = fc.constantFrom<Value>('a', 'b', '', null);

/** Conditions; `empties` allows empty lists and groups (whose SQL only the database can judge). */
function conditions(empties: boolean): fc.Arbitrary<Cond> {
  const min = empties ? 0 : 1;
  const leaf = (col: 'n' | 's', value: fc.Arbitrary<Value>): fc.Arbitrary<Cond> => fc.oneof(
    fc.record({ kind: fc.constant('leaf' as const), col: fc.constant(col), op: fc.constantFrom<LeafOp>('eq', 'ne', ...(col === 'n' ? ['gt' as const] : [])), v: value }),
    fc.record({ kind: fc.constant('leaf' as const), col: fc.constant(col), op: fc.constantFrom<LeafOp>('in', 'notIn'), v: fc.array(value, { minLength: min, maxLength: 3 }) }),
    fc.record({ kind: fc.constant('leaf' as const), col: fc.constant(col), op: fc.constantFrom<LeafOp>('is', 'isNot'), v: fc.constant(null) }),
    fc.record({ kind: fc.constant('leaf' as const), col: fc.constant(col), op: fc.constant<LeafOp>('not'), v: value.filter((v) => v !== null) }),
  );
  return fc.letrec<{ c: Cond }>((tie) => ({
    c: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf('n', nVal), leaf('s', sVal),
      fc.record({ kind: fc.constantFrom('and' as const, 'or' as const), parts: fc.array(tie('c'), { minLength: min, maxLength: 3 }) }),
      fc.record({ kind: fc.constant('not' as const), part: tie('c') }),
      ...(empties ? [fc.constant<Cond>({ kind: 'empty' })] : [])),
  })).c;
}

function toWhere(c: Cond): unknown {
  if (c.kind === 'empty') return {};
  if (c.kind === 'not') return { [Op.not]: toWhere(c.part) };
  if (c.kind !== 'leaf') return { [c.kind === 'and' ? Op.and : Op.or]: c.parts.map(toWhere) };
  if (c.op === 'eq') return { [c.col]: c.v };
  const op = { in: Op.in, notIn: Op.notIn, is: Op.is, isNot: Op.not, gt: Op.gt, ne: Op.ne, not: Op.not }[c.op];
  return { [c.col]: { [op]: c.v } };
}

/** SQL three-valued logic: true, false or null (unknown). Lists and groups are never empty here. */
function evaluate(c: Cond, row: Record<'n' | 's', Value>): boolean | null {
  if (c.kind === 'empty') throw new Error('empty groups are only judged by the database');
  if (c.kind === 'not') {
    const v = evaluate(c.part, row);
    return v === null ? null : !v;
  }
  if (c.kind !== 'leaf') {
    const values = c.parts.map((p) => evaluate(p, row));
    const [win, lose] = c.kind === 'and' ? [false, true] : [true, false];
    return values.includes(win) ? win : values.includes(null) ? null : lose;
  }
  const x = row[c.col];
  if (c.op === 'is' || (c.op === 'eq' && c.v === null)) return x === null; // Sequelize writes IS NULL
  if (c.op === 'isNot') return x !== null;
  if (c.op === 'in' || c.op === 'notIn') {
    const list = c.v as Value[];
    const found = x === null ? null : list.includes(x) ? true : list.includes(null) ? null : false;
    return c.op === 'in' || found === null ? found : !found;
  }
  if (x === null || c.v === null) return null;
  if (c.op === 'eq') return x === c.v;
  if (c.op === 'ne' || c.op === 'not') return x !== c.v;
  return (x as number) > (c.v as number);
}

const matches = (d: ReturnType<typeof whereToDnf>, tokens: Map<string, string>): boolean =>
  d.some((conj) => [...conj].every(([k, v]) => tokens.get(k) === v));

test.serial('property: every row the condition selects matches a conjunction of its DNF', (t) => {
  const c = ctx(2);
  fc.assert(fc.property(conditions(false), nVal, sVal, (where, n, s) => {
    const row = { n, s };
    return evaluate(where, row) !== true || matches(whereToDnf(toWhere(where), c), rowTokens(row, c));
  }), { numRuns: 3000 });
  t.pass();
});

// The same implication with the database deciding what the condition selects: it also judges
// the SQL Sequelize writes for empty lists and groups. TREE_RUNS=20000 searches harder.
for (const dialect of dialects()) {
  test.serial(`${dialect}: property: a row matching no conjunction is never selected (checked with the database)`, async (t) => {
    const db = await makeSequelize(dialect, __filename);
    const Row = db.define('Row', { n: DataTypes.INTEGER, s: DataTypes.STRING }, { timestamps: false, tableName: 'tree_rows' });
    try {
      await db.sync({ force: true });
      const rows = await Row.bulkCreate([0, 1, 2, null].flatMap((n) => ['a', 'b', '', null].map((s) => ({ n, s }))));
      const c: TreeContext = { attributes: Row.getAttributes() as TreeContext['attributes'], dialect, maxInListLength: 2 };
      await fc.assert(fc.asyncProperty(conditions(true), async (where) => {
        const selected = await Row.findAll({ where: toWhere(where) as never });
        const d = whereToDnf(toWhere(where), c);
        return selected.every((r) => matches(d, rowTokens(r.get() as Record<string, unknown>, c)));
      }), { numRuns: Number(process.env['TREE_RUNS'] ?? 300) });
      t.is(rows.length, 16);
    } finally {
      await db.close();
    }
  });
}
