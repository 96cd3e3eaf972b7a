/**
 * What the two-process near cache differential test and its peer process
 * agree on: reads described as plain data (so they cross the IPC channel),
 * how either side runs one, the peer's configuration and the messages.
 */
import fc from 'fast-check';
import { COLUMNS, ITEM_IDS, LABEL_IDS, NOTE_IDS, OWNER_IDS, type ModelName, type Models } from './schema';
import { normalize } from './reads';
import type { SharedDatabase } from './stress-shared';
import { show, toWhere, whereArb, type W } from './where';

/** A read as data: `Model.op(...)`, rows ordered by the primary key. */
export interface ReadSpec {
  readonly model: ModelName;
  readonly op: 'findAll' | 'findOne' | 'findByPk' | 'count';
  readonly where?: W;
  /** findByPk: the key. */
  readonly id?: number;
  /** Item only: one association included (a read that depends on two tables). */
  readonly include?: 'Owner' | 'Notes' | 'Labels';
  readonly paranoid?: boolean;
}

/** The join table has a composite key, no `id`. */
const ORDER: Readonly<Record<ModelName, readonly (readonly [string, string])[]>> = {
  Item: [['id', 'ASC']], Owner: [['id', 'ASC']], Note: [['id', 'ASC']], Label: [['id', 'ASC']],
  ItemLabel: [['itemId', 'ASC'], ['labelId', 'ASC']],
};
const INCLUDED = { Owner: 'Owner', Notes: 'Note', Labels: 'Label' } as const;

/** The options of a spec, from models (a run) or for display (`label`). */
function options(s: ReadSpec, m: Models | undefined): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (s.where) o['where'] = toWhere(s.where);
  if (s.include) o['include'] = [m ? { model: m[INCLUDED[s.include]] } : INCLUDED[s.include]];
  if (s.paranoid === false) o['paranoid'] = false;
  if (s.op === 'findAll' || s.op === 'findOne') o['order'] = ORDER[s.model].map((x) => [...x]);
  return o;
}

/** Readable source text of a spec. */
export function specLabel(s: ReadSpec): string {
  return `${s.model}.${s.op}(${s.op === 'findByPk' ? `${s.id}, ` : ''}${show(options(s, undefined))})`;
}

/** Runs a spec; the result is normalized text, equal across processes for equal data. */
export async function runSpec(m: Models, s: ReadSpec, cached: boolean): Promise<string> {
  const o = { ...options(s, m), ...(cached ? {} : { cacheops: false }) };
  const M = m[s.model];
  const result = s.op === 'findByPk' ? await M.findByPk(s.id, o as never)
    : s.op === 'count' ? await M.count(o as never)
      : s.op === 'findOne' ? await M.findOne(o as never) : await M.findAll(o as never);
  return JSON.stringify(normalize(result, s.op === 'findAll'));
}

const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined, freq: 3 });
const KEYS: Readonly<Record<Exclude<ModelName, 'ItemLabel'>, readonly (number | null)[]>> = {
  Item: ITEM_IDS, Owner: OWNER_IDS.filter((x) => x !== null), Note: NOTE_IDS, Label: LABEL_IDS,
};

/** A random read spec (plain data, shrinkable). */
export const readSpecArb: fc.Arbitrary<ReadSpec> = fc.constantFrom<ModelName>('Item', 'Item', 'Item', 'Owner', 'Note', 'Label', 'ItemLabel').chain((model) =>
  fc.record({
    op: fc.constantFrom<ReadSpec['op']>(...(model === 'ItemLabel' ? ['findAll', 'findOne', 'count'] as const : ['findAll', 'findAll', 'findOne', 'findByPk', 'count'] as const)),
    where: maybe(whereArb(COLUMNS[model], 1)),
    pick: fc.nat(),
    include: model === 'Item' ? maybe(fc.constantFrom('Owner' as const, 'Notes' as const, 'Labels' as const)) : fc.constant(undefined),
    paranoid: model === 'Item' ? fc.boolean() : fc.constant(true),
  }).map((r): ReadSpec => {
    const keys = model === 'ItemLabel' ? [] : KEYS[model];
    const spec: ReadSpec = {
      model, op: r.op,
      ...(r.op === 'findByPk' ? { id: keys[r.pick % keys.length] as number } : r.where ? { where: r.where } : {}),
      ...(r.include && r.op !== 'count' ? { include: r.include } : {}),
      ...(r.paranoid ? {} : { paranoid: false }),
    };
    return spec;
  }));

/** Reads checked after every step, whatever it was. */
export const FIXED_SPECS: readonly ReadSpec[] = [
  { model: 'Item', op: 'findAll' },
  { model: 'Item', op: 'findAll', paranoid: false, include: 'Owner' },
  { model: 'Item', op: 'count', where: { k: 'eq', col: 'flag', v: true, op: false } },
  { model: 'Item', op: 'findByPk', id: 1 },
  { model: 'Owner', op: 'findAll' },
  { model: 'Note', op: 'findAll' },
  { model: 'Label', op: 'findAll' },
  { model: 'ItemLabel', op: 'findAll' },
];

export interface PeerConfig extends SharedDatabase {
  readonly prefix: string;
  readonly maxInListLength: number;
}

export type PeerRequest =
  /** After the barrier, each read twice through the cache. */
  | { readonly type: 'check'; readonly seq: number; readonly reads: readonly ReadSpec[] }
  | { readonly type: 'stop' };

export type PeerReply =
  | { readonly type: 'ready' }
  | { readonly type: 'checked'; readonly seq: number; readonly results: readonly (readonly [string, string])[]; readonly reads: number; readonly nearHits: number }
  | { readonly type: 'error'; readonly seq?: number; readonly message: string };
