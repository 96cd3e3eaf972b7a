/**
 * Association mutators (belongsToMany and hasMany), raw SQL writes, and
 * opted-out writes (`{ cacheops: { invalidate: false } }` followed by
 * `invalidateModel`); `writeArb` is every write.
 */
import fc from 'fast-check';
import { QueryTypes, type Model } from 'sequelize';
import { DATES, INTS, ITEM_IDS, LABEL_IDS, OWNER_IDS, STRINGS, type ModelName, type World } from './schema';
import { show } from './where';
import { fetchInstance, modelWrites, opts, VALUES, type Write, type WriteOpts } from './writes';

type Call = (inst: Model, args: unknown[], o: Record<string, unknown>) => Promise<unknown>;
const call = (method: string): Call => (inst, args, o) => (inst as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!(...args, o);

/** `owner.<method>(...)` on an instance fetched around the cache (a missing row makes it a no-op). */
function mutator(owner: ModelName, id: number, method: string, args: unknown[], extra: Record<string, unknown>, touches: ModelName[]): Write {
  const shownArgs = [...args.map(show), ...(Object.keys(extra).length ? [show(extra)] : [])].join(', ');
  return {
    label: `(await ${owner}.findByPk(${id})).${method}(${shownArgs})`,
    touches,
    async run(w: World, o: WriteOpts) {
      const inst = await fetchInstance(w, owner, id, o, 'db', false);
      if (inst) await call(method)(inst, args, { ...opts(o), ...extra });
    },
  };
}

const labelIds = fc.uniqueArray(fc.constantFrom(...LABEL_IDS), { maxLength: 3 });
const itemIds = fc.uniqueArray(fc.constantFrom(...ITEM_IDS.slice(0, 8)), { maxLength: 3 });
const through = fc.option(fc.constantFrom(1, 2, 3).map((w) => ({ through: { w } })), { nil: undefined });

const belongsToMany: fc.Arbitrary<Write> = fc.oneof(
  fc.record({ id: fc.constantFrom(...ITEM_IDS.slice(0, 8)), op: fc.constantFrom('setLabels', 'addLabels', 'removeLabels'), ids: labelIds, through })
    .map((s) => mutator('Item', s.id, s.op, [s.ids], s.op === 'removeLabels' ? {} : s.through ?? {}, ['ItemLabel'])),
  fc.record({ id: fc.constantFrom(...ITEM_IDS.slice(0, 8)), op: fc.constantFrom('addLabel', 'removeLabel'), label: fc.constantFrom(...LABEL_IDS), through })
    .map((s) => mutator('Item', s.id, s.op, [s.label], s.op === 'removeLabel' ? {} : s.through ?? {}, ['ItemLabel'])),
  fc.record({ id: fc.constantFrom(...LABEL_IDS), op: fc.constantFrom('setItems', 'addItems', 'removeItems'), ids: itemIds })
    .map((s) => mutator('Label', s.id, s.op, [s.ids], {}, ['ItemLabel'])),
  fc.record({ id: fc.constantFrom(...ITEM_IDS.slice(0, 8)), v: VALUES.Label, through })
    .map((s) => mutator('Item', s.id, 'createLabel', [s.v], s.through ?? {}, ['Label', 'ItemLabel'])),
);

const ownerIds = OWNER_IDS.filter((x): x is number => x !== null);
const hasMany: fc.Arbitrary<Write> = fc.oneof(
  fc.record({ id: fc.constantFrom(...ownerIds), op: fc.constantFrom('setItems', 'addItems', 'removeItems'), ids: itemIds })
    .map((s) => mutator('Owner', s.id, s.op, [s.ids], {}, ['Item'])),
  fc.record({ id: fc.constantFrom(...ownerIds), v: VALUES.Item }).map((s) => mutator('Owner', s.id, 'createItem', [s.v], {}, ['Item'])),
  fc.record({ id: fc.constantFrom(...ITEM_IDS.slice(0, 7)), op: fc.constantFrom('setNotes', 'addNotes', 'removeNotes'), ids: fc.uniqueArray(fc.constantFrom(1, 2, 3, 4, 5, 6), { maxLength: 3 }) })
    .map((s) => mutator('Item', s.id, s.op, [s.ids], {}, ['Note'])),
  fc.record({ id: fc.constantFrom(...ITEM_IDS.slice(0, 7)), v: VALUES.Note }).map((s) => mutator('Item', s.id, 'createNote', [s.v], {}, ['Note'])),
);

/** Raw statements; identifiers quoted for the dialect, values as replacements. */
interface RawSpec { readonly sql: (q: (id: string) => string) => string; readonly values: Record<string, unknown>; readonly type: string; readonly model: ModelName }
const rawSpecs: fc.Arbitrary<RawSpec> = fc.oneof(
  fc.record({ n: fc.constantFrom(...INTS), s: fc.constantFrom(...STRINGS) }).map((values) => ({ values, type: QueryTypes.UPDATE, model: 'Item' as const,
    sql: () => 'UPDATE items SET n = :n WHERE s = :s' })),
  fc.record({ s: fc.constantFrom(...STRINGS), id: fc.constantFrom(...ITEM_IDS) }).map((values) => ({ values, type: QueryTypes.UPDATE, model: 'Item' as const,
    sql: () => 'UPDATE items SET s = :s WHERE id = :id' })),
  fc.record({ o: fc.constantFrom(1, 2, 3, 4), at: fc.constantFrom(...DATES.slice(1)) }).map((values) => ({ values, type: QueryTypes.UPDATE, model: 'Item' as const,
    sql: (q: (id: string) => string) => `UPDATE items SET ${q('deletedAt')} = :at WHERE ${q('ownerId')} = :o` })),
  fc.record({ n: fc.constantFrom(...INTS), s: fc.constantFrom(...STRINGS), at: fc.constantFrom(...DATES.slice(1)) }).map((values) => ({ values, type: QueryTypes.INSERT, model: 'Item' as const,
    sql: (q: (id: string) => string) => `INSERT INTO items (n, s, ${q('createdAt')}, ${q('updatedAt')}) VALUES (:n, :s, :at, :at)` })),
  fc.record({ i: fc.constantFrom(...ITEM_IDS.slice(0, 7)), b: fc.constantFrom(...STRINGS), n: fc.constantFrom(...INTS) }).map((values) => ({ values, type: QueryTypes.INSERT, model: 'Note' as const,
    sql: (q: (id: string) => string) => `INSERT INTO notes (${q('itemId')}, body, n) VALUES (:i, :b, :n)` })),
  fc.record({ n: fc.constantFrom(0, 1, 2) }).map((values) => ({ values, type: QueryTypes.DELETE, model: 'Note' as const,
    sql: () => 'DELETE FROM notes WHERE n = :n' })),
  fc.record({ w: fc.constantFrom(1, 2, 3), l: fc.constantFrom(...LABEL_IDS) }).map((values) => ({ values, type: QueryTypes.UPDATE, model: 'ItemLabel' as const,
    sql: (q: (id: string) => string) => `UPDATE item_labels SET w = :w WHERE ${q('labelId')} = :l` })),
  fc.record({ i: fc.constantFrom(...ITEM_IDS.slice(0, 7)) }).map((values) => ({ values, type: QueryTypes.DELETE, model: 'ItemLabel' as const,
    sql: (q: (id: string) => string) => `DELETE FROM item_labels WHERE ${q('itemId')} = :i` })),
);
const raws: fc.Arbitrary<Write> = fc.record({ spec: rawSpecs, typed: fc.boolean() }).map(({ spec, typed }) => {
  const shown = spec.sql((id) => `"${id}"`);
  return {
    label: `sequelize.query(${show(shown)}, { replacements: ${show(spec.values)}${typed ? `, type: QueryTypes.${spec.type}` : ''} })`,
    touches: [spec.model],
    async run(w: World, o: WriteOpts) {
      const q = (id: string) => w.sequelize.getQueryInterface().quoteIdentifier(id);
      await w.sequelize.query(spec.sql(q), { ...opts(o), replacements: spec.values, ...(typed ? { type: spec.type } : {}) } as never);
    },
  };
});

const plainWrites = fc.oneof(...modelWrites, { weight: 3, arbitrary: belongsToMany }, { weight: 2, arbitrary: hasMany }, { weight: 2, arbitrary: raws });

/** The write with invalidation turned off, then `invalidateModel` of every model it touches. */
function optedOut(inner: Write): Write {
  return {
    ...inner,
    label: `${inner.label}  /* { cacheops: { invalidate: false } } */ ; ${inner.touches.map((m) => `invalidateModel(${m})`).join('; ')}`,
    async run(w, o) {
      await inner.run(w, { ...o, extra: { ...o.extra, cacheops: { invalidate: false } } });
      for (const m of inner.touches) await w.cacheops.invalidateModel(w.m[m], { ...(o.transaction ? { transaction: o.transaction } : {}) });
    },
  };
}

/** Any write. */
export const writeArb: fc.Arbitrary<Write> = fc.oneof(
  { weight: 9, arbitrary: plainWrites },
  { weight: 1, arbitrary: plainWrites.map(optedOut) },
);
