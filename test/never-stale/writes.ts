/**
 * Writes through every write path Sequelize has: model statics, instance
 * methods, association mutators (writes-assoc.ts) and raw SQL. Each is data
 * (shrinkable) with a readable label and a `run`.
 */
import fc from 'fast-check';
import type { Model, ModelStatic, Transaction } from 'sequelize';
import {
  BOOLS, COLUMNS, DATES, EXPLICIT_ITEM_IDS, EXPLICIT_LABEL_IDS, INTS, ITEM_IDS, LABEL_IDS, NOTE_IDS, OWNER_IDS, STRINGS,
  type ModelName, type World,
} from './schema';
import { normalize } from './reads';
import { show, toWhere, whereArb, type W } from './where';

export interface WriteOpts {
  readonly transaction?: Transaction | undefined;
  /** Extra write options: `{ cacheops: { invalidate: false } }` for opted-out writes. */
  readonly extra: Readonly<Record<string, unknown>>;
}

export interface Write {
  readonly label: string;
  /** Models whose tables it may change (what an opted-out variant must invalidate). */
  readonly touches: readonly ModelName[];
  /** A TRUNCATE statement: MySQL commits the transaction around it, so never inside one there. */
  readonly ddl?: boolean;
  run(w: World, o: WriteOpts): Promise<void>;
}

/** A read through the cache disagreed with the database. */
export class StaleReadError extends Error {}

export const opts = (o: WriteOpts): Record<string, unknown> => ({ transaction: o.transaction ?? null, ...o.extra });
const M = (w: World, name: ModelName): ModelStatic<Model> => w.m[name];
type Via = 'db' | 'cache';

/**
 * An instance by primary key, read around the cache or through it; through
 * it is itself a checked read: it must equal the row in the database.
 */
export async function fetchInstance(w: World, model: ModelName, id: number, o: WriteOpts, via: Via, paranoid = true): Promise<Model | null> {
  const base = { transaction: o.transaction ?? null, paranoid };
  const fresh = await M(w, model).findByPk(id, { ...base, cacheops: false } as never);
  if (via === 'db') return fresh;
  const cached = await M(w, model).findByPk(id, base as never);
  const [a, b] = [JSON.stringify(normalize(cached, false)), JSON.stringify(normalize(fresh, false))];
  if (a !== b) throw new StaleReadError(`stale instance fetch ${model}.findByPk(${id}, { paranoid: ${paranoid} })\n  cached: ${a}\n  fresh:  ${b}`);
  return cached;
}

const partial = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T, nonEmpty = true) =>
  fc.record(fields, { requiredKeys: [] }).filter((v) => !nonEmpty || Object.keys(v).length > 0) as fc.Arbitrary<Record<string, unknown>>;

export const VALUES: Readonly<Record<ModelName, fc.Arbitrary<Record<string, unknown>>>> = {
  Item: partial({
    n: fc.constantFrom(...INTS), s: fc.constantFrom(...STRINGS), flag: fc.constantFrom(...BOOLS),
    at: fc.constantFrom(...DATES), ownerId: fc.constantFrom(...OWNER_IDS),
  }),
  Note: partial({ itemId: fc.constantFrom(...ITEM_IDS.slice(0, 7)), body: fc.constantFrom(...STRINGS), n: fc.constantFrom(...INTS) }),
  Label: partial({ name: fc.constantFrom(...STRINGS) }),
  Owner: partial({ name: fc.constantFrom(...STRINGS) }),
  ItemLabel: partial({ w: fc.constantFrom(1, 2, 3, null) }),
};
const IDS: Readonly<Record<ModelName, readonly number[]>> = {
  Item: ITEM_IDS, Note: NOTE_IDS, Label: LABEL_IDS, Owner: [1, 2, 3, 4], ItemLabel: [],
};
const whereOf = (m: ModelName) => whereArb(COLUMNS[m], 2);
const where = (x: W | undefined) => (x ? { where: toWhere(x) } : {});
const cols = (v: Record<string, unknown>) => show(v);

function write(label: string, touches: ModelName[], run: Write['run'], ddl = false): Write {
  return { label, touches, run, ...(ddl ? { ddl } : {}) };
}

const creates = fc.constantFrom<ModelName>('Item', 'Note', 'Label', 'Owner').chain((model) => VALUES[model].map((v) =>
  write(`${model}.create(${cols(v)})`, [model], async (w, o) => { await M(w, model).create(v, opts(o)); })));

const instanceSaves = fc.record({
  model: fc.constantFrom<ModelName>('Item', 'Item', 'Note', 'Label', 'Owner'),
  via: fc.constantFrom<Via>('db', 'cache'),
  how: fc.constantFrom('save' as const, 'update' as const),
  pick: fc.nat(),
}).chain((s) => VALUES[s.model].map((v) => {
  const id = IDS[s.model][s.pick % IDS[s.model].length]!;
  const label = s.how === 'save' ? `(await ${s.model}.findByPk(${id})).set(${cols(v)}).save()` : `(await ${s.model}.findByPk(${id})).update(${cols(v)})`;
  return write(`${label}  /* via ${s.via} */`, [s.model], async (w, o) => {
    const inst = await fetchInstance(w, s.model, id, o, s.via);
    if (!inst) return;
    if (s.how === 'save') await inst.set(v).save(opts(o));
    else await inst.update(v, opts(o));
  });
}));

const instanceDestroys = fc.record({
  model: fc.constantFrom<ModelName>('Item', 'Item', 'Note', 'Owner', 'Label'), pick: fc.nat(), force: fc.boolean(), via: fc.constantFrom<Via>('db', 'cache'),
}).map((s) => {
  const id = IDS[s.model][s.pick % IDS[s.model].length]!;
  const force = s.model === 'Item' && s.force;
  return write(`(await ${s.model}.findByPk(${id}${force ? ', { paranoid: false }' : ''})).destroy(${force ? '{ force: true }' : ''})  /* via ${s.via} */`, [s.model], async (w, o) => {
    const inst = await fetchInstance(w, s.model, id, o, s.via, !force);
    if (inst) await inst.destroy({ ...opts(o), force });
  });
});

const instanceRestores = fc.record({ id: fc.constantFrom(...ITEM_IDS), via: fc.constantFrom<Via>('db', 'cache') }).map((s) =>
  write(`(await Item.findByPk(${s.id}, { paranoid: false })).restore()  /* via ${s.via} */`, ['Item'], async (w, o) => {
    const inst = await fetchInstance(w, 'Item', s.id, o, s.via, false);
    if (inst) await inst.restore(opts(o));
  }));

const instanceIncrements = fc.record({
  model: fc.constantFrom<ModelName>('Item', 'Note'), id: fc.constantFrom(...ITEM_IDS.slice(0, 7)), by: fc.constantFrom(1, 2, -1), dec: fc.boolean(), via: fc.constantFrom<Via>('db', 'cache'),
}).map((s) => write(`(await ${s.model}.findByPk(${s.id})).${s.dec ? 'decrement' : 'increment'}('n', { by: ${s.by} })  /* via ${s.via} */`, [s.model], async (w, o) => {
  const inst = await fetchInstance(w, s.model, s.id, o, s.via);
  if (!inst) return;
  if (s.dec) await inst.decrement('n', { ...opts(o), by: s.by });
  else await inst.increment('n', { ...opts(o), by: s.by });
}));

const bulkUpdates = fc.constantFrom<ModelName>('Item', 'Item', 'Note', 'ItemLabel', 'Owner', 'Label').chain((model) =>
  fc.record({ v: VALUES[model], where: whereOf(model), hooks: fc.boolean(), limit: fc.constantFrom(undefined, undefined, 1) }).map((s) =>
    write(`${model}.update(${cols(s.v)}, { where: ${show(toWhere(s.where))}${s.hooks ? ', individualHooks: true' : ''}${s.limit ? `, limit: ${s.limit}` : ''} })`, [model], async (w, o) => {
      await M(w, model).update(s.v, { ...opts(o), where: toWhere(s.where), individualHooks: s.hooks, ...(s.limit ? { limit: s.limit } : {}) } as never);
    })));

const bulkDestroys = fc.constantFrom<ModelName>('Item', 'Item', 'Note', 'ItemLabel').chain((model) =>
  fc.record({ where: whereOf(model), force: fc.boolean(), hooks: fc.boolean(), limit: fc.constantFrom(undefined, undefined, 1) }).map((s) => {
    const force = model === 'Item' && s.force;
    const shown = `${force ? ', force: true' : ''}${s.hooks ? ', individualHooks: true' : ''}${s.limit ? `, limit: ${s.limit}` : ''}`;
    return write(`${model}.destroy({ where: ${show(toWhere(s.where))}${shown} })`, [model], async (w, o) => {
      await M(w, model).destroy({ ...opts(o), where: toWhere(s.where), force, individualHooks: s.hooks, ...(s.limit ? { limit: s.limit } : {}) });
    });
  }));

const bulkRestores = fc.record({ where: fc.option(whereOf('Item'), { nil: undefined }), hooks: fc.boolean() }).map((s) =>
  write(`Item.restore({ ${s.where ? `where: ${show(toWhere(s.where))}` : ''}${s.hooks ? ', individualHooks: true' : ''} })`, ['Item'], async (w, o) => {
    await M(w, 'Item').restore({ ...opts(o), ...where(s.where), individualHooks: s.hooks });
  }));

const truncates = fc.record({ model: fc.constantFrom<ModelName>('Item', 'Note', 'ItemLabel'), force: fc.boolean() }).map((s) => {
  const soft = s.model === 'Item' && !s.force; // a paranoid truncate is an UPDATE of deletedAt
  return write(`${s.model}.truncate(${s.model === 'Item' && s.force ? '{ force: true }' : ''})`, [s.model], async (w, o) => {
    await M(w, s.model).truncate({ ...opts(o), ...(s.model === 'Item' ? { force: s.force } : {}) });
  }, !soft);
});

const itemRowWithId = fc.record({ id: fc.constantFrom(...EXPLICIT_ITEM_IDS) }).chain((k) => VALUES.Item.map((v) => ({ ...v, ...k })));
const labelRowWithId = fc.record({ id: fc.constantFrom(...EXPLICIT_LABEL_IDS) }).chain((k) => VALUES.Label.map((v) => ({ ...v, ...k })));
const pairRow = fc.record({ itemId: fc.constantFrom(...ITEM_IDS.slice(0, 7)), labelId: fc.constantFrom(...LABEL_IDS), w: fc.constantFrom(1, 2, 3, null) });
const unique = <T extends Record<string, unknown>>(arb: fc.Arbitrary<T>, key: (r: T) => string) => fc.uniqueArray(arb, { minLength: 1, maxLength: 3, selector: key });

const bulkCreates: fc.Arbitrary<Write> = fc.oneof(
  fc.constantFrom<ModelName>('Item', 'Note', 'Label', 'Owner').chain((model) => fc.array(VALUES[model], { minLength: 1, maxLength: 3 }).map((rows) =>
    write(`${model}.bulkCreate(${show(rows)})`, [model], async (w, o) => { await M(w, model).bulkCreate(rows, opts(o)); }))),
  fc.record({
    model: fc.constantFrom<ModelName>('Item', 'Label', 'ItemLabel'), mode: fc.constantFrom('updateOnDuplicate' as const, 'ignoreDuplicates' as const),
  }).chain(({ model, mode }) => {
    const rows: fc.Arbitrary<Record<string, unknown>[]> = model === 'Item' ? unique(itemRowWithId, (r) => String(r['id']))
      : model === 'Label' ? unique(labelRowWithId, (r) => String(r['id'])) : unique(pairRow, (r) => `${r.itemId}/${r.labelId}`);
    const fields = model === 'Item' ? ['n', 's', 'flag'] : model === 'Label' ? ['name'] : ['w'];
    return rows.map((rs) => {
      const option = mode === 'updateOnDuplicate' ? { updateOnDuplicate: fields } : { ignoreDuplicates: true };
      return write(`${model}.bulkCreate(${show(rs)}, ${show(option)})`, [model], async (w, o) => { await M(w, model).bulkCreate(rs, { ...opts(o), ...option }); });
    });
  }),
);

const upserts = fc.oneof(
  itemRowWithId.map((v) => ['Item', v] as const),
  labelRowWithId.map((v) => ['Label', v] as const),
  pairRow.map((v) => ['ItemLabel', v] as const),
).map(([model, v]) => write(`${model}.upsert(${cols(v)})`, [model as ModelName], async (w, o) => {
  await M(w, model).upsert(v, opts(o));
}));

const staticIncrements = fc.record({
  model: fc.constantFrom<ModelName>('Item', 'Note', 'ItemLabel'), by: fc.constantFrom(1, 2, -1), dec: fc.boolean(),
}).chain((s) => whereOf(s.model).map((wh) => {
  const field = s.model === 'ItemLabel' ? 'w' : 'n';
  const method = s.dec ? 'decrement' : 'increment';
  return write(`${s.model}.${method}({ ${field}: ${s.by} }, { where: ${show(toWhere(wh))} })`, [s.model], async (w, o) => {
    await M(w, s.model)[method]({ [field]: s.by }, { ...opts(o), where: toWhere(wh) } as never);
  });
}));

const findOrCreates = fc.oneof(
  fc.record({ s: fc.constantFrom(...STRINGS), n: fc.constantFrom(...INTS), flag: fc.constantFrom(...BOOLS) })
    .map((v) => ['Item', { where: { s: v.s, n: v.n }, defaults: { flag: v.flag } }] as const),
  fc.constantFrom(...STRINGS).map((name) => ['Label', { where: { name } }] as const),
).map(([model, o]) => write(`${model}.findOrCreate(${show(o)})`, [model], async (w, wo) => {
  await M(w, model).findOrCreate({ ...o, ...opts(wo) } as never);
}));

/** Model-level and instance-level writes (association and raw ones are in writes-assoc.ts). */
export const modelWrites: readonly fc.WeightedArbitrary<Write>[] = [
  { weight: 4, arbitrary: creates },
  { weight: 4, arbitrary: instanceSaves },
  { weight: 2, arbitrary: instanceDestroys },
  { weight: 1, arbitrary: instanceRestores },
  { weight: 1, arbitrary: instanceIncrements },
  { weight: 4, arbitrary: bulkUpdates },
  { weight: 2, arbitrary: bulkDestroys },
  { weight: 1, arbitrary: bulkRestores },
  { weight: 1, arbitrary: truncates },
  { weight: 3, arbitrary: bulkCreates },
  { weight: 2, arbitrary: upserts },
  { weight: 2, arbitrary: staticIncrements },
  { weight: 1, arbitrary: findOrCreates },
];
