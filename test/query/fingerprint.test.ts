/**
 * The find fingerprint (src/query/fingerprint.ts) must be injective: two
 * calls share a fingerprint only when their options are the same, value for
 * value and type for type. Property-tested over option trees drawn from a
 * small, collision-prone domain (1 / '1' / 1n, null / 'null' / undefined,
 * 0 / -0, separators inside strings, Dates, Buffers, Sequelize helpers,
 * operator keys), so equal and unequal pairs are both common.
 */
import test from 'ava';
import fc from 'fast-check';
import { Association, DataTypes, Op, Sequelize, Utils } from 'sequelize';
import { ASSOCIATION_KNOWN, COUNT_KNOWN, callFingerprint, findFingerprint } from '../../src/query/fingerprint';

const sequelize = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
const Post = sequelize.define('Post', { title: DataTypes.STRING, views: DataTypes.INTEGER });
const Category = sequelize.define('Category', { name: DataTypes.STRING });
Post.belongsTo(Category);
Post.addScope('popular', { where: { views: { [Op.gte]: 30 } } });
Post.addScope('byViews', (n: number) => ({ where: { views: n } }));
Post.addScope('titled', { where: { title: 'x' } });

const leaf = fc.oneof(
  fc.constantFrom(1, '1', 1n, 0, -0, '0', null, 'null', undefined, 'u', true, 'true', 't', '', ',', '"', '}', 'n1', 'a,b', '{"a":1}', NaN, Infinity),
  fc.constantFrom(0, 1, 86_400_000).map((ms) => new Date(ms)),
  fc.constantFrom('', 'ab', '0a').map((hex) => Buffer.from(hex, 'hex')),
);

const helper = (value: fc.Arbitrary<unknown>) => fc.oneof(
  fc.constantFrom('views', 'title', 'NOW()').map((s) => Sequelize.literal(s)),
  fc.constantFrom('views', 'title').map((s) => Sequelize.col(s)),
  fc.tuple(fc.constantFrom('lower', 'upper'), fc.array(value, { maxLength: 2 })).map(([name, args]) => Sequelize.fn(name, ...args)),
);

const keys = fc.constantFrom('a', 'b', 'views', 'a,b', '');
const ops = fc.constantFrom(Op.eq, Op.ne, Op.in, Op.or, Op.and, Op.gte);

const tree = fc.letrec<{ value: unknown; object: Record<PropertyKey, unknown> }>((tie) => ({
  value: fc.oneof({ maxDepth: 3 }, leaf, leaf, tie('object'), fc.array(tie('value'), { maxLength: 3 }), helper(tie('value'))),
  object: fc.tuple(
    fc.uniqueArray(fc.tuple(keys, tie('value')), { maxLength: 3, selector: ([k]) => k }),
    fc.uniqueArray(fc.tuple(ops, tie('value')), { maxLength: 2, selector: ([k]) => k }),
  ).map(([entries, symbolEntries]) => {
    const o: Record<PropertyKey, unknown> = {};
    for (const [k, v] of entries) o[k] = v;
    for (const [k, v] of symbolEntries) o[k] = v;
    return o;
  }),
}));

/** A tiny domain, where equal pairs are common. */
const tinyLeaf = fc.constantFrom(1, '1', null, 'null', 0, -0);
const tinyValue = fc.oneof(tinyLeaf, fc.array(tinyLeaf, { minLength: 1, maxLength: 2 }));
const tiny = {
  object: fc.oneof(
    tinyValue.map((v) => ({ a: v })),
    tinyValue.map((v) => ({ [Op.eq]: v })),
    fc.tuple(tinyValue, tinyValue).map(([v, w]) => ({ a: v, [Op.eq]: w })),
  ) as fc.Arbitrary<Record<PropertyKey, unknown>>,
};

const findOptions = fc.record({
  where: fc.oneof(tree.object, tiny.object),
  limit: fc.constantFrom(undefined, 1, '1', null),
  order: fc.array(fc.tuple(fc.constantFrom('id', 'views'), fc.constantFrom('ASC', 'DESC')), { maxLength: 2 }),
  attributes: fc.constantFrom(undefined, ['id'], ['id', 'title'], { exclude: ['title'] }),
}, { requiredKeys: ['where'] });

/** Equality that also requires the same key order (the fingerprint keeps order; equal options written in another order may differ, harmlessly). */
function sameOptions(a: unknown, b: unknown): boolean {
  if (typeof a !== typeof b) return false;
  if (typeof a !== 'object' || a === null || b === null) return Object.is(a, b);
  // An association is itself, not its (cyclic) contents.
  if (a instanceof Association || b instanceof Association) return a === b;
  const bo = b as object;
  // A null-prototype object is as plain as an object literal (to Sequelize too).
  const proto = (x: object): unknown => Object.getPrototypeOf(x) ?? Object.prototype;
  if (proto(a) !== proto(bo)) return false;
  if (a instanceof Date) return Object.is(a.getTime(), (bo as Date).getTime());
  if (Buffer.isBuffer(a)) return a.equals(bo as Buffer);
  if (Array.isArray(a)) return a.length === (bo as unknown[]).length && a.every((x, i) => sameOptions(x, (bo as unknown[])[i]));
  const ka = Reflect.ownKeys(a).filter((k) => Object.prototype.propertyIsEnumerable.call(a, k));
  const kb = Reflect.ownKeys(bo).filter((k) => Object.prototype.propertyIsEnumerable.call(bo, k));
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameOptions((a as Record<PropertyKey, unknown>)[k], (bo as Record<PropertyKey, unknown>)[k]));
}

function pairsProperty(t: import('ava').ExecutionContext, options: fc.Arbitrary<Record<string, unknown>>, numRuns: number): number {
  let equalPairs = 0;
  fc.assert(fc.property(options, options, (a, b) => {
    const fa = findFingerprint('A', Post, a);
    const fb = findFingerprint('A', Post, b);
    if (fa === undefined || fb === undefined) throw new Error('every generated option is fingerprintable');
    const same = sameOptions(a, b);
    if (same) equalPairs += 1;
    return (fa === fb) === same;
  }), { numRuns });
  t.log(`${equalPairs} of ${numRuns} pairs equal`);
  return equalPairs;
}

test('two find calls share a fingerprint exactly when their options are the same', (t) => {
  pairsProperty(t, findOptions, 10_000);
  // Near misses: 1 / '1', null / 'null', 0 / -0, [x] / x, in the same places.
  const equal = pairsProperty(t, tiny.object.map((where) => ({ where })), 20_000);
  t.true(equal > 100, 'the tiny domain gives equal pairs too');
});

test('a fingerprint is deterministic: a deep copy of the options has the same one', (t) => {
  fc.assert(fc.property(findOptions, (a) => findFingerprint('A', Post, a) === findFingerprint('A', Post, Utils.cloneDeep(a))));
  t.pass();
});

test('the model, its scope, its schema, the entry point and the findByPk value are part of the fingerprint', (t) => {
  const o = { where: { views: 1 } };
  const fp = (m: unknown, kind = 'A', param?: unknown) => findFingerprint(kind, m, o, param);
  t.is(fp(Post.scope('popular')), fp(Post.scope('popular')), 'one scope, two scope() classes');
  t.is(fp(Post.scope({ method: ['byViews', 5] })), fp(Post.scope({ method: ['byViews', 5] })));
  const distinct = [
    fp(Post), fp(Category), fp(Post.scope('popular')), fp(Post.scope({ method: ['byViews', 5] })), fp(Post.scope({ method: ['byViews', 6] })),
    fp(Post.unscoped().scope(['popular', 'titled'])), fp(Post.schema('other')), fp(Post.schema('other', { schemaDelimiter: '_' } as never)),
    fp(Post, 'O'), fp(Post, 'P', 1), fp(Post, 'P', '1'), fp(Post, 'P', 1n), fp(Post, 'P', Buffer.from('01', 'hex')),
  ];
  t.true(distinct.every((x) => typeof x === 'string'));
  t.is(new Set(distinct).size, distinct.length);
  t.is(findFingerprint('A', Post, { include: [Category] }), findFingerprint('A', Post, { include: [Category] }));
  t.not(findFingerprint('A', Post, { include: [Category] }), findFingerprint('A', Post, { include: [Post] }));
  t.is(findFingerprint('A', Post, { include: [Post.associations['Category']] }), findFingerprint('A', Post, { include: [Post.associations['Category']] }));
});

test('per-call options that change neither SQL nor shape are left out; what cannot be encoded faithfully gives up', (t) => {
  const base = findFingerprint('A', Post, { where: { views: 1 } });
  t.is(findFingerprint('A', Post, { where: { views: 1 }, logging: () => undefined, benchmark: true, rejectOnEmpty: true }), base);
  class Custom { constructor(readonly x = 1) {} }
  const cyclic: Record<string, unknown> = { views: 1 };
  cyclic['self'] = cyclic;
  for (const options of [
    { where: { views: new Custom() } },
    { where: { views: new Map([[1, 2]]) } },
    { where: { [Symbol('mine')]: 1 } },
    { where: { views: () => 1 } },
    { where: cyclic },
    { where: { title: 'x'.repeat(10_000) } },
    { someUnknownOption: true },
    { groupedLimit: { limit: 1 } },
    new Custom(),
  ]) t.is(findFingerprint('A', Post, options), undefined, JSON.stringify(Object.keys(options)));
  t.is(findFingerprint('A', class NotAModel {}, {}), undefined);
});

/** Every call kind the fast paths fingerprint, with the option keys each accepts. */
const KINDS = [
  ['A', new Set<string>()], ['O', new Set<string>()], ['P', new Set<string>()], ['C', COUNT_KNOWN], ['G', COUNT_KNOWN], ['F', COUNT_KNOWN],
  ['aHg', ASSOCIATION_KNOWN], ['aHc', ASSOCIATION_KNOWN], ['aHh', ASSOCIATION_KNOWN], ['aMg', ASSOCIATION_KNOWN], ['aMc', ASSOCIATION_KNOWN],
  ['aMh', ASSOCIATION_KNOWN], ['aOg', ASSOCIATION_KNOWN], ['aBg', ASSOCIATION_KNOWN],
] as const;
const associations = [Post.associations['Category']!, Category.hasMany(Post, { as: 'entries' }), Post.belongsToMany(Category, { through: 'PostCategory', as: 'shelves' })];

/** A call: its kind, model, arguments (associations, keys, has* conditions, aggregate field and function) and options. */
const anyCall = fc.record({
  kind: fc.constantFrom(...KINDS.map(([k]) => k)),
  model: fc.constantFrom<unknown>(Post, Category),
  params: fc.array(fc.oneof(fc.constantFrom<unknown>(...associations), tree.value, fc.constantFrom('views', 'count', 'max', 'views;'),
    fc.array(tiny.object, { maxLength: 2 })), { maxLength: 3 }),
  options: fc.option(fc.record({
    where: fc.oneof(tree.object, tiny.object),
    distinct: fc.constantFrom(undefined, true, 'true'),
    col: fc.constantFrom(undefined, 'id', 'views'),
    through: fc.constantFrom(undefined, { where: { w: 1 } }, { paranoid: false }),
    joinTableAttributes: fc.constantFrom(undefined, [], ['w']),
    limit: fc.constantFrom(undefined, 1, '1', null),
    replacements: fc.constantFrom(undefined, { v: 1 }, { v: '1' }, [1], ['1'], [[1, 2]]),
    bind: fc.constantFrom(undefined, [1], ['1'], { b: 1 }),
  }, { requiredKeys: ['where'] }), { nil: undefined }),
});

test('the calls of every fast path share a fingerprint exactly when kind, model, arguments and options are the same', (t) => {
  let equalPairs = 0;
  const known = new Set([...COUNT_KNOWN, ...ASSOCIATION_KNOWN]);
  fc.assert(fc.property(anyCall, anyCall, (a, b) => {
    const fa = callFingerprint(a.kind, a.model, a.params, a.options, known);
    const fb = callFingerprint(b.kind, b.model, b.params, b.options, known);
    if (fa === undefined || fb === undefined) throw new Error('every generated call is fingerprintable');
    const same = a.kind === b.kind && a.model === b.model && sameOptions(a.params, b.params) && sameOptions(a.options, b.options);
    if (same) equalPairs += 1;
    return (fa === fb) === same;
  }), { numRuns: 20_000 });
  // Pairs drawn from a small domain, so that equal ones are common too.
  const small = fc.record({
    kind: fc.constantFrom('aHh', 'aMh'),
    model: fc.constant<unknown>(Post),
    params: fc.array(fc.constantFrom<unknown>(associations[0], 1, '1', null, [{ id: 1 }], [{ id: '1' }]), { maxLength: 2 }),
    options: fc.option(fc.constantFrom(1, '1', null).map((v) => ({ where: { a: v } })), { nil: undefined }),
  });
  fc.assert(fc.property(small, small, (a, b) => {
    const fa = callFingerprint(a.kind, a.model, a.params, a.options, known);
    const fb = callFingerprint(b.kind, b.model, b.params, b.options, known);
    const same = a.kind === b.kind && sameOptions(a.params, b.params) && sameOptions(a.options, b.options);
    if (same) equalPairs += 1;
    return fa !== undefined && (fa === fb) === same;
  }), { numRuns: 20_000 });
  t.log(`${equalPairs} equal pairs`);
  t.true(equalPairs > 100, 'equal pairs are drawn too');
});

test('each kind accepts its own option keys only; scope, schema and data types give up', (t) => {
  for (const [kind, known] of KINDS) {
    if (known.size === 0) continue;
    t.truthy(callFingerprint(kind, Post, [], { where: { views: 1 } }, known));
    for (const options of [{ scope: false }, { schema: 'x' }, { schemaDelimiter: '_' }, { dataType: DataTypes.INTEGER() }, { groupedLimit: {} }]) {
      t.is(callFingerprint(kind, Post, [], options, known), undefined, `${kind} ${Object.keys(options)[0]}`);
    }
  }
  t.is(callFingerprint('C', Post, [], { through: {} }, COUNT_KNOWN), undefined, 'count does not take through');
  t.is(callFingerprint('aMg', Post, [], { distinct: true }, ASSOCIATION_KNOWN), undefined, 'a getter does not take distinct');
  // findAll reads neither distinct nor col, and takes them: they are encoded all the same.
  const page = { where: { views: 1 }, limit: 2 };
  const found = [findFingerprint('A', Post, page), findFingerprint('A', Post, { ...page, distinct: true }), findFingerprint('A', Post, { ...page, distinct: true, col: 'id' })];
  t.true(found.every((f) => f !== undefined), 'findAll takes distinct and col');
  t.is(new Set(found).size, found.length, 'each its own fingerprint');
  t.is(callFingerprint('aHg', Post, [new Map()], {}, ASSOCIATION_KNOWN), undefined, 'an argument it cannot encode');
  t.not(callFingerprint('aHg', Post, [associations[0], 1], {}, ASSOCIATION_KNOWN), callFingerprint('aHg', Post, [associations[1], 1], {}, ASSOCIATION_KNOWN));
  t.not(callFingerprint('G', Post, ['views', 'max'], {}, COUNT_KNOWN), callFingerprint('G', Post, ['views', 'min'], {}, COUNT_KNOWN));
  t.not(callFingerprint('G', Post, ['views', 'max'], undefined, COUNT_KNOWN), callFingerprint('G', Post, ['views', 'max'], {}, COUNT_KNOWN));
});
