/**
 * Random Sequelize `where` trees, kept as a small data tree (so fast-check
 * shrinks them) and turned into the real thing, and into readable source
 * text, on demand.
 */
import fc from 'fast-check';
import { Op } from 'sequelize';

/** One column a where may test: its values, and which operators fit it. */
export interface ColumnSpec {
  readonly values: readonly unknown[];
  readonly ordered?: boolean;
  readonly text?: boolean;
}
export type Columns = Readonly<Record<string, ColumnSpec>>;

export type W =
  | { readonly k: 'eq'; readonly col: string; readonly v: unknown; readonly op: boolean }
  | { readonly k: 'in'; readonly col: string; readonly vs: readonly unknown[]; readonly op: boolean }
  | { readonly k: 'null'; readonly col: string; readonly op: boolean }
  | { readonly k: 'ne'; readonly col: string; readonly v: unknown; readonly not: boolean }
  | { readonly k: 'notIn'; readonly col: string; readonly vs: readonly unknown[] }
  | { readonly k: 'between'; readonly col: string; readonly lo: unknown; readonly hi: unknown }
  | { readonly k: 'cmp'; readonly col: string; readonly cmp: 'gt' | 'lt' | 'gte' | 'lte'; readonly v: unknown }
  | { readonly k: 'like'; readonly col: string; readonly pat: string }
  | { readonly k: 'attrOr'; readonly col: string; readonly vs: readonly unknown[] }
  | { readonly k: 'and' | 'or'; readonly kids: readonly W[]; readonly merge: boolean }
  | { readonly k: 'not'; readonly kid: W };

const CMP = { gt: Op.gt, lt: Op.lt, gte: Op.gte, lte: Op.lte } as const;

/** The Sequelize where object of a tree. */
export function toWhere(w: W): Record<string | symbol, unknown> {
  switch (w.k) {
    case 'eq': return { [w.col]: w.op ? { [Op.eq]: w.v } : w.v };
    case 'in': return { [w.col]: w.op ? { [Op.in]: [...w.vs] } : [...w.vs] };
    case 'null': return { [w.col]: w.op ? { [Op.is]: null } : null };
    case 'ne': return { [w.col]: { [w.not ? Op.not : Op.ne]: w.v } };
    case 'notIn': return { [w.col]: { [Op.notIn]: [...w.vs] } };
    case 'between': return { [w.col]: { [Op.between]: [w.lo, w.hi] } };
    case 'cmp': return { [w.col]: { [CMP[w.cmp]]: w.v } };
    case 'like': return { [w.col]: { [Op.like]: w.pat } };
    case 'attrOr': return { [w.col]: { [Op.or]: [...w.vs] } };
    case 'not': return { [Op.not]: toWhere(w.kid) };
    case 'and':
    case 'or': {
      const kids = w.kids.map(toWhere);
      if (w.k === 'and' && w.merge) {
        // `{ a: 1, b: 2 }` rather than `{ [Op.and]: [...] }` when no key repeats.
        const keys = kids.flatMap((k) => Reflect.ownKeys(k));
        if (new Set(keys).size === keys.length) return Object.assign({}, ...kids) as Record<string | symbol, unknown>;
      }
      return { [w.k === 'and' ? Op.and : Op.or]: kids };
    }
  }
}

/** A model shown by name in readable text. */
export class Ref {
  constructor(readonly name: string) {}
}

/** Readable source text of a value (where objects with Op symbols, dates, strings). */
export function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (typeof value === 'symbol') return `Op.${value.description ?? '?'}`;
  if (value instanceof Date) return `new Date('${value.toISOString()}')`;
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  if (value instanceof Ref) return value.name;
  if (typeof value === 'function') return (value as { name?: string }).name ?? 'fn';
  if (typeof value === 'object') {
    const parts = Reflect.ownKeys(value).map((k) => {
      const v = (value as Record<string | symbol, unknown>)[k];
      const key = typeof k === 'symbol' ? `[Op.${k.description ?? '?'}]` : /^[A-Za-z_$][\w$]*$/.test(k) ? k : show(k);
      return `${key}: ${show(v)}`;
    });
    return parts.length ? `{ ${parts.join(', ')} }` : '{}';
  }
  return String(value);
}

/** A random where tree over these columns, nested up to `depth` levels. */
export function whereArb(cols: Columns, depth = 2): fc.Arbitrary<W> {
  const names = Object.keys(cols);
  const col = fc.constantFrom(...names);
  const valueOf = (c: string) => fc.constantFrom(...cols[c]!.values);
  const nonNull = (c: string) => fc.constantFrom(...cols[c]!.values.filter((v) => v !== null));
  const list = (c: string, max: number) => fc.array(valueOf(c), { minLength: 0, maxLength: max });
  const leaves: fc.Arbitrary<W>[] = [
    col.chain((c) => fc.record({ k: fc.constant('eq' as const), col: fc.constant(c), v: nonNull(c), op: fc.constant(false) })),
    col.chain((c) => fc.record({ k: fc.constant('eq' as const), col: fc.constant(c), v: valueOf(c), op: fc.constant(true) })),
    col.chain((c) => fc.record({ k: fc.constant('in' as const), col: fc.constant(c), vs: list(c, 5), op: fc.boolean() })),
    col.map((c) => ({ k: 'null' as const, col: c, op: false })),
    col.map((c) => ({ k: 'null' as const, col: c, op: true })),
    col.chain((c) => fc.record({ k: fc.constant('ne' as const), col: fc.constant(c), v: valueOf(c), not: fc.boolean() })),
    col.chain((c) => fc.record({ k: fc.constant('notIn' as const), col: fc.constant(c), vs: list(c, 4) })),
    col.chain((c) => fc.record({ k: fc.constant('attrOr' as const), col: fc.constant(c), vs: fc.array(valueOf(c), { minLength: 1, maxLength: 3 }) })),
  ];
  const ordered = names.filter((n) => cols[n]!.ordered);
  if (ordered.length) {
    leaves.push(fc.constantFrom(...ordered).chain((c) => fc.record({
      k: fc.constant('cmp' as const), col: fc.constant(c), cmp: fc.constantFrom('gt' as const, 'lt' as const, 'gte' as const, 'lte' as const), v: nonNull(c),
    })));
    leaves.push(fc.constantFrom(...ordered).chain((c) => fc.record({ k: fc.constant('between' as const), col: fc.constant(c), lo: nonNull(c), hi: nonNull(c) })));
  }
  const text = names.filter((n) => cols[n]!.text);
  if (text.length) {
    leaves.push(fc.record({ k: fc.constant('like' as const), col: fc.constantFrom(...text), pat: fc.constantFrom('a%', '%', '%a%', 'A', '_', '%&%', '%ü%', 'null') }));
  }
  const leaf = fc.oneof(...leaves);
  if (depth <= 0) return leaf;
  const inner = whereArb(cols, depth - 1);
  return fc.oneof(
    { weight: 4, arbitrary: leaf },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('and' as const), kids: fc.array(inner, { minLength: 1, maxLength: 3 }), merge: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('or' as const), kids: fc.array(inner, { minLength: 1, maxLength: 3 }), merge: fc.constant(false) }) },
    { weight: 1, arbitrary: inner.map((kid) => ({ k: 'not' as const, kid })) },
  );
}
