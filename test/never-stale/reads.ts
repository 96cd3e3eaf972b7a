/**
 * Reads: each one can run through the cache or around it ({ cacheops: false }),
 * and returns a normalized value, so the two runs compare with `===`.
 * Random reads are generated here; the fixed probe set is in probes.ts.
 */
import fc from 'fast-check';
import { Model, Op, col, fn, literal, where, type Transaction } from 'sequelize';
import { COLUMNS, ITEM_IDS, LABEL_IDS, OWNER_IDS, STRINGS, type ModelName, type World } from './schema';
import { Ref, show, toWhere, whereArb, type W } from './where';

export interface ReadOpts {
  readonly transaction?: Transaction | undefined;
  readonly cached: boolean;
}

export interface Read {
  readonly label: string;
  /** Runs the read; the result is normalized text (see `normalize`). */
  run(w: World, o: ReadOpts): Promise<string>;
}

/** A model, or its name when building the readable label. */
export type Resolve = (name: ModelName) => unknown;
const refs: Resolve = (n) => new Ref(n);
const real = (w: World): Resolve => (n) => w.m[n];

/**
 * Plain, comparable data: instances -> plain values, dates -> ISO text,
 * arrays sorted (the database may return unordered rows in any order) except
 * the top-level rows of a query that orders them by a key.
 */
export function normalize(value: unknown, keepOrder: boolean): unknown {
  if (value instanceof Model) return normalize(value.get({ plain: true }), false);
  if (value instanceof Date) return `Date(${Number.isNaN(value.getTime()) ? 'invalid' : value.toISOString()})`;
  if (Buffer.isBuffer(value)) return `Buffer(${value.toString('hex')})`;
  if (typeof value === 'bigint') return `${value}n`;
  if (Array.isArray(value)) {
    const items = value.map((v) => normalize(v, false));
    if (keepOrder) return items;
    return items.map((v) => [JSON.stringify(v), v] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, v]) => v);
  }
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = normalize((value as Record<string, unknown>)[k], keepOrder && k === 'rows');
    return out;
  }
  return value;
}

type ReadOp = 'findAll' | 'findOne' | 'findByPk' | 'count' | 'findAndCountAll' | 'max' | 'min' | 'sum';

/**
 * A model read: `Model.op([arg, ]options)`. `build` makes the options from
 * models (or their names, for the label), fresh for every call since
 * Sequelize rewrites options it is given.
 */
export function query(model: ModelName, op: ReadOp, build: (r: Resolve) => Record<string, unknown>, arg?: unknown): Read {
  const shown = build(refs);
  const label = `${model}.${op}(${arg === undefined ? '' : `${show(arg)}, `}${show(shown)})`;
  // Raw joined rows are ordered by the parent's key only: rows of one parent come in any order.
  const ordered = (op === 'findAll' || op === 'findAndCountAll') && shown['order'] !== undefined && !(shown['raw'] && shown['include']);
  return {
    label,
    async run(w, o) {
      const options = { ...build(real(w)), transaction: o.transaction ?? null, ...(o.cached ? {} : { cacheops: false }) };
      const M = w.m[model] as unknown as Record<ReadOp, (...a: unknown[]) => Promise<unknown>>;
      const result = await (arg === undefined ? M[op](options) : M[op](arg, options));
      return JSON.stringify(normalize(result, ordered));
    },
  };
}

/** A has* argument: keys of the target model, passed as instances (fetched around the cache) or as the keys. */
export interface Targets { readonly model: ModelName; readonly ids: readonly number[]; readonly instances: boolean; readonly list: boolean }

/** An association method on one instance (fetched around the cache), with its targets first for has*. */
export function getter(model: ModelName, id: number, method: string, build: (r: Resolve) => Record<string, unknown>, ordered = false, targets?: Targets): Read {
  const shownTargets = targets ? `${targets.instances ? `${targets.model}#` : ''}${targets.list ? `[${targets.ids.join(',')}]` : targets.ids[0]}, ` : '';
  return {
    label: `(await ${model}.findByPk(${id})).${method}(${shownTargets}${show(build(refs))})`,
    async run(w, o) {
      const transaction = o.transaction ?? null;
      const inst = await w.m[model].findByPk(id, { transaction, paranoid: false, cacheops: false } as never);
      if (!inst) return 'no instance';
      const options = { ...build(real(w)), transaction, ...(o.cached ? {} : { cacheops: false }) };
      const args: unknown[] = [options];
      if (targets) {
        // One after another: on a transaction's connection, queries sent at once overlap on one pg client.
        const values: unknown[] = [];
        for (const t of targets.ids) {
          values.push(targets.instances ? await w.m[targets.model].findByPk(t, { transaction, paranoid: false, cacheops: false } as never) ?? t : t);
        }
        args.unshift(targets.list ? values : values[0]);
      }
      const result = await (inst as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!(...args);
      return JSON.stringify(normalize(result, ordered));
    },
  };
}

const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined, freq: 2 });
const whereOf = (m: ModelName, depth = 2) => maybe(whereArb(COLUMNS[m], depth));
const w = (x: W | undefined): Record<string, unknown> => (x ? { where: toWhere(x) } : {});
const ID_ORDER = [['id', 'ASC']];

type Inc = { as: 'Owner' | 'Notes' | 'Labels'; required: boolean; where: W | undefined; separate: boolean; through: W | undefined; throughAttrs: boolean };

const includeArb: fc.Arbitrary<Inc> = fc.record({
  as: fc.constantFrom('Owner' as const, 'Notes' as const, 'Labels' as const),
  required: fc.boolean(),
  where: fc.constant(undefined) as fc.Arbitrary<W | undefined>,
  separate: fc.boolean(),
  through: fc.constant(undefined) as fc.Arbitrary<W | undefined>,
  throughAttrs: fc.boolean(),
}).chain((inc) => {
  const target: ModelName = inc.as === 'Owner' ? 'Owner' : inc.as === 'Notes' ? 'Note' : 'Label';
  return fc.record({ where: whereOf(target, 1), through: inc.as === 'Labels' ? whereOf('ItemLabel', 1) : fc.constant(undefined) })
    .map((extra) => ({ ...inc, ...extra }));
});

/** The include option of one include spec; `raw` rules out separate queries. */
function includeOptions(r: Resolve, inc: Inc, raw: boolean): Record<string, unknown> {
  const model = r(inc.as === 'Owner' ? 'Owner' : inc.as === 'Notes' ? 'Note' : 'Label');
  const o: Record<string, unknown> = { model, required: inc.required, ...w(inc.where) };
  if (inc.as === 'Notes' && inc.separate && !inc.required && !raw) o['separate'] = true;
  if (inc.as === 'Labels' && (inc.through || inc.throughAttrs)) {
    o['through'] = { ...w(inc.through), ...(inc.throughAttrs ? { attributes: ['w'] } : {}) };
  }
  return o;
}

const ATTRIBUTES = [undefined, ['id', 'n'], ['id', 's', 'flag'], ['id', 'at', 'ownerId', 'deletedAt']] as const;
const ORDERS = [undefined, [['id', 'ASC']], [['n', 'DESC'], ['id', 'ASC']], [['s', 'ASC'], ['flag', 'DESC'], ['id', 'DESC']]] as const;

const itemFind = fc.record({
  op: fc.constantFrom('findAll' as const, 'findAll' as const, 'findOne' as const, 'findAndCountAll' as const),
  where: whereOf('Item'),
  include: fc.uniqueArray(includeArb, { maxLength: 2, selector: (i) => i.as }),
  order: fc.constantFrom(...ORDERS),
  limit: maybe(fc.integer({ min: 0, max: 3 })),
  offset: maybe(fc.integer({ min: 0, max: 2 })),
  raw: fc.boolean(),
  attributes: fc.constantFrom(...ATTRIBUTES),
  paranoid: fc.boolean(),
}).map((s): Read => {
  const paged = s.limit !== undefined || s.offset !== undefined || s.op !== 'findAll';
  // Sequelize cannot order a limited subquery by a column it does not select: with attributes, order by id.
  const order = s.order && s.attributes ? ID_ORDER : s.order ?? (paged ? ID_ORDER : undefined);
  // A raw findOne with a joined include returns one joined row, and which one is up to the
  // database (the order is by the parent only): not a well-defined read to compare.
  const raw = s.raw && s.op !== 'findAndCountAll' && !(s.op === 'findOne' && s.include.length > 0);
  // Without a limit of its own, Sequelize applies an offset to the joined rows rather than to
  // the parents, and the rows joined to one parent come in no defined order (on MariaDB that
  // order changes with the plan): which rows an offset skips is then up to the database.
  const joinsMany = s.include.some((i) => i.as !== 'Owner' && !(i.as === 'Notes' && i.separate && !i.required && !raw));
  const limited = s.limit !== undefined && s.op !== 'findOne';
  const offset = joinsMany && !limited ? undefined : s.offset;
  return query('Item', s.op, (r) => ({
    ...w(s.where),
    ...(s.include.length ? { include: s.include.map((i) => includeOptions(r, i, raw)) } : {}),
    ...(order ? { order } : {}),
    ...(s.limit !== undefined && s.op !== 'findOne' ? { limit: s.limit } : {}),
    ...(offset !== undefined ? { offset } : {}),
    ...(raw ? { raw: true } : {}),
    ...(s.attributes ? { attributes: [...s.attributes] } : {}),
    ...(s.paranoid ? {} : { paranoid: false }),
    ...(s.op === 'findAndCountAll' && s.include.length ? { distinct: true } : {}),
  }));
});

const itemAggregate = fc.record({
  op: fc.constantFrom('count' as const, 'count' as const, 'max' as const, 'min' as const, 'sum' as const),
  where: whereOf('Item'),
  include: fc.uniqueArray(includeArb.map((i) => ({ ...i, separate: false })), { maxLength: 1, selector: (i) => i.as }),
  paranoid: fc.boolean(),
}).map((s): Read => {
  const opts = (r: Resolve) => ({ ...w(s.where), ...(s.paranoid ? {} : { paranoid: false }) });
  if (s.op !== 'count') return query('Item', s.op, opts, 'n');
  return query('Item', 'count', (r) => ({
    ...opts(r),
    ...(s.include.length ? { include: s.include.map((i) => includeOptions(r, i, true)), distinct: true, col: 'id' } : {}),
  }));
});

const ownerFind = fc.record({
  where: whereOf('Owner', 1),
  items: fc.record({ required: fc.boolean(), where: whereOf('Item', 1), paranoid: fc.boolean(), nested: fc.uniqueArray(includeArb.map((i) => ({ ...i, separate: false })), { maxLength: 2, selector: (i) => i.as }) }),
  withItems: fc.boolean(),
}).map((s) => query('Owner', 'findAll', (r) => ({
  ...w(s.where),
  ...(s.withItems ? {
    include: [{
      model: r('Item'), required: s.items.required, ...w(s.items.where), ...(s.items.paranoid ? {} : { paranoid: false }),
      ...(s.items.nested.length ? { include: s.items.nested.filter((i) => i.as !== 'Owner').map((i) => includeOptions(r, i, false)) } : {}),
    }],
  } : {}),
  order: ID_ORDER,
})));

const labelFind = fc.record({ where: whereOf('Label', 1), required: fc.boolean(), items: whereOf('Item', 1), through: whereOf('ItemLabel', 1) })
  .map((s) => query('Label', 'findAll', (r) => ({
    ...w(s.where),
    include: [{ model: r('Item'), required: s.required, ...w(s.items), ...(s.through ? { through: w(s.through) } : {}) }],
    order: ID_ORDER,
  })));

const plainFind = fc.constantFrom('Note' as const, 'ItemLabel' as const, 'Owner' as const, 'Label' as const).chain((model) =>
  fc.record({ where: whereOf(model), count: fc.boolean() }).map((s) => query(model, s.count ? 'count' : 'findAll', () => w(s.where))));

/** Grouped counts and conditions Sequelize cannot see into (literal SQL, functions). */
const groupedOrLiteral: fc.Arbitrary<Read> = fc.oneof(
  fc.record({ where: whereOf('Item', 1), by: fc.constantFrom('flag', 's', 'ownerId') }).map((s) =>
    query('Item', 'count', () => ({ ...w(s.where), group: [s.by] }))),
  fc.record({ where: whereOf('Item', 1), by: fc.constantFrom('flag', 'ownerId') }).map((s) =>
    query('Item', 'findAll', () => ({ ...w(s.where), attributes: [s.by, [fn('COUNT', col('id')), 'c'], [fn('SUM', col('n')), 'total']], group: [s.by], raw: true }))),
  fc.record({ s: fc.constantFrom(...STRINGS.filter((x): x is string => x !== null)), n: fc.constantFrom(0, 1, 2) }).map((v) =>
    query('Item', 'findAll', () => ({ where: { [Op.and]: [where(fn('lower', col('s')), v.s.toLowerCase()), literal(`n >= ${v.n}`)] } }))),
  fc.constantFrom(...ITEM_IDS).map((id) => query('Owner', 'findAll', () => ({
    where: { id: { [Op.in]: literal(`(SELECT n FROM items WHERE id = ${id})`) } }, // a subquery on another table
  }))),
  // The same with the values as replacements (the fast path replays a remembered select per set of values).
  fc.record({ n: fc.constantFrom(0, 1, 2), count: fc.boolean() }).map((v) =>
    query('Item', v.count ? 'count' : 'findAll', () => ({ where: literal('n >= :n'), replacements: { n: v.n } }))),
  fc.constantFrom(...ITEM_IDS).map((id) => query('Owner', 'findAll', () => ({
    where: { id: { [Op.in]: literal('(SELECT n FROM items WHERE id = ?)') } }, replacements: [id],
  }))),
);

const getterRead: fc.Arbitrary<Read> = fc.oneof(
  fc.record({ id: fc.constantFrom(...ITEM_IDS), where: whereOf('Label', 1), through: whereOf('ItemLabel', 1), count: fc.boolean() })
    .map((s) => getter('Item', s.id, s.count ? 'countLabels' : 'getLabels', () => ({ ...w(s.where), ...(s.through ? { through: w(s.through) } : {}) }))),
  fc.record({ id: fc.constantFrom(...ITEM_IDS), where: whereOf('Note', 1) }).map((s) => getter('Item', s.id, 'getNotes', () => w(s.where))),
  fc.constantFrom(...ITEM_IDS).map((id) => getter('Item', id, 'getOwner', () => ({}))),
  fc.constantFrom(...ITEM_IDS).map((id) => getter('Item', id, 'reload', () => ({ paranoid: false }))),
  fc.record({ id: fc.constantFrom(...OWNER_IDS.filter((x): x is number => x !== null)), where: whereOf('Item', 1), count: fc.boolean() })
    .map((s) => getter('Owner', s.id, s.count ? 'countItems' : 'getItems', () => w(s.where))),
  fc.record({ id: fc.constantFrom(...LABEL_IDS), where: whereOf('Item', 1) }).map((s) => getter('Label', s.id, 'getItems', () => w(s.where))),
);

/** has*, count* and hasOne getters: the association methods with a fast path of their own (query/fast-association.ts). */
// Few target keys, so that calls differing in one target only meet often (a key that left one out would collide).
const targetsArb = (model: ModelName, ids: readonly number[]): fc.Arbitrary<Targets> => fc.record({
  model: fc.constant(model), ids: fc.uniqueArray(fc.constantFrom(...ids), { minLength: 1, maxLength: 3 }), instances: fc.boolean(), list: fc.boolean(),
}).map((t) => (t.list ? t : { ...t, ids: t.ids.slice(0, 1) }));
const ownerIds = OWNER_IDS.filter((x): x is number => x !== null);
const associationRead: fc.Arbitrary<Read> = fc.oneof(
  fc.record({ id: fc.constantFrom(...ITEM_IDS), where: whereOf('Label', 1), through: whereOf('ItemLabel', 1), targets: targetsArb('Label', LABEL_IDS.slice(0, 3)) })
    .map((s) => getter('Item', s.id, s.targets.list ? 'hasLabels' : 'hasLabel', () => ({ ...w(s.where), ...(s.through ? { through: w(s.through) } : {}) }), false, s.targets)),
  fc.record({ id: fc.constantFrom(...ownerIds), where: whereOf('Item', 1), paranoid: fc.boolean(), targets: targetsArb('Item', ITEM_IDS.slice(0, 4)) })
    .map((s) => getter('Owner', s.id, s.targets.list ? 'hasItems' : 'hasItem', () => ({ ...w(s.where), ...(s.paranoid ? {} : { paranoid: false }) }), false, s.targets)),
  fc.record({ id: fc.constantFrom(...LABEL_IDS), where: whereOf('Item', 1), targets: targetsArb('Item', ITEM_IDS.slice(0, 4)) })
    .map((s) => getter('Label', s.id, s.targets.list ? 'hasItems' : 'hasItem', () => w(s.where), false, s.targets)),
  fc.record({ id: fc.constantFrom(...ITEM_IDS), where: whereOf('Note', 1) }).map((s) => getter('Item', s.id, 'countNotes', () => w(s.where))),
  fc.record({ id: fc.constantFrom(...LABEL_IDS), where: whereOf('Item', 1), paranoid: fc.boolean() })
    .map((s) => getter('Label', s.id, 'countItems', () => ({ ...w(s.where), ...(s.paranoid ? {} : { paranoid: false }) }))),
  fc.record({ id: fc.constantFrom(...LABEL_IDS), where: whereOf('ItemLabel', 1) })
    .map((s) => getter('Label', s.id, 'getFirstLink', () => ({ ...w(s.where), order: [['itemId', 'ASC']] }))),
  fc.record({ id: fc.constantFrom(...ITEM_IDS), attrs: fc.boolean() })
    .map((s) => getter('Item', s.id, 'getOwner', () => (s.attrs ? { attributes: ['id', 'name'] } : {}))),
  fc.record({ id: fc.constantFrom(...ITEM_IDS), where: whereOf('Label', 1) })
    .map((s) => getter('Item', s.id, 'getLabels', () => ({ ...w(s.where), joinTableAttributes: ['w'], order: [['id', 'ASC']] }), true)),
);

/** Limited reads ordered by an included model's column: the included rows decide which parents come back. */
const includeOrdered = fc.record({
  op: fc.constantFrom('findAll' as const, 'findOne' as const),
  where: whereOf('Item', 1),
  owner: whereOf('Owner', 1),
  required: fc.boolean(),
  dir: fc.constantFrom('ASC', 'DESC'),
  limit: fc.integer({ min: 1, max: 3 }),
  offset: maybe(fc.integer({ min: 0, max: 2 })),
}).map((s) => query('Item', s.op, (r) => ({
  ...w(s.where),
  include: [{ model: r('Owner'), required: s.required, ...w(s.owner) }],
  order: [[r('Owner'), 'name', s.dir], ['id', 'ASC']],
  ...(s.op === 'findAll' ? { limit: s.limit } : {}),
  ...(s.offset !== undefined ? { offset: s.offset } : {}),
})));

/** A condition on an included model written at the top level (`'$Owner.name$'`). */
const nestedKeyFind = fc.record({ name: fc.constantFrom(...STRINGS), where: whereOf('Item', 1), required: fc.boolean() })
  .map((s) => query('Item', 'findAll', (r) => ({
    where: { [Op.and]: [...(s.where ? [toWhere(s.where)] : []), { '$Owner.name$': s.name }] },
    include: [{ model: r('Owner'), required: s.required }],
    order: ID_ORDER,
  })));

/** Any generated read. */
export const readArb: fc.Arbitrary<Read> = fc.oneof(
  { weight: 5, arbitrary: itemFind },
  { weight: 2, arbitrary: itemAggregate },
  { weight: 2, arbitrary: ownerFind },
  { weight: 1, arbitrary: labelFind },
  { weight: 1, arbitrary: plainFind },
  { weight: 2, arbitrary: getterRead },
  { weight: 3, arbitrary: associationRead },
  { weight: 1, arbitrary: nestedKeyFind },
  { weight: 1, arbitrary: includeOrdered },
  { weight: 1, arbitrary: groupedOrLiteral },
);
